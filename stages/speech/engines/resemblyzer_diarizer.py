"""Offline speaker diarization: Silero VAD speech regions, GE2E voice embeddings (resemblyzer), clustering.

resemblyzer ships its trained GE2E encoder (`pretrained.pt`) inside the wheel and runs on torch CPU, so
this engine needs no download. Each speech region is embedded in 1.6 s windows (half overlapping); the
windows are clustered (Ward on unit vectors) into the given number of speakers, or into as many as have
clearly distinct voices (centroids less alike than `speaker_similarity`). Each window speaks for the
stretch around its centre, so a speaker change inside a region lands between two windows. Where a window
sounds like two speakers at once (two centroids almost equally near) at a change between those two, the
second voice is kept over that stretch too: that is how overlapping speech shows.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import ConfigError
from core.schema import SpeakerTurn
from stages.speech.audio import SAMPLE_RATE, iter_audio_windows
from stages.speech.engines.base import AsrSettings, cpu_threads_of

WINDOW_FRAMES = 160  # 1.6 s of 10 ms mel frames: the partial utterance length GE2E was trained on
HOP_SECONDS = 0.8  # one embedding every 0.8 s inside a region (windows overlap by half)
MIN_REGION_SECONDS = 0.25  # shorter VAD regions carry too little voice to place
RELIABLE_SECONDS = 1.0  # regions at least this long shape the speaker clusters
OVERLAP_MARGIN = 0.06  # a window this close to two speakers' centroids, at a change between them: both
VAD = {"min_silence_duration_ms": 150, "speech_pad_ms": 30, "min_speech_duration_ms": 150}


@dataclass(frozen=True)
class EmbeddedWindow:
    """One embedding and the stretch of time it speaks for (seconds of the file)."""

    region: int
    start: float
    end: float
    vector: np.ndarray
    region_seconds: float  # speech in its region: short regions give less reliable embeddings


def speech_regions(audio: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) seconds of speech (Silero VAD, the model faster-whisper ships as ONNX)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    chunks = get_speech_timestamps(audio, VadOptions(**VAD)) if len(audio) else []
    return [
        (c["start"] / SAMPLE_RATE, c["end"] / SAMPLE_RATE)
        for c in chunks
        if (c["end"] - c["start"]) / SAMPLE_RATE >= MIN_REGION_SECONDS
    ]


def window_slices(start: float, end: float, hop: float = HOP_SECONDS) -> list[tuple[float, float, float]]:
    """(centre, from, to) of the windows over a region: each speaks for hop-long stretch round its centre."""
    length = end - start
    span = WINDOW_FRAMES / 100.0
    if length <= span:
        return [(start + length / 2, start, end)]
    count = int(np.ceil((length - span) / hop)) + 1
    step = (length - span) / (count - 1)
    centres = [start + span / 2 + i * step for i in range(count)]
    bounds = [start] + [(a + b) / 2 for a, b in zip(centres, centres[1:], strict=False)] + [end]
    return [(c, bounds[i], bounds[i + 1]) for i, c in enumerate(centres)]


def _centroids(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    centroids = np.stack([vectors[labels == j].mean(axis=0) for j in np.unique(labels)])
    return centroids / np.linalg.norm(centroids, axis=1, keepdims=True)


def choose_speaker_count(vectors: np.ndarray, low: int, high: int, same_voice: float) -> int:
    """The most Ward clusters (within [low, high]) whose centroids all differ: no two more alike than
    `same_voice` (cosine). Splitting one voice gives centroids ~0.86-0.93 alike; different voices, below."""
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(vectors, method="ward")
    best = 1
    for k in range(2, min(high, len(vectors)) + 1):
        centroids = _centroids(vectors, fcluster(tree, t=k, criterion="maxclust"))
        similarity = centroids @ centroids.T
        if similarity[np.triu_indices(len(centroids), 1)].max() >= same_voice:
            break
        best = k
    return max(best, low)


def cluster_windows(
    windows: list[EmbeddedWindow], speakers: int | None, limits: tuple[int, int], same_voice: float
) -> tuple[np.ndarray, np.ndarray]:
    """(label per window, unit centroid per speaker).

    Only windows of regions with at least RELIABLE_SECONDS of speech shape the clusters (a short
    interjection repeated to 1.6 s embeds less cleanly); then every window takes its nearest centroid.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    vectors = np.stack([w.vector for w in windows])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    reliable = np.array([w.region_seconds >= RELIABLE_SECONDS for w in windows])
    basis = vectors[reliable] if reliable.sum() >= 2 else vectors
    if len(basis) < 2:
        return np.zeros(len(windows), int), basis[:1]
    k = speakers if speakers is not None else choose_speaker_count(basis, *limits, same_voice)
    k = max(1, min(k, len(basis)))
    labels = fcluster(linkage(basis, method="ward"), t=k, criterion="maxclust") - 1
    centroids = _centroids(basis, labels)
    return np.argmax(vectors @ centroids.T, axis=1), centroids


