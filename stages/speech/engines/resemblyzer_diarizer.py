"""Offline speaker diarization: Silero VAD speech regions, GE2E voice embeddings (resemblyzer), clustering.

resemblyzer ships its trained GE2E encoder (`pretrained.pt`) inside the wheel and runs on torch CPU, so
this engine needs no download. Each speech region is embedded in 1.6 s windows every 0.4 s; each window
speaks for the 0.4 s round its centre, so a change of speaker inside a region (people answer without a
pause) lands within 0.2 s. The speaker count, when not given, comes from spectral clustering's eigengap
with the pruning chosen per recording (NME-SC, Park et al. 2019), then clusters as alike as one voice's
halves are merged; recordings with few windows use Ward clusters whose centroids all differ. A window
nearly as close to a second speaker beside it keeps that voice too: that is how overlapping speech shows.
Calibrated on real speech (bench/diarization.py: LibriSpeech conversations, AMI meeting starts).
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
from stages.speech.engines.mel import mel_spectrogram
from stages.speech.engines.speaker_clusters import (
    centroids_of,
    merge_alike,
    refine,
    spectral_count,
    spectral_labels,
    two_voices,
    unit,
    ward_count,
    ward_labels,
)

WINDOW_FRAMES = 160  # 1.6 s of 10 ms mel frames: the partial utterance length GE2E was trained on
HOP_SECONDS = 0.4  # one embedding every 0.4 s inside a region: turn changes placed to +-0.2 s
MIN_REGION_SECONDS = 0.2  # shorter VAD regions carry too little voice to place
RELIABLE_SECONDS = 1.0  # regions at least this long shape the speaker clusters
OVERLAP_MARGIN = 0.06  # a window this close to two speakers' centroids, at a change between them: both
# Silero's default 0.5 threshold missed 10-50% of telephone and far-field speech (bench/diarization.py)
VAD = {"threshold": 0.25, "min_silence_duration_ms": 200, "speech_pad_ms": 150, "min_speech_duration_ms": 100}
SPECTRAL_MIN_WINDOWS = 60  # fewer reliable windows (~25 s of speech): too few for the eigengap
CLUSTER_MAX_WINDOWS = 400  # more (over ~160 s of speech): every n-th shapes the clusters, all are labelled
MERGE_SIMILARITY = 0.88  # two clusters' centroids this alike are one voice split (real speech, 2-4 people)
TWO_VOICES_SIMILARITY = 0.85  # one cluster found, but halves each >= 10% and less alike than this: two
# 10%, not 20%: a second voice heard mostly over the first (AMI EN2009b) leaves few windows of its own;
# 58 of 60 single LibriSpeech readers (clean/phone/room) have halves >= 0.87 alike; 1688 on the phone
# (0.83) is split by the count itself already, so this rule splits none of them
TWO_VOICES_SHARE = 0.1


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


def estimate_centroids(basis: np.ndarray, limits: tuple[int, int], same_voice: float) -> np.ndarray:
    """Unit centroids of the speakers heard in `basis` (unit vectors), their number estimated within
    `limits`: spectral eigengap then merging on enough windows, else Ward with `same_voice`; one voice
    only where no two halves each hold 10% and sound apart."""
    low, high = limits
    centroids = unit(basis.mean(axis=0, keepdims=True))
    if len(basis) >= SPECTRAL_MIN_WINDOWS:
        k, neighbours = spectral_count(basis, high)
        if k > 1:
            labels = spectral_labels(basis, k, neighbours)
            centroids = refine(basis, centroids_of(basis, labels))
            centroids = merge_alike(basis, centroids, MERGE_SIMILARITY, low)
    else:
        k = ward_count(basis, 1, high, same_voice)
        if k > 1:
            centroids = refine(basis, centroids_of(basis, ward_labels(basis, k)))
    if len(centroids) == 1 and high > 1:
        two = two_voices(basis, TWO_VOICES_SIMILARITY, TWO_VOICES_SHARE)
        centroids = two if two is not None else centroids
    if len(centroids) < low:
        centroids = centroids_of(basis, ward_labels(basis, min(low, len(basis))))
    return centroids


def cluster_windows(
    windows: list[EmbeddedWindow], speakers: int | None, limits: tuple[int, int], same_voice: float
) -> tuple[np.ndarray, np.ndarray]:
    """(label per window, unit centroid per speaker).

    Only windows of regions with at least RELIABLE_SECONDS of speech shape the clusters (a short
    interjection repeated to 1.6 s embeds less cleanly); then every window takes its nearest centroid.
    """
    vectors = unit(np.stack([w.vector for w in windows]))
    reliable = np.array([w.region_seconds >= RELIABLE_SECONDS for w in windows])
    basis = vectors[reliable] if reliable.sum() >= 2 else vectors
    if len(basis) < 2:
        return np.zeros(len(windows), int), basis[:1]
    # every n-th window over the whole file: the eigen-decompositions grow with the cube of the windows
    sample = basis[:: int(np.ceil(len(basis) / CLUSTER_MAX_WINDOWS))]
    if speakers is not None:  # given: exactly that many
        k = max(1, min(speakers, len(sample)))
        centroids = refine(sample, centroids_of(sample, ward_labels(sample, k)))
    else:
        centroids = estimate_centroids(sample, limits, same_voice)
    if len(sample) < len(basis):
        centroids = refine(basis, centroids)
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
                f"the resemblyzer diarization engine is not installed ({exc}): pip install -e '.[diarize]'"
            ) from exc
        torch.set_num_threads(settings.diarize_threads or cpu_threads_of(settings))
        self.device = "cpu" if settings.device in ("auto", "cpu") else settings.device
        self.encoder = VoiceEncoder(self.device, verbose=False)
        self.model_name = "resemblyzer GE2E (pretrained.pt)"

    def embed(self, wav: Path, settings: AsrSettings) -> list[EmbeddedWindow]:
        """Windows over every speech region of the WAV, read in bounded windows like transcription."""
        import torch
        from resemblyzer.audio import normalize_volume

        pieces: list[tuple[int, float, float, float, np.ndarray]] = []
        region = 0
        for offset, audio in iter_audio_windows(wav, window=settings.window_seconds):
            for start, end in speech_regions(audio):
                samples = normalize_volume(audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)], -30)
                mel = mel_spectrogram(samples)  # resemblyzer's, without importing librosa (mel.py)
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
