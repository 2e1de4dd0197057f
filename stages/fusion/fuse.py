"""Burned-in subtitles and speech fused: the pixels say what is shown, the speech says when and settles
what the OCR was unsure of.

Each speech word goes to the nearest subtitle event in time; the run of those words most like the event's
text is what was said for it. Where the speech says the same words (same language, similar text), the line
keeps the displayed text, its start and end are tightened to the spoken words (a line shown early or held
late is reported) and a word the OCR is unsure of (low confidence, not a listed word, or read otherwise by
another frame: the event's `reads`) is replaced by the spoken word when that is a plausible read of the same
glyphs (close in spelling, or what another frame read in its place); names and numbers are never taken from
the speech, which cannot spell them. Translated subtitles keep both texts, aligned by time, with the speaker.
Subtitles with no speech and speech with no subtitle stay, marked by `source`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from prefect import task
from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from core.schema import AudioTrack, SpeechWord, SubtitleEvent, Transcript
from stages.fusion.onsets import VoiceLevels, voice_levels
from stages.fusion.settle import Correction, FusionSettings, is_cjk, normalise, settle_words
from stages.speech.cues import join_words

CJK_LANGUAGES = ("zh", "ja", "ko", "yue")


@dataclass(frozen=True)
class FusedLine:
    """One line of the fused file; `source` is both, translated, subtitle_only or speech_only."""

    index: int
    start: float
    end: float
    text: str  # what is shown (after corrections); the spoken words where nothing is shown
    source: str
    shown_start: float | None = None
    shown_end: float | None = None
    ocr_text: str | None = None
    ocr_confidence: float | None = None
    speech_text: str | None = None
    speech_start: float | None = None
    speech_end: float | None = None
    speaker: str | None = None
    similarity: float | None = None  # of the shown and spoken words (same language only)
    timing: tuple[str, ...] = ()  # "shown early", "held late"
    corrections: tuple[Correction, ...] = ()
    reads: tuple[str, ...] = ()  # other events read as pieces of this line; the speech chose this one
    candidates: tuple[str, ...] = ()  # what other frames read for the chosen event (SubtitleEvent.reads)

    @property
    def disagrees(self) -> bool:
        """The sources differ on this line: a person should look at it."""
        differ = self.source == "both" and normalise(self.ocr_text or "") != normalise(self.speech_text or "")
        unsure = bool(self.reads) or any(c.taken for c in self.corrections)
        return self.source in ("subtitle_only", "speech_only") or bool(self.timing) or differ or unsure


@dataclass(frozen=True)
class FusionResult:
    lines: tuple[FusedLine, ...]
    language: str | None  # of the speech
    translated: bool  # the subtitles are in another script than the speech
    settings: FusionSettings = field(default_factory=FusionSettings)

    @property
    def disagreements(self) -> list[FusedLine]:
        return [line for line in self.lines if line.disagrees]


def speech_words(transcript: Transcript) -> list[SpeechWord]:
    """Every word with its time and speaker; a segment without word times counts as one word."""
    words = []
    for segment in transcript.segments:
        if segment.words:
            words += [w if w.speaker or not segment.speaker else _with_speaker(w, segment.speaker)
                      for w in segment.words]  # fmt: skip
        elif segment.text.strip():
            words.append(SpeechWord(segment.start, segment.end, segment.text, 1.0, segment.speaker))
    return [w for w in words if w.text.strip()]


def _with_speaker(word: SpeechWord, speaker: str) -> SpeechWord:
    return SpeechWord(word.start, word.end, word.text, word.probability, speaker)


def _distance(event: SubtitleEvent, word: SpeechWord) -> float:
    mid = (word.start + word.end) / 2
    return max(0.0, event.start - mid, mid - event.end)


def assign_words(
    events: list[SubtitleEvent], words: list[SpeechWord], settings: FusionSettings
) -> list[list[int]]:
    """Per event, the indices of the words said nearest to it in time (within `slack`)."""
    owned: list[list[int]] = [[] for _ in events]
    for k, word in enumerate(words):
        near = [(_distance(e, word), i) for i, e in enumerate(events)]
        best = min(near, default=(float("inf"), -1))
        if best[0] <= settings.slack:
            owned[best[1]].append(k)
    return owned


def _joined(words: list[SpeechWord]) -> str:
    return join_words([w.text.strip() for w in words])


def best_run(text: str, words: list[SpeechWord], candidates: list[int]) -> tuple[list[int], float]:
    """The contiguous run of the candidate words most like `text` (ties: the longer), and its similarity."""
    target, best, score = normalise(text), [], 0.0
    for i in range(len(candidates)):
        for j in range(i, len(candidates)):
            run = candidates[i : j + 1]
            s = Levenshtein.normalized_similarity(target, normalise(_joined([words[k] for k in run])))
            if s > score or (s == score and len(run) > len(best)):
                best, score = run, s
    return best, score


def fuse(
    events: list[SubtitleEvent],
    transcript: Transcript,
    settings: FusionSettings | None = None,
    levels: VoiceLevels | None = None,
) -> FusionResult:
    """One list of lines from the subtitle events and the transcript. An event's `reads` (what its other
    frames read) are the candidates the speech may settle a word by; `levels`: the speech track's, to time
    words by the voice. Events that are fragments of one shown line (a faint line read piece by piece)
    become one line whose other pieces are candidates too."""
    settings = settings or FusionSettings()
    events = sorted(events, key=lambda e: e.start)
    words = speech_words(transcript)
    spoken_cjk = (transcript.language or "") in CJK_LANGUAGES
    owned = assign_words(events, words, settings)
    translated = [bool(mine) and is_cjk(e.text) != spoken_cjk for e, mine in zip(events, owned, strict=True)]
    runs = []
    for event, other_script in zip(events, translated, strict=True):
        run, score = ([], 0.0) if other_script else best_run(event.text, words, near(event, words, settings))
        runs.append(run if score >= settings.same_text else [])
    used: set[int] = set()
    lines: list[FusedLine] = []
    for group in fragments(events, runs, translated, words, settings):
        first = events[group[0]]
        if translated[group[0]]:
            run = [k for k in owned[group[0]] if k not in used]
            used.update(run)
            lines.append(_line(first, [words[k] for k in run], None, True, settings, ()))
            continue
        span = SubtitleEvent(first.index, first.start, events[group[-1]].end, first.text, first.confidence)
        free = [k for k in near(span, words, settings) if k not in used]
        shown, others = _chosen_read(events, group, words, free)
        span = SubtitleEvent(shown.index, span.start, span.end, shown.text, shown.confidence, shown.reads)
        run, score = best_run(shown.text, words, free)
        run = run if score >= settings.same_text else []
        used.update(run)
        said = [words[k] for k in run]
        lines.append(_line(span, said, score, False, settings, others, levels))
    lines += _speech_only(words, used, settings, levels)
    lines.sort(key=lambda line: line.start)
    lines = [_renumbered(line, n) for n, line in enumerate(lines, 1)]
    return FusionResult(tuple(lines), transcript.language, any(translated), settings)


def near(event: SubtitleEvent, words: list[SpeechWord], settings: FusionSettings) -> list[int]:
    """The words said while the event is shown or within `slack` of it."""
    return [k for k, w in enumerate(words) if _distance(event, w) <= settings.slack]


def _score(text: str, words: list[SpeechWord], run: list[int]) -> float:
    return Levenshtein.normalized_similarity(normalise(text), normalise(_joined([words[k] for k in run])))


def fragments(
    events: list[SubtitleEvent], runs: list[list[int]], translated: list[bool], words: list[SpeechWord],
    settings: FusionSettings,
) -> list[list[int]]:  # fmt: skip
    """Events grouped into shown lines: back-to-back events whose texts overlap, or that both read as part of
    the words said around them, are one line read piece by piece (a faint line), unless each matches its
    own, different spoken words ("Gate 4" then "Gate 5")."""
    groups: list[list[int]] = []
    for j, event in enumerate(events):
        if groups and not translated[j] and not translated[groups[-1][-1]]:
            group = groups[-1]
            together = event.start - events[group[-1]].end <= settings.fragment_gap
            heard = normalise(_joined([words[k] for k in near(event, words, settings)]))
            alike = any(
                fuzz.partial_ratio(normalise(events[i].text), normalise(event.text)) >= 75
                or (_read_of(event.text, heard) and _read_of(events[i].text, heard))
                for i in group
            )
            said = {k for i in group for k in runs[i]}
            if together and alike and not (runs[j] and said and not said & set(runs[j])):
                group.append(j)
                continue
        groups.append([j])
    return groups


def _read_of(text: str, heard: str) -> bool:
    """A (partial, misread) reading of some of the words heard."""
    return bool(heard) and fuzz.partial_ratio(normalise(text), heard) >= 70


def _chosen_read(
    events: list[SubtitleEvent], group: list[int], words: list[SpeechWord], free: list[int]
) -> tuple[SubtitleEvent, tuple[str, ...]]:
    """Of a line's reads, the one the speech agrees with most (then the surest); the others are candidates."""
    best = max(group, key=lambda i: (best_run(events[i].text, words, free)[1], events[i].confidence))
    return events[best], tuple(events[i].text for i in group if i != best)


