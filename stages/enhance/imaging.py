"""Pixels in and out: decoding with guard rails (size limits before decoding, EXIF, alpha, depth), tiling
with context so networks see no seams, exact resizing, atomic encoding."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import MediaInputError, StageError
from core.media import probe_media, require_kind
from core.outputs import atomic_path, write_failure
from stages.enhance.settings import STAGE, EnhanceSettings

if TYPE_CHECKING:
    import numpy as np

OUTPUT_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
NO_ALPHA_SUFFIXES = {".jpg", ".jpeg", ".bmp"}


@dataclass(frozen=True)
class SourceImage:
    """A decoded input: 8-bit BGR pixels plus the alpha channel, if it had one."""

    path: Path
    bgr: np.ndarray
    alpha: np.ndarray | None

    @property
    def size(self) -> tuple[int, int]:
        return int(self.bgr.shape[1]), int(self.bgr.shape[0])


def target_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def read_image(path: str | Path, settings: EnhanceSettings) -> SourceImage:
    """Probe (header only) and decode an image; corrupt, unsupported or oversized files fail clearly.

    The pixel limits are checked on the probed header, before decoding, so a decompression bomb never
    reaches memory.
    """
    import cv2
    import numpy as np

    info = require_kind(probe_media(path), "image")
    width, height = info.width, info.height
    if width <= 0 or height <= 0:
        raise MediaInputError(info.path, "no image size in its header: corrupt, or not an image")
    if width * height > settings.max_pixels:
        raise MediaInputError(
            info.path,
            f"image is {width}x{height} = {width * height:,} pixels, above the limit of "
            f"{settings.max_pixels:,} pixels (max_pixels)",
        )
    out_w, out_h = target_size(width, height, settings.scale)
    if out_w * out_h > settings.max_output_pixels:
        raise MediaInputError(
            info.path,
            f"output would be {out_w}x{out_h} = {out_w * out_h:,} pixels at scale {settings.scale:g}, above "
            f"the limit of {settings.max_output_pixels:,} pixels (max_output_pixels)",
        )
    data = np.fromfile(info.path, dtype=np.uint8)
    # JPEG (never alpha) decodes as colour so its EXIF orientation is applied, as phone photos need; other
    # formats decode unchanged to keep alpha and depth (OpenCV then ignores orientation)
    is_jpeg = data[:2].tobytes() == b"\xff\xd8"
    image = cv2.imdecode(data, cv2.IMREAD_COLOR if is_jpeg else cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise MediaInputError(info.path, "the image data cannot be decoded (corrupt or unsupported format)")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image.astype(np.float32) * (255.0 if image.max() <= 1.0 else 1.0), 0, 255)
        image = image.astype(np.uint8)
    alpha = None
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image, alpha = np.ascontiguousarray(image[:, :, :3]), np.ascontiguousarray(image[:, :, 3])
    elif image.shape[2] == 2:
        alpha = np.ascontiguousarray(image[:, :, 1])
        image = cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), cv2.COLOR_GRAY2BGR)
    elif image.shape[2] != 3:
        raise MediaInputError(info.path, f"unsupported channel count {image.shape[2]}")
    return SourceImage(info.path, np.ascontiguousarray(image), alpha)


def tile_count(height: int, width: int, tile: int) -> int:
    """How many tiles `process_tiled` cuts an image into."""
    if tile <= 0:
        return 1
    return -(-height // tile) * -(-width // tile)


def process_tiled(
    fn: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    *,
    factor: int,
    tile: int,
    pad: int,
    keep: int | None = None,
    on_tile: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Apply `fn` (an H x W x 3 -> factor*H x factor*W x 3 upscaler) tile by tile.

    Each tile is cut with `pad` pixels of context on every side and the context is cropped off the result,
    so memory stays bounded by the tile size and a convolutional network sees no seams. With `keep` (an
    integer below `factor`) each tile's result is area-averaged to `keep` times its size as it arrives, so no
    native-size copy of the whole image is ever held. `on_tile(pixels)` is told each input tile's size.
    """
    import cv2
    import numpy as np

    keep = keep or factor
    height, width = image.shape[:2]
    if tile <= 0:
        tile = max(height, width)
    out = np.empty((height * keep, width * keep, image.shape[2]), dtype=np.uint8)
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            py0, px0 = max(y0 - pad, 0), max(x0 - pad, 0)
            py1, px1 = min(y1 + pad, height), min(x1 + pad, width)
            piece = fn(image[py0:py1, px0:px1])
            oy, ox = (y0 - py0) * factor, (x0 - px0) * factor
            piece = piece[oy : oy + (y1 - y0) * factor, ox : ox + (x1 - x0) * factor]
            if keep != factor:
                piece = cv2.resize(piece, ((x1 - x0) * keep, (y1 - y0) * keep), interpolation=cv2.INTER_AREA)
            out[y0 * keep : y1 * keep, x0 * keep : x1 * keep] = piece
            if on_tile:
                on_tile((y1 - y0) * (x1 - x0))
    return out


def resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Exact output size: area averaging when shrinking, Lanczos when growing."""
    import cv2

    if (image.shape[1], image.shape[0]) == size:
        return image
    shrinking = size[0] * size[1] < image.shape[0] * image.shape[1]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4)


def output_suffix(source: str | Path) -> str:
    """Keep the input's format where OpenCV can write it; anything else becomes PNG."""
    suffix = Path(source).suffix.lower()
    return suffix if suffix in OUTPUT_SUFFIXES else ".png"


def write_image(
    dest: str | Path, bgr: np.ndarray, alpha: np.ndarray | None, *, jpeg_quality: int = 95
) -> Path:
    """Encode and publish atomically (temp file, then rename): a reader never sees half an image."""
    import cv2
    import numpy as np

    dest = Path(dest)
    suffix = dest.suffix.lower()
    image = bgr if alpha is None or suffix in NO_ALPHA_SUFFIXES else np.dstack([bgr, alpha])
    params: list[int] = []
    if suffix in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    elif suffix == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(jpeg_quality)]
    ok, encoded = cv2.imencode(suffix, image, params)
    if not ok:
        raise StageError(STAGE, dest, f"OpenCV could not encode a {suffix} image")
    try:
        with atomic_path(dest) as tmp:
            tmp.write_bytes(encoded.tobytes())  # not ndarray.tofile: a short write there has no errno
    except OSError as exc:
        raise write_failure(dest.parent, exc) from exc
    return dest
