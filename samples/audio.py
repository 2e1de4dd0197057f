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

from samples.media_cache import cached_media

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
    return _speak_voice(text, voice, 50, speed, workdir, index)


def _speak_voice(
    text: str, voice: str, pitch: int, speed: int, workdir: Path, index: int
) -> tuple[np.ndarray, int]:
    text_file, wav_file = workdir / f"line{index}.txt", workdir / f"line{index}.wav"
    text_file.write_text(text, encoding="utf-8")
    cmd = [_require("espeak-ng"), "-v", voice, "-p", str(pitch), "-s", str(speed)]
    cmd += ["-f", str(text_file), "-w", str(wav_file)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    with wave.open(str(wav_file), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), "<i2"), wav.getframerate()


def _trim(samples: np.ndarray, level: int = 64) -> np.ndarray:
    """espeak pads each sentence with silence; trim it so the recorded spans are the voiced ones."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > level)
    return samples[loud[0] : loud[-1] + 1] if len(loud) else samples[:0]


@cached_media("out")
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


@cached_media("out")
def make_silence(out: str | Path, duration: float = 5.0) -> Path:
    """Digital silence of `duration` seconds (any ffmpeg audio format by suffix)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [_require("ffmpeg"), "-v", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono"]
    subprocess.run([*cmd, "-t", f"{duration:.3f}", str(out)], check=True, capture_output=True, timeout=120)
    return out


@cached_media("out")
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
            jiwer.SubstituteRegexes({r"\s+": " "}),  # subtitle line breaks are word breaks too
            jiwer.ToLowerCase(),
            jiwer.RemovePunctuation(),
            jiwer.RemoveMultipleSpaces(),
            jiwer.Strip(),
            jiwer.ReduceToListOfListOfWords(),
        ]
    )
    return float(jiwer.wer(reference, hypothesis, reference_transform=words, hypothesis_transform=words))


# ---------------------------------------------------------------- conversations: who spoke when, exactly
@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an espeak-ng voice+variant, pitch (0-99) and words per minute."""

    name: str
    espeak: str
    pitch: int = 50
    speed: int = 150


@dataclass(frozen=True)
class Turn:
    """One speaker's turn; `overlap` > 0 starts it that many seconds before the previous turn ends."""

    speaker: str
    text: str
    gap: float = 0.6
    overlap: float = 0.0


@dataclass(frozen=True)
class SpeakerSpan:
    """A voiced stretch of one speaker (a turn is split at its inner pauses): the diarization truth."""

    speaker: str
    start: float
    end: float


@dataclass(frozen=True)
class Conversation:
    path: Path
    voices: tuple[Voice, ...]
    turns: tuple[Turn, ...]
    spans: tuple[SpeakerSpan, ...]  # reference speech, overlapping where two people talk at once
    duration: float

    @property
    def text(self) -> str:
        return " ".join(turn.text for turn in self.turns)

    @property
    def speakers(self) -> tuple[str, ...]:
        return tuple(sorted({span.speaker for span in self.spans}))


VOICES = {
    "ben": Voice("ben", "en-us+m3", pitch=35, speed=150),  # low male
    "amy": Voice("amy", "en-gb+f3", pitch=70, speed=170),  # high female, faster
    "carl": Voice("carl", "en-us+klatt", pitch=55, speed=130),  # another synthesiser, slow
    "dora": Voice("dora", "en-gb-scotland+f2", pitch=60, speed=145),
}


