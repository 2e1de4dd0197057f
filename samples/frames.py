"""Frames at points of timed spans (subtitle events, answer-key cues): what a clip shows during a line."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np


class Span(Protocol):
    start: float
    end: float


def frames_at(video: str | Path, spans: Iterable[Span], at: tuple[float, ...] = (0.5,)) -> list[np.ndarray]:
    """The whole frame at each of the `at` points (0: start, 1: end) of each span, in order; a point past
    the video's end gives no frame."""
    capture, frames = cv2.VideoCapture(str(video)), []
    for span in spans:
        for point in at:
            capture.set(cv2.CAP_PROP_POS_MSEC, 1000 * (span.start + point * (span.end - span.start)))
            ok, frame = capture.read()
            frames += [frame] if ok else []
    capture.release()
    return frames
