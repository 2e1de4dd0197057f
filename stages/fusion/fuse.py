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

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from prefect import task
from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from core.schema import AudioTrack, SpeechWord, SubtitleEvent, Transcript
from stages.fusion.onsets import VoiceLevels, voice_levels
from stages.speech.cues import join_words
from stages.subtitles.spacing import known_word_share

CJK_LANGUAGES = ("zh", "ja", "ko", "yue")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


@dataclass(frozen=True)
class FusionSettings:
    """How far the two sources may be apart and still describe one line."""

    slack: float = 1.5  # seconds around a subtitle in which its words may be said
    same_text: float = 0.6  # similarity (0-1, words normalised) from which the speech says the line
    unsure_confidence: float = 0.9  # an OCR event below this confidence has all its words open to the speech
    misread: float = 0.6  # an OCR word this similar to the spoken one is a candidate read of the same glyphs
    early: float = 0.3  # shown this long before the first spoken word: "shown early"
    late: float = 0.5  # shown this long after the first spoken word / held after the last: "shown/held late"
    speech_gap: float = 0.8  # words with no subtitle split into lines at pauses this long
    fragment_gap: float = 0.2  # back-to-back events this close may be pieces of one shown line


@dataclass(frozen=True)
class Correction:
    """One word where the sources differ: what the OCR read, what was said, and which one the line kept."""

    ocr: str
    speech: str
    taken: bool  # True: the spoken word replaced the OCR's
    reason: str


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


def normalise(text: str) -> str:
    """Words only, lower case, NFKC, single spaces: what both sources can be compared on."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).lower()))


def is_cjk(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(bool(_CJK.match(c)) for c in letters) > len(letters) / 2


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


def _protected(word: str, first: bool) -> bool:
    """Numbers and names: the speech cannot spell them (a capital inside the line marks a name)."""
    return any(c.isdigit() for c in word) or (not first and word[:1].isupper())


def _respelled(shown: str, spoken: str) -> str:
    """The spoken word in the shown word's place: its punctuation and initial capital kept."""
    m = _WORD.search(shown)
    if m is None:
        return shown
    core = spoken if not m.group(0)[:1].isupper() else spoken[:1].upper() + spoken[1:]
    return shown[: m.start()] + core + shown[m.end() :]


def settle_words(
    event: SubtitleEvent, spoken: str, settings: FusionSettings, candidates: tuple[str, ...] = ()
) -> tuple[str, tuple[Correction, ...]]:
    """The shown text with the words the OCR was unsure of settled by the speech, and every difference.

    A shown word is unsure when the event's confidence is low, the word is not a listed word, or another
    read of the line (`candidates`: other frames, other pieces) has another word in its place; the spoken
    word replaces it only when it is a candidate read of the same glyphs: close in spelling, or the word
    another read has in its place (the speech chooses among the pixels' reads, it does not spell)."""
    if is_cjk(event.text):  # no spaces to align words by: character by character
        return settle_characters(event.text, spoken, candidates)
    said = spoken.split()
    shown, notes = glue_pieces(event.text.split(), said)
    keys_shown, keys_said = [normalise(w) for w in shown], [normalise(w) for w in said]
    read_as = read_in_place(keys_shown, candidates)
    out = list(shown)
    for tag, i1, i2, j1, j2 in Levenshtein.opcodes(keys_shown, keys_said):
        if tag != "replace":
            if tag != "equal":
                notes.append(
                    Correction(
                        " ".join(shown[i1:i2]),
                        " ".join(said[j1:j2]),
                        False,
                        {"insert": "said, not shown", "delete": "shown, not said"}[tag],
                    )
                )
            continue
        if i2 - i1 != j2 - j1:
            glued = "".join(keys_shown[i1:i2]).replace(" ", "") == "".join(keys_said[j1:j2]).replace(" ", "")
            notes.append(Correction(" ".join(shown[i1:i2]), " ".join(said[j1:j2]), False,
                                    "same letters, other spacing" if glued else "differs"))  # fmt: skip
            continue
        for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
            notes.append(_settle(shown[i], said[j], i == 0, event.confidence, read_as[i], settings, out, i))
    return " ".join(w for w in out if w), tuple(notes)


