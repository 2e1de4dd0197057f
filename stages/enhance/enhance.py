"""The enhance stage: one image read, enhanced by the resident engine and published, as a plain function
and as a Prefect task (the GPU slot around the engine only)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NONE

from core.errors import ConfigError, MediaInputError, StageError
from core.schema import EnhancedImage
from gpu.devices import GPU_CAPABLE_TAG
from stages.enhance.content import FaceBox, find_faces, fit_to_content, keep_faces_faithful
from stages.enhance.engines import engine_class, load_engine
from stages.enhance.engines.base import EngineOutput, EnhanceEngine, Progress
from stages.enhance.imaging import SourceImage, read_image, resize_to, target_size, write_image
from stages.enhance.progress import ImageProgress, estimate, plan_line
from stages.enhance.settings import STAGE, EnhanceSettings

if TYPE_CHECKING:
    import numpy as np

FACE_MODES = ("faithful", "off")


def check_settings(settings: EnhanceSettings) -> EnhanceSettings:
    """Reject settings that can never work, before any image is read."""
    engine_class(settings.engine)
    if not 1.0 <= settings.scale <= 4.0:
        raise ConfigError(f"scale {settings.scale} is out of range: use 1 to 4")
    if settings.max_pixels < 1 or settings.max_output_pixels < 1:
        raise ConfigError("max_pixels and max_output_pixels must be positive")
    if settings.tile and settings.tile < 32:
        raise ConfigError(f"tile {settings.tile} is too small: use 0 (no tiling) or at least 32 pixels")
    if settings.tile_pad < 0:
        raise ConfigError(f"tile_pad {settings.tile_pad} must not be negative")
    if settings.faces not in FACE_MODES:
        raise ConfigError(f"faces {settings.faces!r} is not one of {', '.join(FACE_MODES)}")
    return settings


def faces_to_keep(picture: SourceImage, settings: EnhanceSettings) -> list[FaceBox] | None:
    """The faces to keep faithful, where a generative network will run and faces are not off (CPU work:
    the task does it before taking a GPU slot); None where there is nothing to keep."""
    if settings.faces != "faithful" or not engine_class(settings.engine).invents_detail:
        return None
    return find_faces(picture.bgr)


def enhance_pixels(
    engine: EnhanceEngine,
    source: SourceImage,
    settings: EnhanceSettings,
    faces: list[FaceBox] | None = None,
    progress: Progress | None = None,
) -> EngineOutput:
    """Run the engine, keep faces faithful where a generative network ran (`faces`, found here when not
    given), and bring the result to exactly round(size x scale) (alpha is resized when published)."""
    try:
        result = engine.enhance(source.bgr, settings, progress)
    except (ConfigError, MediaInputError, StageError):
        raise
    except Exception as exc:  # a native or torch failure: name the image and the engine
        raise StageError(STAGE, source.path, f"{engine.name} failed: {type(exc).__name__}: {exc}") from exc
    image, found = result.image, result.faces
    if engine.invents_detail and settings.faces == "faithful":
        faces = find_faces(source.bgr) if faces is None else faces
        factor = image.shape[1] / source.bgr.shape[1]
        image = keep_faces_faithful(image, source.bgr, faces, factor, result.faithful)
        found = len(faces)
    size = target_size(*source.size, settings.scale)
    return EngineOutput(resize_to(image, size), found)


def enhance_array(
    image: np.ndarray, settings: EnhanceSettings, name: str = "pixels"
) -> tuple[EngineOutput, EnhanceSettings]:
    """The stage on pixels in memory (the quality yardstick): model by content, faces, exact size; and the
    settings it ran with (the model it chose)."""
    settings = fit_to_content(check_settings(settings), image)
    return enhance_pixels(load_engine(settings), SourceImage(Path(name), image, None), settings), settings


def enhance_image(
    source: str | Path, dest: str | Path, settings: EnhanceSettings, engine: EnhanceEngine | None = None
) -> EnhancedImage:
    """Read, enhance and publish one image (plain function: tests and benches call it directly)."""
    started = time.perf_counter()
    check_settings(settings)
    picture = read_image(source, settings)
    settings = fit_to_content(settings, picture.bgr)
    engine = engine or load_engine(settings)
    result = enhance_pixels(engine, picture, settings)
    return _publish(picture, result, dest, settings, started)


def _publish(
    picture: SourceImage, result: EngineOutput, dest: str | Path, settings: EnhanceSettings, started: float
) -> EnhancedImage:
    size = (int(result.image.shape[1]), int(result.image.shape[0]))
    alpha = resize_to(picture.alpha, size) if picture.alpha is not None else None
    out = write_image(dest, result.image, alpha, jpeg_quality=settings.jpeg_quality)
    return EnhancedImage(
        source=picture.path,
        output=out,
        engine=settings.engine,
        scale=settings.scale,
        input_size=picture.size,
        output_size=size,
        seconds=round(time.perf_counter() - started, 3),
        faces=result.faces,
        model=settings.model if settings.engine == "realesrgan-ncnn" else None,
    )


def _image_run_name() -> str:
    from prefect.runtime import task_run

    return f"enhance {Path(str(task_run.parameters.get('source', '?'))).name}"


@task(name="enhance-image", task_run_name=_image_run_name, cache_policy=NONE, tags=[GPU_CAPABLE_TAG])
def enhance_image_task(source: Path, dest: Path, settings: EnhanceSettings) -> EnhancedImage:
    """One image: decode and check outside the GPU slot, load + run the engine inside it, write outside."""
    from prefect import get_run_logger

    from gpu.slot import gpu_slot

    started = time.perf_counter()
    check_settings(settings)
    picture = read_image(source, settings)
    asked, settings = settings, fit_to_content(settings, picture.bgr)
    on_gpu = engine_class(settings.engine).runs_on_gpu()
    plan = plan_line(picture.path.name, asked, settings, picture.size, on_gpu)
    get_run_logger().info("%s", plan)  # what was chosen and about how long it takes, before it starts
    progress = ImageProgress(plan, estimate(settings, *picture.size, on_gpu))
    faces = faces_to_keep(picture, settings)
    with gpu_slot(STAGE, prefer_cuda=on_gpu) as grant:
        engine = load_engine(replace(settings, device=grant.device))
        result = enhance_pixels(engine, picture, settings, faces, progress)
    done = _publish(picture, result, dest, settings, started)
    progress.done()
    get_run_logger().info(
        "%s %dx%d -> %s %dx%d in %.2f s (%s, %s, %s faces)",
        picture.path.name,
        *done.input_size,
        done.output.name,
        *done.output_size,
        done.seconds,
        grant.device,
        settings.model or settings.engine,
        done.faces,
    )
    return done
