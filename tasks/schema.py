"""The contracts between stages, defined once: every stage takes and returns these dataclasses.

Capabilities append their own section here (subtitles, speech, transcode, enhance) so a reader finds
every payload that crosses a stage boundary in one place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def to_jsonable(obj: Any) -> Any:
    """Dataclasses (nested), paths and tuples to plain JSON types."""
    if hasattr(obj, "__dataclass_fields__"):
        return {k: to_jsonable(v) for k, v in asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ---------------------------------------------------------------- media
@dataclass(frozen=True)
class MediaInfo:
    """What ffprobe says about an input; `kind` is video, audio or image by probing, not by extension."""

    path: Path
    kind: str
    duration: float
    width: int = 0
    height: int = 0
    fps: float = 0.0
    video_codec: str | None = None
    audio_codec: str | None = None
    has_audio: bool = False
    size_bytes: int = 0


# ---------------------------------------------------------------- subtitles (burned-in OCR)
@dataclass(frozen=True)
class Band:
    """The subtitle band in pixels of the source frame (x0, y0 inclusive; x1, y1 exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int
    source: str = "auto"  # "auto" (detected), "user" (given as fractions) or "none"
    static_boxes: tuple[tuple[int, int, int, int], ...] = ()  # logos/clocks inside the frame, ignored

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def is_empty(self) -> bool:
        return self.width <= 0 or self.height <= 0


@dataclass(frozen=True)
class Keyframe:
    """A sampled frame whose subtitle band changed; it stands for [start, end) of the video."""

    index: int
    start: float
    end: float
    image_path: Path  # the band strip, later the band crop (PNG)
    change: float = 1.0  # text-signal change from the previous kept sample (1.0: all new)


@dataclass(frozen=True)
class KeyframeSet:
    video: Path
    band: Band
    sample_fps: float
    duration: float
    frames: tuple[Keyframe, ...]
    samples_decoded: int


@dataclass(frozen=True)
class StitchedBatch:
    """Several band crops stacked vertically so OCR runs once per batch; offsets map lines back."""

    image_path: Path
    keyframe_indices: tuple[int, ...]
    y_offsets: tuple[int, ...]  # top row of each crop inside the stitched image
    heights: tuple[int, ...]


@dataclass(frozen=True)
class OcrLine:
    text: str
    confidence: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the crop's coordinates


@dataclass(frozen=True)
class FrameText:
    """OCR of one keyframe: its lines top to bottom, and their joined text."""

    keyframe_index: int
    start: float
    end: float
    lines: tuple[OcrLine, ...]

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    @property
    def confidence(self) -> float:
        return min((line.confidence for line in self.lines), default=0.0)


@dataclass(frozen=True)
class SubtitleEvent:
    index: int
    start: float
    end: float
    text: str
    confidence: float


@dataclass(frozen=True)
class SubtitleResult:
    video: Path
    events: tuple[SubtitleEvent, ...]
    band: Band
    srt_path: Path
    json_path: Path
    txt_path: Path
    stage_seconds: dict[str, float] = field(default_factory=dict)
