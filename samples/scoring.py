"""Scores for subtitles against ground truth: character error rate, event recall/precision, timing error.

Used by the tests (targets) and the benchmarks (figures), so both measure the same thing. Text is
compared with white space removed: a space between CJK and Latin characters is typography, not content.
"""

from __future__ import annotations

import statistics
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
    recall: float
    precision: float
    median_start_error: float
    median_end_error: float
    max_start_error: float
    max_end_error: float
    matched: int
    truth: int
    predicted: int


def squash(text: str) -> str:
    return "".join(text.split())


def _overlap(a: Timed, b: Timed) -> float:
    return max(0.0, min(a.end, b.end) - max(a.start, b.start))


def score_subtitles(truth: list[Timed], predicted: list[Timed]) -> SubtitleScore:
    """Match each true cue to the unused predicted event overlapping it most with similar text."""
    used: set[int] = set()
    errors = chars = 0
    starts, ends = [], []
    for cue in truth:
        ref = squash(cue.text)
        chars += len(ref)
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
            continue
        used.add(best)
        errors += Levenshtein.distance(ref, squash(predicted[best].text))
        starts.append(abs(predicted[best].start - cue.start))
        ends.append(abs(predicted[best].end - cue.end))
    matched = len(used)
    return SubtitleScore(
        cer=errors / chars if chars else 0.0,
        recall=matched / len(truth) if truth else 1.0,
        precision=matched / len(predicted) if predicted else 1.0,
        median_start_error=statistics.median(starts) if starts else 0.0,
        median_end_error=statistics.median(ends) if ends else 0.0,
        max_start_error=max(starts, default=0.0),
        max_end_error=max(ends, default=0.0),
        matched=matched,
        truth=len(truth),
        predicted=len(predicted),
    )
