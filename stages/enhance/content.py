"""What a picture is, so the stage can fit it: photograph or drawing (picks the Real-ESRGAN model), and faces.

- Drawn or animated content (flat fills, a few exact colours) gets the anime model, everything else the photo
  model: the anime model turns a photographed face into a cartoon. Two cheap numbers decide (a few ms): the
  share of pixels in flat areas and the share covered by the 16 most frequent colours (64 levels a channel,
  so JPEG noise does not scatter a fill). Grey pictures count as photos unless nearly all pixels are 16
  exact grey levels (line art, silhouettes). Measured on
  scikit-image's photos and drawings in tests/test_enhance_content.py.
- Faces are found by the LBP frontal-face cascade scikit-image ships (98 of 100 LFW faces, none of its 100
  non-faces); in each face the network's fine texture is kept but the colours and shapes (the frequencies
  below half the scale, in output pixels) come from a Lanczos upscale of the input, so a GAN cannot repaint
  eyes or mouth.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING

from stages.enhance.settings import EnhanceSettings

if TYPE_CHECKING:
    import numpy as np

PHOTO_MODEL = "waifu2x-photo"
DRAWN_MODEL = "realesr-animevideov3"
DRAWN_MIN_FLAT = 0.45  # share of pixels whose right and lower neighbours differ by at most 1 level
DRAWN_MIN_PALETTE = 0.40  # share of pixels covered by the 16 most frequent colours (64 levels a channel)
GREY_DRAWN_MIN_PALETTE = 0.95  # grey pictures (exact levels): only near-binary art counts as drawn
FACE_SEARCH_SIDE = 256  # faces are searched on a copy at most this large (cost stays ~0.1-1 s)
FACE_MARGIN = 0.35  # the kept region grows by this share of the face box on every side


@dataclass(frozen=True)
class ContentVerdict:
    """Photo or drawn, and the numbers that decided it."""

    kind: str  # "photo" | "drawn"
    flat: float
    palette: float
    grey: bool


def classify_content(image: np.ndarray) -> ContentVerdict:
    """Photograph or drawing/animation, from flat area and palette concentration of 8-bit BGR pixels."""
    import cv2
    import numpy as np

    grey_levels = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.int16)
    dx = np.abs(np.diff(grey_levels, axis=1))[:-1, :]
    dy = np.abs(np.diff(grey_levels, axis=0))[:, :-1]
    flat = float(((dx <= 1) & (dy <= 1)).mean()) if dx.size else 1.0
    pixels = image.reshape(-1, 3).astype(np.int32)
    spread = np.abs(pixels - pixels.mean(axis=1, keepdims=True)).max(axis=1)
    grey = bool((spread <= 2).mean() > 0.99)
    levels = pixels if grey else pixels >> 2
    codes = (levels[:, 0] << 16) | (levels[:, 1] << 8) | levels[:, 2]
    counts = np.unique(codes, return_counts=True)[1]
    palette = float(np.sort(counts)[::-1][:16].sum() / codes.size)
    if grey:
        drawn = palette >= GREY_DRAWN_MIN_PALETTE
    else:
        drawn = flat >= DRAWN_MIN_FLAT and palette >= DRAWN_MIN_PALETTE
    return ContentVerdict("drawn" if drawn else "photo", round(flat, 3), round(palette, 3), grey)


def fit_to_content(settings: EnhanceSettings, image: np.ndarray) -> EnhanceSettings:
    """Settings with the Real-ESRGAN model chosen for this picture, where the user left it to us."""
    if settings.engine != "realesrgan-ncnn" or settings.model:
        return settings
    drawn = classify_content(image).kind == "drawn"
    return replace(settings, model=DRAWN_MODEL if drawn else PHOTO_MODEL)


@dataclass(frozen=True)
class FaceBox:
    """A face in input pixels."""

    x: int
    y: int
    width: int
    height: int


_detector_lock = threading.Lock()


@lru_cache(maxsize=1)
def _face_detector():
    import skimage.data
    from skimage.feature import Cascade

    return Cascade(skimage.data.lbp_frontal_face_cascade_filename())


def find_faces(image: np.ndarray) -> list[FaceBox]:
    """Frontal faces at least ~24 px (on the search copy) in 8-bit BGR pixels, in input coordinates."""
    import cv2
    import numpy as np

    height, width = image.shape[:2]
    shrink = min(1.0, FACE_SEARCH_SIDE / max(height, width))
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if shrink < 1.0:
        size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    if min(grey.shape) < 24:
        return []
    with _detector_lock:  # one cascade object per process; its scan is not documented as thread-safe
        found = _face_detector().detect_multi_scale(
            img=grey.astype(np.float64) / 255.0,
            scale_factor=1.15,
            step_ratio=1,
            min_size=(24, 24),
            max_size=grey.shape[:2],
            min_neighbor_number=3,
        )
    return [
        FaceBox(
            round(f["c"] / shrink),
            round(f["r"] / shrink),
            round(f["width"] / shrink),
            round(f["height"] / shrink),
        )
        for f in found
    ]


def keep_faces_faithful(
    enhanced: np.ndarray,
    source: np.ndarray,
    faces: list[FaceBox],
    factor: float,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Inside each (feathered) face region: the network's fine texture on the colours and shapes of a
    Lanczos upscale of the input, or, given a `reference` (a faithful enlargement: the photo network's first
    pass), that reference Lanczos-enlarged as it is. `enhanced` is `factor` times the size of `source`; it
    is changed in place and returned. Only each face's surroundings are worked on: memory follows faces."""
    import cv2
    import numpy as np

    base = source if reference is None else reference
    base_factor = enhanced.shape[1] / base.shape[1]  # output pixels per pixel of the base
    height, width = enhanced.shape[:2]
    sigma = max(1.0, factor / 2.0)
    for face in faces:
        grow_x, grow_y = face.width * FACE_MARGIN, face.height * FACE_MARGIN
        x0, y0 = max(0, int((face.x - grow_x) * factor)), max(0, int((face.y - grow_y) * factor))
        x1 = min(width, int((face.x + face.width + grow_x) * factor))
        y1 = min(height, int((face.y + face.height + grow_y) * factor))
        feather = max(2.0, 0.1 * factor * face.width)
        margin = int(3 * feather + 4 * factor) + 1  # where the feathered mask has faded to nothing
        sx0, sy0 = max(0, int((x0 - margin) / base_factor)), max(0, int((y0 - margin) / base_factor))
        sx1 = min(base.shape[1], int(np.ceil((x1 + margin) / base_factor)))
        sy1 = min(base.shape[0], int(np.ceil((y1 + margin) / base_factor)))
        cx0, cy0 = round(sx0 * base_factor), round(sy0 * base_factor)
        cx1, cy1 = min(width, round(sx1 * base_factor)), min(height, round(sy1 * base_factor))
        crop = enhanced[cy0:cy1, cx0:cx1]
        size = (crop.shape[1], crop.shape[0])
        lanczos = cv2.resize(base[sy0:sy1, sx0:sx1], size, interpolation=cv2.INTER_LANCZOS4)
        mask_at = (y0 - cy0, y1 - cy0, x0 - cx0, x1 - cx0)
        _blend_in_bands(crop, lanczos, mask_at, feather, None if reference is not None else sigma)
    return enhanced


