"""Voting: the reads of one on-screen line combined character by character, weighted by confidence.

A line sampled ten times is read ten times, each read with its own one or two wrong characters
("13路末班车" as 13隐索班车, 13路患班年, 13路束班车): the read closest to all the others is the anchor,
every read is aligned to it (Levenshtein opcodes) and each position takes the character with the most
weight (seconds shown x confidence). Errors at different places are outvoted; the line comes out right.
Small marks are the exception: on 20 px text the recogniser drops the apostrophe of "I've" in half its
reads and never puts one between two letters that lack it, so an in-word apostrophe needs only a
quarter of the weight (`MARK_SHARE`).
"""

from __future__ import annotations

from collections import defaultdict

from rapidfuzz.distance import Levenshtein

from stages.subtitles.spacing import known_word_share

Read = tuple[str, float]  # text, weight
DROPPED_MARKS = frozenset("'’")  # what small text loses and the recogniser does not invent
MARK_SHARE = 0.25  # of the total weight: enough reads that saw the mark to keep it


def merged(reads: list[Read]) -> dict[str, float]:
    """Identical reads pooled, Latin words found in the word list counting double: of "Pollce ask
    drivers" and "Police ask drivers", the second weighs more."""
    pooled: dict[str, float] = defaultdict(float)
    for text, weight in reads:
        pooled[text] += weight
    return {text: weight * (1 + known_word_share(text)) for text, weight in pooled.items()}


def anchor_text(pooled: dict[str, float]) -> str:
    """The read most like all the others (weighted): the frame the alignment is built on."""
    return max(
        pooled,
        key=lambda t: sum(w * Levenshtein.normalized_similarity(t, u) for u, w in pooled.items()),
    )


def vote_text(reads: list[Read]) -> str:
    """One text from many reads of one line: per anchor position, the heaviest character (or none)."""
    pooled = merged(reads)
    if len(pooled) == 1:
        return next(iter(pooled))
    anchor = anchor_text(pooled)
    chars: list[dict[str, float]] = [defaultdict(float) for _ in anchor]
    inserts: list[dict[str, float]] = [defaultdict(float) for _ in range(len(anchor) + 1)]
    for text, weight in pooled.items():
        for tag, i1, i2, j1, j2 in Levenshtein.opcodes(anchor, text):
            if tag == "insert":
                inserts[i1][text[j1:j2]] += weight
                continue
            for k in range(i2 - i1):
                j = j1 + k
                chars[i1 + k][text[j] if tag != "delete" and j < j2 else ""] += weight
            if tag == "replace" and j2 - j1 > i2 - i1:
                inserts[i2][text[j1 + i2 - i1 : j2]] += weight
    total = sum(pooled.values())
    out = []
    for i in range(len(anchor) + 1):
        if inserts[i]:
            text, weight = max(inserts[i].items(), key=lambda kv: kv[1])
            mark = _mark_seen(inserts[i], total)
            if weight > total / 2:
                out.append(text)
            elif mark and _between_letters(anchor, i - 1, i):
                out.append(mark)
        if i < len(anchor):
            mark, heaviest = _mark_seen(chars[i], total), max(chars[i].items(), key=lambda kv: kv[1])[0]
            kept = anchor[i] in DROPPED_MARKS or not heaviest  # a mark some frames lost, never a letter
            out.append(mark if mark and kept and _between_letters(anchor, i - 1, i + 1) else heaviest)
    return "".join(out).strip()


def _mark_seen(votes: dict[str, float], total: float) -> str | None:
    """The apostrophe a quarter of the weight saw at this place, if any."""
    return next((m for m in DROPPED_MARKS if votes.get(m, 0.0) >= MARK_SHARE * total), None)


def _between_letters(anchor: str, left: int, right: int) -> bool:
    """Letters on both sides: "I've", "don't"; a quote mark at a word's edge is voted as usual."""
    return left >= 0 and anchor[left : left + 1].isalpha() and anchor[right : right + 1].isalpha()
