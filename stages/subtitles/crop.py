"""Crop: from a decoded strip of frame rows to the subtitle band, with static overlays masked out.

Keyframe extraction decodes only the band's rows (ffmpeg's crop filter, built here); this module turns
such a strip into the image OCR sees: the band's columns, logos and clocks inside it painted over, and
the text scaled to a height the recogniser reads well.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from prefect import task

from core.caching import resumable
from core.outputs import read_image, write_image
from core.schema import Band, KeyframeSet
from stages.subtitles.band import WHOLE_FRAME, mask_static_boxes
from stages.subtitles.text_signal import KeyframeSettings, text_signal


def scratch_format(band: Band) -> tuple[str, list[int]]:
    """Suffix and cv2.imwrite parameters of a band's work images (strips, crops, batches): BMP for a band
    (lossless, uncompressed), JPEG (quality 95) for whole frames: a whole 720 x 734 frame cost 12 ms to write
    and 7 ms to read as PNG, three writes and four reads a keyframe; as JPEG 2 ms each, 80 kB instead of
    390 kB (the video's own 4:2:0 colour kept). A 1280 x 160 strip of real footage as PNG (zlib level 1)
    cost 7.3 ms to write and 4.2 ms to read for 427 kB, as BMP 0.7 and 0.8 ms for 614 kB: ~13 CPU s per 10
    minutes of 720p footage (~780 keyframes, each written, read and cropped), for ~45% more temporary disk,
    still two windows' images at most."""
    if band.source == WHOLE_FRAME:
        return ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]
    return ".bmp", []


def crop_band(strip: np.ndarray, band: Band) -> np.ndarray:
    """The band's columns of a full-width strip, static overlays masked."""
    return mask_static_boxes(strip, band)[:, band.x0 : band.x1]


def trim_to_text(crop: np.ndarray, signal_columns: np.ndarray | None, pad: int) -> np.ndarray:
    """Keep the columns around the text signal: the detector's cost grows with the pixels it sees.

    The signal can miss part of a line (white strokes over a bright or moving background lose their
    dark edge), so the kept range is made symmetric about the centre, where subtitles are aligned,
    and padded: a line is never cut, only a clearly empty margin is dropped.
    """
    if signal_columns is None or not signal_columns.any():
        return crop
    cols = np.flatnonzero(signal_columns)
    width = crop.shape[1]
    scale = width / len(signal_columns)
    x0, x1 = int(cols[0] * scale), int((cols[-1] + 1) * scale)
    x0, x1 = min(x0, width - x1), max(x1, width - x0)  # symmetric about the centre
    return crop[:, max(0, x0 - pad) : min(width, x1 + pad)]


def fit_for_ocr(crop: np.ndarray, min_height: int = 128, max_height: int = 160) -> np.ndarray:
    """Scale the band to a height the detector reads well: small video's text up, 4K's down.

    The band holds one or two lines plus room (about three line heights): at 128-160 px a line is
    36-50 px, where PP-OCRv4's detector finds every character; 20-30 px text over a bright background
    lost whole characters ("伸个懒腰" read as "个懒腰"). Tall bands shrink so batches stay small.
    """
    h, w = crop.shape[:2]
    if min_height <= h <= max_height:
        return crop
    target = max_height if h > max_height else min_height
    scale = target / h
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(crop, (max(2, int(w * scale)), target), interpolation=interpolation)


def crop_keyframe_image(
    strip_path: Path, band: Band, out_path: Path, settings: KeyframeSettings, columns_of: Path | None = None
) -> Path:
    """Read a kept strip, crop it to the band and to its text columns (the keyframes' own text signal,
    so a user's `keyframes.*` edit moves the trim too), write the OCR-ready crop. `columns_of`: the strip
    whose text columns are kept instead (a keyframe's lead samples are cropped as the keyframe is, so the
    boxes read in the keyframe fall on the same place in them)."""
    if band.source == WHOLE_FRAME and not band.static_boxes:  # lines anywhere: the frame as it is (shrunk,
        return strip_path  # its small text is lost), nothing to mask: the strip itself, not a copy
    strip = read_image(strip_path, "keyframe strip")
    crop = crop_band(strip, band)
    _, params = scratch_format(band)
    if band.source == WHOLE_FRAME:
        return write_image(out_path, crop, params)
    signal_crop = (
        crop if columns_of is None else crop_band(cv2.imread(str(columns_of), cv2.IMREAD_COLOR), band)
    )
    columns = text_signal(signal_crop, settings).any(axis=0)
    crop = trim_to_text(crop, columns, pad=max(24, band.height))
    return write_image(out_path, fit_for_ocr(crop), params)


def crop_keyframes(keyframes: KeyframeSet, work_dir: Path, settings: KeyframeSettings) -> KeyframeSet:
    """Every kept strip cropped to the band (static overlays masked), its lead samples as it is. The strips
    stay until the flow's work folder goes: a re-run after a crash reuses the keyframes stage's result,
    which names them."""
    cropped = []
    suffix, _ = scratch_format(keyframes.band)
    for kf in keyframes.frames:
        out = crop_keyframe_image(
            kf.image_path, keyframes.band, work_dir / f"crop_{kf.index:06d}{suffix}", settings
        )
        lead = tuple(
            (
                t,
                crop_keyframe_image(
                    p, keyframes.band, p.with_name(f"crop_{p.name}"), settings, kf.image_path
                ),
            )
            for t, p in kf.lead
        )
        cropped.append(replace(kf, image_path=out, lead=lead))
    return replace(keyframes, frames=tuple(cropped))


@task(name="crop", task_run_name="crop band", **resumable())
def crop_task(keyframes: KeyframeSet, work_dir: Path, settings: KeyframeSettings) -> KeyframeSet:
    return crop_keyframes(keyframes, work_dir, settings)
