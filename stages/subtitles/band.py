"""The subtitle band: user-given fractions, clamping to what ffmpeg can crop, static overlays masked.

Shared by area detection, keyframe extraction and crop, so none of them imports another for it.
"""

from __future__ import annotations

import numpy as np

from core.errors import ConfigError
from core.schema import Band

MIN_BAND_HEIGHT = 16
WHOLE_FRAME = "frame"  # Band.source of a video whose lines sit all over the frame: read whole, per position


def band_from_fractions(fractions: tuple[float, float, float, float], width: int, height: int) -> Band:
    """A user-given band as fractions (x0, y0, x1, y1) of the frame, in even pixels ffmpeg can crop."""
    if len(fractions) != 4:
        raise ConfigError(f"band needs 4 fractions (x0, y0, x1, y1), got {fractions!r}")
    x0, y0, x1, y1 = (float(f) for f in fractions)
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise ConfigError(f"band fractions need 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, got {fractions!r}")
    return clamp_band(
        Band(
            int(x0 * width), int(y0 * height), int(round(x1 * width)), int(round(y1 * height)), source="user"
        ),
        width,
        height,
    )


def clamp_band(band: Band, width: int, height: int) -> Band:
    """Even coordinates inside the frame (yuv420 crops need even offsets), at least MIN_BAND_HEIGHT tall."""
    x0 = max(0, min(band.x0, width - 2)) & ~1
    y0 = max(0, min(band.y0, height - 2)) & ~1
    x1 = min(width, max(band.x1, x0 + 2))
    y1 = min(height, max(band.y1, y0 + MIN_BAND_HEIGHT))
    x1 -= (x1 - x0) % 2
    y1 -= (y1 - y0) % 2
    return Band(x0, y0, x1, y1, source=band.source, static_boxes=band.static_boxes)


def strip_crop_filter(band: Band, frame_width: int) -> str:
    """ffmpeg crop filter that keeps the band's rows over the full frame width."""
    return f"crop={frame_width}:{band.height}:0:{band.y0}"


def mask_static_boxes(strip: np.ndarray, band: Band) -> np.ndarray:
    """Paint static overlays (logos, clocks) that reach into the strip, so they never look like a change."""
    if not band.static_boxes:
        return strip
    out = strip.copy()
    for x0, y0, x1, y1 in band.static_boxes:
        top, bottom = max(0, y0 - band.y0), min(strip.shape[0], y1 - band.y0)
        if bottom > top:
            out[top:bottom, max(0, x0 - 4) : x1 + 4] = 0
    return out