def _speaker(words: list[SpeechWord]) -> str | None:
    said = Counter(w.speaker for w in words if w.speaker)
    return said.most_common(1)[0][0] if said else None


def _line(
    event: SubtitleEvent, run: list[SpeechWord], score: float | None, translated: bool,
    settings: FusionSettings, reads: tuple[str, ...], levels: VoiceLevels | None = None,
) -> FusedLine:  # fmt: skip
    base = dict(shown_start=event.start, shown_end=event.end, ocr_text=event.text,
                ocr_confidence=event.confidence, similarity=score, candidates=event.reads)  # fmt: skip
    if not run:
        return FusedLine(
            event.index, event.start, event.end, event.text, "subtitle_only", **base, reads=reads
        )
    spoken, said_from, said_to = _joined(run), run[0].start, run[-1].end
    if levels is not None and not translated:
        said_from, said_to = levels.onset(said_from), levels.offset(said_to)  # the voice's, not Whisper's
    heard = dict(speech_text=spoken, speech_start=said_from, speech_end=said_to, speaker=_speaker(run))
    if translated:
        return FusedLine(event.index, event.start, event.end, event.text, "translated", **base, **heard)
    timing = (
        (("shown early",) if said_from - event.start > settings.early else ())
        + (("shown late",) if event.start - said_from > settings.late else ())
        + (("held late",) if event.end - said_to > settings.late else ())
    )
    text, notes = settle_words(event, spoken, settings, reads + event.reads)
    # the words' start, unless the text came well after them (then the pixels, reported as shown late)
    start = event.start if "shown late" in timing else said_from
    end = said_to if "held late" in timing else event.end
    return FusedLine(event.index, start, end, text, "both", **base, **heard, timing=timing,
                     corrections=notes, reads=reads)  # fmt: skip


