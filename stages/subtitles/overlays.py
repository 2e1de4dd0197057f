"""Static overlays: which boxes held at one place are logos, clocks or decoration, and which are subtitles.

A box at the same place in most of the band stage's samples is a candidate overlay. Its position alone
cannot tell: a five-second clip holds one subtitle line over most of its samples, and a drama's lines of
one width share a box. The pixels inside the box over time tell them apart:
- a logo shows the same content in every sample, seen by the detector or not (a miss is still the logo);
- a clock or counter reads differently from one sample to the next;
- subtitle lines show one content while held, and the place shows something else before the line comes,
  after it goes, or when the next line of that width replaces it;
- decoration held a while (a row of emoji under a meme caption) changes like a line but is no text: the
  recogniser cannot read it.
Peers (VideOCR, RapidVideOCR, VidSubX) leave logos to the user's crop box; short clips have no room for one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

Box = tuple[int, int, int, int]

SAME_CONTENT = 0.5  # worst glyph-sized window of two crops decorrelated by less than this: same content
# (one line over moving footage: <= 0.35; one character of six replaced: 0.51-0.54; a new line: > 0.75)


def _edges(crop: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32) if crop.ndim == 3 else crop
    return np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))


def same_content(a: np.ndarray, b: np.ndarray) -> bool:
    """Two edge maps of one box show the same thing: every glyph-sized window (a line height wide) of one
    correlates with the other's. Windows flat in both (past the end of a short line) do not count."""
    height, width = a.shape
    step = max(4, height // 2)
    floor = 0.1 * max(float(a.mean()), float(b.mean()), 1e-6)
    for x in range(0, max(1, width - step + 1), max(1, step // 2)):
        wa, wb = a[:, x : x + step], b[:, x : x + step]
        if wa.mean() < floor and wb.mean() < floor:
            continue
        da, db = wa - wa.mean(), wb - wb.mean()
        corr = float((da * db).sum() / (np.sqrt(float((da * da).sum()) * float((db * db).sum())) + 1e-6))
        if 1.0 - corr >= SAME_CONTENT:
            return False
    return True


def held_line(
    box: Box,
    seen: set[int],
    looks: Sequence[Sequence[np.ndarray]],
    scale: float,
    read_line: Callable[[np.ndarray], tuple[str, float]],
    min_score: float,
) -> bool:
    """A candidate overlay that is subtitle text: what it shows changes over the clip (a logo's never
    does), the recogniser reads it (`read_line`: a crop to text and confidence, at least `min_score`), and
    the reading holds from one sample to the next in most samples it is seen in (a clock's does not; its
    digits are too small at the band stage's scale for the pixels to tell). `looks` are the band stage's
    looks at the video, each a list of samples in time order at `scale`; `seen` indexes them joined, as
    the detected boxes do."""
    frames = [frame for look in looks for frame in look]
    crops = [box_crop(f, box, scale) for f in frames]
    if len(frames) < 2 or crops[0] is None:
        return False
    edges = [_edges(c) for c in crops]
    order = sorted(seen)
    if all(same_content(edges[order[0]], e) for e in edges):
        return False  # a logo: the same content over the whole clip, detected or not
    reads = {i: read_line(crops[i]) for i in order}
    if reads[order[len(order) // 2]][1] < min_score:
        return False  # decoration: no text the recogniser reads
    look_of = [n for n, look in enumerate(looks) for _ in look]
    pairs = [(i, j) for i, j in zip(order, order[1:], strict=False) if look_of[i] == look_of[j]]
    changed = sum(reads[i][0] != reads[j][0] for i, j in pairs)
    return not pairs or 2 * changed < len(pairs)  # else a clock or counter: new text sample after sample


def reads_as_text(
    frame: np.ndarray,
    box: Box,
    scale: float,
    read_line: Callable[[np.ndarray], tuple[str, float]],
    min_score: float,
) -> bool:
    """The recogniser reads the box (video pixels) in this sample (at `scale`) as text."""
    crop = box_crop(frame, box, scale)
    return crop is not None and read_line(crop)[1] >= min_score


def box_crop(frame: np.ndarray, box: Box, scale: float) -> np.ndarray | None:
    """The box (video pixels) cut from a sample taken at `scale`; None where it is under 4 px a side."""
    x0, y0, x1, y1 = (int(round(v * scale)) for v in box)
    crop = np.ascontiguousarray(frame[max(0, y0) : y1, max(0, x0) : x1])
    return crop if crop.shape[0] >= 4 and crop.shape[1] >= 4 else None
