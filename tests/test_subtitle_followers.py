"""Keyframes a line keeps only for the footage moving behind it are read without a detection of their own:
the stitch stage stacks the line's first crop, OCR reads the others at the boxes found there."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.schema import Band, Keyframe, KeyframeSet
from stages.subtitles.ocr import OcrSettings, RapidOcrEngine, recognize_batches
from stages.subtitles.stitch import stitch_keyframes

BAND = Band(0, 560, 1280, 720)


def crop_over_footage(text: str, seed: int, width: int = 720) -> np.ndarray:
    """An outlined white line over noise that differs per seed (footage moving behind the line)."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 160, (160, width, 3), dtype=np.uint8), (0, 0), 3)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 1.4
    (w, h), _ = cv2.getTextSize(text, font, scale, 3)
    origin = ((width - w) // 2, 80 + h // 2)
    cv2.putText(image, text, origin, font, scale, (0, 0, 0), 9, cv2.LINE_AA)
    cv2.putText(image, text, origin, font, scale, (255, 255, 255), 3, cv2.LINE_AA)
    return image


def keyframe(tmp_path, index: int, text: str, line: int, change: float, width: int = 720) -> Keyframe:
    path = tmp_path / f"crop_{index:06d}.png"
    cv2.imwrite(str(path), crop_over_footage(text, index, width))
    return Keyframe(index, index / 10, (index + 1) / 10, path, change=change, line=line)


@pytest.mark.slow
def test_a_lines_keyframes_over_moving_footage_are_detected_once_and_each_read(tmp_path):
    frames = [keyframe(tmp_path, 0, "The meadow is quiet today", 1, 1.0)]
    frames += [keyframe(tmp_path, i, "The meadow is quiet today", 1, 0.15) for i in range(1, 5)]
    frames += [
        keyframe(tmp_path, 5, "The meadow is quiet today", 1, 0.5),  # a second row's worth of change
        keyframe(tmp_path, 6, "The meadow is quiet today", 1, 0.15, width=1000),  # text wider: a word more
        keyframe(tmp_path, 7, "Breakfast time", 2, 1.0),  # the next line
    ]
    keyframes = KeyframeSet(tmp_path, BAND, 10.0, 1.0, tuple(frames), 10)
    (batch,) = stitch_keyframes(keyframes, tmp_path)
    assert batch.keyframe_indices == (0, 5, 6, 7)
    assert batch.followers == ((1, 0, 0), (2, 0, 0), (3, 0, 0), (4, 0, 0))

    engine = RapidOcrEngine(OcrSettings(lang="en"))
    detections = []
    detector = engine._run_detector
    engine._run_detector = lambda image: detections.append(image.shape) or detector(image)
    texts = recognize_batches([batch], keyframes, engine)
    assert len(detections) == 1, detections  # the batch only: no follower was detected again
    read = [" ".join(line.text for line in t.lines).replace(" ", "").lower() for t in texts]
    assert read == ["themeadowisquiettoday"] * 7 + ["breakfasttime"], read
