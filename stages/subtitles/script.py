"""The subtitle language told from the pixels, once per video, before any line is read.

A few subtitle rows of the first stitched batches are read by PP-OCRv6 (kana, Han and Latin). A confident
Han/kana or Latin reading decides at once (Chinese is this product's main case); otherwise Tesseract's
script classifier (OSD, stacked rows) and its readers name the script. What was read refines it: kana
means Japanese, traditional-only characters traditional Chinese, Vietnamese letters Vietnamese, other
accents a Latin language, plain ASCII English (script_text.py). A script no installed model reads stops the
run with one line saying so, rather than being read as look-alikes of another script ("KPACOTA" for
"КРАСОТА"), but only on evidence: the probe finds look-alike glyphs in enough rows (MIN_ROWS, half of them).
OSD alone names a script on anything: blurred, faded or pixelated rows of real Chinese dramas were refused as
Devanagari, Thai, Fraktur or "no installed model" in 46 of 138 row sets, and read with the Russian or
Arabic reader in 44 more. Where the evidence is weak the default reader reads the video and the doubt is
logged in one line; a reader is chosen only where it reads the rows (AGREES), not on OSD's word.
Nor is a language the probe reads itself (ja, zh) chosen on OSD's word where the probe read no Han
(faded Chinese rows OSD called Katakana were read as Japanese). Evidence beyond look-alike glyphs:
Greek letters in the probe's reading (it has them, without tonos) and, for Devanagari, of which it reads
nothing, the headline its letters hang from; a refused script is named by what most rows alone are
called, not the stacked page (one Hebrew line stacked was called Thai). Measured on 184 real Chinese row
sets blurred, faded, pixelated, smeared, JPEG-crushed or downscaled: none refused, none read with a
Tesseract reader, none read as ja (7 before). That same evidence, not OSD's word, is what tries the Hindi,
Hebrew, Greek and Thai readers (ON_EVIDENCE): unclear clips never load them. Hindi, Hebrew, Greek and Thai are
read (tesseract-ocr-hin, -heb, -ell, -tha); a script whose pack is missing is refused and named. Look-alike
glyphs in half the rows that no reader reads and the probe reads weakly (below LATIN_READ) are refused too,
where OSD names nothing right (Georgian, Armenian, Khmer), and rows in doubt with stray ASCII letters in a
third of what the probe reads (lettered_rows: Ethiopic, Sinhala, Lao, Telugu, Tamil were read as ch junk).
A refusal names a script no language has only where OSD says it twice (the stacked page and the rows:
Bengali's headlines are its evidence, as Devanagari's). Before such rows are refused or read in doubt, the
Thai reader is tried last (LATIN_LOOK_ALIKES): one Thai line ("abansu") OSD called Latin, Hebrew, Cyrillic.

A video in one language loads one recogniser (issue 22): each Tesseract reader is tried as the language's
resident OCR engine, which then reads the video; OSD's script picks the first one tried; Vietnamese's only
where PP-OCRv6's reading hints at it. Korean, Russian, Arabic and Vietnamese load their reader once, French,
Spanish and German none; Russian and Ukrainian share one (rus+ukr), told apart by their own letters.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.errors import MediaInputError
from core.models import ModelKey, evict_keys, resident_keys
from core.packaged_models import tesseract_languages
from core.schema import OcrLine
from stages.subtitles.languages import AUTO, DEFAULT, LANGUAGES, SCRIPT_LANGUAGE, Language
from stages.subtitles.ocr import OcrSettings, load_ocr_engine, ocr_model_key
from stages.subtitles.rows import lines_to_rows
from stages.subtitles.script_text import (
    SCRIPT_RANGES,
    STRAY_ROWS,
    VIET,
    VIET_HINT,
    cyrillic_language,
    han_language,
    han_share,
    lettered_rows,
    look_alike_rows,
)
from stages.subtitles.tesseract import ScriptClassifier, has_headline

MIN_ROWS = 3  # rows a refusal needs evidence in: one row PP-OCRv6 read nothing in was refused as Devanagari
# on OSD's word alone (a real Chinese drama, its first 700 px batches)
MAX_ROWS = 12
FIRST_BATCHES = 3  # the batches a try at the language takes (more while they give fewer than MIN_ROWS rows)
TRIES = 3  # a choice in doubt looks at the window's next batches before it is kept, this many tries in all
LINE_ASPECT = 2.0  # width over height of a detector box that can be a line (two glyphs or more)
PROBE = "zh"  # PP-OCRv6: kana, Han (simplified and traditional), accented Latin
CONFIDENT = 0.9  # PP-OCR's mean score on rows it really reads; look-alike Latin for Cyrillic is ~0.8
LATIN_READ = 0.8  # Latin said by the classifier alone needs a PP-OCR reading this sure (Thai: ~0.7)
READS = 0.7  # a Tesseract reader's confidence x own-script share on rows it really reads (0.8-0.95)
PROBE_READS = ("ch", "zh", "ja")  # languages PP-OCRv6 reads Han and kana for: its reading names them, not OSD
PROBE_LETTERS = ("Greek",)  # a script whose letters PP-OCRv6 reads (76 Greek in its alphabet, none with
# a tonos: "Kaληµpα φλοι" for "Καλημέρα φίλοι") and no language reads with it: named from its reading
AGREES = 0.5  # ... enough where OSD named its script too (ar 0.60, ru on Ukrainian 0.63; wrong ones <= 0.3)
ON_EVIDENCE = ("Devanagari", "Hebrew", "Greek", "Thai")  # scripts whose reader is tried only where the
# evidence that would refuse them names them (look-alike glyphs, headlines, Greek letters in half the rows
# or more): never on rows nothing reads, so unclear Chinese clips load none of them
HEADLINED = ("Devanagari", "Bengali")  # scripts whose letters hang from a headline (has_headline): PP-OCRv6
# reads nothing in them (the Bengali rows: glyphs in 5 of 12, headlines in 12; OSD says Bengali)
LATIN_LOOK_ALIKES = ("Thai",)  # ON_EVIDENCE scripts the probe reads as plain Latin ("abansu" for Thai at
# 0.80-0.86): their reader is tried where rows so read are in doubt or refused (_look_alike_script), and
LOOK_ALIKE_READS = 0.85  # chosen where it reads them this surely, also where OSD named them: one Thai
# line 0.92-0.94; Armenian rows 0.78-0.81 and a Hebrew line's 0.71 (_named chose th on those at READS)
READING_NEEDED = dict.fromkeys(LATIN_LOOK_ALIKES, LOOK_ALIKE_READS)  # by script; any other: READS
UNREADABLE = "the subtitles are in a script no installed model reads"


@dataclass(frozen=True)
class ScriptChoice:
    lang: str  # a key of languages.LANGUAGES
    script: str | None  # what the classifier said (None: too little text)
    supported: bool
    reason: str  # one line for the log and the error
    doubt: bool = False  # the default reader reads it, the script not told for sure: a warning, not a failure

    def refuse(self, video: str | Path) -> MediaInputError:
        return MediaInputError(video, self.reason)


def subtitle_rows(images: list[np.ndarray], settings: OcrSettings, limit: int = MAX_ROWS) -> list[np.ndarray]:
    """Up to `limit` subtitle rows (the detector's boxes of a row joined), spread over the images it took.

    The next image is detected only while rows are missing: a stitched batch holds dozens of lines, and
    detecting three of them was most of the stage (11 of 14 s on a footage case; OCR detects them again)."""
    engine = load_ocr_engine(replace(settings, lang=AUTO))
    rows: list[np.ndarray] = []
    for image in images:
        if len(rows) >= limit:
            break
        lines = [OcrLine("", 1.0, box) for box in engine.detect(image) if _line_shaped(box)]
        for row in lines_to_rows(lines):
            x0, y0, x1, y1 = row.box
            pad = max(2, (y1 - y0) // 8)
            rows.append(image[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad])
    if len(rows) > limit:  # spread over the rows found: one long line repeated would tell little
        rows = [rows[round(i * (len(rows) - 1) / (limit - 1))] for i in range(limit)]
    return rows


def _line_shaped(box: tuple[int, int, int, int]) -> bool:
    """A detector box that can be a line of text: at least two glyphs wide. The detector also boxes
    pictures, logos and emoji; in a whole-frame band a line beside a picture was joined into the picture's
    "row", and the script classifier, given only such rows, named Devanagari or Hebrew on Chinese clips."""
    x0, y0, x1, y1 = box
    return y1 - y0 >= 8 and x1 - x0 >= LINE_ASPECT * (y1 - y0)


def _read(rows: list[np.ndarray], settings: OcrSettings) -> tuple[list[str], float]:
    """Each row's text as the settings' reader (PP-OCRv6 for the probe: kana, Han, accented Latin) reads
    it ("" for none), and the mean confidence of the lines read."""
    engine = load_ocr_engine(settings)
    texts, scores = [], []
    for row in rows:
        lines = engine.read(row)
        texts.append(" ".join(line.text for line in lines))
        scores += [line.confidence for line in lines]
    return texts, float(np.mean(scores)) if scores else 0.0


def _latin_language(text: str, rows: list[np.ndarray], settings: OcrSettings) -> str:
    """en for plain ASCII words; vi where PP-OCRv6's reading hints at Vietnamese (it keeps đ, ơ, ư, ă
    and reads a few tone marks as other accents) and Tesseract's Vietnamese reader, which then reads the
    video, finds Vietnamese-only letters in two words or more; else a Latin language with accents
    (PP-OCRv6). French, Spanish or German text loads no reader to be told from Vietnamese (each loaded vie
    to look). On the corpus: 8 words of 54 with a hint in the Vietnamese case's probe ("đp", "ơn", "Cåm",
    "đang"), none in the French, Spanish and German ones."""
    words = text.split()
    accented = sum(any(c.isalpha() and not c.isascii() for c in w) for w in words)
    if accented < max(2, 0.1 * len(words)):
        return "en"
    if VIET_HINT.search(text) and "vie" in tesseract_languages():
        viet = " ".join(t for t, _ in _read_lines("vi", rows, settings)).split()
        if sum(bool(VIET.search(w)) for w in viet) >= max(2, 0.2 * len(viet)):
            return "vi"
    return "latin"


def choose_language(rows: list[np.ndarray], settings: OcrSettings) -> ScriptChoice:
    """The language to read these subtitle rows in, or why none installed reads them. A refusal needs
    every reader to fail and evidence of a script none reads: where PP-OCRv6 (the default reader) reads the
    rows confidently, it reads them; where it finds no look-alike glyphs in enough rows, it reads them in
    doubt (blurred, faded or stylised rows, a logo: OSD names a script on those too)."""
    if not rows:
        why = f"no subtitle rows to tell the script from: read as {DEFAULT}"
        return ScriptChoice(DEFAULT, None, True, why)
    texts, score = _read(rows, replace(settings, lang=PROBE))
    resident = set(resident_keys())
    choice = _choose(rows, settings, texts, score)
    need, seen = max(MIN_ROWS, len(rows) / 2), _evidence_rows(choice.script, rows, texts)
    few = not choice.supported and choice.script in ON_EVIDENCE and 1 < seen == len(rows) < need
    if not choice.supported and score >= CONFIDENT and choice.script not in PROBE_LETTERS:
        why = f"{choice.script} said by the classifier, but PP-OCRv6 reads the rows at {score:.2f}"
        choice = ScriptChoice(DEFAULT, choice.script, True, why)
    elif few and (read := _read_on_evidence(choice, rows, settings, f"glyphs in all {seen} rows")).supported:
        choice = read  # two rows (one short line), evidence in both: read where its reader reads them
    elif not choice.supported and seen < need:
        why = f"{choice.reason}; yet PP-OCRv6 finds glyphs in {seen} of {len(rows)} rows ({need:g} to refuse)"
        choice = _doubt(choice.script, why)
    elif not choice.supported and choice.script in ON_EVIDENCE:
        choice = _read_on_evidence(choice, rows, settings, f"glyphs in {seen} of {len(rows)} rows")
    if choice.doubt and len(rows) > 1 and all(map(has_headline, rows)):  # Hindi lines OSD called Hebrew,
        read = _read_on_evidence(_doubt("Devanagari", ""), rows, settings, "headlines in every row")
        choice = read if read.supported and not read.doubt else choice  # or Japanese sideways: hin reads it
    if (choice.doubt or not choice.supported) and score < CONFIDENT and look_alike_rows(texts) >= need:
        choice = _look_alike_script(rows, settings, score) or choice  # Thai read as Latin, last
    if choice.doubt and score < LATIN_READ and look_alike_rows(texts) >= need:  # Armenian, Khmer: no reader
        why = f"look-alike glyphs in {look_alike_rows(texts)} of {len(rows)} rows, read at {score:.2f}"
        choice = ScriptChoice(DEFAULT, None, False, f"{UNREADABLE} ({why}, by no reader at {AGREES})")
    stray, read = lettered_rows(texts), sum(bool(t.strip()) for t in texts)  # unknown glyphs as letters:
    if choice.doubt and score < LATIN_READ and stray >= max(STRAY_ROWS, read / 3):  # Ethiopic, Lao
        why = f"PP-OCRv6 reads stray ASCII letters in {stray} of the {read} rows it reads at {score:.2f}"
        choice = ScriptChoice(DEFAULT, None, False, f"{_unreadable(choice.script)} ({why})")
    _unload_tried(settings, choice.lang, resident)
    return choice


def _look_alike_script(rows: list[np.ndarray], settings: OcrSettings, score: float) -> ScriptChoice | None:
    """The reader of a script the probe reads as look-alike Latin (LATIN_LOOK_ALIKES), where it reads rows
    nothing else read (LOOK_ALIKE_READS): one Thai line's rows ("abansu" at 0.80-0.86) were called Latin,
    Hebrew or Cyrillic upside down by OSD, as its row sets went, and chosen en, refused as Hebrew or read in
    doubt. Tried last, so it loads nothing where another reader or the probe's own reading decided."""
    for script in LATIN_LOOK_ALIKES:
        spec = LANGUAGES[SCRIPT_LANGUAGE[script]]
        if _installed(spec) and (read := _reading(spec, rows, settings)[1]) >= LOOK_ALIKE_READS:
            why = f"look-alike glyphs read at {score:.2f} by PP-OCRv6, {spec.code} {read:.2f}"
            return ScriptChoice(spec.code, script, True, f"subtitles in {spec.name} ({why})")
    return None


