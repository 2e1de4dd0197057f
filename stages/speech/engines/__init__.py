"""ASR engines behind one interface, chosen by name; each loaded once per process (core/models.py)."""

from __future__ import annotations

from typing import Any

from core.errors import ConfigError
from core.models import ModelKey, model_key, resident_model
from stages.speech.engines.base import (
    AsrEngine,
    AsrSettings,
    compute_type_of,
    cpu_threads_of,
    resolve_model,
)
from stages.speech.engines.faster_whisper_engine import FasterWhisperEngine
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
        "batched": settings.device.startswith("cuda") and settings.batch_size > 1,
    }
    return model_key("asr", settings, only=loads, resolved=resolved)


def load_asr_engine(settings: AsrSettings) -> AsrEngine:
    """The resident engine for these settings: loaded once per process, reused by every later run."""
    if settings.device == "auto":
        raise ConfigError("resolve the ASR device (cpu or cuda:N) before loading: use gpu_slot()'s device")
    return resident_model(asr_model_key(settings), lambda: ENGINES[settings.engine](settings))


__all__ = [
    "ENGINES",
    "AsrEngine",
    "AsrSettings",
    "asr_model_key",
    "cpu_threads_of",
    "load_asr_engine",
]
