"""Readable subtitle cues cut from word timestamps, the way subtitle editors and broadcasters cut them.

A Whisper segment can hold 100 characters for 5 s on one line. Cues here hold at most `max_lines` lines
of at most `max_line_width` columns (CJK characters count two), last at most `max_seconds`, are shown
long enough to read at `max_cps` characters per second where the next cue leaves room, prefer to break
at sentence ends, then clause ends, and never hold two speakers. The JSON keeps the full segments.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from core.schema import SpeechWord, Transcript

SENTENCE_END = tuple(".?!…。？！")
CLAUSE_END = tuple(",;:，、；：")
PAUSE_BREAK = 1.0  # a silence this long always starts a new cue


@dataclass(frozen=True)
class CueSettings:
    """How SRT/VTT cues are cut (the JSON keeps the full segments); pydantic reads the constraints where a
    block embeds it (blocks/asr.py)."""

    max_lines: Annotated[int, Field(ge=1, le=4, description="lines at most")] = 2
    max_line_width: Annotated[
        int, Field(ge=10, le=200, description="columns per line at most (a CJK character takes two)")
    ] = 42
    max_seconds: Annotated[float, Field(gt=0, description="seconds a cue is shown at most")] = 7.0
    max_cps: Annotated[
        float, Field(gt=0, description="characters per second a viewer can read: short cues are held longer")
    ] = 20.0
    min_seconds: Annotated[
        float, Field(gt=0, description="shortest display, where the next cue leaves room")
    ] = 0.8


@dataclass(frozen=True)
class Cue:
    index: int
    start: float
    end: float
    lines: tuple[str, ...]
    speaker: str | None = None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def width(text: str) -> int:
    """Display columns: East Asian wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def join_words(words: list[str]) -> str:
    """Words joined with spaces, except between CJK characters (written without spaces)."""
    out = ""
    for word in words:
        if out and not (_wide(out[-1]) or _wide(word[0])):
            out += " "
        out += word
    return out


def split_lines(words: list[str], settings: CueSettings, prefix: str = "") -> tuple[str, ...] | None:
    """The cue's words as at most `max_lines` lines that fit, or None when they do not fit.

    One line when it fits; else the split that fits with the best break (after a sentence or clause
    end), then the most even lengths (a slightly longer bottom line wins ties, as broadcasters prefer).
    """
    limit = settings.max_line_width
    whole = prefix + join_words(words)
    if width(whole) <= limit:
        return (whole,)
    if settings.max_lines < 2 or len(words) < 2:
        return None
    best: tuple[float, tuple[str, str]] | None = None
    for i in range(1, len(words)):
        top, bottom = prefix + join_words(words[:i]), join_words(words[i:])
        if width(top) > limit or width(bottom) > limit:
            continue
        end = words[i - 1]
        bonus = 2.0 if end.endswith(SENTENCE_END) else 1.0 if end.endswith(CLAUSE_END) else 0.0
        score = bonus * 10 - abs(width(top) - width(bottom)) - (0.5 if width(top) > width(bottom) else 0)
        if best is None or score > best[0]:
            best = (score, (top, bottom))
    if best is not None:
        return best[1]
    if settings.max_lines > 2:  # more lines allowed: greedy fill
        lines, current = [], prefix
        for word in words:
            candidate = join_words([current, word]) if current.strip() else current + word
            if width(candidate) > limit and current.strip():
                lines.append(current)
                current = word
            else:
                current = candidate
        lines.append(current)
        if len(lines) <= settings.max_lines and all(width(line) <= limit for line in lines):
            return tuple(lines)
    return None


def _words_of(transcript: Transcript) -> list[SpeechWord]:
    """Every word in order; a segment without word timestamps becomes words timed by their length."""
    out: list[SpeechWord] = []
    for seg in transcript.segments:
        if seg.words:
            out += [w for w in seg.words if w.text]
            continue
        cjk = seg.text and _wide(seg.text[0]) and " " not in seg.text
        tokens = list(seg.text) if cjk else seg.text.split()
        total = sum(len(t) for t in tokens) or 1
        cursor = seg.start
        for token in tokens:
            end = cursor + (seg.end - seg.start) * len(token) / total
            out.append(SpeechWord(cursor, end, token, 1.0, seg.speaker))
            cursor = end
    return out


