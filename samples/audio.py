"""Speech with exact ground truth: espeak-ng reads known sentences, separated by known silences.

Because we synthesise the speech ourselves, the words and the time span of every sentence are known, so
tests and benches score recognition (WER with jiwer) and timestamps against the truth.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENGLISH = (
    "We are testing speech recognition on a small computer.",
    "The weather is nice today, so we will walk to the park.",
    "Please send the report to the team before the meeting.",
    "My brother bought a new bicycle last week.",
    "She reads a book every evening before she goes to sleep.",
    "The train to the city leaves from the second platform.",
)
SPANISH = (
    "Buenos días, me llamo Carlos y vivo en Madrid.",
    "Hoy hace mucho calor en la ciudad.",
    "Mi padre trabaja en un hospital muy grande.",
    "Vamos a comer en un restaurante esta noche.",
    "El tren sale de la estación por la mañana.",
)
_WHO = (
    "My sister",
    "The old teacher",
    "Our neighbour",
    "A young doctor",
    "The tall driver",
    "His father",
    "The new manager",
    "Her best friend",
    "A quiet student",
    "The busy farmer",
    "Your cousin",
)
_DID = ("painted", "carried", "cleaned", "opened", "bought", "found", "repaired", "sold", "moved")
_WHAT = (
    "a green door",
    "the heavy boxes",
    "two yellow chairs",
    "an old piano",
    "the kitchen window",
    "a small boat",
    "the garden gate",
    "three blue bottles",
    "a wooden table",
    "the red car",
)
_WHEN = (
    "on Monday morning",
    "after lunch",
    "before the storm",
    "last summer",
    "late at night",
    "during the holiday",
    "early in the spring",
)


def varied_sentences(count: int) -> tuple[str, ...]:
    """`count` distinct plain English sentences (long benchmark audio without a repeating script)."""
    return tuple(
        f"{_WHO[i % len(_WHO)]} {_DID[i % len(_DID)]} {_WHAT[i % len(_WHAT)]} {_WHEN[i % len(_WHEN)]}."
        for i in range(count)
    )


LANGUAGES = {"en": ("en-us", ENGLISH), "es": ("es", SPANISH)}  # Whisper code -> (espeak voice, sentences)


@dataclass(frozen=True)
class SpokenLine:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class SpeechSample:
    path: Path
    language: str  # Whisper's code for it
    lines: tuple[SpokenLine, ...]
    duration: float

    @property
    def text(self) -> str:
        return " ".join(line.text for line in self.lines)


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise FileNotFoundError(f"{tool} is not installed: apt-get install espeak-ng ffmpeg")
    return found


def _speak(text: str, voice: str, speed: int, workdir: Path, index: int) -> tuple[np.ndarray, int]:
    """One sentence as int16 samples at espeak's own rate (text through a file: any characters pass)."""
    text_file, wav_file = workdir / f"line{index}.txt", workdir / f"line{index}.wav"
    text_file.write_text(text, encoding="utf-8")
    cmd = [_require("espeak-ng"), "-v", voice, "-s", str(speed), "-f", str(text_file), "-w", str(wav_file)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    with wave.open(str(wav_file), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), "<i2"), wav.getframerate()


def _trim(samples: np.ndarray, level: int = 64) -> np.ndarray:
    """espeak pads each sentence with silence; trim it so the recorded spans are the voiced ones."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > level)
    return samples[loud[0] : loud[-1] + 1] if len(loud) else samples[:0]


def make_speech(
    out: str | Path,
    language: str = "en",
    sentences: tuple[str, ...] | None = None,
    *,
    speed: int = 140,
    gap: float = 1.0,
    lead: float = 0.6,
    repeat: int = 1,
) -> SpeechSample:
    """Sentences spoken one after another with `gap` seconds of silence; any ffmpeg audio format by suffix.

    `repeat` loops the script (long files for benchmarks) without re-synthesising it.
    """
    voice, default = LANGUAGES[language]
    sentences = sentences or default
    out = Path(out)
    workdir = Path(tempfile.mkdtemp(prefix="speech-"))
    try:
        voiced = [_speak(text, voice, speed, workdir, i) for i, text in enumerate(sentences)]
        rate = voiced[0][1]
        pieces, lines, cursor = [np.zeros(int(lead * rate), np.int16)], [], lead
        silence = np.zeros(int(gap * rate), np.int16)
        for _ in range(repeat):
            for text, (samples, _) in zip(sentences, voiced, strict=True):
                samples = _trim(samples)
                lines.append(SpokenLine(round(cursor, 3), round(cursor + len(samples) / rate, 3), text))
                pieces += [samples, silence]
                cursor += (len(samples) + len(silence)) / rate
        raw = workdir / "speech.wav"
        with wave.open(str(raw), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes(np.concatenate(pieces).tobytes())
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [_require("ffmpeg"), "-v", "error", "-y", "-i", str(raw), "-ar", "16000", "-ac", "1", str(out)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return SpeechSample(out, language, tuple(lines), round(cursor, 3))


def make_silence(out: str | Path, duration: float = 5.0) -> Path:
    """Digital silence of `duration` seconds (any ffmpeg audio format by suffix)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [_require("ffmpeg"), "-v", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono"]
    subprocess.run([*cmd, "-t", f"{duration:.3f}", str(out)], check=True, capture_output=True, timeout=120)
    return out


def make_video_with_audio(
    out: str | Path, audio: str | Path | None, *, duration: float | None = None, size: str = "320x240"
) -> Path:
    """A small H.264 MP4 over `audio` (AAC); with audio None, a video without any audio track."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [_require("ffmpeg"), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s={size}:r=10"]
    if audio is not None:
        cmd += ["-i", str(audio), "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", "64k", "-shortest"]
    if duration is not None or audio is None:
        cmd += ["-t", f"{duration or 3.0:.3f}"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    return out


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER (jiwer) after lower-casing and dropping punctuation: what was said, not how it was written."""
    import jiwer

    words = jiwer.Compose(
        [
            jiwer.ToLowerCase(),
            jiwer.RemovePunctuation(),
            jiwer.RemoveMultipleSpaces(),
            jiwer.Strip(),
            jiwer.ReduceToListOfListOfWords(),
        ]
    )
    return float(jiwer.wer(reference, hypothesis, reference_transform=words, hypothesis_transform=words))