def _letters(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKC", text) if c.isalnum())


def settle_characters(
    text: str, spoken: str, candidates: tuple[str, ...] = ()
) -> tuple[str, tuple[Correction, ...]]:
    """CJK text: the shown and spoken characters aligned one by one (punctuation aside). A shown character
    takes the spoken one only where another read of the pixels has the spoken one in its place (a
    homophone the speech heard is no read of the glyphs); digits and Latin letters (numbers, names) stay."""
    at = [k for k, c in enumerate(text) if _letters(c)]
    shown, said = "".join(_letters(text[k]) for k in at), _letters(spoken)
    if len(shown) != len(at):  # NFKC changed a character's length: nothing can be placed safely
        return text, () if shown == said else (Correction(text, spoken, False, "differs"),)
    read_as = read_in_place(list(shown), tuple(" ".join(_letters(c)) for c in candidates))
    out, notes = list(text), []
    for tag, i1, i2, j1, j2 in Levenshtein.opcodes(shown, said):
        if tag == "equal":
            continue
        if tag != "replace" or i2 - i1 != j2 - j1:
            notes.append(Correction(shown[i1:i2], said[j1:j2], False, "differs"))
            continue
        for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
            if shown[i].isascii() or said[j].isascii():
                notes.append(Correction(shown[i], said[j], False, "name or number: kept as shown"))
            elif said[j] in read_as[i]:
                out[at[i]] = said[j]
                notes.append(Correction(shown[i], said[j], True, "another frame read it so"))
            else:
                notes.append(Correction(shown[i], said[j], False, "speech is not a candidate read"))
    return "".join(out), tuple(notes)


def read_in_place(keys: list[str], candidates: tuple[str, ...]) -> list[set[str]]:
    """Per shown word (normalised), the words the other reads have in its place: each read aligned to the
    shown words, one for one where both have as many words there."""
    found: list[set[str]] = [set() for _ in keys]
    for read in candidates:
        other = [normalise(w) for w in read.split()]
        for tag, i1, i2, j1, j2 in Levenshtein.opcodes(keys, other):
            if tag == "replace" and i2 - i1 == j2 - j1:
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                    found[i].add(other[j])
    return found


def glue_pieces(shown: list[str], said: list[str]) -> tuple[list[str], list[Correction]]:
    """A word the OCR read in pieces ("whit te more") glued back where the speech says it as one word and
    none of the pieces (nor a number): the letters stay the OCR's (the pixels spell names), the boundary
    is the speech's."""
    out, notes, i = [], [], 0
    spoken = [normalise(w) for w in said]
    while i < len(shown):
        for n in (3, 2):
            pieces = shown[i : i + n]
            glued = "".join(pieces)
            key = normalise(glued)
            match = [
                said[k] for k, w in enumerate(spoken) if Levenshtein.normalized_similarity(key, w) >= 0.75
            ]
            whole = not any(normalise(p) in spoken or any(c.isdigit() for c in p) for p in pieces)
            if len(pieces) == n and match and whole:
                out.append(glued[:1].upper() + glued[1:] if match[0][:1].isupper() else glued)
                notes.append(Correction(" ".join(pieces), glued, True, "one word read in pieces: joined"))
                i += n
                break
        else:
            out.append(shown[i])
            i += 1
    return out, notes


def _settle(
    shown: str, said: str, first: bool, confidence: float, read_as: set[str], settings: FusionSettings,
    out: list[str], i: int,
) -> Correction:  # fmt: skip
    a, b = normalise(shown), normalise(said)
    if _protected(shown, first) or _protected(said, first):
        return Correction(shown, said, False, "name or number: kept as shown")
    framed = b in read_as  # another read of the pixels has the spoken word here
    unsure = confidence < settings.unsure_confidence or known_word_share(a) < 1 or framed
    candidate = framed or Levenshtein.normalized_similarity(a, b) >= settings.misread
    if unsure and candidate:
        out[i] = _respelled(shown, said.strip(".,!?;:\"'"))
        why = "another frame read it so" if framed else "OCR unsure; the speech agrees with a close read"
        return Correction(shown, said, True, why)
    return Correction(shown, said, False, "OCR sure" if not unsure else "speech is not a candidate read")


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
