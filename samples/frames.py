"""Frames at points of timed spans (subtitle events, answer-key cues): what a clip shows during a line."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

# Read on to a point at most this far ahead rather than seek to it: a seek decodes again from the last
# keyframe (2.0 CPU s for the 12 frames of four language-corpus lines, 0.3 s read on; the same frames)
READ_ON_S = 10.0


class Span(Protocol):
    start: float
    end: float


def frames_at(video: str | Path, spans: Iterable[Span], at: tuple[float, ...] = (0.5,)) -> list[np.ndarray]:
    """The whole frame at each of the `at` points (0: start, 1: end) of each span, in order; a point past
    the video's end gives no frame."""
    capture, frames = cv2.VideoCapture(str(video)), []
    fps, index = capture.get(cv2.CAP_PROP_FPS), -1  # the frame last read
    for span in spans:
        for point in at:
            seconds = span.start + point * (span.end - span.start)
            wanted = int(seconds * fps + 0.5)  # the frame OpenCV's seek to these seconds lands on
            if not index <= wanted <= index + READ_ON_S * fps:
                capture.set(cv2.CAP_PROP_POS_MSEC, 1000 * seconds)
                index = round(capture.get(cv2.CAP_PROP_POS_FRAMES)) - 1
                wanted = max(wanted, index + 1)  # the frame the seek landed on, read as a seek reads it
            ok = True
            while ok and index < wanted:
                ok, index = capture.grab(), index + 1
            ok, frame = capture.retrieve() if ok else (False, None)
            frames += [frame] if ok else []
    capture.release()
    return frames
