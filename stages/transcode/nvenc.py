"""Which encoder a preset gets and whether NVENC works on this host.

ffmpeg lists the NVENC encoders even on hosts without a GPU, so a 0.2 s test encode decides. NVENC
sessions per host are capped by the driver: an NVENC run also holds `gpu.limits.nvenc_session()`.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess

from core.media import require_tool
from gpu.devices import cuda_device_count
from stages.transcode.presets import TranscodePreset

NVENC_ENV = "YIVIDEO_NVENC"  # auto (default): NVENC where it works | never: always libx264/libx265


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
