"""What every ASR engine shares: the settings, the engine interface, the model name resolution.

Engines sit behind `AsrEngine` and are chosen by `AsrSettings.engine`; heavy imports (ctranslate2, torch)
happen inside each engine's constructor, never at module import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import numpy as np
from pydantic import Field

from core.errors import ConfigError
from core.packaged_models import PACKAGED_MODEL, packaged_model_dir
from core.schema import SpeechSegment, SpeechWord


def resolve_model(name: str) -> str:
    """A local folder as is; "base" -> the packaged folder; anything else is a faster-whisper model name."""
    if name == PACKAGED_MODEL:
        return str(packaged_model_dir())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ConfigError(f"ASR model folder {name!r} has no model.bin (not a CTranslate2 Whisper model)")
        return str(path.resolve())
    if path.is_absolute() or name.startswith((".", "~")):
        raise ConfigError(f"ASR model folder {name!r} does not exist")
    return name


@dataclass(frozen=True)
class AsrSettings:
    """Engine choice, model and decoding options; `device` is "auto", "cpu" or "cuda[:N]".

    The constraints and descriptions are read by pydantic where the settings sit in a Prefect block
    (blocks/asr.py embeds this type: the UI form, validation and overrides come from here, once)."""

    engine: Annotated[
        Literal["faster-whisper", "whisperx"],
        Field(description="faster-whisper (offline default) or whisperx (local models needed)"),
    ] = "faster-whisper"
    model: Annotated[
        str,
        Field(
            description="'base' is the packaged offline model; else a faster-whisper model name or a local "
            "CTranslate2 Whisper folder (whisperx: a local folder)"
        ),
    ] = PACKAGED_MODEL
    device: Annotated[
        str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto takes CUDA when present")
    ] = "auto"
    compute_type: Annotated[
        str, Field(description="CTranslate2 compute type: auto (int8 on CPU, float16 on CUDA), int8, float16")
    ] = "auto"
    cpu_threads: Annotated[int, Field(ge=0, description="0: every core this worker may use")] = 0
    # bench/asr.py: beam 3 batched decodes ~1.8x faster than beam 5 at the same WER
    beam_size: Annotated[
        int, Field(ge=1, le=20, description="beams searched: more is slower, a bit better")
    ] = 3
    batch_size: Annotated[int, Field(ge=1, le=256, description="batched pipeline / whisperx batches")] = 16
    batched_cpu: Annotated[
        bool, Field(description="faster-whisper's batched pipeline on the CPU too (faster at the same WER)")
    ] = True
    vad: Annotated[bool, Field(description="Silero VAD drops non-speech before decoding")] = True
    vad_min_silence_ms: Annotated[
        int, Field(ge=0, description="VAD: a pause this long (ms) ends a speech chunk")
    ] = 500
    language: Annotated[str | None, Field(description="ISO code such as en, zh, de; None detects it")] = None
    word_timestamps: Annotated[bool, Field(description="word start/end times in the JSON")] = True
    window_seconds: Annotated[
        float, Field(ge=60, description="audio held in memory at once (long files)")
    ] = 600.0
    diarize: Annotated[bool, Field(description="speaker labels, an RTTM file and a speakers table")] = False
    diarize_engine: Annotated[
        Literal["resemblyzer", "pyannote"],
        Field(
            description="resemblyzer (offline: Silero VAD + GE2E voice embeddings, clustered) or pyannote "
            "(needs whisperx and a local pipeline in diarize_model)"
        ),
    ] = "resemblyzer"
    speakers: Annotated[
        int | None, Field(ge=1, description="the number of speakers when known; else estimated")
    ] = None
    min_speakers: Annotated[
        int | None, Field(ge=1, description="diarization: at least this many speakers")
    ] = None
    max_speakers: Annotated[
        int | None, Field(ge=1, description="diarization: at most this many speakers")
    ] = None
    # 1 keeps the speaker encoder beside ASR
    diarize_threads: Annotated[
        int, Field(ge=0, description="torch threads of the speaker encoder (0: every core)")
    ] = 1
    # count on short speech (< ~25 s): Ward clusters this alike are one voice
    speaker_similarity: Annotated[
        float, Field(gt=0, description="estimating the speaker count: voices this alike (cosine) are one")
    ] = 0.84
    # whisperx: local folders (it would otherwise download from the Hugging Face Hub)
    align_models: Annotated[
        tuple[tuple[str, str], ...],
        Field(description="whisperx: (language code, local wav2vec2 model folder) pairs"),
    ] = ()
    diarize_model: Annotated[
        str | None, Field(description="pyannote diarization: local pipeline folder (config.yaml inside)")
    ] = None
    vad_model: Annotated[
        str | None,
        Field(description="whisperx: local pyannote segmentation checkpoint (default: the bundled one)"),
    ] = None


def uses_batched(settings: AsrSettings) -> bool:
    """faster-whisper's batched pipeline: on CUDA, or on the CPU when asked (batch_size > 1 either way)."""
    return settings.batch_size > 1 and (settings.device.startswith("cuda") or settings.batched_cpu)


def device_of(settings: AsrSettings) -> tuple[str, int]:
    """ctranslate2/torch style ("cuda", 0) or ("cpu", 0) from "cuda:N" / "cpu"."""
    kind, _, index = settings.device.partition(":")
    if kind not in ("cpu", "cuda"):
        raise ConfigError(f"ASR device {settings.device!r} must be cpu or cuda[:N] by the time it loads")
    return kind, int(index or 0)


def compute_type_of(settings: AsrSettings) -> str:
    if settings.compute_type != "auto":
        return settings.compute_type
    return "float16" if settings.device.startswith("cuda") else "int8"


def cpu_threads_of(settings: AsrSettings) -> int:
    if settings.cpu_threads > 0:
        return settings.cpu_threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class WindowTranscript:
    """One window's segments (times relative to the window) and the language they were decoded in."""

    segments: list[SpeechSegment]
    language: str
    language_probability: float


class AsrEngine(Protocol):
    name: str
    model_name: str
    device: str

    def transcribe(self, audio: np.ndarray, language: str | None, settings: AsrSettings) -> WindowTranscript:
        """Speech in 16 kHz mono float32 `audio`; detects the language when `language` is None."""
        ...

    def close(self) -> None:
        """Free the model's memory (GPU included); called when the model is evicted."""
        ...


def speech_word(start: float, end: float, text: str, probability: float) -> SpeechWord:
    return SpeechWord(float(start), float(end), str(text), float(probability))


def split_at_sentences(segment: SpeechSegment) -> list[SpeechSegment]:
    """A segment cut after every word that ends a sentence (text rebuilt from its words)."""
    from stages.speech.cues import SENTENCE_END, join_words

    if not segment.words:
        return [segment]
    pieces: list[list[SpeechWord]] = [[]]
    for word in segment.words:
        if pieces[-1] and pieces[-1][-1].text.endswith(SENTENCE_END):
            pieces.append([])
        pieces[-1].append(word)
    if len(pieces) == 1:
        return [segment]
    texts = [join_words([w.text for w in piece]) for piece in pieces]
    return [
        replace(segment, start=piece[0].start, end=piece[-1].end, text=text, words=tuple(piece))
        for piece, text in zip(pieces, texts, strict=True)
    ]


def has_speech(audio: np.ndarray, vad_parameters: dict[str, Any]) -> bool:
    """Silero VAD (faster-whisper's bundled ONNX, ~400x realtime on one core) finds any speech at all."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    return bool(len(audio)) and bool(get_speech_timestamps(audio, VadOptions(**vad_parameters)))
