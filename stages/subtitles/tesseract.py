"""Tesseract (Debian's language packs through tesserocr) reading subtitle lines PP-OCR has no model for.

Tesseract binarises a page itself and fails on bright text with a dark outline over moving footage, so
each row is binarised here: the glyph fill is the brightest part of a subtitle line, so pixels above 85%
of the row's 99.5th brightness percentile are text (white or yellow fill alike) and become black on white,
scaled to 80 px rows (measured over the language corpus: 0-2% CER on Korean, Cyrillic and Vietnamese
where Tesseract's own binarisation gave 20-80%). The same images feed its script classifier (OSD).
Bright footage between the letters (sunlit grass) passes that threshold too and is read as marks: the
readers of OUTLINED scripts keep only the bright shapes a dark outline rings (`outlined`).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import Counter

import numpy as np

from core.errors import ConfigError
from core.packaged_models import tessdata_dir, tesseract_languages
from stages.subtitles.spacing import spaces_from_gaps

ROW_HEIGHT = 80
FILL_SHARE = 0.85
# A sliver of outline at a detector box's edge binarises to a thin column that Tesseract reads as a bar
# ("| أين المحطة"); subtitles never start or end with one.
EDGE_BARS = " |¦│"
# The Hindi, Hebrew, Greek and Thai readers read each row at these heights too and keep the letters most
# heights agree on (the surest reading of those): at 80 px alone one line each of the Hindi, Hebrew and Greek
# cases was lost (read empty or at 0.6-0.7, at another height at 0.8-0.9), and Thai misread a third of its
# rows at 0.87-0.93, each height other rows ("ปขขบคุณมาค" at 80 px, right at 56 and 100): 6 letters of 100
# wrong at 80 px, 1 agreed on; Greek 1 of 225 either way. Not for kor, rus+ukr, ara, vie: the script choice
# scores those on rows nothing reads, and retried, a blurred Chinese set scored ru 0.52 (chosen uk)
RETRY_HEIGHTS, RETRIED = (56, 100), frozenset({"hin", "heb", "ell", "tha"})
# Tesseract's Greek (ell) holds polytonic letters and reads a tonos as a breathing or circumflex ("αὐριο",
# "εἶναι"); modern Greek subtitles are monotonic: every accent over a Greek vowel is the tonos
_GREEK_ACCENTS = re.compile("[\u0300\u0301\u0313\u0314\u0342]+")
# The readers whose rows keep only the bright shapes a dark outline surrounds (binarise_line's `outlined`):
# grass specks between the letters were read as marks ("Τα λεμε αυριοκο πρωί", el CER 4.8% -> 0; Thai
# "ขอขบคุณมาค"); kor, rus+ukr, vie and ara read as well or better without it (their tiny marks' rings
# are not dark: "nhiêu" for "nhiều") and score the script choice on unclear Chinese rows: they keep the
# plain one
# Specks gone, their threshold can take more of a glyph's soft edge (thicker strokes): 0.8 of the fill read
# the Thai and Greek rows with no letter wrong, 0.85 with 1 each (the heights agreeing, 9 and 14 rows)
OUTLINED, OUTLINED_FILL = RETRIED, 0.8
RING_SHARE = 0.5  # a ring at most this share of the fill's brightness is an outline
# The readers whose spaces come from the glyphs' gaps too (spacing.spaces_from_gaps): ell glued "Τα λέμε" and
# "αύριο το" (Greek case WER 28.6% -> 0, CER 0 either way; 8 other Greek lines at 32, 40 and 52 px: WER
# 10.8-24.3% -> 0-5.4%, "ξέρωτιναπω" for "ξέρω τι να πω").
# Not kor (syllable blocks sit a space apart: "반 갑 습니다", WER 0 -> 60%) nor hin (a matra read apart:
# 0 -> 16.7%); rus+ukr, vie, heb, ara read the same either way (their cases glue no word)
GAP_SPACED = frozenset({"ell"})
HEADLINE = 0.6  # the share of a row's width a headline's pixel row is text over (has_headline)
LOADS: Counter[str] = Counter()  # Tesseract instances made in this process, by language ("osd": the script
# classifier); they are parts of engines or short-lived, not resident models (core.models counts those)


def binarise_line(crop: np.ndarray, height: int = ROW_HEIGHT, outlined: bool = False) -> np.ndarray:
    """A subtitle row as black text on white, `height` px tall, with a white margin; `outlined`: only
    the bright shapes ringed by a dark outline, as subtitle glyphs are (footage specks are not)."""
    import cv2

    gray, fill = _scaled_gray(crop, height)
    text = gray >= (OUTLINED_FILL if outlined else FILL_SHARE) * fill
    if outlined:
        text = _ringed(text, gray, RING_SHARE * fill, max(2, height // 20))
    page = np.where(text, 0, 255).astype(np.uint8)
    return cv2.copyMakeBorder(page, 16, 16, 16, 16, cv2.BORDER_CONSTANT, value=255)


def _scaled_gray(crop: np.ndarray, height: int) -> tuple[np.ndarray, float]:
    """The row in grey, `height` px tall, and its glyph fill's brightness (99.5th percentile)."""
    import cv2

    gray = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    scale = height / max(1, gray.shape[0])
    gray = cv2.resize(gray, (max(1, round(gray.shape[1] * scale)), height), interpolation=cv2.INTER_CUBIC)
    return gray, float(np.percentile(gray, 99.5))


