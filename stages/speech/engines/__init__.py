"""ASR engines and diarization engines, each behind one interface, chosen by name in the same settings.

Each loads once per process (core/models.py), or once per host in deployed runs (core/model_service.py).
"""

from __future__ import annotations

from typing import Any

from core.errors import ConfigError
from core.model_service import served_model
from core.models import ModelKey, model_key
from stages.speech.engines.base import (
    AsrEngine,
    AsrSettings,
    compute_type_of,
    cpu_threads_of,
    resolve_model,
    uses_batched,
)
from stages.speech.engines.diarizer_base import Diarizer
from stages.speech.engines.faster_whisper_engine import FasterWhisperEngine
from stages.speech.engines.pyannote_diarizer import PyannoteDiarizer
from stages.speech.engines.resemblyzer_diarizer import ResemblyzerDiarizer
from stages.speech.engines.whisperx_engine import WhisperXEngine

ENGINES: dict[str, type] = {"faster-whisper": FasterWhisperEngine, "whisperx": WhisperXEngine}


def asr_model_key(settings: AsrSettings) -> ModelKey:
    """What identifies a loaded engine: engine, resolved model, device and what changes the loaded object."""
    if settings.engine not in ENGINES:
        raise ConfigError(f"unknown ASR engine {settings.engine!r}; known: {', '.join(sorted(ENGINES))}")
    model = resolve_model(settings.model) if settings.engine == "faster-whisper" else settings.model
    loads = {"engine", "model", "device", "compute_type", "cpu_threads"}
    if settings.engine == "whisperx":  # baked into its pipeline at load time
        loads |= {"beam_size", "language", "vad_model"}
    resolved: dict[str, Any] = {
        "model": model,
        "compute_type": compute_type_of(settings),
        "cpu_threads": cpu_threads_of(settings),
        "batched": uses_batched(settings),
    }
    return model_key("asr", settings, only=loads, resolved=resolved)


def load_asr_engine(settings: AsrSettings) -> AsrEngine:
    """The resident engine for these settings: loaded once per process, reused by every later run."""
    if settings.device == "auto":
        raise ConfigError("resolve the ASR device (cpu or cuda:N) before loading: use gpu_slot()'s device")
    return served_model(asr_model_key(settings), ENGINES[settings.engine], settings)


DIARIZERS: dict[str, type] = {"resemblyzer": ResemblyzerDiarizer, "pyannote": PyannoteDiarizer}


def diarizer_model_key(settings: AsrSettings) -> ModelKey:
    """What identifies a loaded diarizer: engine, model, device, encoder threads."""
    if settings.diarize_engine not in DIARIZERS:
        known = ", ".join(sorted(DIARIZERS))
        raise ConfigError(f"unknown diarization engine {settings.diarize_engine!r}; known: {known}")
    model = settings.diarize_model or "" if settings.diarize_engine == "pyannote" else "ge2e"
    threads = settings.diarize_threads or cpu_threads_of(settings)
    resolved = {"engine": settings.diarize_engine, "model": model, "threads": threads}
    return model_key("diarize", settings, only={"device"}, resolved=resolved)


def load_diarizer(settings: AsrSettings) -> Diarizer:
    """The resident diarizer for these settings: loaded once per process."""
    if settings.device == "auto":
        raise ConfigError("resolve the diarization device (cpu or cuda:N) before loading")
    return served_model(diarizer_model_key(settings), DIARIZERS[settings.diarize_engine], settings)


__all__ = [
    "DIARIZERS",
    "Diarizer",
    "diarizer_model_key",
    "load_diarizer",
    "ENGINES",
    "AsrEngine",
    "AsrSettings",
    "asr_model_key",
    "cpu_threads_of",
    "load_asr_engine",
]