def _evidence_rows(script: str | None, rows: list[np.ndarray], texts: list[str]) -> int:
    """Rows that show a script the default reader does not read: look-alike glyphs in the probe's
    reading (Thai, Hebrew, Greek letters), or for Devanagari, of which PP-OCRv6 reads nothing (2 rows of 7
    gave glyphs), a headline (7 of 7 rows; at most 1 of 11 in real Chinese rows OSD called Devanagari)."""
    seen = look_alike_rows(texts)
    return max(seen, sum(map(has_headline, rows))) if script in HEADLINED else seen


def _read_on_evidence(
    choice: ScriptChoice, rows: list[np.ndarray], settings: OcrSettings, seen: str
) -> ScriptChoice:
    """The script's reader, where installed, tried on the rows the evidence names (ON_EVIDENCE): chosen
    where it reads them (READING_NEEDED: their own script 0.91-0.94); else the refusal stays, saying so."""
    spec = LANGUAGES[SCRIPT_LANGUAGE[choice.script]]
    if not _installed(spec):
        return choice
    _, score = _reading(spec, rows, settings)
    script, name = choice.script, spec.name
    if score >= READING_NEEDED.get(script, READS):  # not AGREES: Khmer 0.60
        return ScriptChoice(spec.code, script, True, f"subtitles in {name} ({seen}, {spec.code} {score:.2f})")
    why = f"{UNREADABLE} ({seen}, yet the {spec.code} reader reads them at {score:.2f})"  # not that script:
    return ScriptChoice(DEFAULT, None, False, why)  # Ethiopic rows, called Devanagari, were so refused