def _prefix(speaker: str | None) -> str:
    return f"[{speaker}] " if speaker else ""


def _fits(words: list[SpeechWord], settings: CueSettings) -> bool:
    if words[-1].end - words[0].start > settings.max_seconds and len(words) > 1:
        return False
    return split_lines([w.text for w in words], settings, _prefix(words[0].speaker)) is not None


def _sentences(words: list[SpeechWord]) -> list[list[SpeechWord]]:
    """Runs of words of one speaker, ended by a sentence end or a pause of PAUSE_BREAK."""
    runs: list[list[SpeechWord]] = []
    for word in words:
        if runs and runs[-1][-1].speaker == word.speaker and word.start - runs[-1][-1].end < PAUSE_BREAK:
            if not runs[-1][-1].text.endswith(SENTENCE_END):
                runs[-1].append(word)
                continue
        runs.append([word])
    return runs


def _split_sentence(words: list[SpeechWord], settings: CueSettings) -> list[list[SpeechWord]]:
    """The fewest cues that fit, breaking at clause ends where possible, pieces as even as possible
    (dynamic programming over the break points; a word too long for any cue stands alone)."""
    capacity = settings.max_lines * settings.max_line_width
    n = len(words)
    best: list[tuple[float, int]] = [(0.0, 0)] + [(float("inf"), 0)] * n
    for i in range(1, n + 1):
        for j in range(i - 1, -1, -1):
            piece = words[j:i]
            if i - j > 1 and not _fits(piece, settings):
                if width(join_words([w.text for w in piece])) > capacity:
                    break  # longer pieces only get wider
                continue
            clause = i == n or piece[-1].text.endswith(SENTENCE_END + CLAUSE_END)
            slack = 1 - min(width(join_words([w.text for w in piece])) / capacity, 1.0)
            cost = best[j][0] + 1.0 + (0.0 if clause else 0.6) + 0.5 * slack * slack
            if cost < best[i][0]:
                best[i] = (cost, j)
    pieces, i = [], n
    while i > 0:
        j = best[i][1]
        pieces.append(words[j:i])
        i = j
    return pieces[::-1]


def build_cues(transcript: Transcript, settings: CueSettings | None = None) -> list[Cue]:
    """Cues from the transcript's words: readable sizes, natural breaks, one speaker each.

    Sentences (of one speaker) are cut into the fewest cues that fit; neighbouring short sentences of
    one speaker share a cue when together they still fit and follow each other closely.
    """
    settings = settings or CueSettings()
    groups: list[list[SpeechWord]] = []
    for sentence in _sentences(_words_of(transcript)):
        for piece in _split_sentence(sentence, settings):
            last = groups[-1] if groups else None
            if (
                last is not None
                and last[-1].speaker == piece[0].speaker
                and last[-1].text.endswith(SENTENCE_END)
                and piece[0].start - last[-1].end < PAUSE_BREAK / 2
                and _fits(last + piece, settings)
            ):
                last.extend(piece)
            else:
                groups.append(list(piece))
    return _timed(groups, settings)


def _timed(groups: list[list[SpeechWord]], settings: CueSettings) -> list[Cue]:
    """Each cue from its first word's start to its last word's end, held longer (up to the next cue, and
    `max_seconds`) when the text needs more time to read at `max_cps`, or to `min_seconds`."""
    cues = []
    for i, words in enumerate(groups):
        text = [w.text for w in words]
        prefix = _prefix(words[0].speaker)
        lines = split_lines(text, settings, prefix) or (prefix + join_words(text),)  # one over-long word
        start, end = words[0].start, words[-1].end
        wanted = max(len(join_words(text)) / settings.max_cps, settings.min_seconds)
        limit = groups[i + 1][0].start if i + 1 < len(groups) else end + wanted
        end = max(end, min(start + wanted, limit, start + settings.max_seconds))
        cues.append(Cue(i + 1, round(start, 3), round(end, 3), lines, words[0].speaker))
    return cues
