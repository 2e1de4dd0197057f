"""Diarization error rate with an optimal speaker mapping, and RTTM reading/writing helpers for tests.

DER = (missed speech + false alarm + speaker confusion) / reference speech, counted on a 10 ms grid, with
no-score collars of `collar` seconds around every reference boundary (as NIST md-eval does) and the
reference-to-hypothesis speaker mapping that maximises the matched time (Hungarian algorithm).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STEP = 0.01


@dataclass(frozen=True)
class DerScore:
    der: float
    missed: float  # seconds
    false_alarm: float
    confusion: float
    scored: float  # reference speech seconds scored (outside the collars)
    mapping: dict[str, str]  # reference speaker -> hypothesis speaker
    unheard: float = 0.0  # the part of `missed` where no hypothesis speaker talks (the rest: overlap)


def _activity(turns: Iterable[tuple[str, float, float]], speakers: list[str], frames: int) -> np.ndarray:
    grid = np.zeros((len(speakers), frames), bool)
    index = {s: i for i, s in enumerate(speakers)}
    for speaker, start, end in turns:
        grid[index[speaker], int(round(start / STEP)) : int(round(end / STEP))] = True
    return grid


def diarization_error_rate(
    reference: Iterable[tuple[str, float, float]],
    hypothesis: Iterable[tuple[str, float, float]],
    collar: float = 0.25,
) -> DerScore:
    """DER of `hypothesis` against `reference`, both (speaker, start, end) turns that may overlap."""
    from scipy.optimize import linear_sum_assignment

    ref, hyp = list(reference), list(hypothesis)
    end = max([t[2] for t in ref + hyp] + [0.0]) + collar + STEP
    frames = int(np.ceil(end / STEP))
    ref_speakers, hyp_speakers = sorted({t[0] for t in ref}), sorted({t[0] for t in hyp})
    r, h = _activity(ref, ref_speakers, frames), _activity(hyp, hyp_speakers, frames)
    scored = np.ones(frames, bool)
    width = int(round(collar / STEP))
    for _, start, stop in ref:
        for edge in (int(round(start / STEP)), int(round(stop / STEP))):
            scored[max(0, edge - width) : edge + width] = False
    r, h = r[:, scored], h[:, scored]
    mapping: dict[str, str] = {}
    matched = np.zeros(r.shape[1], int)
    if ref_speakers and hyp_speakers:
        overlap = (r[:, None, :] & h[None, :, :]).sum(axis=2)
        rows, cols = linear_sum_assignment(-overlap)
        for i, j in zip(rows, cols, strict=True):
            mapping[ref_speakers[i]] = hyp_speakers[j]
            matched += r[i] & h[j]
    n_ref, n_hyp = r.sum(axis=0), h.sum(axis=0)
    missed = np.maximum(n_ref - n_hyp, 0).sum() * STEP
    unheard = n_ref[n_hyp == 0].sum() * STEP
    false_alarm = np.maximum(n_hyp - n_ref, 0).sum() * STEP
    confusion = (np.minimum(n_ref, n_hyp) - matched).sum() * STEP
    total = n_ref.sum() * STEP
    der = (missed + false_alarm + confusion) / total if total else float(false_alarm > 0)
    return DerScore(
        round(float(der), 4), round(float(missed), 2), round(float(false_alarm), 2),
        round(float(confusion), 2), round(float(total), 2), mapping, round(float(unheard), 2),
    )  # fmt: skip


def read_rttm(path: str | Path) -> list[tuple[str, float, float]]:
    """(speaker, start, end) of each SPEAKER line of an RTTM file."""
    turns = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields and fields[0] == "SPEAKER":
            start, duration = float(fields[3]), float(fields[4])
            turns.append((fields[7], start, start + duration))
    return turns
