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
    window_seconds: float = 120.0  # the flow extracts, reads and deletes strips window by window: OCR reads
    # one window while the next decodes (5-minute windows left it idle for the second one's whole decode, and
    # held two windows' images: 648 MB on 10 minutes of 720p, 268 MB at 2 minutes)
    line_change: float = 0.5  # a new line loses (or gains) this share of the old line's cells ...
    line_change_other: float = 0.25  # ... and gains (loses) this share: centred lines overlap in strokes
    character_change: float = 0.42  # ... or of one character's columns (a one-character change)
    character_cells: int = 24  # a character's columns count when they hold this many cells before and after
    lead_seconds: float = 1.0  # a line appearing with fewer strokes than character_cells (pale text, no
    # outline) may have been legible before the signal counted it: the samples this far back are kept for OCR
    faded_samples: int = 3  # a line's strokes thinned below min_text_cells, all where they were, stay its
    # text this many samples (pale text without an outline flickers under the count: one line, two events)


def text_signal(strip: np.ndarray, settings: KeyframeSettings) -> np.ndarray:
    """Boolean grid of cells holding outlined text strokes (thin bright pixels touching dark ones).

    Bright areas wider than a stroke (sky, a white car, a lit window) are removed by a morphological
    opening sized to the strip (a band is about three line heights, a stroke a tenth of a line), so
    moving real footage behind the text barely changes the signal.
    """
    grey = cv2.cvtColor(strip, cv2.COLOR_BGR2GRAY)
    # masks as 0/255 straight from OpenCV (numpy comparisons and casts were a third of this function)
    _, bright = cv2.threshold(grey, settings.bright_level - 1, 255, cv2.THRESH_BINARY)
    k = max(5, strip.shape[0] // 12) | 1
    wide = cv2.morphologyEx(bright, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    _, dark = cv2.threshold(grey, settings.dark_level, 255, cv2.THRESH_BINARY_INV)
    strokes = cv2.bitwise_and(cv2.subtract(bright, wide), cv2.dilate(dark, np.ones((5, 5), np.uint8)))
    return pooled_cells(strokes, settings.cell)


def pooled_cells(strokes: np.ndarray, c: int) -> np.ndarray:
    """Cells of c x c pixels of a 0/255 mask where over a fifth of the pixels are set (whole cells only).

    OpenCV's area resize averages each cell in one pass (a numpy sum over rows then columns took twice as
    long): the mean is (count x 255 / c²) rounded, so the smallest count over c²/5 and the one below it
    stay apart by 255 / c² >= 1 up to c = 15; larger cells are counted exactly.
    """
    h, w = strokes.shape[0] // c * c, strokes.shape[1] // c * c
    least = c * c // 5 + 1  # the fewest set pixels of a cell that counts
    if h == 0 or w == 0:
        return np.zeros((h // c, w // c), bool)
    if c > 15:
        ones = strokes[:h, :w] > 0
        rows = ones.reshape(h // c, c, w).sum(axis=1, dtype=np.uint32)
        return rows.reshape(h // c, w // c, c).sum(axis=2, dtype=np.uint32) >= least
    mean = cv2.resize(strokes[:h, :w], (w // c, h // c), interpolation=cv2.INTER_AREA)
    return mean > (least - 0.5) * 255 / (c * c)


def new_line(before: np.ndarray, after: np.ndarray, settings: KeyframeSettings) -> bool:
    """Another line replaced this one: many of its strokes went and many of the new ones are new.

    Noise moves a few cells both ways; a fade in only gains strokes and a fade out only loses them, so
    neither is a new line, while a cut or a cross-fade to other text does both (a longer centred line
    after a short one covers it, so one of the two shares can be small: "给带走" -> "快点老刘给带走").
    """
    old, new = int(np.count_nonzero(before)), int(np.count_nonzero(after))
    if old == 0 or new == 0:
        return old != new
    lost = int(np.count_nonzero(before & ~after)) / old
    gained = int(np.count_nonzero(after & ~before)) / new
    if max(lost, gained) >= settings.line_change and min(lost, gained) >= settings.line_change_other:
        return True
    return _one_character_changed(before, after, settings)


def _one_character_changed(before: np.ndarray, after: np.ndarray, settings: KeyframeSettings) -> bool:
    """A character's worth of columns whose strokes were all replaced ("Gate 4" -> "Gate 5").

    A character is about a line high: a third of a one-line band, a fifth of a two-line one. Noise
    replaces a few cells here and there, never nearly all the strokes of one character's columns.
    """
    width = max(2, before.shape[0] // 5)
    lost_cols = (before & ~after).sum(axis=0)
    gained_cols = (after & ~before).sum(axis=0)
    old_cols, new_cols = before.sum(axis=0), after.sum(axis=0)
    kernel = np.ones(width)
    old, new = np.convolve(old_cols, kernel, "valid"), np.convolve(new_cols, kernel, "valid")
    lost = np.convolve(lost_cols, kernel, "valid") / np.maximum(old, 1)
    gained = np.convolve(gained_cols, kernel, "valid") / np.maximum(new, 1)
    dense = (old >= settings.character_cells) & (new >= settings.character_cells)
    return bool(np.any(dense & (lost >= settings.character_change) & (gained >= settings.character_change)))


def thinned(before: np.ndarray, after: np.ndarray) -> bool:
    """The line's strokes thinned, none new: every cell left sits on (or beside) one of the line's."""
    if not after.any() or not before.any():
        return False
    near = cv2.dilate(before.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return not np.any(after & ~near)


def signal_change(a: np.ndarray, b: np.ndarray) -> float:
    """How different two text signals are: cells that differ over the cells either one has."""
    union = int(np.count_nonzero(a | b))
    return 0.0 if union == 0 else int(np.count_nonzero(a ^ b)) / union
