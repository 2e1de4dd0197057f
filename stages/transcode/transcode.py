"""Transcode one video with one preset: plan the frame size, build the ffmpeg command, run it, check it.

The pieces live beside this module: presets (typed presets), probe (ffprobe facts), geometry (frame size),
nvenc (encoder choice, NVENC sessions), command (the ffmpeg argv and its run), checks (the output probe).
NVENC (with NVDEC decoding) is used when the host has a CUDA device and a test encode with that encoder
succeeds; libx264/libx265 otherwise. Every output is written to a temp file, probed and only then renamed
into place; a failed check raises `OutputCheckError` with the reasons.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from core.errors import MediaInputError
from core.outputs import atomic_path
from core.progress import StageProgress
from core.schema import Rendition
from gpu.devices import GPU_CAPABLE_TAG
from gpu.limits import nvenc_session
from stages.transcode.checks import check_output
from stages.transcode.command import ProgressCallback, build_command, default_timeout, run_ffmpeg
from stages.transcode.geometry import expected_duration
from stages.transcode.nvenc import nvenc_usable, video_encoder
from stages.transcode.presets import STAGE, TranscodePreset
from stages.transcode.probe import probe_streams


def rendition_path(out_dir: str | Path, stem: str, name: str, preset: TranscodePreset) -> Path:
    return Path(out_dir) / f"{stem}.{name}.{preset.extension}"


def transcode_preset(
    video: str | Path,
    name: str,
    preset: TranscodePreset,
    out_dir: str | Path,
    stem: str,
    *,
    hardware: bool = False,
    gpu_index: int | None = None,
    timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> Rendition:
    """Render `video` with one preset into `<out_dir>/<stem>.<name>.<ext>`, published only once checked."""
    started = time.perf_counter()
    source = probe_streams(video)
    if not source.video_codec or source.width <= 0 or source.height <= 0:
        raise MediaInputError(video, "has no video stream to transcode")
    final = rendition_path(out_dir, stem, name, preset)
    subject = f"{Path(video).name} [{name}]"
    length = expected_duration(preset, source)
    with atomic_path(final) as tmp:
        cmd = build_command(video, tmp, preset, source, hardware=hardware, gpu_index=gpu_index)
        run_ffmpeg(
            cmd,
            timeout=timeout or default_timeout(length),
            duration=length,
            subject=subject,
            on_progress=on_progress,
        )
        out = check_output(tmp, preset, source, subject=subject)
    return Rendition(
        preset=name,
        path=final,
        kind=preset.kind,
        encoder=video_encoder(preset, hardware=hardware),
        video_codec=out.video_codec or "",
        width=out.width,
        height=out.height,
        has_audio=out.has_audio,
        duration=round(out.video_duration, 3) if preset.kind == "video" else 0.0,
        size_bytes=final.stat().st_size,
        seconds=round(time.perf_counter() - started, 3),
    )


@task(
    name="transcode",
    task_run_name="transcode {name}",  # `transcode mp4_smooth`: a run's presets tell apart in the UI
    cache_policy=NONE,
    tags=[GPU_CAPABLE_TAG],
)
def transcode_task(
    video: Path, name: str, preset: TranscodePreset, out_dir: Path, stem: str, timeout: float | None = None
) -> Rendition:
    """GPU-capable: NVENC runs hold a GPU slot and one unit of the host's NVENC session limit."""
    from prefect import get_run_logger

    from gpu.slot import gpu_slot

    logger = get_run_logger()
    progress = StageProgress(f"{name} of {Path(video).name}")  # with time left; every 5 s at most
    with gpu_slot(STAGE, prefer_cuda=nvenc_usable(preset)) as grant:
        gated_nvenc = grant.uses_cuda and grant.limit is not None
        with nvenc_session() if gated_nvenc else contextlib.nullcontext():
            rendition = transcode_preset(
                video,
                name,
                preset,
                out_dir,
                stem,
                hardware=grant.uses_cuda,
                gpu_index=int(grant.device.split(":")[1]) if grant.uses_cuda else None,  # CUDA ordinal
                timeout=timeout,
                on_progress=progress,
            )
    progress.done()
    logger.info(
        "%s: %s %dx%d%s, %.2f s, %.1f kB with %s in %.1f s",
        name,
        rendition.video_codec,
        rendition.width,
        rendition.height,
        "" if rendition.kind == "thumbnail" else (" +audio" if rendition.has_audio else " muted"),
        rendition.duration,
        rendition.size_bytes / 1024,
        rendition.encoder,
        rendition.seconds,
    )
    return rendition
