"""Transcode presets as a Prefect block: the seven of the GPU transcoding seed, plus the user's own.

Users add or change presets without touching the flow: save a `TranscodePresets` document in the UI (a
form: one row per preset, its name and typed settings), or in code
`TranscodePresets(presets=[NamedPreset(name="tiny", settings=TranscodePreset(...))]).save("mine")`, and
pass its name as `presets_block=` (or set YIVIDEO_TRANSCODE_PRESETS for a deployment); or hand
`custom_presets={name: TranscodePreset(...)}` to the flow. The shipped presets are always there
underneath: a saved entry of the same name replaces one. Documents saved when `presets` was a map
(`{name: settings}`) still load. Figures follow the seed (bitrates, CRF, 25 fps and GOP 250 for the
HEVC renditions, loudnorm targets); audio is AAC rather than the seed's MP3-in-MP4, which more players accept.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import BaseModel, ConfigDict, Field, field_validator

from blocks.loader import load_block
from stages.transcode.presets import LoudnessNorm, TranscodePreset

PRESETS_ENV = "YIVIDEO_TRANSCODE_PRESETS"  # name of a saved TranscodePresets document (deployments)

SEED_PRESETS: dict[str, TranscodePreset] = {
    "mp4_standard": TranscodePreset(
        description="standard-definition MP4: H.264 in 848x480, 800 kb/s peak, AAC",
        width=848, height=480, crf=23, max_bitrate="800k", buffer_size="1600k",
    ),
    "mp4_smooth": TranscodePreset(
        description="low-bandwidth MP4: H.264 in 640x360, 400 kb/s peak, AAC",
        width=640, height=360, crf=25, max_bitrate="400k", buffer_size="800k",
    ),
    "hdlbr_h265": TranscodePreset(
        description="high-quality HEVC at the source size, 6 Mb/s peak, 25 fps, loudness -17 LUFS",
        video_codec="h265", crf=20, max_bitrate="6000k", buffer_size="12000k", fps=25, gop=250,
        loudnorm=LoudnessNorm(integrated=-17, true_peak=-1, loudness_range=11),
    ),
    "lcd_h265": TranscodePreset(
        description="HEVC for LCD screens at the source size, CRF 22, 25 fps, loud (-10 LUFS) audio",
        video_codec="h265", crf=22, fps=25, gop=250, loudnorm=LoudnessNorm(integrated=-10),
    ),
    "h265_mute": TranscodePreset(
        description="HEVC at the source size without audio, 2867 kb/s, 25 fps",
        video_codec="h265", video_bitrate="2867k", max_bitrate="2867k", buffer_size="5734k", fps=25,
        gop=250, audio=False,
    ),
    "custom_mute_preview": TranscodePreset(
        description="short muted preview: the first 10 s in H.264 at the source size, CRF 23, 25 fps",
        crf=23, fps=25, gop=250, audio=False, max_duration=10.0,
    ),
    "thumbnail": TranscodePreset(
        description="JPG thumbnail of the frame at 4 s (mid-video when shorter), letterboxed to 1280x720",
        kind="thumbnail", width=1280, height=720, fit="pad", upscale=True, thumbnail_at=4.0, jpeg_quality=2,
    ),
}  # fmt: skip


class NamedPreset(BaseModel):
    """One row of the block's form: a preset's name, then its settings (each a typed, described field)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="the preset's name (letters, digits, _ and -); a shipped name replaces that preset",
    )
    settings: TranscodePreset = Field(
        default_factory=TranscodePreset,
        description="what it renders: box, codec, quality, audio, cut, thumbnail",
    )


def named(presets: dict[str, TranscodePreset]) -> list[NamedPreset]:
    return [NamedPreset(name=name, settings=preset) for name, preset in presets.items()]


class TranscodePresets(Block):
    """Named transcode presets; entries here add to (or replace) the shipped seed presets."""

    _block_type_name = "YiVideo Transcode Presets"
    _block_type_slug = "yivideo-transcode-presets"

    presets: list[NamedPreset] = Field(
        default_factory=lambda: named(SEED_PRESETS),
        description="named presets: box, codec, quality, audio, preview length, thumbnail time",
    )
    default_presets: list[str] = Field(
        default_factory=lambda: ["mp4_standard", "thumbnail"],
        description="what the flow renders when it is given no preset names",
    )

    @field_validator("presets", mode="before")
    @classmethod
    def _from_map(cls, value: Any) -> Any:
        """A document saved when presets were a map (`{name: settings}`) loads as the same rows."""
        if isinstance(value, dict):
            return [{"name": name, "settings": settings} for name, settings in value.items()]
        return value

    def known(self, extra: dict[str, TranscodePreset] | None = None) -> dict[str, TranscodePreset]:
        """Every usable preset: the seeds, then this document's entries, then `extra` (code) on top."""
        return {**SEED_PRESETS, **{p.name: p.settings for p in self.presets}, **(extra or {})}


def load_presets(block_name: str | None = None) -> TranscodePresets:
    """The document named `block_name` (or by YIVIDEO_TRANSCODE_PRESETS); the shipped presets otherwise.

    Without a name no API call is made, so tests, notebooks and `python -m flows.transcode` work offline.
    """
    return load_block(TranscodePresets, block_name, env=PRESETS_ENV)
