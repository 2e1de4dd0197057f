"""Scores for subtitles against ground truth, the ones a user recognises.

- CER: character edits over reference characters, white space removed (a space between CJK and Latin
  characters is typography, not content) after NFKC (full-width and half-width punctuation are one).
- WER: word edits (jiwer) over reference words, where words are the space-separated tokens and each CJK
  character is a word of its own: glued words ("gatheratthe") and split ones count as errors.
- Exact lines: the share of true cues matched by an event with exactly their text.
- Event recall and precision: a true cue matches the unused predicted event overlapping it most with
  similar text; start/end error: the matched events' timing error.

Used by the tests (targets) and the benchmarks (figures), so both measure the same thing.
"""

from __future__ import annotations

import re
import statistics
import unicodedata
from dataclasses import dataclass
from typing import Protocol

from rapidfuzz.distance import Levenshtein


class Timed(Protocol):
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class SubtitleScore:
    cer: float
    wer: float
    recall: float
    precision: float
    median_start_error: float
    median_end_error: float
    max_start_error: float
    max_end_error: float
    matched: int
    truth: int
    predicted: int
    char_errors: int = 0
    chars: int = 0
    word_errors: int = 0
    words: int = 0
    start_errors: tuple[float, ...] = ()
    end_errors: tuple[float, ...] = ()
    exact: int = 0  # true cues matched by an event with exactly their text (spaces and width aside)

    @property
    def exact_lines(self) -> float:
        return self.exact / self.truth if self.truth else 1.0

    def line(self) -> str:
        return (
            f"CER {self.cer:6.2%}  WER {self.wer:6.2%}  recall {self.recall:6.1%}  "
            f"precision {self.precision:6.1%}  exact {self.exact_lines:6.1%}  start/end err (median) "
            f"{self.median_start_error:.3f}/{self.median_end_error:.3f} s  "
            f"({self.matched}/{self.truth} matched, {self.predicted} predicted)"
        )


_CJK = re.compile(r"([\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef])")
_PUNCT_ONLY = re.compile(r"^[\W_]+$", re.UNICODE)


def squash(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def words(text: str) -> list[str]:
    """Space-separated words, each CJK character a word, tokens of punctuation only dropped."""
    spaced = _CJK.sub(r" \1 ", unicodedata.normalize("NFKC", text))
    return [w for w in spaced.split() if not _PUNCT_ONLY.match(w)]


def word_errors(reference: str, hypothesis: str) -> int:
    """Word substitutions + deletions + insertions (jiwer's alignment)."""
    import jiwer

    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return len(hyp)
    if not hyp:
        return len(ref)
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return out.substitutions + out.deletions + out.insertions


def _overlap(a: Timed, b: Timed) -> float:
    return max(0.0, min(a.end, b.end) - max(a.start, b.start))


def score_subtitles(truth: list[Timed], predicted: list[Timed]) -> SubtitleScore:
    """Match each true cue to the unused predicted event overlapping it most with similar text."""
    used: set[int] = set()
    errors = chars = werrs = nwords = exact = 0
    starts, ends = [], []
    for cue in truth:
        ref = squash(cue.text)
        chars += len(ref)
        nwords += len(words(cue.text))
        best, best_key = None, (0.0, 0.0)
        for j, ev in enumerate(predicted):
            if j in used or _overlap(cue, ev) <= 0:
                continue
            similarity = 1 - Levenshtein.normalized_distance(ref, squash(ev.text))
            key = (similarity, _overlap(cue, ev))
            if similarity >= 0.5 and key > best_key:
                best, best_key = j, key
        if best is None:
            errors += len(ref)
            werrs += len(words(cue.text))
            continue
        used.add(best)
        errors += Levenshtein.distance(ref, squash(predicted[best].text))
        exact += ref == squash(predicted[best].text)
        werrs += word_errors(cue.text, predicted[best].text)
        starts.append(abs(predicted[best].start - cue.start))
        ends.append(abs(predicted[best].end - cue.end))
    matched = len(used)
    return SubtitleScore(
        cer=errors / chars if chars else 0.0,
        wer=werrs / nwords if nwords else 0.0,
        recall=matched / len(truth) if truth else 1.0,
        precision=matched / len(predicted) if predicted else 1.0,
        median_start_error=statistics.median(starts) if starts else 0.0,
        median_end_error=statistics.median(ends) if ends else 0.0,
        max_start_error=max(starts, default=0.0),
        max_end_error=max(ends, default=0.0),
        matched=matched,
        truth=len(truth),
        predicted=len(predicted),
        char_errors=errors,
        chars=chars,
        word_errors=werrs,
        words=nwords,
        start_errors=tuple(starts),
        end_errors=tuple(ends),
        exact=exact,
    )


def pooled(scores: list[SubtitleScore]) -> SubtitleScore:
    """One score over several cases: errors over all characters/words, medians over all matches."""
    starts = [e for s in scores for e in s.start_errors]
    ends = [e for s in scores for e in s.end_errors]
    chars, nwords = sum(s.chars for s in scores), sum(s.words for s in scores)
    truth, predicted = sum(s.truth for s in scores), sum(s.predicted for s in scores)
    matched = sum(s.matched for s in scores)
    return SubtitleScore(
        cer=sum(s.char_errors for s in scores) / chars if chars else 0.0,
        wer=sum(s.word_errors for s in scores) / nwords if nwords else 0.0,
        recall=matched / truth if truth else 1.0,
        precision=matched / predicted if predicted else 1.0,
        median_start_error=statistics.median(starts) if starts else 0.0,
        median_end_error=statistics.median(ends) if ends else 0.0,
        max_start_error=max(starts, default=0.0),
        max_end_error=max(ends, default=0.0),
        matched=matched,
        truth=truth,
        predicted=predicted,
        char_errors=sum(s.char_errors for s in scores),
        chars=chars,
        word_errors=sum(s.word_errors for s in scores),
        words=nwords,
        start_errors=tuple(starts),
        end_errors=tuple(ends),
        exact=sum(s.exact for s in scores),
    )
