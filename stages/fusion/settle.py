"""Where the OCR was unsure, the speech settles it: word by word for spaced scripts, character by
character for CJK, and only towards a read of the same glyphs (close in spelling, or what another frame
read in its place); names and numbers stay as shown, since the speech cannot spell them."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

from core.schema import SubtitleEvent
from stages.subtitles.spacing import known_word_share

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


def normalise(text: str) -> str:
    """Words only, lower case, NFKC, single spaces: what both sources can be compared on."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).lower()))


def is_cjk(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(bool(_CJK.match(c)) for c in letters) > len(letters) / 2


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