def _unreadable(script: str | None) -> str:
    """The refusal's words, naming a script no language has (what OSD said twice: _unreadable_name)."""
    named = script is not None and script not in SCRIPT_LANGUAGE
    return f"the subtitles look like {script} script; no installed model reads it" if named else UNREADABLE


def _doubt(script: str | None, why: str) -> ScriptChoice:
    """Read with the default reader, the doubt said in one line (a warning): no failure on weak evidence."""
    return ScriptChoice(DEFAULT, script, True, f"the script is in doubt, read as {DEFAULT}: {why}", True)


def _unload_tried(settings: OcrSettings, chosen: str, resident: set[ModelKey]) -> None:
    """Evict the Tesseract engines loaded to be tried and not chosen: each would hold its share of
    the YIVIDEO_RESIDENT_MODELS_MB budget until pushed out, while one video only ever reads with one."""
    keep = ocr_model_key(replace(settings, lang=chosen))
    readers = [code for code, spec in LANGUAGES.items() if spec.recogniser.engine == "tesseract"]
    tried = {ocr_model_key(replace(settings, lang=code)) for code in readers}
    evict_keys(tried - resident - {keep})


def _choose(rows: list[np.ndarray], settings: OcrSettings, texts: list[str], score: float) -> ScriptChoice:
    """The choice from the probe's reading (`text` at mean confidence `score`) and, for other scripts,
    the classifier (OSD) and the Tesseract readers: a Chinese, Japanese or Latin video loads neither."""
    text = " ".join(t for t in texts if t)
    if score >= CONFIDENT and han_share(text) >= 0.5:
        return _supported(han_language(text), "Han", f"PP-OCRv6 reads Han/kana at {score:.2f}")
    letters = [c for c in text if c.isalpha()]
    latin = sum(c.isascii() or "\u00c0" <= c <= "\u024f" or "\u1e00" <= c <= "\u1eff" for c in letters)
    if score >= CONFIDENT and latin >= 0.8 * max(1, len(letters)):  # Latin whatever OSD said (small
        # English text was called Hebrew); Cyrillic read as Latin look-alikes scores ~0.8, below this
        chosen = _latin_language(text, rows, settings)
        return _supported(chosen, "Latin", f"PP-OCRv6 reads Latin at {score:.2f}")
    for script in PROBE_LETTERS:  # letters of a script the probe knows but no language reads with it
        own = len(re.findall(SCRIPT_RANGES[script], text))
        if own >= 0.5 * max(1, len(letters)) and own >= 4:
            why = f"PP-OCRv6 reads {own} {script} letters of {len(letters)} at {score:.2f}"
            return _supported(SCRIPT_LANGUAGE[script], script, why)
    classifier = ScriptClassifier()
    try:
        found = classifier.script(rows)
        named = _named(rows, settings, texts, classifier, found)
        return named or _classified(rows, settings, texts, score, classifier, found)
    finally:
        classifier.close()


