"""Postprocess: keyframe texts to subtitle events, then SRT, JSON and TXT written atomically.

Consecutive keyframes with the same text (or OCR jitter of a long line: one character in ten) are one
event; a real change of text splits even without a gap, even when a single character of a short line
changes; a blank between two identical lines keeps them as two events. Low-confidence noise and blips
shorter than the minimum are dropped.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import srt
from prefect import task
from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from core.caching import resumable
from core.outputs import write_json_atomic, write_text_atomic
from core.schema import Band, FrameText, SubtitleEvent
from stages.subtitles.positions import split_by_position
from stages.subtitles.spacing import spaced
from stages.subtitles.vote import Read, vote_text

_NOISE = re.compile(r"[\s\W_]+", re.UNICODE)
_CONFUSABLE = str.maketrans({"i": "l", "1": "l", "|": "l", "0": "o"})
MAX_OTHER_READS = 8  # an event's other reads kept as candidates (a long jittery line reads many ways)


@dataclass(frozen=True)
class PostprocessSettings:
    min_confidence: float = 0.75  # lines below this are noise
    chars_per_jitter: int = 12  # a long line may differ by one character per this many (OCR jitter)
    fragment_ratio: float = 90.0  # rapidfuzz partial ratio from which a shorter reading is a fragment
    min_fragment_chars: int = 3  # shorter readings are never taken for a fragment of a neighbour
    min_duration: float = 0.15  # seconds
    min_chars: int = 1
    spacing: str = "english"  # word spaces by language (spacing.space_words): english, keep, none (ja/zh)
    stacked_copy_ratio: float = 80.0  # a row this like the row above it is the same line shown twice
    min_split_seconds: float = 0.5  # one frame splits a line of the image only when shown this long
    min_split_confidence: float = 0.98  # ... and read this surely (a misread glyph reads less surely)
    other_text_similarity: float = 0.5  # texts less alike than this are two lines, not a misread of one,
    other_text_edits: int = 3  # ... and this many characters apart (a 1-3 character line misread is not)
    max_read_seconds: float = 0.5  # a keyframe held longer is still one read of the pixels in the vote
    misread_seconds: float = 1.0  # a reading this short between two of one line (A, A', A) is a misread
    simplified: bool = False  # the language read is simplified Chinese (ch): look-alike twins simplified


@dataclass
class _Draft:
    start: float
    end: float
    line: int | None = None
    reads: list[list[Read]] = field(default_factory=list)  # per frame (text, seconds x confidence)
    spans: list[tuple[float, float]] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)

    def best_text(self) -> str:
        return vote_text(_flat(self.reads))


def _flat(per_frame: list[list[Read]]) -> list[Read]:
    return [read for reads in per_frame for read in reads]


def normalise(text: str) -> str:
    """What two readings are compared on: no spaces or punctuation, lower case, and the glyphs the
    recogniser confuses on blocky video (l/i/1, o/0) folded together."""
    return _NOISE.sub("", text).lower().translate(_CONFUSABLE)


_ELLIPSIS = re.compile(r"(?<=[\u3400-\u9fff])(?:\s*…+|(?:\s*[oO。.·]){3,})\s*$")


def chinese_ellipsis(text: str) -> str:
    """A Chinese line's closing "……" as written: PP-OCR reads its six mid-height dots as "ooo ooo",
    "。。。" or a single "…" (the meme edit's "这是她真心的么ooo ooo")."""
    return _ELLIPSIS.sub("……", text)


SIMPLIFIED_TWINS = str.maketrans({"別": "别"})  # same shape but one stroke; the recogniser mixes them up


def icon_row(text: str) -> bool:
    """A row of emoji or icons, which the recogniser reads as one glyph repeated ("😭😭😭😭😭" as
    "3 3 3 30 3"): three or more tokens, most of them one and the same short token with no letter in it."""
    tokens = text.split()
    if len(tokens) < 3:
        return False
    token, count = Counter(tokens).most_common(1)[0]
    return count >= 0.6 * len(tokens) and len(token) <= 2 and not any(c.isalpha() for c in token)


def _read_text(text: str, settings: PostprocessSettings) -> str:
    """A row as the events say it: the closing ellipsis written out, look-alike twins simplified."""
    text = chinese_ellipsis(text)
    return text.translate(SIMPLIFIED_TWINS) if settings.simplified else text  # "不准再看別人"


def frame_reads(frame: FrameText, settings: PostprocessSettings) -> list[Read]:
    """The frame's confident rows as reads (text, confidence). A line burned in twice, in two stacked
    copies, is said once, each copy one more read of it for the vote (a copy can hold a typo or a
    misread the other has not); other rows are joined into one multi-line read."""
    rows: list[list[Read]] = []  # each row with its stacked copies
    for ln in frame.lines:
        text = _read_text(ln.text, settings)
        key = normalise(text)
        if ln.confidence < settings.min_confidence or not key or icon_row(text):
            continue
        for copies in rows:
            if fuzz.ratio(key, normalise(copies[0][0])) >= settings.stacked_copy_ratio:
                copies.append((text, ln.confidence))
                break
        else:
            rows.append([(text, ln.confidence)])
    if len(rows) == 1:
        return rows[0]
    return [("\n".join(r[0][0] for r in rows), min(r[0][1] for r in rows))] if rows else []


def same_line(a: str, b: str, settings: PostprocessSettings, fragments: bool = True) -> bool:
    """Two readings of one line: equal, OCR jitter of a long line, or one a fragment of the other.

    Jitter is bounded by length, so a short line that changes by one character ("Gate 4 is open" ->
    "Gate 5 is open") is a new line. A fragment is what the detector returns when part of a line sits
    on a bright or busy background: a shorter reading contained in its neighbour's; where the image
    saw a new line (`fragments=False`) it is one ("给带走" then "快点老刘给带走").
    """
    na, nb = normalise(a), normalise(b)
    if na == nb:
        return True
    if len(na) == len(nb) or min(len(na), len(nb)) < settings.min_fragment_chars:
        allowed = max(len(na), len(nb)) // settings.chars_per_jitter
        return Levenshtein.distance(na, nb) <= allowed
    short, long_ = sorted((na, nb), key=len)
    if fragments and fuzz.partial_ratio(short, long_) >= settings.fragment_ratio:
        return True
    return Levenshtein.distance(na, nb) <= len(long_) // settings.chars_per_jitter


def split_line(
    reads: list[list[Read]], spans: list[tuple[float, float]], settings: PostprocessSettings
) -> list[int]:
    """Where the reads of one on-screen line change text for good: indices where a new event starts.

    The image saw one line, but a change its strokes barely show (a shadow-only "第一条字幕" ->
    "第二条字幕") still splits when every frame on each side reads like its side and not the other, and
    each side is two frames or one shown `min_split_seconds` and, unless the texts are wholly other
    ("欢迎使用 YiVideo" -> "Subtitles from pixels", small text the 4-px cells barely tell apart), read at
    `min_split_confidence`: one misread frame (A, A', A, or A A A') never does.
    """
    n = len(reads)
    for k in range(1, n):
        before, after = vote_text(_flat(reads[:k])), vote_text(_flat(reads[k:]))
        if same_line(before, after, settings):
            continue
        b, a = normalise(before), normalise(after)
        other_text = _other_text(b, a, settings)
        if not (
            _lasting(reads[:k], spans[:k], settings, other_text)
            and _lasting(reads[k:], spans[k:], settings, other_text)
        ):
            continue

        def closer(frame: list[Read], own: str, other: str) -> bool:
            t = normalise(max(frame, key=lambda r: r[1])[0])
            return Levenshtein.distance(t, own) < Levenshtein.distance(t, other)

        if all(closer(f, b, a) for f in reads[:k]) and all(closer(f, a, b) for f in reads[k:]):
            return [0] + [k + i for i in split_line(reads[k:], spans[k:], settings)]
    return [0]


def _lasting(
    reads: list[list[Read]], spans: list[tuple[float, float]], settings: PostprocessSettings, other_text: bool
) -> bool:
    """Enough frames on one side of a split. A single frame must be shown long enough and, where the
    other side's text is near its own (a glyph or two apart, which a misread also gives), read surely."""
    if len(spans) >= 2:
        return True
    (start, end), weights = spans[0], [w for _, w in reads[0]]
    if end - start < settings.min_split_seconds:
        return False
    seen = min(end - start, settings.max_read_seconds)  # reads are weighted seconds x confidence
    return other_text or max(weights) >= seen * settings.min_split_confidence


def frames_to_events(frames: list[FrameText], settings: PostprocessSettings) -> list[SubtitleEvent]:
    """Contiguous frames of one on-screen line (the keyframes' image line) are one event, their reads
    voted; without a line id (or across two) frames join when their texts are one line (same_line)."""
    drafts: list[_Draft] = []
    current: _Draft | None = None
    weak = _WeakFrames(frames, settings)
    for frame in sorted(frames, key=lambda f: f.start):
        reads = frame_reads(frame, settings)
        if not reads:
            continue
        conf = max(c for _, c in reads)
        if current is not None and weak.bridges(current.end, frame.start, frame.line, current.line):
            joins = True  # the image saw one line on through frames read unsurely ("Їжак п'є чай з ґавою")
        elif current is None or abs(frame.start - current.end) > 1e-6:
            joins = False  # a repeat after a gap, however short ("别碰我" twice), is a second event
        elif frame.line is not None and frame.line == current.line:
            joins = True  # the image saw the same line: its reads are voted below
        else:
            new_line = frame.line is not None and current.line is not None
            known = {current.best_text()} | {t for t, _ in current.reads[-1]}  # a copy may be read right
            joins = any(same_line(k, t, settings, fragments=not new_line) for k in known for t, _ in reads)
        if joins:
            current.end = frame.end
            current.line = frame.line
        else:
            current = _Draft(frame.start, frame.end, frame.line)
            drafts.append(current)
        seen = min(frame.end - frame.start, settings.max_read_seconds)  # one keyframe is one read
        current.reads.append([(t, seen * c) for t, c in reads])
        current.spans.append((_legible_from(frame, settings) if not joins else frame.start, frame.end))
        current.confidences.append(conf)
    parts = []
    for d in drafts:
        cuts = split_line(d.reads, d.spans, settings) + [len(d.reads)]
        parts += [_Draft(d.spans[i][0], d.spans[j - 1][1], d.line, d.reads[i:j], d.spans[i:j],
                         d.confidences[i:j]) for i, j in zip(cuts, cuts[1:], strict=False)]  # fmt: skip
    events = []
    widened_end = False  # the last event grew over a weak frame after it
    for part in rejoin_misreads(parts, settings):
        text = part.best_text()
        start, end = weak.widen(part.spans[0][0], part.spans[-1][1], text)
        if end - start < settings.min_duration or len(normalise(text)) < settings.min_chars:
            continue
        conf = sum(part.confidences) / len(part.confidences)
        shown = spaced(text, settings)
        bridged = widened_end or start < part.spans[0][0]  # a weak frame between two reads of the line:
        if bridged and events and events[-1].text == shown and abs(events[-1].end - start) < 1e-3:
            events[-1] = replace(events[-1], end=round(end, 3))  # it stayed on screen, one event
            widened_end = end > part.spans[-1][1]
            continue
        widened_end = end > part.spans[-1][1]
        events.append(
            SubtitleEvent(
                len(events) + 1, round(start, 3), round(end, 3), shown, round(conf, 4),
                other_reads(part.reads, shown, settings),
            )
        )  # fmt: skip
    return events


def rejoin_misreads(parts: list[_Draft], settings: PostprocessSettings) -> list[_Draft]:
    """A, A', A back to back, A' a glyph or two from A and shown at most `misread_seconds`: one line
    misread for a moment, one event with its reads voted. Subtitles do not change and change back within
    a second; the image may still have seen two lines (a pale line on a re-encoded 5 s cut of …297 read
    "总对不起对不起", "总又不起对不起" for 0.4 s, then "总对不起对不起" again: three events)."""
    parts = list(parts)
    k = 1
    while k < len(parts) - 1:
        before, middle, after = parts[k - 1], parts[k], parts[k + 1]
        a, m, b = (normalise(p.best_text()) for p in (before, middle, after))
        if (
            a == b
            and not _other_text(a, m, settings)
            and middle.spans[-1][1] - middle.spans[0][0] <= settings.misread_seconds
            and abs(before.spans[-1][1] - middle.spans[0][0]) < 1e-3
            and abs(middle.spans[-1][1] - after.spans[0][0]) < 1e-3
        ):
            parts[k - 1 : k + 2] = [
                _Draft(before.start, after.end, after.line, before.reads + middle.reads + after.reads,
                       before.spans + middle.spans + after.spans,
                       before.confidences + middle.confidences + after.confidences)
            ]  # fmt: skip
            k = max(1, k - 1)
        else:
            k += 1
    return parts


def _other_text(a: str, b: str, settings: PostprocessSettings) -> bool:
    """Normalised texts wholly other, not a misread of one another (a glyph or two apart)."""
    return (
        Levenshtein.normalized_similarity(a, b) < settings.other_text_similarity
        and Levenshtein.distance(a, b) >= settings.other_text_edits
    )


def _legible_from(frame: FrameText, settings: PostprocessSettings) -> float:
    """When a frame's line could first be read: before the frame where OCR read it in the samples before it
    (OcrLine.since: a faint line whose strokes signalled late), else the frame's start."""
    early = [
        ln.since for ln in frame.lines if ln.since is not None and ln.confidence >= settings.min_confidence
    ]
    return min([frame.start, *early])


class _WeakFrames:
    """Keyframes read only below `min_confidence`, by where they start and end.

    The threshold keeps noise from making events; a frame that reads exactly an adjacent event's text,
    only less surely, is that line still (or already) on screen: a fade's first and last frames, white
    text over a bright patch ("这是她真心的么……" at 0.55 and 0.64 between reads at 0.86). Such frames
    widen the event; they never make one, and one frame widens one event. An event whose lead samples
    moved its start inside a weak frame (OcrLine.since) grows over that frame too.
    """

    def __init__(self, frames: list[FrameText], settings: PostprocessSettings) -> None:
        self._by_end: dict[float, tuple[float, set[str]]] = {}
        self._by_start: dict[float, tuple[float, set[str]]] = {}
        self._lines: dict[float, tuple[float, int | None]] = {}  # by start: end and image line
        for frame in frames:
            if frame.lines and not frame_reads(frame, settings):
                self._lines[round(frame.start, 3)] = (frame.end, frame.line)
                rows = [normalise(_read_text(ln.text, settings)) for ln in frame.lines]
                keys = set(rows) | {"".join(rows)}
                self._by_end[round(frame.end, 3)] = (frame.start, keys)
                self._by_start[round(frame.start, 3)] = (frame.end, keys)
        self._ends = sorted(self._by_end)

    def bridges(self, end: float, start: float, line: int | None, before: int | None) -> bool:
        """Whether weak frames of the image line `line` fill the time from `end` to `start`, between two
        read frames of that line: the line stayed on screen, read unsurely for a moment (a read frame of a
        line between two weak ones was its own event)."""
        if line is None or line != before or start - end < 1e-6:
            return False
        while end < start - 1e-6:
            hit = self._lines.get(round(end, 3))
            if hit is None or hit[1] != line:
                return False
            end = hit[0]
        return abs(end - start) < 1e-6

    def _ending_over(self, t: float) -> float:
        """The end of the weak frame that ends at `t` or holds it (else `t`)."""
        k = bisect.bisect_left(self._ends, round(t, 3))
        if k < len(self._ends) and (hit := self._by_end.get(self._ends[k])) and hit[0] < t:
            return self._ends[k]
        return round(t, 3)

    def widen(self, start: float, end: float, text: str) -> tuple[float, float]:
        """The event's span grown over the weak frames next to it that read its text."""
        key = normalise(text)
        while (hit := self._by_end.get(at := self._ending_over(start))) and key in hit[1]:
            self._by_end.pop(at)
            self._by_start.pop(round(hit[0], 3), None)
            start = hit[0]
        while (hit := self._by_start.get(round(end, 3))) and key in hit[1]:
            self._by_start.pop(round(end, 3))
            self._by_end.pop(round(hit[0], 3), None)
            end = hit[0]
        return start, end


def other_reads(per_frame: list[list[Read]], shown: str, settings: PostprocessSettings) -> tuple[str, ...]:
    """The texts frames read other than the event's (the vote's), heaviest first and at most
    `MAX_OTHER_READS`: published beside the event so the speech can settle a word the frames disagreed
    on (stages/fusion); the vote and the SRT do not change."""
    weights: dict[str, float] = {}
    for text, weight in _flat(per_frame):
        weights[text] = weights.get(text, 0.0) + weight
    kept: list[str] = []
    for text in sorted(weights, key=weights.__getitem__, reverse=True):
        read = spaced(text, settings)
        if read != shown and read not in kept:
            kept.append(read)
            if len(kept) == MAX_OTHER_READS:
                break
    return tuple(kept)


def to_srt(events: list[SubtitleEvent]) -> str:
    subs = [
        srt.Subtitle(e.index, dt.timedelta(seconds=e.start), dt.timedelta(seconds=e.end), e.text)
        for e in events
    ]
    return srt.compose(subs, reindex=False) if subs else ""


def write_subtitle_files(
    events: list[SubtitleEvent], run_dir: Path, stem: str, *, video: Path, band: Band, sample_fps: float
) -> dict[str, Path]:
    """<stem>.srt, .json (events with start, end, text, confidence, the frames' other reads) and .txt,
    each written atomically."""
    srt_path = write_text_atomic(run_dir / f"{stem}.srt", to_srt(events))
    json_path = write_json_atomic(
        run_dir / f"{stem}.json",
        {"video": str(video), "band": band, "sample_fps": sample_fps, "events": events},
    )
    txt_path = write_text_atomic(run_dir / f"{stem}.txt", "".join(f"{e.text}\n" for e in events))
    return {"srt": srt_path, "json": json_path, "txt": txt_path}


def events_by_position(frames: list[FrameText], settings: PostprocessSettings) -> list[SubtitleEvent]:
    """Whole-frame reading (lines all over the frame): each position's events, in time order. One glyph
    read somewhere in a picture is texture, not a caption; the same text at two places at once (a zoom
    that moved the row) is one line."""
    settings = replace(settings, min_chars=max(2, settings.min_chars))
    events: list[SubtitleEvent] = []
    for event in sorted(
        (e for stream in split_by_position(frames) for e in frames_to_events(stream, settings)),
        key=lambda e: (e.start, e.end),
    ):
        twin = next(
            (e for e in events if e.end >= event.start and normalise(e.text) == normalise(event.text)), None
        )
        if twin is None:
            events.append(event)
        elif event.end > twin.end:
            events[events.index(twin)] = replace(twin, end=event.end)
    return [replace(e, index=i) for i, e in enumerate(events, start=1)]


@task(name="postprocess", task_run_name="postprocess", **resumable())
def postprocess_task(
    frames: list[FrameText], settings: PostprocessSettings, by_position: bool = False
) -> list[SubtitleEvent]:
    """`by_position`: the frames were read whole (band source WHOLE_FRAME), lines all over them."""
    return events_by_position(frames, settings) if by_position else frames_to_events(frames, settings)
