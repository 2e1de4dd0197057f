"""The quality yardstick: shrink a real photograph, enhance it back, and compare with the original.

Each method (an interpolation baseline, an engine, a Real-ESRGAN model, or the stage's default) gets the same
area-averaged downscale and returns an image of the original's size; PSNR and SSIM measure fidelity to the
original, NIQE (no reference) how natural the result looks. Models are measured raw (faces off); `default` is
the stage as a user gets it (model chosen by content, faces kept faithful).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NONE

from core.errors import ConfigError
from core.outputs import atomic_path
from stages.enhance.enhance import enhance_array
from stages.enhance.quality import niqe, psnr, ssim
from stages.enhance.settings import EnhanceSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import numpy as np

BASELINES = ("bicubic", "lanczos")
MODELS = ("waifu2x-photo", "realesrgan-x4plus", "realesr-animevideov3", "realesrgan-x4plus-anime")
METHODS = (*BASELINES, "opencv-classic", *(f"realesrgan-ncnn:{m}" for m in MODELS), "default")


@dataclass(frozen=True)
class QualityScore:
    """One method on one photo."""

    photo: str
    method: str
    psnr: float
    ssim: float
    niqe: float
    seconds: float
    model: str | None = None  # the network `default` chose


def shrink(reference: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """(the reference cropped to a multiple of `factor`, its area-averaged downscale)."""
    import cv2

    height, width = (reference.shape[0] // factor) * factor, (reference.shape[1] // factor) * factor
    reference = reference[:height, :width]
    low = cv2.resize(reference, (width // factor, height // factor), interpolation=cv2.INTER_AREA)
    return reference, low


def method_settings(method: str, scale: float) -> EnhanceSettings:
    """`opencv-classic`, `realesrgan-ncnn:MODEL` (raw model, faces off) or `default` (stage defaults)."""
    if method == "default":
        return EnhanceSettings(scale=scale)
    engine, _, model = method.partition(":")
    if engine not in ("realesrgan-ncnn", "opencv-classic", "gfpgan"):
        raise ConfigError(f"unknown yardstick method {method!r}; known: {', '.join(METHODS)}")
    return EnhanceSettings(engine=engine, model=model or None, scale=scale, faces="off")


def upscale(method: str, low: np.ndarray, scale: int) -> tuple[np.ndarray, str | None]:
    """`low` enlarged `scale` times by the method; and the model it used (None for non-networks)."""
    import cv2

    size = (low.shape[1] * scale, low.shape[0] * scale)
    if method in BASELINES:
        flag = cv2.INTER_CUBIC if method == "bicubic" else cv2.INTER_LANCZOS4
        return cv2.resize(low, size, interpolation=flag), None
    settings = method_settings(method, scale)
    out, used = enhance_array(low, settings, name=method)
    return out.image, used.model


def score_photo(
    name: str,
    photo: np.ndarray,
    methods: Iterable[str] = METHODS,
    *,
    scale: int = 4,
    keep: Callable[[str, np.ndarray], None] | None = None,
) -> list[QualityScore]:
    """Every method on one photo; `keep(method, image)` sees each result (for side-by-side pictures)."""
    reference, low = shrink(photo, scale)
    if keep:
        keep("input", low)
    scores = []
    for method in methods:
        started = time.perf_counter()
        image, model = upscale(method, low, scale)
        seconds = time.perf_counter() - started
        if keep:
            keep(method, image)
        scores.append(
            QualityScore(
                name,
                method,
                round(psnr(reference, image), 2),
                round(ssim(reference, image), 4),
                round(niqe(image), 3),
                round(seconds, 2),
                model,
            )
        )
    return scores


def mean_scores(scores: list[QualityScore]) -> list[QualityScore]:
    """One row per method: the mean over the photos (photo "mean")."""
    methods = list(dict.fromkeys(s.method for s in scores))
    rows = []
    for method in methods:
        mine = [s for s in scores if s.method == method]
        rows.append(
            QualityScore(
                "mean",
                method,
                round(statistics.mean(s.psnr for s in mine), 2),
                round(statistics.mean(s.ssim for s in mine), 4),
                round(statistics.mean(s.niqe for s in mine), 3),
                round(statistics.mean(s.seconds for s in mine), 2),
                ",".join(sorted({s.model for s in mine if s.model})) or None,
            )
        )
    return rows


def table_rows(scores: list[QualityScore]) -> list[dict]:
    """Rows for a Prefect table artifact or a printed table: the photos, then the means."""
    return [asdict(s) for s in [*scores, *mean_scores(scores)]]


def format_table(scores: list[QualityScore]) -> str:
    """A fixed-width text table (bench output)."""
    lines = [f"{'photo':10} {'method':40} {'PSNR dB':>8} {'SSIM':>7} {'NIQE':>7} {'seconds':>8}  model"]
    for s in [*scores, *mean_scores(scores)]:
        lines.append(
            f"{s.photo:10} {s.method:40} {s.psnr:8.2f} {s.ssim:7.4f} {s.niqe:7.3f} {s.seconds:8.2f}  "
            f"{s.model or ''}"
        )
    return "\n".join(lines)


def side_by_side(
    panels: list[tuple[str, np.ndarray]], dest: str | Path, *, height: int = 256, quality: int = 88
) -> Path:
    """Labelled panels in a row, each scaled to `height` (nearest neighbour, so pixels stay honest)."""
    import cv2
    import numpy as np

    row = []
    for label, image in panels:
        width = round(image.shape[1] * height / image.shape[0])
        panel = cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)
        cv2.rectangle(panel, (0, 0), (width, 18), (0, 0, 0), -1)
        cv2.putText(panel, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
        row += [panel, np.full((height, 4, 3), 255, np.uint8)]
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(dest.suffix, np.hstack(row[:-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ConfigError(f"cannot encode {dest.suffix} pictures")
    with atomic_path(dest) as tmp:
        data.tofile(tmp)
    return dest


PANELS = ("input", "bicubic", "realesrgan-ncnn:realesr-animevideov3", "default", "original")


def score_and_picture(
    path: str | Path, methods: Iterable[str], scale: int, pictures: str | Path
) -> tuple[list[QualityScore], list[Path]]:
    """Score one photo file and save side-by-side pictures of it (whole, and each face found) to `pictures`.

    Panels: the shrunk input (pixels enlarged as they are), bicubic, the anime model, the default, the
    original: whichever of those were measured."""
    import cv2

    from stages.enhance.content import find_faces
    from stages.enhance.imaging import read_image

    picture = read_image(path, EnhanceSettings(scale=scale))
    results: dict[str, np.ndarray] = {}
    scores = score_photo(
        picture.path.stem, picture.bgr, methods, scale=scale, keep=lambda m, im: results.setdefault(m, im)
    )
    reference, low = shrink(picture.bgr, scale)
    results["original"] = reference
    size = (reference.shape[1], reference.shape[0])
    results["input"] = cv2.resize(low, size, interpolation=cv2.INTER_NEAREST)
    panels = [(name.rpartition(":")[2], results[name]) for name in PANELS if name in results]
    out_dir, stem = Path(pictures), picture.path.stem
    saved = [side_by_side(panels, out_dir / f"{stem}.jpg")]
    for n, face in enumerate(find_faces(low), start=1):
        margin = face.width // 3
        x0, y0 = max(0, (face.x - margin) * scale), max(0, (face.y - margin) * scale)
        x1, y1 = (face.x + face.width + margin) * scale, (face.y + face.height + margin) * scale
        crops = [(label, image[y0:y1, x0:x1]) for label, image in panels]
        saved.append(side_by_side(crops, out_dir / f"{stem}-face{n}.jpg"))
    return scores, saved


def _score_run_name() -> str:
    from prefect.runtime import task_run

    return f"yardstick {Path(str(task_run.parameters.get('path', '?'))).name}"


score_photo_task = task(name="enhance-yardstick-photo", task_run_name=_score_run_name, cache_policy=NONE)(
    score_and_picture
)