def _named(
    rows: list[np.ndarray],
    settings: OcrSettings,
    texts: list[str],
    classifier: ScriptClassifier,
    found: tuple[str | None, float, int],
) -> ScriptChoice | None:
    """The reader of a script ON_EVIDENCE where OSD names one upright and the probe's evidence is there
    (_evidence_rows in half the rows), chosen where it reads the rows (READS), before the other readers
    are tried (the Hindi and Hebrew cases loaded kor, rus+ukr and ara first); the script named is the one
    most rows alone are called (one Hebrew line's rows stacked were called Thai). Where the stacked page
    names another script or is not upright, look-alike glyphs in half the rows let the rows alone name one
    ON_EVIDENCE: the Thai case's 7 rows stacked were called Thai at 180 degrees (alone Thai 4 times, Latin,
    Hebrew, Arabic) and kor, rus+ukr and ara were loaded before tha; the Korean, Russian, Ukrainian and
    Arabic cases' probe finds look-alikes in 0-2 rows of 12. None: not so named."""
    osd, _, degrees = found
    need = max(MIN_ROWS, len(rows) / 2)
    if osd in ON_EVIDENCE and degrees == 0 and _evidence_rows(osd, rows, texts) >= need:
        script = _unreadable_name(rows, classifier, osd)
    elif look_alike_rows(texts) >= need:
        script = _unreadable_name(rows, classifier, None)
        if script not in ON_EVIDENCE:
            return None
    else:
        return None
    spec = LANGUAGES.get(SCRIPT_LANGUAGE.get(script or "", ""))
    if spec is None or not _installed(spec):
        return None
    _, score = _reading(spec, rows, settings)
    if score < READING_NEEDED.get(script, READS):
        return None
    return ScriptChoice(
        spec.code, script, True, f"subtitles in {spec.name} (OSD says {osd}, {spec.code} {score:.2f})"
    )


