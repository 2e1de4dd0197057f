"""Which encoder a preset gets, whether NVENC works on this host, and the per-host NVENC session limit.

ffmpeg lists the NVENC encoders even on hosts without a GPU, so a 0.2 s test encode decides; NVENC
sessions per host are capped by the driver, so an NVENC run also holds one unit of `nvenc:<host>`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import subprocess
from collections.abc import Iterator

from core.errors import ConfigError
from core.media import require_tool
from gpu.devices import cuda_device_count, host_name
from gpu.limits import ensure_limit_sync
from stages.transcode.presets import TranscodePreset

NVENC_ENV = "YIVIDEO_NVENC"  # auto (default): NVENC where it works | never: always libx264/libx265
NVENC_SESSIONS_ENV = "YIVIDEO_NVENC_SESSIONS"  # cap of the per-host "nvenc:<host>" limit when first created
DEFAULT_NVENC_SESSIONS = 3  # GeForce drivers allow 3-8 concurrent sessions; data-centre cards more


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
    return ensure_limit_sync(name, nvenc_session_cap)


@contextlib.contextmanager
def nvenc_session(host: str | None = None, *, timeout: float | None = None) -> Iterator[str]:
    """Hold one unit of the host's "nvenc:<host>" limit: NVENC sessions per host are capped by the driver."""
    from prefect.concurrency.sync import concurrency

    name = nvenc_limit_name(host)
    ensure_nvenc_limit(name)
    with concurrency(name, occupy=1, timeout_seconds=timeout, strict=True):
        yield name