def _speech_only(
    words: list[SpeechWord], used: set[int], settings: FusionSettings, levels: VoiceLevels | None
) -> list[FusedLine]:
    """Words no subtitle showed, grouped into lines at pauses (timed by the voice where it is measured)."""
    groups: list[list[SpeechWord]] = []
    for k, word in enumerate(words):
        if k in used:
            continue
        if groups and word.start - groups[-1][-1].end <= settings.speech_gap and k - 1 not in used:
            groups[-1].append(word)
        else:
            groups.append([word])
    lines = []
    for g in groups:
        start, end = g[0].start, g[-1].end
        if levels is not None:
            start, end = levels.onset(start), levels.offset(end)
        text = _joined(g)
        lines.append(FusedLine(0, start, end, text, "speech_only", speech_text=text, speech_start=start,
                               speech_end=end, speaker=_speaker(g)))  # fmt: skip
    return lines


def _renumbered(line: FusedLine, index: int) -> FusedLine:
    return FusedLine(index, *[getattr(line, f) for f in list(line.__dataclass_fields__)[1:]])


@task(name="fuse")
def fuse_task(
    events: list[SubtitleEvent], transcript: Transcript, audio: AudioTrack | None = None,
    settings: FusionSettings | None = None,
) -> FusionResult:  # fmt: skip
    return fuse(events, transcript, settings, levels=voice_levels(audio.path) if audio else None)