def _classified(
    rows: list[np.ndarray],
    settings: OcrSettings,
    texts: list[str],
    score: float,
    classifier: ScriptClassifier,
    found: tuple[str | None, float, int],
) -> ScriptChoice:
    """The choice where the probe's reading did not decide: OSD's script of the stacked rows, outvoted by
    a Tesseract reader that reads them; a script no reader reads named by most rows (_unreadable_name)."""
    osd, confidence, degrees = found
    text = " ".join(t for t in texts if t)
    # OSD misreads what it finds sideways or upside down (subtitle rows are upright): Korean was called
    # Arabic at 90 degrees, Hebrew or Devanagari at 180, never Hangul; such a script orders no reader
    readings = _tesseract_readings(rows, settings, osd if degrees == 0 else None)
    best = max(readings, key=lambda code: readings[code][1], default=None)
    best_score, script = readings[best][1] if best else 0.0, osd
    if best is not None and best_score >= READS and LANGUAGES[best].script != script:
        script = LANGUAGES[best].script  # a reader that really reads the rows outvotes the classifier
    elif script is not None and not _readable(script):
        script = _unreadable_name(rows, classifier, script)
    if script is None:
        return _doubt(None, f"no script told (PP-OCR reads {score:.2f}, the best reader {best_score:.2f})")
    seen = f"OSD says {osd} ({confidence:.1f} at {degrees} deg), the best reader {best} ({best_score:.2f})"
    if script == osd == "Latin" and degrees != 0:  # Latin sideways or upside down, as subtitles never
        # are: a JPEG-crushed real Chinese set was called Latin at 180 degrees and chosen en (the same
        # model read it: the text alike, the language named wrong)
        return _doubt(script, f"{seen}: not upright")
    if script == "Latin" and score < CONFIDENT and look_alike_rows(texts) >= max(MIN_ROWS, len(rows) / 2):
        if looks := _look_alike_script(rows, settings, score):  # Thai rows read "abansu" at 0.86 were
            return looks  # chosen en; English the probe reads so weakly still is, where Thai's reader fails
    if script == "Latin" and score < LATIN_READ:  # Thai was called Latin on three short rows
        script = _unreadable_name(rows, classifier, None)
        if script is None:
            why = f"{UNREADABLE} (PP-OCR reads {score:.2f}, the best reader {best} {best_score:.2f})"
            return ScriptChoice(DEFAULT, None, False, why)
    reader = SCRIPT_LANGUAGE.get(script)
    if reader in readings and readings[reader][1] < AGREES:  # OSD's script, and its reader reads nothing
        return _doubt(script, f"{seen}, {reader} {readings[reader][1]:.2f}")  # (blurred Chinese: <= 0.31)
    if script == "Cyrillic":
        cyrillic = readings["ru"][0] if "ru" in readings else _reading(LANGUAGES["ru"], rows, settings)[0]
        return _supported(cyrillic_language(cyrillic), script, seen)
    if reader in PROBE_READS and han_share(text) < 0.5:  # OSD names a script the probe itself reads,
        # yet it read the rows weakly and not as Han: OSD's word alone picked ja for faded Chinese rows
        return _doubt(script, f"{seen}; PP-OCRv6 reads the rows at {score:.2f}")
    if script in SCRIPT_LANGUAGE:
        lang = SCRIPT_LANGUAGE[script]
        chosen = han_language(text) if lang in PROBE_READS else lang
        return _supported(chosen, script, seen)
    return ScriptChoice(DEFAULT, script, False, _unreadable(script))


