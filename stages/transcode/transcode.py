"""Transcode one video with one preset: plan the frame size, build the ffmpeg command, run it, check it.

The command is built with ffmpeg-python from a typed `TranscodePreset`. NVENC (h264_nvenc/hevc_nvenc, with
NVDEC decoding) is used when the host has a CUDA device and a test encode with that encoder succeeds (ffmpeg
lists the NVENC encoders even on hosts without a GPU); libx264/libx265 otherwise. ffmpeg runs as a subprocess
with a hard timeout of its own and `-progress pipe:1`, parsed into a progress callback. Every output is
written to a temp file, probed (codec, frame size, audio present or absent, duration within two frames of
what was asked) and only then renamed into place; a failed check raises `OutputCheckError` with the reasons.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prefect import task
from prefect.cache_policies import NONE
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.errors import ConfigError, MediaInputError, StageError
from core.media import ffprobe_command, require_tool, run_media_command, video_and_audio_streams
from core.outputs import atomic_path
from core.schema import Rendition
from gpu.slot import cuda_device_count, host_name

STAGE = "transcode"
NVENC_ENV = "YIVIDEO_NVENC"  # auto (default): NVENC where it works | never: always libx264/libx265
NVENC_SESSIONS_ENV = "YIVIDEO_NVENC_SESSIONS"  # cap of the per-host "nvenc:<host>" limit when first created
DEFAULT_NVENC_SESSIONS = 3  # GeForce drivers allow 3-8 concurrent sessions; data-centre cards more
TIMEOUT_ENV = "YIVIDEO_TRANSCODE_TIMEOUT_S"
X264_SPEEDS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
NVENC_SPEEDS = ("p1", "p2", "p3", "p4", "p5", "p6", "p7")
CODEC_NAMES = {"h264": "h264", "h265": "hevc"}  # preset codec -> ffprobe codec_name
_BITRATE = r"^\d+(\.\d+)?[kM]?$"

ProgressCallback = Callable[[float], None]


class OutputCheckError(StageError):
    """A finished ffmpeg run produced an output that fails its checks (wrong size, codec, duration...)."""


# ---------------------------------------------------------------- presets (typed; held by blocks/presets.py)
class LoudnessNorm(BaseModel):
    """EBU R128 loudness normalisation (ffmpeg's loudnorm): integrated LUFS, true peak dBTP, range LU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    integrated: float = Field(-24.0, ge=-70, le=-5, description="target integrated loudness (I), LUFS")
    true_peak: float | None = Field(None, ge=-9, le=0, description="maximum true peak (TP), dBTP")
    loudness_range: float | None = Field(None, ge=1, le=50, description="target loudness range (LRA), LU")


class TranscodePreset(BaseModel):
    """One named rendition: an MP4 (H.264/H.265, with or without audio, optionally cut short) or a JPG.

    `width`x`height` is a box: the picture is scaled to fit it keeping its aspect ratio (`fit="contain"`,
    the box turns with portrait input when `follow_orientation`), or letterboxed to exactly the box
    (`fit="pad"`). Without a box the source size is kept. Sizes are made even for 4:2:0 video.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    kind: Literal["video", "thumbnail"] = "video"
    video_codec: Literal["h264", "h265"] = Field("h264", description="video only; a thumbnail is JPEG")
    width: int | None = Field(None, ge=16, le=8192, description="box width (None: source size)")
    height: int | None = Field(None, ge=16, le=8192, description="box height (None: source size)")
    fit: Literal["contain", "pad"] = "contain"
    follow_orientation: bool = Field(True, description="portrait input gets the box turned to portrait")
    upscale: bool = Field(False, description="scale small inputs up to the box (default: never enlarge)")
    fps: float | None = Field(None, gt=0, le=240, description="output frame rate (None: the source's)")
    gop: int | None = Field(None, ge=1, le=1000, description="keyframe interval in frames (-g)")
    crf: int = Field(23, ge=0, le=51, description="constant quality (CRF for x264/x265, CQ for NVENC)")
    video_bitrate: str | None = Field(None, pattern=_BITRATE, description="average bitrate, replaces crf")
    max_bitrate: str | None = Field(None, pattern=_BITRATE, description="peak bitrate cap (-maxrate)")
    buffer_size: str | None = Field(None, pattern=_BITRATE, description="rate-control buffer (-bufsize)")
    speed: str = Field("fast", description="x264/x265 preset: ultrafast ... veryslow")
    nvenc_speed: str = Field("p4", description="NVENC preset: p1 (fastest) ... p7 (best)")
    audio: bool = Field(True, description="keep the first audio track (when the input has one)")
    audio_codec: Literal["aac", "mp3"] = "aac"
    audio_bitrate: str = Field("128k", pattern=_BITRATE)
    audio_rate: int = Field(44100, ge=8000, le=192000)
    audio_channels: int = Field(2, ge=1, le=8)
    loudnorm: LoudnessNorm | None = None
    max_duration: float | None = Field(None, gt=0, description="cut the output after this many seconds")
    thumbnail_at: float = Field(
        4.0, ge=0, description="thumbnail: the frame at this second (mid-video if past)"
    )
    jpeg_quality: int = Field(2, ge=1, le=31, description="thumbnail: -q:v (1 best ... 31 worst)")

    @model_validator(mode="after")
    def _consistent(self) -> TranscodePreset:
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height (a box), or neither (keep the source size)")
        if self.width is not None and (self.width % 2 or self.height % 2):
            raise ValueError(f"box {self.width}x{self.height} must have even sides (4:2:0 video)")
        if self.fit == "pad" and self.width is None:
            raise ValueError("fit='pad' needs a box (width and height)")
        if self.speed not in X264_SPEEDS:
            raise ValueError(f"speed {self.speed!r} is not one of {', '.join(X264_SPEEDS)}")
        if self.nvenc_speed not in NVENC_SPEEDS:
            raise ValueError(f"nvenc_speed {self.nvenc_speed!r} is not one of {', '.join(NVENC_SPEEDS)}")
        return self

    @property
    def extension(self) -> str:
        return "jpg" if self.kind == "thumbnail" else "mp4"


def resolve_presets(names: Sequence[str], known: dict[str, TranscodePreset]) -> dict[str, TranscodePreset]:
    """The presets asked for, in order; ConfigError naming every known preset when one is unknown."""
    if not names:
        raise ConfigError(f"no transcode preset given; known presets: {', '.join(sorted(known))}")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f"unknown transcode preset(s) {unknown}; known presets: {', '.join(sorted(known))}")
    return {name: known[name] for name in dict.fromkeys(names)}


# ---------------------------------------------------------------- probing
@dataclass(frozen=True)
class StreamFacts:
    """What ffprobe says about a file's first video and audio streams (inputs and outputs alike)."""

    format_name: str
    video_codec: str | None
    width: int  # as displayed: rotation and sample aspect ratio applied
    height: int
    coded_width: int
    coded_height: int
    fps: float
    video_duration: float
    frames: int
    has_audio: bool
    audio_duration: float


def _ratio(value: str | None) -> float:
    if not value or value in ("0/0", "N/A", "0:1"):
        return 0.0
    sep = "/" if "/" in value else ":" if ":" in value else None
    if sep is None:
        return float(value)
    num, den = (float(x) for x in value.split(sep, 1))
    return num / den if den else 0.0


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def probe_streams(path: str | Path, *, timeout: float = 60.0) -> StreamFacts:
    """ffprobe of the first video stream (cover art skipped) and whether there is audio."""
    proc = run_media_command(ffprobe_command(path), timeout=timeout, stage=STAGE, subject=path)
    data = json.loads(proc.stdout or b"{}")
    streams, fmt = data.get("streams", []), data.get("format", {})
    videos, audios = video_and_audio_streams(streams)
    v = videos[0] if videos else {}
    coded_w, coded_h = int(v.get("width") or 0), int(v.get("height") or 0)
    sar = _ratio(v.get("sample_aspect_ratio")) or 1.0
    width, height = round(coded_w * sar) if sar != 1.0 else coded_w, coded_h
    rotation = _rotation(v)
    if rotation in (90, 270):
        width, height = height, width
    format_duration = _float(fmt.get("duration"))
    return StreamFacts(
        format_name=str(fmt.get("format_name", "")),
        video_codec=v.get("codec_name"),
        width=width,
        height=height,
        coded_width=coded_w,
        coded_height=coded_h,
        fps=_ratio(v.get("avg_frame_rate")) or _ratio(v.get("r_frame_rate")),
        video_duration=_float(v.get("duration")) or (format_duration if v else 0.0),
        frames=int(_float(v.get("nb_frames"))),
        has_audio=bool(audios),
        audio_duration=_float(audios[0].get("duration")) if audios else 0.0,
    )


def _rotation(stream: dict) -> int:
    """Display rotation of a stream (phone videos), which ffmpeg applies while decoding (autorotate)."""
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            return int(_float(side["rotation"])) % 360
    return int(_float(stream.get("tags", {}).get("rotate"))) % 360


# ---------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Geometry:
    """The picture is scaled to `scaled_*`, then padded (centred, black) to `out_*` when they differ."""

    scaled_width: int
    scaled_height: int
    out_width: int
    out_height: int


def _even(value: float, limit: int) -> int:
    """Nearest even integer, at least 2 and at most `limit` rounded down to even."""
    return max(2, min(limit - limit % 2, 2 * round(value / 2)))


def plan_geometry(width: int, height: int, preset: TranscodePreset) -> Geometry:
    """Frame size for a `width`x`height` source as displayed: aspect ratio kept, sides even, box respected."""
    if width <= 0 or height <= 0:
        raise ValueError(f"source frame size {width}x{height} is not positive")
    if preset.width is None or preset.height is None:
        w, h = _even(width, width), _even(height, height)
        return Geometry(w, h, w, h)
    box_w, box_h = preset.width, preset.height
    if preset.follow_orientation and (height > width) != (box_h > box_w):
        box_w, box_h = box_h, box_w
    factor = min(box_w / width, box_h / height)
    if not preset.upscale:
        factor = min(factor, 1.0)
    w, h = _even(width * factor, box_w), _even(height * factor, box_h)
    if preset.fit == "pad":
        return Geometry(w, h, box_w, box_h)
    return Geometry(w, h, w, h)


def thumbnail_time(preset: TranscodePreset, duration: float) -> float:
    """The seed's frame at 4 s; mid-video when the video is too short for that."""
    return preset.thumbnail_at if preset.thumbnail_at < duration - 0.5 else max(0.0, duration / 2)


def expected_duration(preset: TranscodePreset, source: StreamFacts) -> float:
    """How long a video rendition must be: the source's video, cut to `max_duration` for previews."""
    if preset.max_duration is not None:
        return min(preset.max_duration, source.video_duration)
    return source.video_duration


# ---------------------------------------------------------------- encoders and NVENC
def video_encoder(preset: TranscodePreset, *, hardware: bool) -> str:
    if preset.kind == "thumbnail":
        return "mjpeg"
    if preset.video_codec == "h265":
        return "hevc_nvenc" if hardware else "libx265"
    return "h264_nvenc" if hardware else "libx264"


@functools.cache
def listed_encoders() -> frozenset[str]:
    """Encoders this ffmpeg build has (a listed NVENC encoder still needs a GPU and driver to work)."""
    cmd = [require_tool("ffmpeg"), "-hide_banner", "-encoders"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False).stdout
    return frozenset(re.findall(r"^ [VAS][A-Z.]{5} (\S+)", out, flags=re.MULTILINE))


@functools.cache
def encoder_works(encoder: str) -> bool:
    """A 0.2 s test encode: the only reliable sign that NVENC has a device, a driver and a free session."""
    if encoder not in listed_encoders():
        return False
    cmd = [
        require_tool("ffmpeg"),
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "color=c=black:s=256x256:r=25:d=0.2",
        "-c:v",
        encoder,
        "-f",
        "null",
        "-",
    ]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=60, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def nvenc_usable(preset: TranscodePreset) -> bool:
    """NVENC for this preset on this host: a CUDA device, YIVIDEO_NVENC not 'never', a working encoder."""
    if preset.kind != "video" or os.environ.get(NVENC_ENV, "auto").strip().lower() == "never":
        return False
    return cuda_device_count() > 0 and encoder_works(video_encoder(preset, hardware=True))


def nvenc_limit_name(host: str | None = None) -> str:
    """`nvenc:<host>`, with the host part of the GPU limits (`gpu:<host>:<index>`, YIVIDEO_GPU_HOST)."""
    return f"nvenc:{host or host_name()}"


def nvenc_session_cap() -> int:
    """The NVENC session cap a new per-host limit gets (YIVIDEO_NVENC_SESSIONS, default 3)."""
    raw = os.environ.get(NVENC_SESSIONS_ENV, "").strip()
    try:
        cap = int(raw) if raw else DEFAULT_NVENC_SESSIONS
    except ValueError as exc:
        raise ConfigError(f"{NVENC_SESSIONS_ENV}={raw!r} is not a whole number of NVENC sessions") from exc
    if cap < 1:
        raise ConfigError(f"{NVENC_SESSIONS_ENV}={cap} must be at least 1")
    return cap


def ensure_nvenc_limit(name: str) -> int:
    """Create the per-host NVENC limit with the configured cap if it is missing; keep one edited in the UI."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name).limit
        except ObjectNotFound:
            pass
        cap = nvenc_session_cap()
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=cap))
        except ObjectAlreadyExists:  # another task on this host created it first
            return client.read_global_concurrency_limit_by_name(name).limit
        return cap


@contextlib.contextmanager
def nvenc_session(host: str | None = None, *, timeout: float | None = None) -> Iterator[str]:
    """Hold one unit of the host's "nvenc:<host>" limit: NVENC sessions per host are capped by the driver."""
    from prefect.concurrency.sync import concurrency

    name = nvenc_limit_name(host)
    ensure_nvenc_limit(name)
    with concurrency(name, occupy=1, timeout_seconds=timeout, strict=True):
        yield name


# ---------------------------------------------------------------- the ffmpeg command
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
        input_options["ss"] = f"{thumbnail_time(preset, source.video_duration):.3f}"
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


# ---------------------------------------------------------------- running ffmpeg with progress
def default_timeout(duration: float) -> float:
    """Generous wall-time limit for one run: YIVIDEO_TRANSCODE_TIMEOUT_S, else 120 s + 20 s per second."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    return float(raw) if raw else 120.0 + 20.0 * max(duration, 0.0)


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
            raise StageError(STAGE, subject, f"ffmpeg timed out after {timeout:.0f} s")
        if proc.returncode != 0:
            stderr.seek(0)
            tail = stderr.read().decode("utf-8", "replace").strip().splitlines()[-3:]
            raise StageError(STAGE, subject, f"ffmpeg exited {proc.returncode}: {' | '.join(tail)}")


# ---------------------------------------------------------------- checks
def check_output(
    path: str | Path, preset: TranscodePreset, source: StreamFacts, *, subject: str | Path
) -> StreamFacts:
    """Probe a finished output; OutputCheckError listing every check it fails."""
    geometry = plan_geometry(source.width, source.height, preset)
    try:
        out = probe_streams(path)
    except StageError as exc:
        raise OutputCheckError(STAGE, subject, f"output is unreadable: {exc.cause}") from exc
    problems: list[str] = []
    want_codec = "mjpeg" if preset.kind == "thumbnail" else CODEC_NAMES[preset.video_codec]
    if out.video_codec != want_codec:
        problems.append(f"video codec is {out.video_codec}, expected {want_codec}")
    if (out.width, out.height) != (geometry.out_width, geometry.out_height):
        problems.append(
            f"frame is {out.width}x{out.height}, expected {geometry.out_width}x{geometry.out_height}"
        )
    if preset.kind == "thumbnail":
        if out.format_name not in ("image2", "jpeg_pipe"):
            problems.append(f"format is {out.format_name}, expected a JPEG image")
    else:
        want_audio = preset.audio and source.has_audio
        if out.has_audio != want_audio:
            problems.append(
                f"audio is {'present' if out.has_audio else 'absent'}, expected "
                f"{'present' if want_audio else 'absent'}"
            )
        want = expected_duration(preset, source)
        frame = 1.0 / (preset.fps or source.fps or out.fps or 25.0)
        tolerance = 2 * frame + 1e-3
        if abs(out.video_duration - want) > tolerance:
            problems.append(
                f"video lasts {out.video_duration:.3f} s, expected {want:.3f} s "
                f"(within {tolerance:.3f} s; truncated or corrupt input?)"
            )
        if (
            want_audio
            and abs(out.audio_duration - min(want, source.audio_duration or want)) > tolerance + 0.05
        ):
            problems.append(f"audio lasts {out.audio_duration:.3f} s, expected about {want:.3f} s")
    if problems:
        raise OutputCheckError(
            STAGE, subject, f"{preset.kind} output failed its checks: " + "; ".join(problems)
        )
    return out


# ---------------------------------------------------------------- the stage
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


def _retry_transient(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's retry_condition_fn
    """Retry an ffmpeg crash or timeout once; bad input, bad config and failed checks fail the same again."""
    try:
        state.result()
    except (MediaInputError, ConfigError, OutputCheckError):
        return False
    except Exception:
        return True
    return True


class _Throttled:
    """Progress to a Prefect artifact every few seconds: each update is an API call and server CPU time."""

    def __init__(self, artifact_id, every: float = 5.0) -> None:  # noqa: ANN001 - a UUID
        self.artifact_id, self.every, self.last, self.shown = artifact_id, every, 0.0, 0.0

    def __call__(self, fraction: float) -> None:
        from prefect.artifacts import update_progress_artifact

        now = time.monotonic()
        if now - self.last >= self.every and self.shown + 0.01 <= fraction < 1.0:
            self.last, self.shown = now, fraction
            update_progress_artifact(self.artifact_id, round(100.0 * fraction, 1))


@task(
    name="transcode",
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=_retry_transient,
    cache_policy=NONE,
    tags=["gpu"],
)
def transcode_task(
    video: Path, name: str, preset: TranscodePreset, out_dir: Path, stem: str, timeout: float | None = None
) -> Rendition:
    """GPU-capable: NVENC runs hold a GPU slot and one unit of the host's NVENC session limit."""
    from prefect import get_run_logger
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    from gpu.slot import gpu_slot

    logger = get_run_logger()
    progress = create_progress_artifact(0.0, description=f"{name} of {Path(video).name}")
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
                on_progress=_Throttled(progress),
            )
    update_progress_artifact(progress, 100.0)
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
