"""Tesseract (Debian's language packs through tesserocr) reading subtitle lines PP-OCR has no model for.

Tesseract binarises a page itself and fails on bright text with a dark outline over moving footage, so
each row is binarised here: the glyph fill is the brightest part of a subtitle line, so pixels above 85%
of the row's 99.5th brightness percentile are text (white or yellow fill alike) and become black on white,
scaled to 80 px rows (measured over the language corpus: 0-2% CER on Korean, Cyrillic and Vietnamese
where Tesseract's own binarisation gave 20-80%). The same images feed its script classifier (OSD).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import Counter

import numpy as np

from core.errors import ConfigError
from core.packaged_models import tessdata_dir, tesseract_languages

ROW_HEIGHT = 80
FILL_SHARE = 0.85
# A sliver of outline at a detector box's edge binarises to a thin column that Tesseract reads as a bar
# ("| أين المحطة"); subtitles never start or end with one.
EDGE_BARS = " |¦│"
# A row the Hindi, Hebrew, Greek or Thai reader reads below SURE (postprocess' min_confidence) is read again
# at these heights, the surest kept: at 80 px alone one line each of the Hindi, Hebrew and Greek cases was
# lost (read empty or at 0.6-0.7, at another height at 0.8-0.9). Not for kor, rus+ukr, ara, vie: the script
# choice scores those on rows nothing reads, and retried, a blurred Chinese set scored ru 0.52 (chosen uk)
SURE, RETRY_HEIGHTS, RETRIED = 0.75, (56, 100), frozenset({"hin", "heb", "ell", "tha"})
# Tesseract's Greek (ell) holds polytonic letters and reads a tonos as a breathing or circumflex ("αὐριο",
# "εἶναι"); modern Greek subtitles are monotonic: every accent over a Greek vowel is the tonos
_GREEK_ACCENTS = re.compile("[\u0300\u0301\u0313\u0314\u0342]+")
HEADLINE = 0.6  # the share of a row's width a headline's pixel row is text over (has_headline)
LOADS: Counter[str] = Counter()  # Tesseract instances made in this process, by language ("osd": the script
# classifier); they are parts of engines or short-lived, not resident models (core.models counts those)


def binarise_line(crop: np.ndarray, height: int = ROW_HEIGHT) -> np.ndarray:
    """A subtitle row as black text on white, `height` px tall, with a white margin."""
    import cv2

    gray = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    scale = height / max(1, gray.shape[0])
    gray = cv2.resize(gray, (max(1, round(gray.shape[1] * scale)), height), interpolation=cv2.INTER_CUBIC)
    text = gray >= FILL_SHARE * np.percentile(gray, 99.5)
    page = np.where(text, 0, 255).astype(np.uint8)
    return cv2.copyMakeBorder(page, 16, 16, 16, 16, cv2.BORDER_CONSTANT, value=255)


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
    (a diaeresis kept: "ϊ", "ΐ")."""
    marks = _GREEK_ACCENTS.sub("\u0301", unicodedata.normalize("NFD", text)).replace("\u0345", "")
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
        LOADS[langs] += 1

    def read_line(self, crop: np.ndarray) -> tuple[str, float]:
        """The text of one row crop and Tesseract's mean word confidence (0-1); a row read below
        SURE is read again at other heights where the language is RETRIED, the surest reading kept."""
        best = self._read(crop, self._heights[0])
        for height in self._heights[1:]:
            if best[1] >= SURE:
                break
            best = max(best, self._read(crop, height), key=lambda read: read[1])
        return (monotonic(best[0]), best[1]) if self._greek else best

    def _read(self, crop: np.ndarray, height: int) -> tuple[str, float]:
        from PIL import Image

        with self._lock:
            self._api.SetImage(Image.fromarray(binarise_line(crop, height)))
            text = " ".join(self._api.GetUTF8Text().split()).strip(EDGE_BARS)
            return text, max(0.0, self._api.MeanTextConf() / 100.0)

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
