"""What a person waiting for an image sees: which engine and model the stage chose and about how long it will
take (before it starts), then the share done and the time left, tile by tile, in a Prefect progress artifact
of the image's own (the upload page and the batch show every progress artifact of the run)."""

from __future__ import annotations

import time

from stages.enhance.engines.realesrgan import estimate_seconds
from stages.enhance.settings import EnhanceSettings

UPDATE_EVERY_S = 1.0  # the artifact is written at most this often (each write is one API call)
# CPU seconds per input megapixel at x2 of the engines without a model plan (bench/enhance_speed.py)
OTHER_CPU_S_PER_MPX = {"opencv-classic": 2.5, "gfpgan": 60.0}


def estimate(settings: EnhanceSettings, width: int, height: int, gpu: bool = False) -> float:
    """About how many wall seconds the engine takes on this image here (idle CPU, or the GPU where the ncnn
    engine runs on one; gfpgan: its CPU time)."""
    import os

    if settings.engine == "realesrgan-ncnn":
        return estimate_seconds(
            settings.model or "waifu2x-photo", settings.scale, width, height, settings.threads, gpu
        )
    per_mpx = OTHER_CPU_S_PER_MPX.get(settings.engine, 10.0) * max(1.0, settings.scale / 2) ** 2
    return per_mpx * width * height / 1e6 / min(2, os.cpu_count() or 1)


def plan_line(
    name: str, asked: EnhanceSettings, chosen: EnhanceSettings, size: tuple[int, int], gpu: bool = False
) -> str:
    """`a.jpg 512x512 -> 1024x1024: realesrgan-ncnn waifu2x-photo (automatic: a photograph), about 4 s`."""
    width, height = size
    out = f"{round(width * chosen.scale)}x{round(height * chosen.scale)}"
    what = chosen.engine + (f" {chosen.model}" if chosen.model else "")
    why = ""
    if chosen.engine == "realesrgan-ncnn" and not asked.model:
        kind = "a drawing or animation" if chosen.model == "realesr-animevideov3" else "a photograph"
        why = f" (automatic: {kind})"
    about = _seconds(estimate(chosen, width, height, gpu)) + (" on the GPU" if gpu else "")
    return f"{name} {width}x{height} -> {out}: {what}{why}, about {about}"


def _seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class ImageProgress:
    """One image's progress artifact: created at 0 % with the plan, then the share done, tiles and time left.

    Outside a Prefect run (plain function calls, benches) it writes nothing.
    """

    def __init__(self, plan: str, expected_s: float, publish: bool = True) -> None:
        self.plan, self.expected_s = plan, expected_s
        self.started = time.monotonic()
        self.last = 0.0
        self.artifact = None
        if publish:
            from prefect.artifacts import create_progress_artifact
            from prefect.context import TaskRunContext

            if TaskRunContext.get() is not None:
                self.artifact = create_progress_artifact(0.0, description=f"{plan}; starting")

    def __call__(self, fraction: float, tiles_done: int = 0, tiles: int = 0) -> None:
        """Told by the engine after each tile; writes the artifact at most once per UPDATE_EVERY_S."""
        now = time.monotonic()
        if fraction < 1.0 and now - self.last < UPDATE_EVERY_S:
            return
        self.last = now
        self._write(fraction, self.describe(fraction, tiles_done, tiles, now - self.started))

    def describe(self, fraction: float, tiles_done: int, tiles: int, elapsed: float) -> str:
        tiles_text = f"tile {tiles_done} of {tiles}, " if tiles else ""
        if fraction >= 1.0:
            return f"{self.plan}; done in {elapsed:.1f} s"
        left = elapsed * (1 - fraction) / fraction if fraction > 0 else self.expected_s - elapsed
        return f"{self.plan}; {tiles_text}{100 * fraction:.0f} %, about {_seconds(max(0.0, left))} left"

    def done(self) -> None:
        self._write(1.0, self.describe(1.0, 0, 0, time.monotonic() - self.started))

    def _write(self, fraction: float, description: str) -> None:
        if self.artifact is None:
            return
        from prefect.artifacts import update_progress_artifact

        update_progress_artifact(self.artifact, round(100.0 * fraction, 1), description=description)
