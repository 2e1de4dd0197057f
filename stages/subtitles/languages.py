"""Which recogniser reads which subtitle language, chosen by measurement (bench/ocr_languages.py).

PP-OCR models read what their alphabet holds: PP-OCRv6 small (rapidocr's wheel) reads simplified and
traditional Chinese, kana, English and accented Latin. It replaced PP-OCRv4 (rapidocr-onnxruntime's wheel,
whose detector stays) for ch and en too: on the five real dramas both read alike (CER 0.75%, exact lines
96.4%, the same CPU seconds), and one model then tells the language and reads it (issue 22). No
package on the registry ships PP-OCR's Korean, Cyrillic, Arabic or Vietnamese recognisers, so those are
read by Tesseract with Debian's language packs (tesseract-ocr-kor, -rus, ..., -hin, -heb, -ell), line by
line on the PP-OCR detector's boxes. No package ships a Thai model but Debian's (tesseract-ocr-tha): it read
its case at 15.6% CER until the Hindi, Hebrew, Greek and Thai readers' rows kept only outlined shapes and
were read at three heights (tesseract.py): 0%. `spaces` says how word spaces are treated: "english" repairs
glued English words (stages/subtitles/spacing.py), "keep" leaves them as read, "none" has none (ja, zh).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from core.errors import ConfigError


@dataclass(frozen=True)
class Recogniser:
    engine: str  # "ppocr" (ONNX through rapidocr-onnxruntime) or "tesseract"
    model: str  # ppocr: a packaged model name (core/packaged_models.py); tesseract: its language(s)


PP_OCRV4 = Recogniser("ppocr", "pp-ocrv4")
PP_OCRV6 = Recogniser("ppocr", "pp-ocrv6-small")


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    script: str  # Tesseract's script name (its OSD classifier says these)
    recogniser: Recogniser
    spaces: str = "keep"  # english | keep | none
    debian: str = ""  # the Debian package holding a Tesseract recogniser


def _tess(code: str, name: str, script: str, model: str, debian: str) -> Language:
    return Language(code, name, script, Recogniser("tesseract", model), "keep", debian)


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("ch", "Chinese (simplified) and English", "Han", PP_OCRV6, "english"),
        Language("en", "English", "Latin", PP_OCRV6, "english"),
        Language("zh", "Chinese (simplified and traditional)", "Han", PP_OCRV6, "none"),
        Language("ja", "Japanese", "Japanese", PP_OCRV6, "none"),
        Language("latin", "Latin script with accents (French, Spanish, German...)", "Latin", PP_OCRV6),
        Language("fr", "French", "Latin", PP_OCRV6),
        Language("es", "Spanish", "Latin", PP_OCRV6),
        Language("de", "German", "Latin", PP_OCRV6),
        Language("it", "Italian", "Latin", PP_OCRV6),
        Language("pt", "Portuguese", "Latin", PP_OCRV6),
        _tess("ko", "Korean", "Hangul", "kor", "tesseract-ocr-kor"),
        _tess("ru", "Russian", "Cyrillic", "rus+ukr", "tesseract-ocr-rus tesseract-ocr-ukr"),
        _tess("uk", "Ukrainian", "Cyrillic", "rus+ukr", "tesseract-ocr-rus tesseract-ocr-ukr"),
        # one Cyrillic reader for both (a video in one language loads one recogniser): ukr alone misreads
        # Russian ы ("Мь встретимся"); rus+ukr reads the Russian case as rus does and the Ukrainian one as
        # ukr did (CER 2.99%; ukr+rus WER 12.5% -> 31%); script.py tells them apart by their own letters
        _tess("vi", "Vietnamese", "Latin", "vie", "tesseract-ocr-vie"),
        _tess("ar", "Arabic", "Arabic", "ara", "tesseract-ocr-ara"),
        _tess("th", "Thai", "Thai", "tha", "tesseract-ocr-tha"),
        _tess("hi", "Hindi", "Devanagari", "hin", "tesseract-ocr-hin"),
        _tess("he", "Hebrew", "Hebrew", "heb", "tesseract-ocr-heb"),
        _tess("el", "Greek", "Greek", "ell", "tesseract-ocr-ell"),
    )
}
AUTO = "auto"
DEFAULT = "ch"  # today's reader where the script cannot be told: Chinese with English
# The language read for a script Tesseract's classifier names, before the finer choices of script.py.
SCRIPT_LANGUAGE = {
    "Han": "ch", "HanS": "ch", "HanT": "zh", "Japanese": "ja", "Katakana": "ja", "Hiragana": "ja",
    "Hangul": "ko", "Korean": "ko", "Cyrillic": "ru", "Latin": "en", "Arabic": "ar", "Thai": "th",
    "Devanagari": "hi", "Hebrew": "he", "Greek": "el",
}  # fmt: skip


def language(code: str) -> Language:
    """The language for an `OcrSettings.lang` code (not "auto": script.py resolves that)."""
    try:
        return LANGUAGES[code]
    except KeyError:
        known = ", ".join([AUTO, *LANGUAGES])
        raise ConfigError(f"unknown subtitle language {code!r}; known: {known}") from None


LangCode = Literal[
    "auto", "ch", "en", "zh", "ja", "latin", "fr", "es", "de", "it", "pt", "ko", "ru", "uk", "vi", "ar", "th",
    "hi", "he", "el",
]  # fmt: skip  # the flow parameter's choice list in the run form (a test keeps it equal to LANGUAGES)
LANGUAGE_CHOICES = [AUTO, *LANGUAGES]
assert list(get_args(LangCode)) == LANGUAGE_CHOICES


def spacing_of(code: str) -> str:
    """How word spaces are treated for a language code (auto: today's default, the English repair)."""
    return language(DEFAULT if code == AUTO else code).spaces