BAND_ROWS = 256  # face regions are blended this many rows at a time (float copies of a band, not the face)


def _blend_in_bands(
    crop: np.ndarray, lanczos: np.ndarray, box: tuple[int, int, int, int], feather: float, sigma: float | None
) -> None:
    """`crop` (the network's face region, changed in place) blended towards `lanczos` inside `box`
    (y0, y1, x0, x1), feathered by `feather` px; with `sigma`, the network's texture finer than it is kept.
    The smooth mask is built 8x smaller; float copies exist for one band of rows (plus blur context) only."""
    import cv2
    import numpy as np

    height, width = crop.shape[:2]
    small = np.zeros((-(-height // 8), -(-width // 8)), np.float32)
    y0, y1, x0, x1 = box
    small[y0 // 8 : -(-y1 // 8), x0 // 8 : -(-x1 // 8)] = 1.0
    small = cv2.GaussianBlur(small, (0, 0), max(0.5, feather / 8))
    context = 0 if sigma is None else int(4 * sigma) + 1
    for top in range(0, height, BAND_ROWS):
        bottom = min(height, top + BAND_ROWS)
        a, b = max(0, top - context), min(height, bottom + context)
        net = crop[a:b].astype(np.float32)
        base = lanczos[a:b].astype(np.float32)
        if sigma is not None:
            base = cv2.GaussianBlur(base, (0, 0), sigma) + net - cv2.GaussianBlur(net, (0, 0), sigma)
        rows = slice(top - a, top - a + bottom - top)
        first, last = max(0, top // 8 - 1), min(small.shape[0], -(-bottom // 8) + 1)  # a row of context
        size = (small.shape[1] * 8, (last - first) * 8)
        mask = cv2.resize(small[first:last], size, interpolation=cv2.INTER_LINEAR)
        mask = mask[top - first * 8 : bottom - first * 8, :width, None]
        blended = net[rows] * (1.0 - mask) + base[rows] * mask
        crop[top:bottom] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
