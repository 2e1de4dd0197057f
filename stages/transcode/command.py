"""The ffmpeg command for one preset (built with ffmpeg-python) and running it with progress and a timeout.

ffmpeg runs as a subprocess with a hard timeout of its own (a Prefect task timeout cannot interrupt
native code) and `-progress pipe:1`, parsed into a progress callback.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from core.environment import check_environment
from core.errors import StageError, StageTimeout
from core.interrupt import child_failed, child_failure
from core.media import require_tool
from core.outputs import full_disk_error
from stages.transcode.geometry import plan_geometry, thumbnail_time
from stages.transcode.nvenc import video_encoder
from stages.transcode.presets import STAGE, TranscodePreset
from stages.transcode.probe import StreamFacts

TIMEOUT_ENV = "YIVIDEO_TRANSCODE_TIMEOUT_S"

ProgressCallback = Callable[[float], None]


def build_command(
    source_path: str | Path,
    output_path: str | Path,
    preset: TranscodePreset,
    source: StreamFacts,
    *,
    hardware: bool = False,
    gpu_index: int | None = None,
    progress: bool = True,
) -> list[str]:
    """The ffmpeg argv for one preset (ffmpeg-python builds the filter graph and maps the streams).

    With `hardware`, NVDEC decodes and NVENC encodes on GPU `gpu_index` (the slot's device) when given.
    """
    import ffmpeg

    geometry = plan_geometry(source.width, source.height, preset)
    encoder = video_encoder(preset, hardware=hardware)
    input_options: dict[str, object] = {}
    if hardware:
        input_options["hwaccel"] = "cuda"  # NVDEC decodes; frames come back to memory for the CPU scaler
        if gpu_index is not None:
            input_options["hwaccel_device"] = gpu_index
    if preset.kind == "thumbnail":
        input_options["ss"] = f"{thumbnail_time(preset, source.video_duration, source.fps):.3f}"
    media = ffmpeg.input(str(source_path), **input_options)
    picture = media["v:0"].filter("scale", geometry.scaled_width, geometry.scaled_height)
    if (geometry.out_width, geometry.out_height) != (geometry.scaled_width, geometry.scaled_height):
        picture = picture.filter(
            "pad", geometry.out_width, geometry.out_height, "(ow-iw)/2", "(oh-ih)/2", color="black"
        )
    picture = picture.filter("setsar", 1)
    streams = [picture]
    options: dict[str, object] = {"vcodec": encoder}
    if preset.kind == "thumbnail":
        options.update({"frames:v": 1, "q:v": preset.jpeg_quality, "f": "image2", "update": 1})
    else:
        streams[0] = picture.filter("format", "yuv420p")
        options.update(_video_options(preset, encoder))
        if hardware and gpu_index is not None:
            options["gpu"] = gpu_index
        if preset.audio and source.has_audio:
            sound = media["a:0"]
            if preset.loudnorm is not None:
                norm = preset.loudnorm
                levels = {"I": norm.integrated, "TP": norm.true_peak, "LRA": norm.loudness_range}
                sound = sound.filter("loudnorm", **{k: f"{v:g}" for k, v in levels.items() if v is not None})
            streams.append(sound)
            options.update(
                {
                    "acodec": "libmp3lame" if preset.audio_codec == "mp3" else "aac",
                    "b:a": preset.audio_bitrate,
                    "ar": preset.audio_rate,
                    "ac": preset.audio_channels,
                }
            )
        else:
            options["an"] = None
        if preset.max_duration is not None:
            options["t"] = f"{preset.max_duration:.3f}"
        options.update({"movflags": "+faststart", "f": "mp4"})
    out = ffmpeg.output(*streams, str(output_path), **options)
    global_args = ["-hide_banner", "-nostdin", "-loglevel", "error"]
    if progress:
        global_args += ["-progress", "pipe:1", "-nostats"]
    return out.global_args(*global_args).overwrite_output().compile(cmd=require_tool("ffmpeg"))


def _video_options(preset: TranscodePreset, encoder: str) -> dict[str, object]:
    options: dict[str, object] = {}
    if encoder.endswith("_nvenc"):
        options.update(
            {"preset": preset.nvenc_speed, "rc": "vbr", "cq": preset.crf, "b:v": preset.video_bitrate or 0}
        )
    else:
        options["preset"] = preset.speed
        if preset.video_bitrate:
            options["b:v"] = preset.video_bitrate
        else:
            options["crf"] = preset.crf
    if encoder == "libx265":
        options["x265-params"] = "log-level=error"
    if preset.video_codec == "h265":
        options["tag:v"] = "hvc1"  # the HEVC tag Apple players need in MP4
    if preset.max_bitrate:
        options["maxrate"] = preset.max_bitrate
    if preset.buffer_size:
        options["bufsize"] = preset.buffer_size
    if preset.fps:
        options["r"] = preset.fps
    if preset.gop:
        options["g"] = preset.gop
    return options


def default_timeout(duration: float) -> float:
    """Generous wall-time limit for one run when none was given: 120 s + 20 s per second of output."""
    return 120.0 + 20.0 * max(duration, 0.0)


def timeout_from_environment() -> float | None:
    """A deployment's ffmpeg time limit per preset (YIVIDEO_TRANSCODE_TIMEOUT_S), read and checked once as
    a run starts (a bad value: ConfigError naming the variable, before any stage), then given to each
    stage as its `timeout` like the flow's parameter; None when unset. Stages never read it themselves."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return None
    check_environment({TIMEOUT_ENV: raw})
    return float(raw)


def run_ffmpeg(
    cmd: Sequence[str],
    *,
    timeout: float,
    duration: float,
    subject: str | Path,
    on_progress: ProgressCallback | None = None,
) -> None:
    """Run ffmpeg with `-progress pipe:1`, reporting done/`duration` (0..1); killed at `timeout` seconds."""
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        watchdog = threading.Timer(timeout, kill)
        watchdog.daemon = True
        watchdog.start()
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                key, _, value = raw.decode("ascii", "replace").strip().partition("=")
                if on_progress is None:
                    continue
                if key == "out_time_us" and value.lstrip("-").isdigit() and duration > 0:
                    on_progress(min(1.0, max(0.0, int(value) / 1e6 / duration)))
                elif key == "progress" and value == "end":
                    on_progress(1.0)
            proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        if timed_out.is_set():
            raise StageTimeout(STAGE, subject, f"ffmpeg timed out after {timeout:.0f} s")
        if child_failed(proc.returncode):
            if full := full_disk_error(cmd[-1]):
                raise full
            stderr.seek(0)
            tail = stderr.read().decode("utf-8", "replace").strip().splitlines()[-3:]
            raise StageError(STAGE, subject, child_failure("ffmpeg", proc.returncode, " | ".join(tail)))
