"""Word spaces in Latin-script subtitles, restored where the recogniser glued words together.

PP-OCRv4's recogniser emits a space only where the gap between words is wide in its 48 px input; on
small text (~20 px on 360p-480p video) it glues words: "Riders gatheratthe start line". Upscaling the
line first does not bring them back reliably (measured over the footage corpus), so glued runs are
segmented with the English Wikipedia unigram list that ships with `wordninja` (offline): a run that is
not in the list is split into the most probable sequence of listed words; a listed but rare word that
is really two ("thankyou") is split when both halves are far more frequent than the whole.
A run the list cannot explain gets one confusable glyph swapped (l/i, 0/o, rn/m: "Pollce" -> "Police")
when that explains it. CJK text, words in capitals (TAXI) and mixed-case names (YiVideo) are left alone.
Other languages get their spaces from geometry, not word lists (`spaces_from_gaps`): a gap between two
glyphs clearly wider than the line's letter gaps is a space the reader dropped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache
from statistics import median

_RUN = re.compile(r"[A-Za-z][A-Za-z0-9']*[A-Za-z0-9]")
COMMON_RANK = 30000  # a listed word ranked at most this is never split
MIN_RUN = 5  # shorter runs are only split as two glued function words (below)
FUNCTION_RANK = 30  # "the", "of", "in", "a", "is", "it", "at", "on", "to", "as", "or"...
RARE_SHORT_RANK = 10000  # a 3-4 letter run rarer than this may be two function words ("ina", "isit")


@lru_cache(maxsize=1)
def _model():
    import wordninja  # loads its word list (~0.2 s): only when text needs it

    model = wordninja.DEFAULT_LANGUAGE_MODEL
    return model, math.log(len(model._wordcost))


def word_rank(word: str) -> float:
    """1 for the most frequent English word; infinity for a word not in the list."""
    model, log_n = _model()
    cost = model._wordcost.get(word.lower())
    return math.inf if cost is None else math.exp(cost) / log_n


def _split_compound(word: str) -> list[str]:
    """'Thankyou' -> ['Thank', 'you'] when both halves are much more common than the whole."""
    rank = word_rank(word)
    if len(word) < 6 or rank <= COMMON_RANK:
        return [word]
    for cut in range(3, len(word) - 2):
        a, b = word[:cut], word[cut:]
        worst = max(word_rank(a), word_rank(b))
        if worst <= 5000 and rank > 8 * worst:
            return [a, b]
    return [word]


def _plausible(part: str) -> bool:
    """A digit string, a listed word, and for one or two letters a common one ('a', 'is', not 'nx')."""
    rank = word_rank(part)
    return part.isdigit() or (rank <= 2000 if len(part) <= 2 else rank < math.inf)


def _explain(run: str) -> str | None:
    """The run as listed words ("gather at the"), or None when the list cannot explain it."""
    if len(run) < MIN_RUN:
        return _two_function_words(run)
    if word_rank(run) < math.inf:  # a listed word: split only a clear compound ("thankyou")
        return " ".join(_split_compound(run))
    model, _ = _model()
    parts = [p for part in model.split(run) for p in _split_compound(part)]
    if "".join(parts) != run or not all(_plausible(p) for p in parts):
        return None
    return " ".join(parts)


def _two_function_words(run: str) -> str | None:
    """'ina' -> 'in a', 'isit' -> 'is it': a rare short run that is two of the most frequent words.
    A common short word ("into", "also", "ana") stays as read."""
    if word_rank(run) <= RARE_SHORT_RANK:
        return run
    for cut in range(1, len(run)):
        a, b = run[:cut], run[cut:]
        if max(word_rank(a), word_rank(b)) <= FUNCTION_RANK:
            return f"{a} {b}"
    return None


CONFUSABLE = (("l", "i"), ("i", "l"), ("1", "l"), ("0", "o"), ("rn", "m"), ("vv", "w"))


def _variants(run: str):
    """`run` with one confusable glyph swapped (the recogniser's l/i, 0/o, rn/m mistakes)."""
    for wrong, right in CONFUSABLE:
        start = run.find(wrong)
        while start >= 0:
            yield run[:start] + right + run[start + len(wrong) :]
            start = run.find(wrong, start + 1)


def _segment(run: str) -> str:
    if len(run) < 3 or sum(c.isupper() for c in run) > 1:
        return run
    explained = _explain(run)
    if explained is not None:
        return explained
    for variant in _variants(run):  # "Pollce" -> "Police", "Trafflcis" -> "Traffic is"
        explained = _explain(variant)
        if explained is not None:
            return explained
    return run  # a name, a technical word or a misread the list cannot explain


def known_word_share(text: str) -> float:
    """Share of the Latin words of `text` that are listed: readings of one line are ranked by it."""
    runs = _RUN.findall(text)
    return sum(word_rank(r) < math.inf for r in runs) / len(runs) if runs else 1.0


def restore_spaces(text: str) -> str:
    """`text` with glued Latin words separated and lone l/i-style misreads repaired."""
    return _RUN.sub(lambda m: _segment(m.group(0)), text)


_CJK = r"[\u3000-\u30ff\u3400-\u9fff\uff00-\uffef]"
_CJK_GAP = re.compile(rf"(?<={_CJK}) +(?={_CJK})")
SPACING = ("english", "keep", "none")


def space_words(text: str, spacing: str = "english") -> str:
    """Word spaces by the subtitle language (languages.Language.spaces): the English repair only for
    English (and Chinese mixed with English); none between CJK characters (ja, zh); accented or other
    scripts' words kept as read (French "bibliothèque" is not English run-on text)."""
    if spacing == "english":
        return restore_spaces(text)
    if spacing == "none":
        return _CJK_GAP.sub("", text)
    return text


def spaced(text: str, settings) -> str:
    """`space_words` with the spacing of a stage's settings (PostprocessSettings.spacing)."""
    return space_words(text, settings.spacing)


# A gap inside a word as read is a space where it is at least LETTER_GAPS medians of the row's letter gaps
# and WORD_GAP_SHARE of the median of its spaces (FALLBACK_SPACE of the row height where none was read). The
# Greek case's rows read by Tesseract at 56, 80, 100 px: letter gaps up to 2.0 medians and 0.125 of the
# height, spaces 0.18-0.24 of it; the glued "Τα|λέμε" and "αύριο|το" 0.19-0.23, 0.8-1.0 of the row's spaces
LETTER_GAPS, WORD_GAP_SHARE, FALLBACK_SPACE = 2.0, 0.75, 0.2


def spaces_from_gaps(glyphs: Sequence[tuple[str, int, int, bool]], height: int) -> str:
    """The text of one row's glyphs (text, x0, x1, whether it starts a word, in reading order), with a
    space wherever the reader wrote one or the gap to the next glyph is clearly wider than the row's
    letter gaps. Right-to-left rows measure their gaps leftwards; marks over a letter overlap it (no gap)."""
    gaps = [max(b[1] - a[2], a[1] - b[2]) for a, b in zip(glyphs, glyphs[1:], strict=False)]
    letters = [g for g, b in zip(gaps, glyphs[1:], strict=True) if not b[3]]
    words = [g for g, b in zip(gaps, glyphs[1:], strict=True) if b[3]]
    if not letters:
        return " ".join(_words(glyphs, [False] * len(gaps)))
    space = median(words) if words else FALLBACK_SPACE * height
    wide = max(LETTER_GAPS * median(letters), WORD_GAP_SHARE * space)
    return " ".join(_words(glyphs, [g >= wide for g in gaps]))


def _words(glyphs: Sequence[tuple[str, int, int, bool]], cut: list[bool]) -> list[str]:
    words: list[str] = []
    for i, (text, _, _, starts) in enumerate(glyphs):
        if not words or starts or cut[i - 1]:
            words.append(text)
        else:
            words[-1] += text
    return words
