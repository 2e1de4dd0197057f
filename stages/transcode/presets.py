"""Transcode presets, typed: what one rendition is (box, codec, quality, audio, preview length, thumbnail).

The shipped presets and the user's saved ones are held by blocks/presets.py; an unknown name fails before
anything runs, naming the known ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.errors import ConfigError

STAGE = "transcode"  # the stage's name in errors and GPU slots
X264_SPEEDS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
NVENC_SPEEDS = ("p1", "p2", "p3", "p4", "p5", "p6", "p7")
_BITRATE = r"^\d+(\.\d+)?[kM]?$"


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
    (`fit="pad"`). A source within 1% of the box's aspect ratio fills the box exactly (16:9 in 848x480 is
    848x480, as the seed made it, not 848x476). Without a box the source size is kept. Sizes are made even
    for 4:2:0 video.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field("", description="what the preset is for, shown with its name")
    kind: Literal["video", "thumbnail"] = Field("video", description="an MP4 video or a JPG thumbnail")
    video_codec: Literal["h264", "h265"] = Field("h264", description="video only; a thumbnail is JPEG")
    width: int | None = Field(None, ge=16, le=8192, description="box width (None: source size)")
    height: int | None = Field(None, ge=16, le=8192, description="box height (None: source size)")
    fit: Literal["contain", "pad"] = Field(
        "contain", description="contain: fit inside the box keeping the aspect; pad: letterbox to the box"
    )
    follow_orientation: bool = Field(True, description="portrait input gets the box turned to portrait")
    upscale: bool = Field(False, description="scale small inputs up to the box (default: never enlarge)")
    fps: float | None = Field(None, gt=0, le=240, description="output frame rate (None: the source's)")
    gop: int | None = Field(None, ge=1, le=1000, description="keyframe interval in frames (-g)")
    crf: int = Field(23, ge=0, le=51, description="constant quality (CRF for x264/x265, CQ for NVENC)")
    video_bitrate: str | None = Field(None, pattern=_BITRATE, description="average bitrate, replaces crf")
    max_bitrate: str | None = Field(None, pattern=_BITRATE, description="peak bitrate cap (-maxrate)")
    buffer_size: str | None = Field(None, pattern=_BITRATE, description="rate-control buffer (-bufsize)")
    speed: Literal[X264_SPEEDS] = Field(  # type: ignore[valid-type]  # the UI offers the list
        "fast", description="x264/x265 preset: ultrafast (fastest) ... veryslow (smallest file)"
    )
    nvenc_speed: Literal[NVENC_SPEEDS] = Field(  # type: ignore[valid-type]
        "p4", description="NVENC preset: p1 (fastest) ... p7 (best)"
    )
    audio: bool = Field(True, description="keep the first audio track (when the input has one)")
    audio_codec: Literal["aac", "mp3"] = Field("aac", description="audio codec inside the MP4")
    audio_bitrate: str = Field("128k", pattern=_BITRATE, description="audio bitrate (e.g. 128k)")
    audio_rate: int = Field(44100, ge=8000, le=192000, description="audio sample rate, Hz")
    audio_channels: int = Field(2, ge=1, le=8, description="audio channels (2: stereo)")
    loudnorm: LoudnessNorm | None = Field(None, description="EBU R128 loudness normalisation (None: off)")
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
