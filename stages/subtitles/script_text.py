"""What a reading of the first subtitle rows says about their language, once the script is known.

Kana means Japanese, traditional-only characters traditional Chinese, Vietnamese letters Vietnamese, Ukrainian
letters Ukrainian. A reading also says when the rows were not read at all: blurred, faded or stylised rows
give the probe nothing, a script no installed model reads gives it look-alike letters ("abansu" for Thai).
"""

from __future__ import annotations

import re

_KANA = re.compile(r"[\u3040-\u30ff]")
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
VIET = re.compile(r"[ăđơưĂĐƠƯ\u1ea0-\u1ef9]")  # letters only Vietnamese uses
# ... and PP-OCRv6's readings of its tone marks (ả as å, ạ as ą): a Vietnamese video's probe reading
# shows one or more; French, Spanish and German never do (a Danish or Polish one is checked in vain)
VIET_HINT = re.compile(r"[ăđơưĂĐƠƯ\u1ea0-\u1ef9åąęÅĄĘ]")
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f\u1e00-\u1eff]+")
_UKRAINIAN = re.compile(r"[іїєґІЇЄҐ]")
_RUSSIAN = re.compile(r"[ыэъёЫЭЪЁ]")
_GLYPH = re.compile(r"\w")
_ASCII_LETTER = re.compile(r"[A-Za-z]")
SCRIPT_RANGES = {  # the letters of scripts a reading may hold, by OSD's script names
    "Hangul": r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]", "Cyrillic": r"[\u0400-\u04ff]",
    "Arabic": r"[\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]", "Thai": r"[\u0e00-\u0e7f]",
    "Devanagari": r"[\u0900-\u097f]", "Hebrew": r"[\u0590-\u05ff]", "Greek": r"[\u0370-\u03ff]",
}  # fmt: skip
# Common characters written only in traditional or only in simplified Chinese (們/们, 這/这, 說/说 ...)
_TRADITIONAL_ONLY = frozenset(
    "們這個來時會說對過還點開關問題學國與見謝幫灣話請樣讓從當實現長頭歡電機沒無為經動應給氣邊間聽覺愛東車錢"
    "買賣難認識號聲體變歲遠進運選親離萬樂媽爺兒嗎麼裡後臺"
)
_SIMPLIFIED_ONLY = frozenset(
    "们这个来时会说对过还点开关问题学国与见谢帮湾话请样让从当实现长头欢电机没无为经动应给气边间听觉爱东车钱"
    "买卖难认识号声体变岁远进运选亲离万乐妈爷儿吗"
)


def han_share(text: str) -> float:
    """The share of Han/kana in a reading, a character against a Latin word (each carries a word's
    meaning): "第一行字幕 Second line here" is Chinese with English, 5 against 3, where counting letters
    (5 against 14) called the main case of this product, Chinese subtitles with English words, English."""
    han = len(_HAN.findall(text)) + len(_KANA.findall(text))
    words = len(_LATIN_WORD.findall(text))
    return han / max(1, han + words)


def han_language(text: str) -> str:
    """ja where kana is read; zh where the Han read is traditional (more traditional-only than
    simplified-only characters among the common ones); else ch. One recogniser (PP-OCRv6) reads all three:
    the choice names the language and its word spaces, and loads nothing more."""
    if len(_KANA.findall(text)) >= 2:
        return "ja"
    traditional = sum(c in _TRADITIONAL_ONLY for c in text)
    simplified = sum(c in _SIMPLIFIED_ONLY for c in text)
    return "zh" if traditional > simplified else "ch"


def cyrillic_language(text: str) -> str:
    """uk where the Cyrillic reader's `text` of the rows (rus+ukr, one engine for both) holds more of
    Ukrainian's own letters (і, ї, є, ґ) than of Russian's (ы, э, ъ, ё); else ru."""
    return "uk" if len(_UKRAINIAN.findall(text)) > len(_RUSSIAN.findall(text)) else "ru"


def look_alike_rows(texts: list[str]) -> int:
    """Rows (the probe's text of each) in which the probe found glyphs of a script it does not read: two
    letters or digits or more, not Han. Thai gave 7 of 7 rows ("abansu"), Hebrew 7 of 10, Georgian 5 of 7;
    rows of a Chinese drama blurred, faded or pixelated gave none (nothing read) or Han."""
    return sum(len(_GLYPH.findall(text)) >= 2 and han_share(text) < 0.5 for text in texts)


STRAY_ROWS = 2  # rows with stray letters a refusal needs (and a third of the rows read): none of the 184
# damaged real Chinese row sets (samples/damaged_rows.py) had 2; a Tamil cut had 2 of the 6 rows read (of 12)


def lettered_rows(texts: list[str]) -> int:
    """Rows in which the probe read a Latin letter. A script it does not know comes out as stray letters
    ("M入P①鸟河T" for Amharic, "GOO UGAU" for Sinhala, "yseg" for Telugu, 3-7 rows of 5-11); of the 148
    real Chinese row sets read in doubt (bench/realvideo.py --damaged) none had more than one such row."""
    return sum(bool(_ASCII_LETTER.search(text)) for text in texts)
