"""Stitch: stack band crops into tall images so the detector runs once per batch, not once per crop.

A gap of background between crops keeps a text box from spanning two of them; each crop's top row is
recorded so OCR boxes map back to the crop (and so the keyframe) they came from.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from prefect import task

from core.caching import resumable
from core.outputs import write_image
from core.schema import KeyframeSet, StitchedBatch
from stages.subtitles.crop import scratch_format

GAP_PX = 24
MAX_BATCH_HEIGHT = 1400  # the detector's input stays under its 1500 px long side: no downscaling


def stitch_keyframes(
    keyframes: KeyframeSet, work_dir: Path, max_height: int = MAX_BATCH_HEIGHT
) -> list[StitchedBatch]:
    batches: list[StitchedBatch] = []
    suffix, params = scratch_format(keyframes.band)
    pending: list[tuple[int, np.ndarray]] = []

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
        path = work_dir / f"batch_{len(batches):04d}{suffix}"
        write_image(path, np.vstack(rows), params)
        batches.append(StitchedBatch(path, tuple(i for i, _ in pending), tuple(offsets), tuple(heights)))
        pending.clear()

    used = GAP_PX // 2
    for kf in keyframes.frames:
        img = cv2.imread(str(kf.image_path), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"band crop {kf.image_path} is missing or unreadable")
        if pending and used + img.shape[0] + GAP_PX > max_height:
            flush()
            used = GAP_PX // 2
        pending.append((kf.index, img))
        used += img.shape[0] + GAP_PX
    flush()
    return batches


@task(name="stitch", task_run_name="stitch crops", **resumable())
def stitch_task(keyframes: KeyframeSet, work_dir: Path) -> list[StitchedBatch]:
    return stitch_keyframes(keyframes, work_dir)