# Turns of 1-8 s, one short interjection ("Right."), one overlap (a reply starting before the turn ends).
MEETING = (
    Turn("ben", "Good morning, and thank you for coming in today. We have a lot to talk about."),
    Turn("amy", "Thanks for having me."),
    Turn("ben", "Let us start with the budget for next year, because it changed quite a bit since spring."),
    Turn("amy", "Right.", gap=0.3),
    Turn("ben", "The travel costs went up, and the office rent is higher too.", gap=0.3),
    Turn(
        "amy",
        "I saw the numbers last week. The rent is the bigger problem, and we should look for a "
        "smaller office before the end of the year.",
    ),
    Turn("ben", "That is a very good idea.", overlap=0.8),
    Turn("amy", "I can send you a list of places tomorrow morning."),
    Turn("ben", "Please do. And what about the new laptops for the team?"),
    Turn("amy", "They arrive on Monday."),
    Turn("ben", "Great, then we are done for today. See you next week."),
)
PANEL = (
    Turn("carl", "Welcome to the panel. Today we talk about trains in small cities."),
    Turn("amy", "Thank you. I think most small cities need a faster connection to the capital."),
    Turn("ben", "I agree, but the tickets are far too expensive for most families."),
    Turn("carl", "Yes.", gap=0.3),
    Turn("ben", "A return ticket costs more than a full tank of petrol.", gap=0.3),
    Turn(
        "amy",
        "That is true for now. The new lines will be cheaper to run, and the prices should "
        "come down within a few years.",
    ),
    Turn("carl", "How many years are we talking about?", overlap=0.7),
    Turn("amy", "Maybe five."),
    Turn("ben", "Five years is a long time to wait when you need to get to work every morning."),
    Turn("carl", "Let us take a question from the audience."),
    Turn("amy", "Of course."),
    Turn("ben", "Sure, go ahead."),
)
CONVERSATIONS = {  # case name -> (turns, voices)
    "two-speakers": (MEETING, (VOICES["ben"], VOICES["amy"])),
    "three-speakers": (PANEL, (VOICES["ben"], VOICES["amy"], VOICES["carl"])),
}


def _voiced_spans(
    samples: np.ndarray, rate: int, min_pause: float = 0.2, level: int = 64
) -> list[tuple[int, int]]:
    """Sample ranges of voice, split where the signal stays below `level` for at least `min_pause`."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > level)
    if not len(loud):
        return []
    breaks = np.flatnonzero(np.diff(loud) > int(min_pause * rate))
    starts = np.concatenate([[loud[0]], loud[breaks + 1]])
    ends = np.concatenate([loud[breaks], [loud[-1]]]) + 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


@cached_media("out")
def make_conversation(
    out: str | Path, turns: tuple[Turn, ...], voices: tuple[Voice, ...], *, lead: float = 0.5
) -> Conversation:
    """Turns spoken by different espeak-ng voices, mixed (summed where they overlap), with exact spans.

    The truth comes from the synthesised samples themselves: each turn is split at its pauses of 0.2 s or
    more, so every reference span is voiced and the gaps and overlaps are known to the sample.
    """
    out = Path(out)
    by_name = {voice.name: voice for voice in voices}
    workdir = Path(tempfile.mkdtemp(prefix="conversation-"))
    try:
        placed: list[tuple[int, np.ndarray, str]] = []
        rate = 0
        cursor = 0  # end of the previous turn, in samples
        for i, turn in enumerate(turns):
            voice = by_name[turn.speaker]
            cmd_voice = voice.espeak
            samples, rate = _speak_voice(turn.text, cmd_voice, voice.pitch, voice.speed, workdir, i)
            samples = _trim(samples)
            if not placed:
                start = int(lead * rate)
            elif turn.overlap > 0:
                start = max(0, cursor - int(turn.overlap * rate))
            else:
                start = cursor + int(turn.gap * rate)
            placed.append((start, samples, turn.speaker))
            cursor = max(cursor, start + len(samples))
        mix = np.zeros(cursor + int(lead * rate), np.int32)
        spans = []
        for start, samples, speaker in placed:
            mix[start : start + len(samples)] += samples
            for a, b in _voiced_spans(samples, rate):
                spans.append(SpeakerSpan(speaker, round((start + a) / rate, 3), round((start + b) / rate, 3)))
        raw = workdir / "mix.wav"
        with wave.open(str(raw), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes(np.clip(mix, -32768, 32767).astype("<i2").tobytes())
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [_require("ffmpeg"), "-v", "error", "-y", "-i", str(raw), "-ar", "16000", "-ac", "1", str(out)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    spans.sort(key=lambda s: (s.start, s.speaker))
    return Conversation(out, voices, turns, tuple(spans), round(len(mix) / rate, 3))
