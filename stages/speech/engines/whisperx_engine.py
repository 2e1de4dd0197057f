"""whisperX: batched Whisper over pyannote VAD and wav2vec2 alignment, all from local model folders."""

from __future__ import annotations

import gc
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError
from core.packaged_models import PACKAGED_MODEL, packaged_model_dir
from core.schema import SpeechSegment
from stages.speech.engines.base import (
    AsrSettings,
    WindowTranscript,
    compute_type_of,
    cpu_threads_of,
    device_of,
    has_speech,
    speech_word,
)


class WhisperXEngine:
    """whisperX: batched Whisper over pyannote VAD, wav2vec2 word alignment (diarization: pyannote_diarizer).

    Everything loads from local folders: `model` (a CTranslate2 Whisper folder), `align_models`
    (language -> wav2vec2 folder), optional `vad_model`.
    """

    name = "whisperx"

    def __init__(self, settings: AsrSettings) -> None:
        model_dir = Path(settings.model).expanduser()
        if settings.model == PACKAGED_MODEL:
            model_dir = Path(packaged_model_dir())
        if not (model_dir / "model.bin").is_file():
            raise ConfigError(
                f"whisperx engine needs a local CTranslate2 Whisper folder as model, got {settings.model!r}"
            )
        for language, folder in settings.align_models:
            if not Path(folder).expanduser().is_dir():
                raise ConfigError(f"whisperx align model for {language!r}: {folder!r} is not a folder")
        if settings.vad_model and not Path(settings.vad_model).expanduser().is_file():
            raise ConfigError(f"whisperx vad_model {settings.vad_model!r} is not a file")
        if importlib.util.find_spec("whisperx") is None:  # before torch: importing it takes seconds
            raise ConfigError("whisperx engine is not installed: pip install 'yivideo-flows[whisperx]'")
        import torch
        import whisperx
        from whisperx.vads import Pyannote

        kind, index = device_of(settings)
        self.model_name = str(model_dir.resolve())
        self.device = settings.device
        self._kind, self._torch_device = kind, settings.device
        vad_options = {"chunk_size": 30, "vad_onset": 0.5, "vad_offset": 0.363}
        vad = Pyannote(torch.device(settings.device), model_fp=settings.vad_model, **vad_options)
        self.pipeline = whisperx.load_model(
            self.model_name,
            device=kind,
            device_index=index,
            compute_type=compute_type_of(settings),
            asr_options={"beam_size": settings.beam_size},
            language=settings.language,
            vad_model=vad,
            vad_options=vad_options,
            local_files_only=True,
            threads=cpu_threads_of(settings),
        )
        self._align: dict[str, tuple[Any, dict]] = {}

    def _align_model(self, language: str, settings: AsrSettings) -> tuple[Any, dict] | None:
        folder = dict(settings.align_models).get(language)
        if folder is None:
            return None
        if language not in self._align:
            import whisperx

            self._align[language] = whisperx.load_align_model(
                language_code=language,
                device=self._torch_device,
                model_name=str(Path(folder).expanduser()),
                model_cache_only=True,
            )
        return self._align[language]

    def transcribe(self, audio: np.ndarray, language: str | None, settings: AsrSettings) -> WindowTranscript:
        import whisperx

        if not has_speech(audio, {"min_silence_duration_ms": settings.vad_min_silence_ms}):
            return WindowTranscript([], language or "", 0.0)  # its language detection fails on silence
        probability = 1.0
        if language is None:
            language, probability, _ = self.pipeline.model.detect_language(audio=audio, vad_filter=True)
        result = self.pipeline.transcribe(audio, batch_size=settings.batch_size, language=language)
        raw = result["segments"]
        aligner = self._align_model(language, settings) if settings.word_timestamps else None
        if aligner is not None and raw:
            model, metadata = aligner
            raw = whisperx.align(raw, model, metadata, audio, self._torch_device)["segments"]
        segments = []
        for seg in raw:
            words = []
            for w in seg.get("words", ()):
                start, end = w.get("start", seg["start"]), w.get("end", seg["end"])  # unalignable: segment's
                words.append(speech_word(start, end, w["word"].strip(), w.get("score", 0.0)))
            segments.append(
                SpeechSegment(
                    len(segments),
                    float(seg["start"]),
                    float(seg["end"]),
                    seg["text"].strip(),
                    tuple(words),
                    float(seg.get("avg_logprob", 0.0)),
                )
            )
        return WindowTranscript(segments, language, float(probability))

    def close(self) -> None:
        self.pipeline = None
        self._align.clear()
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
