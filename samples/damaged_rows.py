"""Real subtitle rows damaged the ways footage damages them: the script detector's hard cases.

Frames of the six real dramas at their key lines, and their subtitle rows blurred, faded, pixelated,
smeared, JPEG-crushed or downscaled: rows no reader reads, on which Tesseract's script classifier still
names a script (Devanagari, Fraktur, Katakana...). Language auto must read them as Chinese in doubt,
never refuse them nor pick another reader (tests/test_realvideo_subtitles.py, bench/realvideo.py
--damaged).
"""

from __future__ import annotations

import cv2
import numpy as np

from samples.frames import frames_at
from samples.realvideo import REALVIDEO_STEMS, answer_key, realvideo_path


def frames_at_cues(stem: str, cues: slice, at: tuple[float, ...] = (0.5,)) -> list[np.ndarray]:
    """The whole frame at each of the `at` points (0: start, 1: end) of each of the video's `cues`."""
    return frames_at(realvideo_path(stem), answer_key(stem)[cues], at)


def blurred(row: np.ndarray, share: float = 1 / 6) -> np.ndarray:
    """Out of focus: a Gaussian `share` of the row's height."""
    return cv2.GaussianBlur(row, (0, 0), row.shape[0] * share)


def faded(row: np.ndarray) -> np.ndarray:
    """A half-faded line: 30% of its contrast left, a little soft."""
    soft = cv2.GaussianBlur(row, (0, 0), row.shape[0] / 20).astype("float32")
    return (soft.mean() + 0.3 * (soft - soft.mean())).clip(0, 255).astype("uint8")


def pixelated(row: np.ndarray) -> np.ndarray:
    """Blocks a tenth of the row's height (a mosaic, a low-bitrate upscale)."""
    h, w = row.shape[:2]
    f = max(2, h // 10)
    small = cv2.resize(row, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def smeared(row: np.ndarray) -> np.ndarray:
    """Horizontal motion blur half the row's height long (a pan)."""
    k = max(3, row.shape[0] // 2)
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1 / k
    return cv2.filter2D(row, -1, kernel)


def crushed(row: np.ndarray) -> np.ndarray:
    """JPEG at quality 8."""
    _, data = cv2.imencode(".jpg", row, [cv2.IMWRITE_JPEG_QUALITY, 8])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def downscaled(row: np.ndarray) -> np.ndarray:
    """A third of the size (small text of a small video)."""
    h, w = row.shape[:2]
    return cv2.resize(row, (max(1, w // 3), max(1, h // 3)), interpolation=cv2.INTER_AREA)


DAMAGES = {
    "crushed": crushed,
    "blurred-faded": lambda row: faded(blurred(row)),
    "blurred": blurred,
    "blurred-more": lambda row: blurred(row, 1 / 4),
    "faded": faded,
    "pixelated": pixelated,
    "smeared": smeared,
    "downscaled": downscaled,
}


def damaged_row_sets(subtitle_rows) -> dict[tuple[str, int, str], list[np.ndarray]]:  # noqa: ANN001
    """Every video's key lines three at a time (two apart, up to 8 sets a video), the frames at 0.3 and 0.7
    of each line, their rows (`subtitle_rows(frames)`, at least 3), each damage applied: (stem, set, damage)
    -> rows. The six dramas give 23 sets, 184 damaged."""
    sets = {}
    for stem in REALVIDEO_STEMS:
        key = answer_key(stem)
        for n in range(8):
            if n and len(key[2 * n : 2 * n + 3]) < 3:
                continue
            rows = subtitle_rows(frames_at_cues(stem, slice(2 * n, 2 * n + 3), (0.3, 0.7)))
            if len(rows) >= 3:
                sets.update({(stem, n, name): [damage(r) for r in rows] for name, damage in DAMAGES.items()})
    return sets
