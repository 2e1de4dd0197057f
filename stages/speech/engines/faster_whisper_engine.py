"""faster-whisper (CTranslate2): the default ASR engine, offline through the packaged base model."""

from __future__ import annotations

import gc
from typing import Any

import numpy as np

from core.errors import ConfigError
from core.schema import SpeechSegment
from stages.speech.audio import SAMPLE_RATE
from stages.speech.engines.base import (
    AsrSettings,
    WindowTranscript,
    compute_type_of,
    cpu_threads_of,
    device_of,
    has_speech,
    resolve_model,
    speech_word,
    split_at_sentences,
    uses_batched,
)


class FasterWhisperEngine:
    """faster-whisper (CTranslate2): the batched pipeline (CUDA; CPU too by default), or sequential."""

    name = "faster-whisper"

    def __init__(self, settings: AsrSettings) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel  # heavy: ctranslate2

        kind, index = device_of(settings)
        self.model_name = resolve_model(settings.model)
        self.device = settings.device
        try:
            self.model = WhisperModel(
                self.model_name,
                device=kind,
                device_index=index,
                compute_type=compute_type_of(settings),
                cpu_threads=cpu_threads_of(settings),
            )
        except Exception as exc:  # noqa: BLE001 - a model that cannot load is a configuration problem
            raise ConfigError(f"faster-whisper could not load model {settings.model!r}: {exc}") from exc
        self.batched = BatchedInferencePipeline(self.model) if uses_batched(settings) else None

    def transcribe(self, audio: np.ndarray, language: str | None, settings: AsrSettings) -> WindowTranscript:
        vad = {"min_silence_duration_ms": settings.vad_min_silence_ms}
        options: dict[str, Any] = {
            "language": language,
            "beam_size": settings.beam_size,
            "word_timestamps": settings.word_timestamps,
        }
        if self.batched is not None:  # its own VAD packs speech into full 30 s chunks for the batches
            if settings.vad and not has_speech(audio, vad):  # silence: no language guessed from it
                return WindowTranscript([], language or "", 0.0)
            if not settings.vad:  # without VAD it needs the chunks given: fixed 30 s clips
                length = len(audio) / SAMPLE_RATE
                options["clip_timestamps"] = [
                    {"start": float(t), "end": min(float(t) + 30.0, length)}
                    for t in np.arange(0.0, length, 30.0)
                ]
            segments, info = self.batched.transcribe(
                audio, batch_size=settings.batch_size, vad_filter=settings.vad, vad_parameters=vad, **options
            )
        elif settings.vad:  # what vad_filter=True does inside faster-whisper, with an early exit on silence
            from faster_whisper.transcribe import restore_speech_timestamps
            from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

            chunks = get_speech_timestamps(audio, VadOptions(**vad))
            if not chunks:  # no speech: skip the encoder passes (and a language guessed from silence)
                return WindowTranscript([], language or "", 0.0)
            speech = np.concatenate(collect_chunks(audio, chunks)[0])
            segments, info = self.model.transcribe(speech, vad_filter=False, **options)
            segments = restore_speech_timestamps(segments, chunks, SAMPLE_RATE)
        else:
            segments, info = self.model.transcribe(audio, vad_filter=False, **options)
        out = []
        for seg in segments:  # a generator: decoding happens here, one 30 s chunk at a time
            words = tuple(speech_word(w.start, w.end, w.word.strip(), w.probability) for w in seg.words or ())
            segment = SpeechSegment(
                len(out),
                float(seg.start),
                float(seg.end),
                seg.text.strip(),
                words,
                float(seg.avg_logprob),
                float(seg.no_speech_prob),
            )
            # the batched pipeline decodes without timestamp tokens (faster): one segment per 30 s chunk,
            # cut back into sentences at the word timestamps
            out += split_at_sentences(segment) if self.batched is not None else [segment]
        return WindowTranscript(out, info.language, float(info.language_probability))

    def close(self) -> None:
        """Unload the CTranslate2 weights now (GPU memory included), not whenever GC gets to them."""
        model = getattr(self, "model", None)
        if model is not None and getattr(model, "model", None) is not None:
            model.model.unload_model()
        self.batched = None
        self.model = None
        gc.collect()
