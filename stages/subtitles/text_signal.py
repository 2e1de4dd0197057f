"""The text signal: cells of a strip holding outlined text strokes (bright fill touching a dark edge).

Keyframe extraction keeps a sample when this signal changes; crop trims to the columns it covers.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class KeyframeSettings:
    sample_fps: float = 10.0  # 5 fps put the median start/end error at 0.1 s; decoding costs the same
    change_threshold: float = 0.12  # share of text-signal cells that must differ from the last kept sample
    min_text_cells: int = 3  # fewer signal cells than this: the band holds no text ("Go!" at 20 px: 5)
    bright_level: int = 175  # text fill (white, yellow) is at least this bright in grey
    dark_level: int = 80  # outline/shadow is at most this dark
    cell: int = 4  # the signal is pooled over cell x cell pixels
    window_seconds: float = 300.0  # the flow extracts, reads and deletes strips window by window


def text_signal(strip: np.ndarray, settings: KeyframeSettings) -> np.ndarray:
    """Boolean grid of cells holding outlined text strokes (thin bright pixels touching dark ones).

    Bright areas wider than a stroke (sky, a white car, a lit window) are removed by a morphological
    opening sized to the strip (a band is about three line heights, a stroke a tenth of a line), so
    moving real footage behind the text barely changes the signal.
    """
    grey = cv2.cvtColor(strip, cv2.COLOR_BGR2GRAY)
    bright = (grey >= settings.bright_level).astype(np.uint8)
    k = max(5, strip.shape[0] // 12) | 1
    bright &= 1 - cv2.morphologyEx(bright, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    dark = cv2.dilate((grey <= settings.dark_level).astype(np.uint8), np.ones((5, 5), np.uint8))
    strokes = (bright & dark).astype(np.float32)
    c = settings.cell
    h, w = strokes.shape[0] // c * c, strokes.shape[1] // c * c
    pooled = strokes[:h, :w].reshape(h // c, c, w // c, c).mean(axis=(1, 3))
    return pooled > 0.2


def signal_change(a: np.ndarray, b: np.ndarray) -> float:
    """How different two text signals are: cells that differ over the cells either one has."""
    union = int(np.count_nonzero(a | b))
    return 0.0 if union == 0 else int(np.count_nonzero(a ^ b)) / union
