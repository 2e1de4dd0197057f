"""Stitch: stack band crops into tall images so the detector runs once per batch, not once per crop.

A gap of background between crops keeps a text box from spanning two of them; each crop's top row is
recorded so OCR boxes map back to the crop (and so the keyframe) they came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from prefect import task

from core.caching import resumable
from core.outputs import read_image, write_image
from core.schema import Band, Keyframe, KeyframeSet, StitchedBatch
from stages.subtitles.band import WHOLE_FRAME
from stages.subtitles.crop import scratch_format

GAP_PX = 24
MAX_BATCH_HEIGHT = 1400  # the detector's input stays under its 1500 px long side: no downscaling
FOLLOWER_MAX_CHANGE = 0.3  # a keyframe of the line before it that changed less than this (a second row or
# a cut changes half its cells or more; footage moving behind the line, 0.12-0.3) ...
FOLLOWER_WIDTH_SLACK = 16  # ... and whose text spans the same columns (its crop this many pixels wider or
# narrower at most: a word more or less moves the trim by its width) is read at that line's boxes


@dataclass
class _Leader:
    """The last keyframe stitched: its line, crop size and followers so far."""

    index: int
    line: int
    shape: tuple[int, int]
    followers: list[tuple[int, int, int]] = field(default_factory=list)


def follows(kf: Keyframe, leader: _Leader | None, shape: tuple[int, int], band: Band) -> bool:
    """Whether `kf` shows the text of `leader`'s crop where it was: the same on-screen line (keyframes.py's
    line ids), a small change only (moving footage behind the line kept it), its text over the same columns.
    A band's lines only: whole frames are not trimmed to their text."""
    return (
        leader is not None
        and band.source != WHOLE_FRAME
        and kf.line == leader.line
        and not kf.lead
        and kf.change < FOLLOWER_MAX_CHANGE
        and shape[0] == leader.shape[0]
        and abs(shape[1] - leader.shape[1]) <= FOLLOWER_WIDTH_SLACK
    )


def stitch_keyframes(
    keyframes: KeyframeSet, work_dir: Path, max_height: int = MAX_BATCH_HEIGHT, followers: bool = True
) -> list[StitchedBatch]:
    """Crops stacked into batches, in order. A keyframe that `follows` the one stitched before it is not
    stacked: the detector's cost grows with its input's pixels, and over moving footage most keyframes of a
    line are kept for the background (4 of 5 on the 10-minute 720p bench); OCR reads each at the boxes found
    in its line's stitched crop, so every keyframe is still read once (the votes of stages/subtitles/vote.py
    come from its own pixels). `followers=False` stacks every crop: the language stage (script.py) counts a
    script's evidence in the rows of the first batches, and read with followers Thai was not refused and
    Hindi and Greek clips tried three more readers (tests/test_ocr_languages.py)."""
    stacked: list[tuple[Path, list[int], list[int], list[int], list[_Leader]]] = []
    suffix, params = scratch_format(keyframes.band)
    pending: list[tuple[int, np.ndarray]] = []
    leaders: list[_Leader] = []

    def flush() -> None:
        if not pending:
            return
        width = max(img.shape[1] for _, img in pending)
        offsets, heights, rows = [], [], []
        y = GAP_PX // 2
        rows.append(np.zeros((GAP_PX // 2, width, 3), np.uint8))
        for _, img in pending:
            offsets.append(y)
            heights.append(img.shape[0])
            padded = np.zeros((img.shape[0], width, 3), np.uint8)
            padded[:, : img.shape[1]] = img
            rows += [padded, np.zeros((GAP_PX, width, 3), np.uint8)]
            y += img.shape[0] + GAP_PX
        path = work_dir / f"batch_{len(stacked):04d}{suffix}"
        write_image(path, np.vstack(rows), params)
        stacked.append((path, [i for i, _ in pending], offsets, heights, list(leaders)))
        pending.clear()
        leaders.clear()

    used = GAP_PX // 2
    leader: _Leader | None = None
    for kf in keyframes.frames:
        img = read_image(kf.image_path, "band crop")
        shape = (img.shape[0], img.shape[1])
        if followers and follows(kf, leader, shape, keyframes.band):
            leader.followers.append((kf.index, leader.index, (shape[1] - leader.shape[1]) // 2))
            continue
        if pending and used + img.shape[0] + GAP_PX > max_height:
            flush()
            used = GAP_PX // 2
        pending.append((kf.index, img))
        leader = _Leader(kf.index, kf.line, shape)
        leaders.append(leader)
        used += img.shape[0] + GAP_PX
    flush()
    return [
        StitchedBatch(
            path, tuple(indices), tuple(offsets), tuple(heights), tuple(f for ld in led for f in ld.followers)
        )
        for path, indices, offsets, heights, led in stacked
    ]


@task(name="stitch", task_run_name="stitch crops", **resumable())
def stitch_task(keyframes: KeyframeSet, work_dir: Path, followers: bool = True) -> list[StitchedBatch]:
    return stitch_keyframes(keyframes, work_dir, followers=followers)


def batch_keyframes(keyframes: KeyframeSet, batch: StitchedBatch) -> KeyframeSet:
    """The keyframes stitched into `batch` and its followers: what its OCR run needs (and its cache key
    covers)."""
    wanted = set(batch.keyframe_indices) | {follower for follower, _, _ in batch.followers}
    return replace(keyframes, frames=tuple(kf for kf in keyframes.frames if kf.index in wanted))