def _readable(script: str) -> bool:
    """A script an installed model reads (the probe's Han, kana and Latin; a Tesseract language's) that
    may be chosen before the evidence is weighed: not one of ON_EVIDENCE (_read_on_evidence tries those)."""
    lang = SCRIPT_LANGUAGE.get(script)
    return lang is not None and script not in ON_EVIDENCE and _installed(LANGUAGES[lang])


def _installed(spec: Language) -> bool:
    rec = spec.recogniser
    return rec.engine != "tesseract" or set(rec.model.split("+")) <= tesseract_languages()


def _unreadable_name(rows: list[np.ndarray], classifier: ScriptClassifier, stacked: str | None) -> str | None:
    """The script no installed model reads that most rows alone are called by OSD (`stacked`, the stacked
    page's name, where none is): the stacked rows of one Hebrew line were called Thai, its rows alone
    Hebrew 7 times in 11 and Thai 3; Thai rows alone Thai 4 times in 7, Hebrew once. A script no language
    has (a refusal's name, no reader to check it) only where OSD says it twice, most rows or the stacked page
    and a third of the rows it names a script in. Georgian was refused as Telugu (3 rows of 12, the page
    Latin) and in the flow as Kannada (2 rows of 8 and the page, at confidence 0); Bengali keeps its name
    (3 of the 3 and 6 named rows, the page too). None: no script named."""
    named = [name for name in classifier.row_scripts(rows) if name is not None]
    votes = Counter(name for name in named if not _readable(name))
    if not votes:
        return stacked if stacked in SCRIPT_LANGUAGE else None
    name, count = votes.most_common(1)[0]
    said_twice = count > len(rows) / 2 or (name == stacked and count >= len(named) / 3)
    return name if name in SCRIPT_LANGUAGE or said_twice else None


