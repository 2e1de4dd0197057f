"""The no-model engine: OpenCV denoise, Lanczos and unsharp mask."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from stages.enhance.engines.base import EngineOutput, EnhanceEngine, Progress
from stages.enhance.imaging import process_tiled, tile_count
from stages.enhance.settings import EnhanceSettings

if TYPE_CHECKING:
    import numpy as np


class OpenCvClassicEngine(EnhanceEngine):
    """No learned model: non-local-means denoise, Lanczos upscale and an unsharp mask, tile by tile.

    An honest baseline that runs anywhere in milliseconds to seconds; it removes noise and sharpens edges
    but cannot invent detail the way a learned super-resolution network does.
    """

    name = "opencv-classic"
    load_fields = frozenset()  # nothing is loaded

    def enhance(
        self, image: np.ndarray, settings: EnhanceSettings, progress: Progress | None = None
    ) -> EngineOutput:
        factor = max(1, math.ceil(settings.scale))
        pad = max(settings.tile_pad, 16)  # NL-means looks 13 px around a pixel; the blur ~3 sigma
        total, done, tiles = (
            image.shape[0] * image.shape[1],
            [0, 0],
            tile_count(*image.shape[:2], settings.tile),
        )

        def tile_done(pixels: int) -> None:
            done[0], done[1] = done[0] + pixels, done[1] + 1
            if progress:
                progress(done[0] / total, done[1], tiles)

        out = process_tiled(
            lambda t: self._tile(t, settings, factor),
            image,
            factor=factor,
            tile=settings.tile,
            pad=pad,
            on_tile=tile_done,
        )
        return EngineOutput(out, None)

    @staticmethod
    def _tile(tile: np.ndarray, s: EnhanceSettings, factor: int) -> np.ndarray:
        import cv2

        out = (
            cv2.fastNlMeansDenoisingColored(tile, None, s.denoise, s.denoise, 7, 21)
            if s.denoise > 0
            else tile
        )
        if factor > 1:
            size = (tile.shape[1] * factor, tile.shape[0] * factor)
            out = cv2.resize(out, size, interpolation=cv2.INTER_LANCZOS4)
        if s.sharpen > 0:
            blurred = cv2.GaussianBlur(out, (0, 0), 0.8 * factor)
            out = cv2.addWeighted(out, 1.0 + s.sharpen, blurred, -s.sharpen, 0)
        return out
