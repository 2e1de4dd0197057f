"""Lead samples: the samples kept before a keyframe, read at a new line's box back to its first legible one.

A pale line without an outline is legible before its strokes count as a signal (…297's last line: 0.6 s);
a small caption in a whole frame is a few cells of the frame's signal (the meme edit's pale "撸思面馆": 0.23
s). The keyframes stage keeps those samples (Keyframe.lead); OCR reads the box of each line new on screen
in them, so the line starts where it could first be read (OcrLine.since).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rapidfuzz.distance import Levenshtein

from core.schema import OcrLine


class LineReader(Protocol):
    """What lead reads need of an OCR engine (stages/subtitles/ocr.py's OcrEngine)."""

    settings: Any  # OcrSettings: min_text_score

    def read_line(self, crop: np.ndarray) -> tuple[str, float]: ...


LEAD_SIMILARITY = 0.8  # a lead sample shows a line when it reads this like it (a fade's first frames lose
# a glyph or two to the background; another line or the bare background reads nothing like it)
LEAD_CONTRAST = 0.6  # ... and its box is this contrasted against the keyframe's: the recogniser reads a
# fading-in glow at a tenth of its opacity, long before a viewer can (the corpus counts from half opacity)


def _contrast(crop: np.ndarray) -> float:
    """How far the bright strokes stand out of the box: grey 95th percentile above the median (0 for an
    empty box: one that starts in a stitched row's padding, outside the picture)."""
    import cv2

    if crop.size == 0:
        return 0.0
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    return float(np.percentile(grey, 95) - np.percentile(grey, 50))


def read_lead(
    lead: tuple[tuple[float, Path], ...],
    lines: list[OcrLine],
    engine: LineReader,
    keyframe: Path,
) -> list[OcrLine]:
    """Each line with the earliest lead sample from which, sample after sample up to its keyframe, its box
    reads like it and shows it about as strongly as the keyframe: a pale line without an outline is legible
    before its strokes count as a signal, a line fading in is not. Recognition alone on the box: the
    earliest sample first (a line on screen since then, as most lines of a whole frame's keyframes are,
    costs one read), then latest first, stopping at the first that does not show it (a line that appeared
    with its keyframe costs two)."""
    import cv2

    images: dict[Path, np.ndarray | None] = {}
    shown = cv2.imread(str(keyframe), cv2.IMREAD_COLOR)

    def shows(path: Path, line: OcrLine, strength: float) -> bool:
        if path not in images:  # each lead sample read from disk once for all the lines
            images[path] = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if images[path] is None:
            return False
        x0, y0, x1, y1 = line.box
        box = images[path][max(0, y0) : y1, max(0, x0) : x1]
        if _contrast(box) < LEAD_CONTRAST * strength:
            return False
        text, score = engine.read_line(box)
        similar = Levenshtein.normalized_similarity("".join(text.split()), "".join(line.text.split()))
        return score >= engine.settings.min_text_score and similar >= LEAD_SIMILARITY

    out = []
    for line in lines:
        x0, y0, x1, y1 = line.box
        if shown is None or y1 <= y0 or x1 <= x0:
            out.append(line)
            continue
        strength = _contrast(shown[max(0, y0) : y1, max(0, x0) : x1])
        if strength == 0.0:  # nothing shown in the box here: no lead to look for
            out.append(line)
            continue
        since = None
        if len(lead) > 1 and shows(lead[0][1], line, strength):
            since = lead[0][0]
        else:
            for t, path in reversed(lead[1:] if len(lead) > 1 else lead):
                if not shows(path, line, strength):
                    break
                since = t
        out.append(line if since is None else OcrLine(line.text, line.confidence, line.box, since))
    return out
