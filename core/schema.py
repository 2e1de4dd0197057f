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
    line: int = 0  # which on-screen line it shows (from the image): samples of one line share it
    # the samples just before it, (time, image), where a line its faint strokes barely signal (or a small
    # caption in a whole frame) may already be legible: OCR reads its new lines there too, so the line
    # starts when it could first be read
    lead: tuple[tuple[float, Path], ...] = ()


@dataclass(frozen=True)
class KeyframeSet:
    video: Path
    band: Band
    sample_fps: float
    duration: float
    frames: tuple[Keyframe, ...]
    samples_decoded: int
    # the decoders' errors in the part decoded (the flow's decode check: core/damage.py); None: not decoded
    damage: DecodeDamage | None = None


@dataclass(frozen=True)
class StitchedBatch:
    """Several band crops stacked vertically so OCR runs once per batch; offsets map lines back."""

    image_path: Path
    keyframe_indices: tuple[int, ...]
    y_offsets: tuple[int, ...]  # top row of each crop inside the stitched image
    heights: tuple[int, ...]
    # keyframes not stitched, read at the boxes found in the crop of an earlier keyframe of their line in
    # this batch: (follower's index, that keyframe's index, columns the follower's crop is shifted by)
    followers: tuple[tuple[int, int, int], ...] = ()


@dataclass(frozen=True)
class OcrLine:
    text: str
    confidence: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the crop's coordinates
    since: float | None = None  # read at this box from this earlier time on (a faint line's lead samples)


@dataclass(frozen=True)
class FrameText:
    """OCR of one keyframe: its lines top to bottom, and their joined text."""

    keyframe_index: int
    start: float
    end: float
    lines: tuple[OcrLine, ...]
    line: int | None = None  # the keyframe's on-screen line (Keyframe.line): reads of one line are voted

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
    # the other texts frames read for this event (voted out; most weight first): candidates a second
    # source, the speech (stages/fusion), may settle a word by; never in the SRT
    reads: tuple[str, ...] = ()


@dataclass(frozen=True)
class SubtitleResult:
    video: Path
    events: tuple[SubtitleEvent, ...]
    band: Band
    srt_path: Path
    json_path: Path
    txt_path: Path
    stage_seconds: dict[str, float] = field(default_factory=dict)
    damage: DecodeDamage | None = None  # decode errors inside the video (core/damage.py): partly done


# ---------------------------------------------------------------- pipeline (workflow_chain)
@dataclass(frozen=True)
class StageOutcome:
    """One stage of a workflow chain as it ran: how long, what it said, what files it published."""

    stage: str
    seconds: float
    summary: str
    outputs: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineResult:
    video: Path
    chain: tuple[str, ...]  # as asked
    plan: tuple[str, ...]  # as run: prerequisites pulled in ahead of the stages that need them
    run_dir: Path
    stages: tuple[StageOutcome, ...]
    events: tuple[SubtitleEvent, ...] = ()
    manifest_path: Path | None = None
    damage: DecodeDamage | None = None  # decode errors inside the video (core/damage.py): partly done


# ---------------------------------------------------------------- photo enhancement
@dataclass(frozen=True)
class EnhancedImage:
    """One image enhanced and published: where from, where to, by what, and how big before and after."""

    source: Path
    output: Path
    engine: str
    scale: float
    input_size: tuple[int, int]  # (width, height)
    output_size: tuple[int, int]
    seconds: float
    faces: int | None = None  # faces restored (gfpgan) or kept faithful (realesrgan-ncnn); None: not sought
    model: str | None = None  # the network used (realesrgan-ncnn: chosen by content unless asked for)


@dataclass(frozen=True)
class ImageFailure:
    """One image that could not be enhanced, and why (the batch goes on without it)."""

    source: Path
    error: str  # exception class, e.g. MediaInputError
    reason: str


@dataclass(frozen=True)
class EnhanceBatchResult:
    """A batch of images: what succeeded, what failed, and the ZIP of the successes."""

    run_dir: Path
    enhanced: tuple[EnhancedImage, ...]
    failed: tuple[ImageFailure, ...]
    zip_path: Path | None
    manifest_path: Path | None = None

    @property
    def total(self) -> int:
        return len(self.enhanced) + len(self.failed)

    @property
    def complete(self) -> bool:
        return not self.failed


# ---------------------------------------------------------------- transcode (renditions, thumbnails)
@dataclass(frozen=True)
class Rendition:
    """One published output of a transcode preset, as ffprobe saw it after the checks passed."""

    preset: str
    path: Path
    kind: str  # "video" or "thumbnail"
    encoder: str  # libx264, libx265, h264_nvenc, hevc_nvenc, mjpeg
    video_codec: str
    width: int
    height: int
    has_audio: bool
    duration: float  # of the video stream; 0 for a thumbnail
    size_bytes: int
    seconds: float  # wall time of the ffmpeg run and its checks


@dataclass(frozen=True)
class TranscodeResult:
    """Renditions of one video; `skipped` says why nothing ran (input not a video), else None."""

    video: Path
    renditions: tuple[Rendition, ...] = ()
    run_dir: Path | None = None
    manifest_path: Path | None = None
    skipped: str | None = None
    damage: DecodeDamage | None = None  # decode errors inside the input (core/damage.py): partly done


# ---------------------------------------------------------------- speech (ASR)
@dataclass(frozen=True)
class AudioTrack:
    """The speech stage's input: 16 kHz mono 16-bit PCM WAV extracted from `source`."""

    source: Path
    path: Path
    sample_rate: int
    duration: float


@dataclass(frozen=True)
class SpeechWord:
    start: float
    end: float
    text: str
    probability: float
    speaker: str | None = None


@dataclass(frozen=True)
class SpeechSegment:
    """One recognised stretch of speech; times in seconds of the source, never decreasing."""

    index: int
    start: float
    end: float
    text: str
    words: tuple[SpeechWord, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    speaker: str | None = None


@dataclass(frozen=True)
class SpeakerTurn:
    """One stretch of one speaker's voice (RTTM's SPEAKER line); turns of two speakers may overlap."""

    speaker: str
    start: float
    end: float


@dataclass(frozen=True)
class Diarization:
    """Who spoke when in `source`: turns in time order, the speakers found, and how."""

    source: Path
    duration: float
    turns: tuple[SpeakerTurn, ...]
    speakers: tuple[str, ...]
    engine: str


@dataclass(frozen=True)
class Transcript:
    """What the engine heard: `language` is the one given, or detected (None when nothing was said)."""

    source: Path
    language: str | None
    language_probability: float
    duration: float
    segments: tuple[SpeechSegment, ...]
    engine: str
    model: str
    device: str
    diarized: bool = False


@dataclass(frozen=True)
class TranscriptResult:
    media: Path
    transcript: Transcript
    srt_path: Path
    vtt_path: Path
    json_path: Path
    stage_seconds: dict[str, float] = field(default_factory=dict)
    diarization: Diarization | None = None
    rttm_path: Path | None = None
    damage: DecodeDamage | None = None  # decode errors in the audio (core/damage.py): partly done


# ---------------------------------------------------------------- damage inside an input
@dataclass(frozen=True)
class DecodeDamage:
    """Decode errors of one input: how many, and the media time ranges (seconds) they fell in."""

    path: Path
    errors: int = 0
    ranges: tuple[tuple[float, float], ...] = field(default_factory=tuple)
    first_error: str = ""  # the decoder's own words, for the warning

    @property
    def damaged(self) -> bool:
        return self.errors > 0

    def describe(self) -> str:
        spans = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in self.ranges)
        return f"{self.errors} decode errors at {spans} ({self.first_error})"
