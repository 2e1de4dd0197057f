"""Events per position: where a video's lines sit all over the frame (band source WHOLE_FRAME).

A meme edit puts each caption under its picture, two or three at once, each with its own start and end.
The whole frame is read at every keyframe; its rows are grouped by where they sit (a row continues the
position whose last row it overlaps), and each position becomes its own stream of keyframe texts, made
into events as a band's are (stages/subtitles/postprocess.py merges them in time order).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from core.schema import FrameText, OcrLine


@dataclass
class _Position:
    box: tuple[int, int, int, int]  # the last row seen here
    rows: dict[int, OcrLine] = field(default_factory=dict)  # keyframe index -> its row here


def _continues(box: tuple[int, int, int, int], row: tuple[int, int, int, int]) -> bool:
    """The row sits where the position's last row sat: the rows overlap across and their centres are
    less than a row height apart up or down (a longer line at the same place is still that place)."""
    height = max(box[3] - box[1], row[3] - row[1])
    across = min(box[2], row[2]) - max(box[0], row[0]) > 0
    return across and abs((box[1] + box[3]) - (row[1] + row[3])) / 2 < 0.75 * height


def split_by_position(frames: list[FrameText]) -> list[list[FrameText]]:
    """One stream of keyframe texts per position: every keyframe, with the row read there or none
    (an empty keyframe ends the line shown there). Image line ids are the whole frame's: dropped."""
    ordered = sorted(frames, key=lambda f: f.start)
    positions: list[_Position] = []
    for frame in ordered:
        taken: set[int] = set()
        for row in frame.lines:
            for k in sorted(range(len(positions)), key=lambda k: -max(positions[k].rows, default=-1)):
                if k not in taken and _continues(positions[k].box, row.box):
                    break
            else:
                k = len(positions)
                positions.append(_Position(row.box))
            taken.add(k)
            positions[k].box = row.box
            positions[k].rows[frame.keyframe_index] = row
    return [
        [
            replace(f, lines=(p.rows[f.keyframe_index],) if f.keyframe_index in p.rows else (), line=None)
            for f in ordered
        ]
        for p in positions
    ]