def _ringed(text: np.ndarray, gray: np.ndarray, dark: float, reach: int) -> np.ndarray:
    """The shapes of `text` whose surroundings within `reach` px (text excluded) are dark: median at
    most `dark`. A glyph's ring is its outline; a speck of bright footage is ringed by footage."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(text.astype(np.uint8), connectivity=8)
    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    keep = np.zeros(count, bool)
    for label in range(1, count):
        x, y, w, h = stats[label, :4]
        x0, y0 = max(0, x - reach), max(0, y - reach)
        window = np.s_[y0 : y + h + reach, x0 : x + w + reach]
        shape = (labels[window] == label).astype(np.uint8)
        ring = (cv2.dilate(shape, kernel) > 0) & ~text[window]
        keep[label] = bool(ring.any()) and float(np.median(gray[window][ring])) <= dark
    return keep[labels]


def require_languages(langs: str, why: str, debian: str = "") -> str:
    """`langs` ("rus" or "rus+ukr") if every one is installed; else one line saying what to install."""
    missing = [lang for lang in langs.split("+") if lang not in tesseract_languages()]
    if missing:
        packages = debian or " ".join(f"tesseract-ocr-{m.replace('_', '-')}" for m in missing)
        raise ConfigError(f"{why} needs Tesseract's {'+'.join(missing)} data: apt-get install {packages}")
    return langs


def has_headline(crop: np.ndarray) -> bool:
    """A row whose text hangs from a headline (Devanagari's shirorekha): one thin band of pixel rows
    that is text along most of the line's width (0.86-0.93 on the Hindi case) while the text as a whole is
    sparse: every row of the Hindi case. In the language corpus' other scripts one row in 11 (Hebrew) had
    one, in clean real Chinese rows a third at most; Chinese rows blurred or faded into blobs fill many pixel
    rows at once, and motion blur that smears them into lines (up to 5 rows in 7) leaves OSD naming no
    script: the headline counts only where OSD says Devanagari (script.py)."""
    text = binarise_line(crop) == 0
    ys, xs = np.nonzero(text)
    if len(xs) < 20:
        return False
    profile = text[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].mean(axis=1)
    full = profile >= HEADLINE
    return bool(full.any() and full.sum() <= 0.2 * len(profile) and profile.mean() <= 0.5 * profile.max())


def monotonic(text: str) -> str:
    """Greek as modern Greek writes it: one tonos for whatever accent or breathing a vowel was read with
    (a diaeresis kept: "ϊ", "ΐ"), and mu for the micro sign ell reads it as ("µου")."""
    marks = _GREEK_ACCENTS.sub("\u0301", unicodedata.normalize("NFD", text)).replace("\u0345", "")
    marks = marks.replace("\u00b5", "\u03bc")
    return unicodedata.normalize("NFC", marks)


class TesseractReader:
    """One Tesseract instance for `langs`, reading one line per call (page mode 7, a single text line)."""

    def __init__(self, langs: str, debian: str = "") -> None:
        import tesserocr  # heavy: libtesseract

        require_languages(langs, f"reading {langs}", debian)
        self._api = tesserocr.PyTessBaseAPI(
            path=str(tessdata_dir()), lang=langs, psm=tesserocr.PSM.SINGLE_LINE, oem=tesserocr.OEM.LSTM_ONLY
        )
        self._lock = threading.Lock()
        self._greek = "ell" in langs.split("+")
        self._heights = (ROW_HEIGHT, *RETRY_HEIGHTS) if langs in RETRIED else (ROW_HEIGHT,)
        self._outlined = langs in OUTLINED
        self._gap_spaced = langs in GAP_SPACED
        LOADS[langs] += 1

    def read_line(self, crop: np.ndarray) -> tuple[str, float]:
        """The text of one row crop and Tesseract's mean word confidence (0-1); where the language is
        RETRIED, the surest of the readings whose letters (spaces aside) most heights agree on (an empty
        reading agrees with none: a line one height reads is kept)."""
        reads = [self._read(crop, height) for height in self._heights]
        if self._greek:
            reads = [(monotonic(text), score) for text, score in reads]
        letters = ["".join(text.split()) for text, _ in reads]
        agree = Counter(letters)
        best = max(range(len(reads)), key=lambda i: (agree[letters[i]] if letters[i] else 0, reads[i][1]))
        return reads[best]

    def _read(self, crop: np.ndarray, height: int) -> tuple[str, float]:
        from PIL import Image

        with self._lock:
            self._api.SetImage(Image.fromarray(binarise_line(crop, height, self._outlined)))
            text = " ".join(self._api.GetUTF8Text().split())
            if self._gap_spaced and text:
                text = self._spaced_by_gaps(text, height)
            return text.strip(EDGE_BARS), max(0.0, self._api.MeanTextConf() / 100.0)

    def _spaced_by_gaps(self, text: str, height: int) -> str:
        """`text` with the spaces its glyphs' gaps show (the page just read); as read where the glyphs
        Tesseract iterates are not the text's letters."""
        from tesserocr import RIL

        glyphs, found = [], self._api.GetIterator()
        while found:
            try:
                glyph = found.GetUTF8Text(RIL.SYMBOL)
            except RuntimeError:  # tesserocr's word for a glyph with no text: not the text's letters
                return text
            box = found.BoundingBox(RIL.SYMBOL)
            glyphs.append((glyph, box[0], box[2], found.IsAtBeginningOf(RIL.WORD)))
            if not found.Next(RIL.SYMBOL):
                break
        if "".join(g[0] for g in glyphs) != "".join(text.split()):
            return text
        return spaces_from_gaps(glyphs, height)

    def close(self) -> None:
        self._api.End()


class ScriptClassifier:
    """Tesseract's orientation and script detector (osd.traineddata, in Debian's tesseract-ocr)."""

    def __init__(self) -> None:
        import tesserocr

        require_languages("osd", "telling the subtitle script", "tesseract-ocr")
        self._api = tesserocr.PyTessBaseAPI(path=str(tessdata_dir()), lang="osd", psm=tesserocr.PSM.OSD_ONLY)
        self._api.SetVariable("min_characters_to_try", "5")  # subtitle rows are short
        self._lock = threading.Lock()
        LOADS["osd"] += 1

    def script(self, rows: list[np.ndarray]) -> tuple[str | None, float, int]:
        """The script of a few subtitle rows stacked into one page (one row alone is too little text), its
        confidence and the page's orientation in degrees (0: upright, as subtitle rows are)."""

        if not rows:
            return None, 0.0, 0
        pages = [binarise_line(r) for r in rows]
        width = max(p.shape[1] for p in pages)
        page = np.vstack([np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=255) for p in pages])
        found = self._detect(page)
        if not found:
            return None, 0.0, 0
        return str(found["script_name"]), float(found["script_conf"]), int(found["orient_deg"])

    def row_scripts(self, rows: list[np.ndarray]) -> list[str | None]:
        """The script OSD names for each row alone. Too little text for the choice (script() stacks rows
        for that), but a majority of rows names a script the stacked page can miss: rows of one Hebrew line
        stacked were called Thai, each Hebrew row alone Hebrew 7 times in 11, Thai 3."""
        return [
            str(found["script_name"]) if (found := self._detect(binarise_line(row))) else None for row in rows
        ]

    def _detect(self, page: np.ndarray) -> dict | None:
        """OSD's finding on one binarised page (None where it finds nothing); one call at a time."""
        from PIL import Image

        with self._lock:
            self._api.SetImage(Image.fromarray(page))
            return self._api.DetectOrientationScript()

    def close(self) -> None:
        self._api.End()