class ResemblyzerDiarizer:
    """GE2E speaker embeddings (resemblyzer, weights in the wheel) over Silero VAD regions, clustered."""

    name = "resemblyzer"

    def __init__(self, settings: AsrSettings) -> None:
        try:
            import torch
            from resemblyzer import VoiceEncoder
        except ImportError as exc:
            raise ConfigError(
                f"the resemblyzer diarization engine is not installed ({exc}): "
                "pip install -e '.[diarize]'"
            ) from exc
        torch.set_num_threads(settings.diarize_threads or cpu_threads_of(settings))
        self.device = "cpu" if settings.device in ("auto", "cpu") else settings.device
        self.encoder = VoiceEncoder(self.device, verbose=False)
        self.model_name = "resemblyzer GE2E (pretrained.pt)"
        self._warm_up()

    def _warm_up(self) -> None:
        """librosa compiles its mel filters (numba) on first use: part of loading, not of the first run."""
        from resemblyzer.audio import wav_to_mel_spectrogram

        wav_to_mel_spectrogram(np.zeros(SAMPLE_RATE, np.float32))

    def embed(self, wav: Path, settings: AsrSettings) -> list[EmbeddedWindow]:
        """Windows over every speech region of the WAV, read in bounded windows like transcription."""
        import torch
        from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram

        pieces: list[tuple[int, float, float, float, np.ndarray]] = []
        region = 0
        for offset, audio in iter_audio_windows(wav, window=settings.window_seconds):
            for start, end in speech_regions(audio):
                samples = normalize_volume(audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)], -30)
                mel = wav_to_mel_spectrogram(samples)
                if len(mel) < WINDOW_FRAMES:  # a short region repeated (not padded with silence)
                    mel = np.resize(mel, (WINDOW_FRAMES, mel.shape[1]))
                for centre, a, b in window_slices(start, end):
                    first = int(round((centre - start) * 100)) - WINDOW_FRAMES // 2
                    first = min(max(first, 0), len(mel) - WINDOW_FRAMES)
                    window = mel[first : first + WINDOW_FRAMES]
                    pieces.append((region, offset + a, offset + b, end - start, window))
                region += 1
        if not pieces:
            return []
        vectors = []
        with torch.inference_mode():
            for i in range(0, len(pieces), 64):
                batch = torch.from_numpy(np.stack([p[4] for p in pieces[i : i + 64]])).to(self.device)
                vectors.append(self.encoder(batch).cpu().numpy())
        stacked = np.concatenate(vectors)
        return [EmbeddedWindow(r, a, b, v, n) for (r, a, b, n, _), v in zip(pieces, stacked, strict=True)]

    def diarize(self, wav: Path, settings: AsrSettings) -> list[SpeakerTurn]:
        windows = self.embed(wav, settings)
        if not windows:
            return []
        limits = (settings.min_speakers or 1, settings.max_speakers or 8)
        labels, centroids = cluster_windows(windows, settings.speakers, limits, settings.speaker_similarity)
        labels = smooth_labels(windows, labels)
        return turns_from_windows(windows, labels, centroids)

    def close(self) -> None:
        self.encoder = None
        gc.collect()


def smooth_labels(windows: list[EmbeddedWindow], labels: np.ndarray) -> np.ndarray:
    """A lone window inside a region whose neighbours agree with each other takes their label."""
    out = labels.copy()
    for i in range(1, len(windows) - 1):
        same_region = windows[i - 1].region == windows[i].region == windows[i + 1].region
        if same_region and labels[i - 1] == labels[i + 1] != labels[i]:
            out[i] = labels[i - 1]
    return out


def _speaker_names(labels: np.ndarray, windows: list[EmbeddedWindow]) -> dict[int, str]:
    """SPEAKER_00, SPEAKER_01, ... in order of first appearance."""
    order: list[int] = []
    for label in labels:
        if int(label) not in order:
            order.append(int(label))
    return {label: f"SPEAKER_{i:02d}" for i, label in enumerate(order)}


def overlapped_windows(
    windows: list[EmbeddedWindow], labels: np.ndarray, centroids: np.ndarray
) -> dict[int, int]:
    """Window index -> the second speaker heard in it: nearly as close to that speaker's centroid as to
    its own, next to a window of that speaker in the same region (a change without a pause)."""
    if len(centroids) < 2:
        return {}
    vectors = np.stack([w.vector / np.linalg.norm(w.vector) for w in windows])
    scores = vectors @ centroids.T
    out = {}
    for i, window in enumerate(windows):
        order = np.argsort(scores[i])[::-1]
        second = int(order[1])
        if scores[i, order[0]] - scores[i, second] >= OVERLAP_MARGIN:
            continue
        beside = [j for j in (i - 1, i + 1) if 0 <= j < len(windows) and windows[j].region == window.region]
        if any(labels[j] == second for j in beside):
            out[i] = second
    return out


def turns_from_windows(
    windows: list[EmbeddedWindow], labels: np.ndarray, centroids: np.ndarray
) -> list[SpeakerTurn]:
    """Neighbouring windows of one region and one speaker joined into turns, plus overlap turns."""
    names = _speaker_names(labels, windows)
    turns: list[SpeakerTurn] = []
    for window, label in zip(windows, labels, strict=True):
        speaker = names[int(label)]
        last = turns[-1] if turns else None
        if last is not None and last.speaker == speaker and abs(last.end - window.start) < 1e-6:
            turns[-1] = SpeakerTurn(speaker, last.start, window.end)
        else:
            turns.append(SpeakerTurn(speaker, window.start, window.end))
    for i, second in overlapped_windows(windows, labels, centroids).items():
        if second in names:  # the second voice over the hop-wide stretch round the window's centre
            centre = (windows[i].start + windows[i].end) / 2
            region = [w for w in windows if w.region == windows[i].region]
            a = max(centre - HOP_SECONDS / 2, region[0].start)
            b = min(centre + HOP_SECONDS / 2, region[-1].end)
            turns.append(SpeakerTurn(names[second], a, b))
    turns.sort(key=lambda t: (t.start, t.speaker))
    return [SpeakerTurn(t.speaker, round(t.start, 3), round(t.end, 3)) for t in turns]
