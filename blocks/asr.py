"""Speech recognition engine settings as a Prefect block, editable in the UI and loadable by name."""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field

from core.packaged_models import PACKAGED_MODEL
from stages.speech.cues import CueSettings
from stages.speech.engines import AsrSettings


class AsrConfig(Block):
    """Which ASR engine and model a transcription uses; the flow's own parameters override these."""

    _block_type_name = "YiVideo ASR Engine"
    _block_type_slug = "yivideo-asr-engine"

    engine: Literal["faster-whisper", "whisperx"] = Field(
        "faster-whisper", description="faster-whisper (offline default) or whisperx (local models needed)"
    )
    model: str = Field(
        PACKAGED_MODEL,
        description="'base' is the packaged offline model; else a faster-whisper model name or a local "
        "CTranslate2 Whisper folder (whisperx: a local folder)",
    )
    device: str = Field(
        "auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto takes CUDA when present"
    )
    compute_type: str = Field(
        "auto",
        description="CTranslate2 compute type: auto (int8 on CPU, float16 on CUDA), int8, float16, ...",
    )
    cpu_threads: int = Field(0, ge=0, description="0: every core this worker may use")
    beam_size: int = Field(3, ge=1, le=20, description="beams searched: more is slower, a bit better")
    batch_size: int = Field(16, ge=1, le=256, description="batched pipeline / whisperx batches")
    batched_cpu: bool = Field(
        True, description="faster-whisper's batched pipeline on the CPU too (faster at the same WER)"
    )
    vad: bool = Field(True, description="Silero VAD drops non-speech before decoding")
    vad_min_silence_ms: int = Field(500, ge=0, description="VAD: a pause this long (ms) ends a speech chunk")
    language: str | None = Field(None, description="ISO code such as en, zh, de; None detects it")
    word_timestamps: bool = Field(True, description="word start/end times in the JSON")
    window_seconds: float = Field(600.0, ge=60, description="audio held in memory at once (long files)")
    diarize: bool = Field(False, description="speaker labels, an RTTM file and a speakers table")
    diarize_engine: Literal["resemblyzer", "pyannote"] = Field(
        "resemblyzer",
        description="resemblyzer (offline: Silero VAD + GE2E voice embeddings, clustered) or pyannote "
        "(needs whisperx and a local pipeline in diarize_model)",
    )
    speakers: int | None = Field(None, ge=1, description="the number of speakers when known; else estimated")
    min_speakers: int | None = Field(None, ge=1, description="diarization: at least this many speakers")
    max_speakers: int | None = Field(None, ge=1, description="diarization: at most this many speakers")
    diarize_threads: int = Field(1, ge=0, description="torch threads of the speaker encoder (0: every core)")
    speaker_similarity: float = Field(
        0.84, gt=0, description="estimating the speaker count: voices this alike (cosine) are one"
    )
    max_lines: int = Field(2, ge=1, le=4, description="subtitle cue: lines at most")
    max_line_width: int = Field(42, ge=10, le=200, description="subtitle line: columns (CJK counts two)")
    max_cue_seconds: float = Field(7.0, gt=0, description="subtitle cue: seconds at most")
    max_chars_per_second: float = Field(20.0, gt=0, description="reading speed a cue is held long enough for")
    align_models: dict[str, str] = Field(
        default_factory=dict, description="whisperx: language code -> local wav2vec2 model folder"
    )
    diarize_model: str | None = Field(
        None, description="pyannote diarization: local pipeline folder (config.yaml inside)"
    )
    vad_model: str | None = Field(
        None, description="whisperx: local pyannote segmentation checkpoint (default: whisperx's bundled one)"
    )

    def to_cue_settings(self) -> CueSettings:
        """How SRT/VTT cues are cut (the JSON keeps the full segments)."""
        return CueSettings(
            max_lines=self.max_lines,
            max_line_width=self.max_line_width,
            max_seconds=self.max_cue_seconds,
            max_cps=self.max_chars_per_second,
        )

    def to_settings(self) -> AsrSettings:
        """The plain dataclass the stages take (stages know nothing of Prefect blocks)."""
        fields = self.model_dump(exclude={"align_models"})
        known = AsrSettings.__dataclass_fields__
        return AsrSettings(
            **{k: v for k, v in fields.items() if k in known},
            align_models=tuple(sorted(self.align_models.items())),
        )
