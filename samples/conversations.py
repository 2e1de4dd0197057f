"""Conversations of real human speech with known turns, built from the shared single speakers.

Each case takes real speakers from `../shared/realspeech/speakers/` (LibriSpeech test-other) and lays
pieces of their recordings one after another: turns of 0.3-10 s, backchannels inside another's turn,
replies that start before the turn ends, then a channel (clean, 8 kHz telephone band, a reverberant room
with noise). The truth is each piece's voiced stretches (WebRTC VAD and a level detector on the clean
single-speaker recording, split at pauses of 0.3 s or more), so gaps and overlaps are known to 10 ms.
Deterministic (seeded); written to the folder given; the shared audio never enters the repository.
The AMI meeting starts are read as they are, with their "only words" reference turns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samples.media_cache import cached_media

RATE = 16000
REALSPEECH = Path(__file__).resolve().parents[2] / "shared" / "realspeech"
SPEAKERS = REALSPEECH / "speakers"
MEETINGS = REALSPEECH / "meetings"
CALIBRATION = {  # LibriSpeech test-other speakers (sexes in LIBRISPEECH_SPEAKERS.txt), 66-104 s each
    "F": ("1998", "3080", "3331"),
    "M": ("1688", "2033", "2414"),
}
HELD_OUT = {"F": ("367", "533"), "M": ("2609", "3005")}  # voices never used while calibrating


@dataclass(frozen=True)
class Case:
    """One conversation to build: who talks (by sex), over which channel, from which voice pool."""

    name: str
    sexes: str  # one letter per speaker: "FF", "MFM", ...
    channel: str = "clean"  # clean | phone | room
    seed: int = 0
    held_out: bool = False
    seconds: float = 60.0
    overlaps: int = 2  # replies that start this many times before the previous turn ends


@dataclass(frozen=True)
class Recording:
    """A WAV (16 kHz mono) and its reference turns (speaker, start, end), overlapping where people do."""

    name: str
    kind: str
    path: Path
    reference: tuple[tuple[str, float, float], ...]
    held_out: bool

    @property
    def speakers(self) -> tuple[str, ...]:
        return tuple(sorted({t[0] for t in self.reference}))


CASES = (
    Case("ff-clean", "FF", seed=1), Case("mm-clean", "MM", seed=2), Case("fm-clean", "FM", seed=3),
    Case("ff-phone", "FF", "phone", seed=4), Case("mm-phone", "MM", "phone", seed=5),
    Case("fm-room", "FM", "room", seed=6), Case("three-clean", "FMF", seed=7, seconds=75),
    Case("three-room", "MFM", "room", seed=8, seconds=75), Case("four-clean", "FMFM", seed=9, seconds=90),
    Case("four-phone", "MFMF", "phone", seed=10, seconds=90),
    # held out: other voices, never looked at while calibrating
    Case("ff-clean-h", "FF", seed=11, held_out=True, seconds=45),
    Case("mm-phone-h", "MM", "phone", seed=12, held_out=True, seconds=45),
    Case("fm-room-h", "FM", "room", seed=13, held_out=True, seconds=45),
    Case("three-phone-h", "FFM", "phone", seed=14, held_out=True, seconds=60),
    Case("four-clean-h", "MFMF", seed=15, held_out=True, seconds=70),
)  # fmt: skip
HELD_OUT_MEETINGS = ("ami_EN2002a", "ami_EN2006a", "ami_EN2009b")  # calibration uses the other four


def available() -> bool:
    return SPEAKERS.is_dir() and MEETINGS.is_dir()


def _read(path: Path) -> np.ndarray:
    import soundfile

    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    if rate != RATE:
        raise ValueError(f"{path}: {rate} Hz, expected {RATE}")
    return audio.mean(axis=1)


def _voice_files(speaker: str) -> list[Path]:
    return sorted((SPEAKERS / "librispeech_test-other" / speaker).glob("*.flac"))


def frame_levels(audio: np.ndarray, frame: int = RATE // 100) -> np.ndarray:
    """dB of each 10 ms frame."""
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)


def voiced_frames(audio: np.ndarray, min_pause: float = 0.3) -> np.ndarray:
    """Per 10 ms frame of a clean single-speaker recording: voice (WebRTC VAD and a level 40% of the way
    from its noise floor to its speech peaks, both), pauses shorter than `min_pause` bridged."""
    import warnings

    with warnings.catch_warnings():  # webrtcvad imports pkg_resources
        warnings.simplefilter("ignore")
        import webrtcvad

    levels = frame_levels(audio)
    if not len(levels):
        return np.zeros(0, bool)
    floor, peak = np.percentile(levels, [10, 95])
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    vad = webrtcvad.Vad(3)
    calls = [vad.is_speech(pcm[i * 480 : (i + 1) * 480].tobytes(), RATE) for i in range(len(pcm) // 480)]
    voiced = levels > floor + 0.4 * (peak - floor)
    voiced[: 3 * len(calls)] &= np.repeat(np.array(calls, bool), 3)
    voiced[3 * len(calls) :] = False
    on = np.flatnonzero(voiced)
    gap = int(min_pause * 100)
    for a, b in zip(on, on[1:], strict=False):
        if 1 < b - a <= gap:
            voiced[a:b] = True
    return voiced


def _spans(voiced: np.ndarray, min_len: int = 8) -> list[tuple[int, int]]:
    """(first, last + 1) frame runs of True at least min_len frames long."""
    edges = np.diff(np.concatenate([[0], voiced.astype(int), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(a, b) for a, b in zip(starts, ends, strict=True) if b - a >= min_len]


class _Voice:
    """One speaker's recordings as a stream of voiced stretches, handed out piece by piece."""

    def __init__(self, speaker: str, rng: np.random.Generator) -> None:
        recordings = [_read(path) for path in _voice_files(speaker)]
        if not recordings:
            raise FileNotFoundError(f"no recordings of speaker {speaker} under {SPEAKERS}")
        rng.shuffle(recordings)  # type: ignore[arg-type]
        audio, voiced = [], []
        for recording in recordings:  # each trimmed to its voice, 0.4 s of silence between
            mask = voiced_frames(recording)
            runs = _spans(mask)
            if runs:
                a, b = max(0, runs[0][0] - 5), runs[-1][1] + 5
                audio += [recording[a * 160 : b * 160], np.zeros(40 * 160, np.float32)]
                voiced += [mask[a:b], np.zeros(40, bool)]
        self.stream, self.voiced = np.concatenate(audio), np.concatenate(voiced)
        self.cursor = 0

    def piece(self, seconds: float) -> tuple[np.ndarray, np.ndarray]:
        """About `seconds` of speech cut in a pause (a short turn: the start of one voiced stretch), and
        its voiced 10 ms frames (judged on the speaker's whole stream, so a short piece is judged alike)."""
        if seconds < 1.0:
            return self._short(seconds)
        frames = len(self.voiced)
        start = self.cursor if self.cursor < frames - 1100 else 0  # 11 s left, else from the top
        want = start + int(seconds * 100)
        low, high = start + int(seconds * 60), min(start + int(seconds * 140), frames)
        silent = np.flatnonzero(~self.voiced[low:high]) + low
        if len(silent):  # in a pause near the length asked for; else at the quietest 10 ms near it
            cut = int(silent[np.argmin(np.abs(silent - want))])
        else:
            near = slice(max(start + 30, want - 50), min(want + 50, frames))
            cut = near.start + int(np.argmin(frame_levels(self.stream[near.start * 160 : near.stop * 160])))
        self.cursor = cut
        runs = _spans(self.voiced[start:cut], min_len=3)
        if runs:  # trimmed to its voice, 20 ms either side
            start, cut = start + max(0, runs[0][0] - 2), min(start + runs[-1][1] + 2, cut)
        return self.stream[start * 160 : cut * 160], self.voiced[start:cut]

    def _short(self, seconds: float) -> tuple[np.ndarray, np.ndarray]:
        """A backchannel-like fragment: the start of a voiced stretch, faded out after `seconds`."""
        if self.cursor >= len(self.voiced) - 300:
            self.cursor = 0
        starts = [a for a, _ in _spans(self.voiced[self.cursor :])] or [0]
        first = self.cursor + starts[0]
        count = int(seconds * 100)
        piece = self.stream[first * 160 : (first + count) * 160].copy()
        fade = min(len(piece), RATE // 25)
        piece[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
        self.cursor = first + count + 10
        return piece, self.voiced[first : first + count]


def _turn_lengths(rng: np.random.Generator) -> float:
    """Mostly 1.5-10 s turns; a fifth are short (0.3-1 s)."""
    if rng.random() < 0.2:
        return float(rng.uniform(0.3, 1.0))
    return float(min(10.0, rng.lognormal(np.log(3.5), 0.5)))


def _pick_voices(case: Case, rng: np.random.Generator) -> list[str]:
    pool = HELD_OUT if case.held_out else CALIBRATION
    left = {sex: list(rng.permutation(pool[sex])) for sex in pool}
    return [left[sex].pop() for sex in case.sexes]


def _layout(case: Case, rng: np.random.Generator) -> list[tuple[int, str]]:
    """(speaker index, kind) of every turn in order: 'turn', 'overlap' or 'backchannel'."""
    plan, speaker, count = [], 0, len(case.sexes)
    overlaps = set(rng.choice(np.arange(3, 14), size=case.overlaps, replace=False).tolist())
    for i in range(400):
        kind = "overlap" if i in overlaps else "backchannel" if i % 7 == 4 else "turn"
        plan.append((speaker, kind))
        order = [s for s in range(count) if s != speaker]
        speaker = order[int(rng.integers(len(order)))] if count > 2 else 1 - speaker
    return plan


@cached_media("folder")
def build(case: Case, folder: Path) -> Recording:
    """The case's WAV and reference under `folder` (reused when already built: deterministic)."""
    folder.mkdir(parents=True, exist_ok=True)
    wav, truth = folder / f"{case.name}.wav", folder / f"{case.name}.json"
    if wav.is_file() and truth.is_file():
        turns = tuple(tuple(t) for t in json.loads(truth.read_text(encoding="utf-8")))
        return Recording(case.name, _kind(case.name), wav, turns, case.held_out)  # type: ignore[arg-type]
    rng = np.random.default_rng(case.seed)
    names = _pick_voices(case, rng)
    voices = [_Voice(n, rng) for n in names]
    placed: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # speaker, first sample, audio, voiced
    cursor, last_start = int(0.5 * RATE), 0
    for speaker, kind in _layout(case, rng):
        if cursor > case.seconds * RATE:
            break
        if kind == "backchannel" and placed and len(placed[-1][2]) > 2.5 * RATE:
            piece, voiced = voices[speaker].piece(float(rng.uniform(0.3, 0.6)))
            host_start, host = placed[-1][1], placed[-1][2]  # inside the previous turn: "mhm", "yeah"
            start = host_start + int(rng.uniform(0.35, 0.65) * len(host))
            placed.append((speaker, start, piece, voiced))
            continue
        piece, voiced = voices[speaker].piece(_turn_lengths(rng))
        if kind == "overlap" and placed:
            start = max(last_start + RATE // 2, cursor - int(rng.uniform(0.4, 1.2) * RATE))
        else:
            start = cursor + int(rng.uniform(0.1, 0.8) * RATE)
        placed.append((speaker, start, piece, voiced))
        last_start, cursor = start, max(cursor, start + len(piece))
    mix = np.zeros(cursor + RATE // 2, np.float32)
    reference = []
    for speaker, start, piece, voiced in placed:
        level = 10 ** (rng.uniform(-4, 4) / 20) * 0.1 / (np.sqrt(np.mean(piece**2)) + 1e-6)
        mix[start : start + len(piece)] += piece * level
        for a, b in _spans(voiced, min_len=5):
            reference.append((f"S{speaker}_{names[speaker]}", round(start / RATE + a / 100, 2),
                              round(start / RATE + b / 100, 2)))  # fmt: skip
    mix = apply_channel(mix, case.channel, rng)
    _write_wav(wav, mix)
    reference.sort(key=lambda t: (t[1], t[0]))
    truth.write_text(json.dumps(reference), encoding="utf-8")
    return Recording(case.name, _kind(case.name), wav, tuple(reference), case.held_out)


@cached_media("folder")
def single_voice(speaker: str, channel: str, seconds: float, folder: Path) -> Path:
    """The first `seconds` of one LibriSpeech speaker's utterances, over `channel`: one real voice."""
    wav = folder / f"single-{speaker}-{channel}-{seconds:g}.wav"
    if not wav.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        audio = np.concatenate([_read(f) for f in _voice_files(speaker)])[: int(seconds * RATE)]
        _write_wav(wav, apply_channel(audio, channel, np.random.default_rng(int(speaker))))
    return wav


def apply_channel(mix: np.ndarray, channel: str, rng: np.random.Generator) -> np.ndarray:
    """clean: as is; phone: 300-3400 Hz at 8 kHz, mu-law, line hiss; room: reverberation + room noise."""
    from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

    if channel == "phone":
        narrow = resample_poly(mix, 1, 2)
        narrow = sosfilt(butter(4, [300, 3400], "bandpass", fs=8000, output="sos"), narrow)
        peak = np.max(np.abs(narrow)) + 1e-9
        mu = np.sign(narrow / peak) * np.log1p(255 * np.abs(narrow / peak)) / np.log(256)
        mu = np.round(mu * 127) / 127  # 8-bit mu-law
        narrow = np.sign(mu) * (np.power(256, np.abs(mu)) - 1) / 255 * peak
        narrow += rng.normal(0, 0.002, len(narrow))
        return resample_poly(narrow, 2, 1).astype(np.float32)
    if channel == "room":
        t = np.arange(int(0.4 * RATE)) / RATE
        impulse = rng.normal(0, 1, len(t)) * np.exp(-6.9 * t / 0.45)  # RT60 ~0.45 s
        impulse[0] = 12.0
        wet = fftconvolve(mix, impulse / np.linalg.norm(impulse))[: len(mix)]
        noise = np.cumsum(rng.normal(0, 1, len(wet)))  # brown: hum and air of a room
        noise = sosfilt(butter(2, 60, "highpass", fs=RATE, output="sos"), noise)
        speech_power = np.mean(wet[np.abs(wet) > 1e-3] ** 2)
        noise *= np.sqrt(speech_power / 10 ** (15 / 10) / np.mean(noise**2))  # 15 dB SNR
        return (wet + noise).astype(np.float32)
    return mix


def _write_wav(path: Path, audio: np.ndarray) -> None:
    import soundfile

    peak = np.max(np.abs(audio)) + 1e-9
    tmp = path.with_suffix(".part.wav")
    soundfile.write(str(tmp), (audio / peak * 0.9).astype(np.float32), RATE, subtype="PCM_16")
    tmp.replace(path)


def _kind(name: str) -> str:
    """The conversation type a case reports under: ff/mm/fm pairs, three, four; its channel."""
    return name.removesuffix("-h")


def meetings() -> list[Recording]:
    """The AMI meeting starts as they are, scored against their "only words" references."""
    from samples.diarization import read_rttm

    out = []
    for wav in sorted(MEETINGS.glob("*.wav")):
        stem = wav.name.removesuffix(".wav")
        name = stem.removesuffix("_0-30s")
        reference = tuple(read_rttm(MEETINGS / f"{stem}.only_words.rttm"))
        out.append(Recording(name, "ami-meeting", wav, reference, name in HELD_OUT_MEETINGS))
    return out


def all_recordings(folder: Path) -> list[Recording]:
    """Every built conversation, then the meetings."""
    return [build(case, folder) for case in CASES] + meetings()
