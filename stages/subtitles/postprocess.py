"""Postprocess: keyframe texts to subtitle events, then SRT, JSON and TXT written atomically.

Consecutive keyframes with the same text (or OCR jitter of a long line: one character in ten) are one
event; a real change of text splits even without a gap, even when a single character of a short line
changes; a blank between two identical lines keeps them as two events. Low-confidence noise and blips
shorter than the minimum are dropped.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import srt
from prefect import task
from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from core.caching import resumable
from core.outputs import write_json_atomic, write_text_atomic
from core.schema import Band, FrameText, SubtitleEvent
from stages.subtitles.spacing import known_word_share, spaced

_NOISE = re.compile(r"[\s\W_]+", re.UNICODE)
_CONFUSABLE = str.maketrans({"i": "l", "1": "l", "|": "l", "0": "o"})


@dataclass(frozen=True)
class PostprocessSettings:
    min_confidence: float = 0.75  # lines below this are noise
    chars_per_jitter: int = 12  # a long line may differ by one character per this many (OCR jitter)
    fragment_ratio: float = 90.0  # rapidfuzz partial ratio from which a shorter reading is a fragment
    min_fragment_chars: int = 3  # shorter readings are never taken for a fragment of a neighbour
    min_duration: float = 0.15  # seconds
    min_chars: int = 1
    spacing: str = "english"  # word spaces by language (spacing.space_words): english, keep, none (ja/zh)


@dataclass
class _Draft:
    start: float
    end: float
    readings: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # text -> weight
    confidences: list[float] = field(default_factory=list)

    def best_text(self) -> str:
        """The reading with the most weight (seconds x confidence), Latin words found in the list
        counting double: of "Pollce ask drivers" and "Police ask drivers", the second wins."""
        return max(self.readings.items(), key=lambda kv: kv[1] * (1 + known_word_share(kv[0])))[0]


def normalise(text: str) -> str:
    """What two readings are compared on: no spaces or punctuation, lower case, and the glyphs the
    recogniser confuses on blocky video (l/i/1, o/0) folded together."""
    return _NOISE.sub("", text).lower().translate(_CONFUSABLE)


def clean_frame_text(frame: FrameText, settings: PostprocessSettings) -> tuple[str, float]:
    lines = [ln for ln in frame.lines if ln.confidence >= settings.min_confidence and normalise(ln.text)]
    text = "\n".join(ln.text for ln in lines)
    return text, min((ln.confidence for ln in lines), default=0.0)


def same_line(a: str, b: str, settings: PostprocessSettings) -> bool:
    """Two readings of one line: equal, OCR jitter of a long line, or one a fragment of the other.

    Jitter is bounded by length, so a short line that changes by one character ("Gate 4 is open" ->
    "Gate 5 is open") is a new line. A fragment is what the detector returns when part of a line sits
    on a bright or busy background: a shorter reading contained in its neighbour's.
    """
    na, nb = normalise(a), normalise(b)
    if na == nb:
        return True
    if len(na) == len(nb) or min(len(na), len(nb)) < settings.min_fragment_chars:
        allowed = max(len(na), len(nb)) // settings.chars_per_jitter
        return Levenshtein.distance(na, nb) <= allowed
    short, long_ = sorted((na, nb), key=len)
    if fuzz.partial_ratio(short, long_) >= settings.fragment_ratio:
        return True
    return Levenshtein.distance(na, nb) <= len(long_) // settings.chars_per_jitter


def frames_to_events(frames: list[FrameText], settings: PostprocessSettings) -> list[SubtitleEvent]:
    drafts: list[_Draft] = []
    current: _Draft | None = None
    last_end: float | None = None
    for frame in sorted(frames, key=lambda f: f.start):
        text, conf = clean_frame_text(frame, settings)
        contiguous = last_end is not None and abs(frame.start - last_end) < 1e-6
        last_end = frame.end
        if not text:
            current = None
            continue
        if (
            current is not None
            and contiguous
            and same_line(current.best_text(), text, settings)
        ):
            current.end = frame.end
        else:
            current = _Draft(frame.start, frame.end)
            drafts.append(current)
        current.readings[text] += (frame.end - frame.start) * conf
        current.confidences.append(conf)
    events = []
    for d in drafts:
        text = d.best_text()
        if d.end - d.start < settings.min_duration or len(normalise(text)) < settings.min_chars:
            continue
        conf = sum(d.confidences) / len(d.confidences)
        events.append(
            SubtitleEvent(
                len(events) + 1, round(d.start, 3), round(d.end, 3), spaced(text, settings), round(conf, 4)
            )
        )
    return events


def to_srt(events: list[SubtitleEvent]) -> str:
    subs = [
        srt.Subtitle(e.index, dt.timedelta(seconds=e.start), dt.timedelta(seconds=e.end), e.text)
        for e in events
    ]
    return srt.compose(subs, reindex=False) if subs else ""


def write_subtitle_files(
    events: list[SubtitleEvent], run_dir: Path, stem: str, *, video: Path, band: Band, sample_fps: float
) -> dict[str, Path]:
    """<stem>.srt, .json (events with start, end, text, confidence) and .txt, each written atomically."""
    srt_path = write_text_atomic(run_dir / f"{stem}.srt", to_srt(events))
    json_path = write_json_atomic(
        run_dir / f"{stem}.json",
        {"video": str(video), "band": band, "sample_fps": sample_fps, "events": events},
    )
    txt_path = write_text_atomic(run_dir / f"{stem}.txt", "".join(f"{e.text}\n" for e in events))
    return {"srt": srt_path, "json": json_path, "txt": txt_path}


@task(name="postprocess", task_run_name="postprocess", **resumable())
def postprocess_task(frames: list[FrameText], settings: PostprocessSettings) -> list[SubtitleEvent]:
    return frames_to_events(frames, settings)
