"""Detector boxes to text rows: the boxes of one row joined left to right, rows top to bottom.

OCR joins a frame's reads into its lines, and the language stage joins detector boxes into the rows it
tells the script from; both join the same way.
"""

from __future__ import annotations

import re

from core.schema import OcrLine


def _spaced(a: str, b: str) -> bool:
    """Two boxes of one row get a space unless either side is CJK (ja/zh have no word spaces)."""
    return bool(a) and bool(b) and not (_CJK.match(a) or _CJK.match(b))


_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")


def _join_row(parts: list[str]) -> str:
    """Words of one row: a space between Latin, Cyrillic... neighbours, none next to CJK characters."""
    text = parts[0]
    for part in parts[1:]:
        text += (" " if _spaced(text[-1:], part[:1]) else "") + part
    return text


def lines_to_rows(lines: list[OcrLine]) -> tuple[OcrLine, ...]:
    """Boxes on the same text row joined left to right; rows top to bottom (two-line subtitles)."""
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=lambda ln: (ln.box[1] + ln.box[3]) / 2):
        centre, height = (line.box[1] + line.box[3]) / 2, line.box[3] - line.box[1]
        if rows:
            last = rows[-1][0]
            if abs(centre - (last.box[1] + last.box[3]) / 2) < 0.5 * max(height, last.box[3] - last.box[1]):
                rows[-1].append(line)
                continue
        rows.append([line])
    joined = []
    for row in rows:
        row.sort(key=lambda ln: ln.box[0])
        box = (
            min(r.box[0] for r in row),
            min(r.box[1] for r in row),
            max(r.box[2] for r in row),
            max(r.box[3] for r in row),
        )
        since = [r.since for r in row]  # the row was legible early where all its boxes were
        early = max(since) if None not in since else None  # type: ignore[type-var]
        joined.append(OcrLine(_join_row([r.text for r in row]), min(r.confidence for r in row), box, early))
    return tuple(joined)