def _tesseract_readings(
    rows: list[np.ndarray], settings: OcrSettings, said: str | None
) -> dict[str, tuple[str, float]]:
    """The installed Tesseract readers of non-Latin scripts tried on the rows, the script OSD `said` first,
    else in the order of LANGUAGES (Korean first: OSD never named it), until one really reads them
    (READS) or agrees with OSD (AGREES): each tried language's text and score (`_reading`). A video in one of
    these scripts loads one reader where OSD or that order points at it (each of kor, rus and ara was
    loaded); the Cyrillic one's text also tells Russian from Ukrainian, without reading the rows again."""
    readers = {}  # one reader a script, in the order of LANGUAGES
    for spec in LANGUAGES.values():
        if spec.recogniser.engine == "tesseract" and spec.script in SCRIPT_RANGES and _readable(spec.script):
            readers.setdefault(spec.script, spec)
    readings: dict[str, tuple[str, float]] = {}
    for spec in sorted(readers.values(), key=lambda spec: spec.script != said):
        readings[spec.code] = _, score = _reading(spec, rows, settings)
        if score >= READS or (spec.script == said and score >= AGREES):
            break
    return readings


def _read_lines(code: str, rows: list[np.ndarray], settings: OcrSettings) -> list[tuple[str, float]]:
    """The first rows as the language's OCR engine reads them: the resident engine the video is then read
    with where this language is chosen, so telling the language and reading it load its reader once."""
    engine = load_ocr_engine(replace(settings, lang=code))
    return [engine.read_line(row) for row in rows[:6]]


def _reading(spec: Language, rows: list[np.ndarray], settings: OcrSettings) -> tuple[str, float]:
    """The rows' text as the language reads them, and its score: mean confidence times the share of
    the text in the language's script (a wrong reader gives low confidences or other letters)."""
    reads = _read_lines(spec.code, rows, settings)
    text = " ".join(t for t, _ in reads)
    letters = text.replace(" ", "")
    own = len(re.findall(SCRIPT_RANGES[spec.script], letters)) / max(1, len(letters))
    return text, float(np.mean([c for _, c in reads])) * own if reads else 0.0


def _supported(lang: str, script: str, why: str) -> ScriptChoice:
    spec = LANGUAGES[lang]
    if _installed(spec) and not _readable(spec.script):  # ON_EVIDENCE: read where its reader agrees
        return ScriptChoice(lang, script, False, f"the subtitles look like {script} script ({spec.name})")
    if not _installed(spec):
        return ScriptChoice(
            lang,
            script,
            False,
            f"the subtitles look like {script} script ({spec.name}); no installed model reads it; "
            f"install {spec.debian} (apt-get install {spec.debian}) or give the language (--lang)",
        )
    return ScriptChoice(lang, script, True, f"subtitles in {spec.name} ({why})")
