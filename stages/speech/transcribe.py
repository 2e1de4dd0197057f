"""Speech recognition stage: the WAV transcribed window by window by the resident engine.

The WAV is transcribed in windows of about ten minutes cut at quiet points, so memory stays bounded
whatever the length; timestamps are shifted by each window's offset and made monotonic. The engines
(faster-whisper by default, whisperx where installed) live in `stages/speech/engines/`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from prefect import task

from core.caching import resumable
from core.errors import StageError
from core.schema import AudioTrack, SpeechSegment, Transcript
from gpu.devices import GPU_CAPABLE_TAG
from stages.speech.audio import SAMPLE_RATE, iter_audio_windows
from stages.speech.engines import AsrEngine, AsrSettings, load_asr_engine


def make_monotonic(segments: list[SpeechSegment], duration: float) -> list[SpeechSegment]:
    """Segments in order, each starting no earlier than the previous one ended, words inside their segment.

    Whisper's timestamps can overlap by a few hundredths or run past the end of the audio; subtitle
    players and downstream alignment expect neither.
    """
    out: list[SpeechSegment] = []
    previous_end = 0.0
    for seg in sorted(segments, key=lambda s: s.start):
        if not seg.text:
            continue
        start = min(max(seg.start, previous_end), duration)
        end = min(max(seg.end, start), duration)
        words, cursor = [], start
        for w in seg.words:
            w_start = min(max(w.start, cursor), end)
            w_end = min(max(w.end, w_start), end)
            words.append(replace(w, start=round(w_start, 3), end=round(w_end, 3)))
            cursor = w_end
        out.append(
            replace(seg, index=len(out) + 1, start=round(start, 3), end=round(end, 3), words=tuple(words))
        )
        previous_end = end
    return out


def _shift(seg: SpeechSegment, offset: float) -> SpeechSegment:
    words = tuple(replace(w, start=w.start + offset, end=w.end + offset) for w in seg.words)
    return replace(seg, start=seg.start + offset, end=seg.end + offset, words=words)


def transcribe_audio(
    track: AudioTrack,
    engine: AsrEngine,
    settings: AsrSettings,
    on_progress: Callable[[float], None] | None = None,
) -> Transcript:
    """Transcribe the WAV window by window; the language detected in the first window with speech holds.

    Silence gives a transcript without segments (and language None unless one was given).
    """
    if track.sample_rate != SAMPLE_RATE:
        raise StageError(
            "transcribe", track.path, f"expected {SAMPLE_RATE} Hz audio, got {track.sample_rate}"
        )
    language, probability = settings.language, 1.0 if settings.language else 0.0
    segments: list[SpeechSegment] = []
    for offset, samples in iter_audio_windows(track.path, window=settings.window_seconds):
        window = engine.transcribe(samples, language, settings)
        if window.segments and language is None:
            language, probability = window.language, window.language_probability
        segments += [_shift(seg, offset) for seg in window.segments]
        if on_progress is not None and track.duration > 0:
            on_progress(min(1.0, (offset + len(samples) / SAMPLE_RATE) / track.duration))
    return Transcript(
        source=track.source,
        language=language,
        language_probability=round(float(probability), 4),
        duration=track.duration,
        segments=tuple(make_monotonic(segments, track.duration)),
        engine=engine.name,
        model=engine.model_name,
        device=engine.device,
    )


def _resolve_device(settings: AsrSettings, granted: str) -> AsrSettings:
    """The slot's device, unless the settings pin the CPU."""
    return replace(settings, device="cpu" if settings.device == "cpu" else granted)


@task(name="transcribe", task_run_name="speech recognition", **resumable(), tags=[GPU_CAPABLE_TAG])
def transcribe_task(track: AudioTrack, settings: AsrSettings) -> Transcript:
    """GPU-capable: a GPU slot only when the engine runs on CUDA; the model stays resident in this process."""
    from prefect import get_run_logger

    from core.progress import StageProgress
    from gpu.slot import gpu_slot

    progress = StageProgress(f"speech recognition of {track.source.name}", media_seconds=track.duration)
    with gpu_slot("asr", prefer_cuda=settings.device != "cpu") as grant:
        resolved = _resolve_device(settings, grant.device)
        engine = load_asr_engine(resolved)
        transcript = transcribe_audio(
            track, engine, resolved, progress
        )
    progress.done()
    get_run_logger().info(
        "%s: %d segments, language %s (p=%.2f), %s on %s",
        track.source.name,
        len(transcript.segments),
        transcript.language,
        transcript.language_probability,
        transcript.engine,
        transcript.device,
    )
    return transcript
