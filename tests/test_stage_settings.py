"""Every stage reads the settings it is given: one changed field changes what the stage does.

The flows pass each stage its own part of the block (`SubtitleConfig.area`, `.keyframes`, `.ocr`,
`.postprocess`); a stage that built its own defaults (as crop and the area's fallback once did) would
ignore the user's edit, and these tests would fail. Plain stage functions on one short generated video.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import pytest

from core.media import probe_media
from core.schema import FrameText, OcrLine
from samples.video import Cue, make_subtitled_video
from stages.subtitles.area import AreaSettings, detect_subtitle_band, sampled_frames, signal_settings
from stages.subtitles.band import band_from_fractions
from stages.subtitles.crop import crop_keyframe_image
from stages.subtitles.keyframes import extract_keyframes
from stages.subtitles.ocr import OcrSettings, RapidOcrEngine
from stages.subtitles.postprocess import PostprocessSettings, frames_to_events
from stages.subtitles.text_signal import KeyframeSettings

CUES = [Cue(0.3, 1.8, "设置第一句 settings"), Cue(2.2, 3.8, "Second line of the test")]


@pytest.fixture(scope="module")
def video(media_dir) -> Path:
    return make_subtitled_video(media_dir / "settings.mp4", CUES, duration=4.0, size=(640, 360), audio=False)


@pytest.fixture(scope="module")
def strips(video, tmp_path_factory):
    """The keyframes of the lower band with the default settings (their strips on disk)."""
    info = probe_media(video)
    band = band_from_fractions((0.0, 0.7, 1.0, 1.0), info.width, info.height)
    return info, band, extract_keyframes(info, band, tmp_path_factory.mktemp("strips"), KeyframeSettings())


def test_keyframes_read_their_sampling_and_change_settings(strips, tmp_path):
    info, band, default = strips
    sparse = extract_keyframes(info, band, tmp_path / "a", KeyframeSettings(sample_fps=2.0))
    assert sparse.samples_decoded < default.samples_decoded, (sparse.samples_decoded, default.samples_decoded)
    blind = extract_keyframes(info, band, tmp_path / "b", KeyframeSettings(min_text_cells=10**6))
    assert len(default.frames) == len(CUES) and not blind.frames, "no band holds that much text: no keyframe"


def test_crop_trims_with_the_given_text_signal(strips, tmp_path):
    _, band, keyframes = strips
    strip = keyframes.frames[0].image_path
    trimmed = cv2.imread(str(crop_keyframe_image(strip, band, tmp_path / "a.png", KeyframeSettings())))
    blind = KeyframeSettings(dark_level=-1)  # no outline that dark, no signal: the whole band is kept
    kept = cv2.imread(str(crop_keyframe_image(strip, band, tmp_path / "b.png", blind)))
    assert trimmed.shape[1] < 0.8 * kept.shape[1], (trimmed.shape, kept.shape)


def test_area_reads_its_settings_and_the_users_signal_fields(video):
    info, ocr = probe_media(video), OcrSettings()
    band = detect_subtitle_band(info, ocr, AreaSettings(samples=6))
    taller = detect_subtitle_band(info, ocr, AreaSettings(samples=6, extra_lines_above=3.0))
    assert taller.y0 < band.y0 and taller.y1 == band.y1, (band, taller)
    user = KeyframeSettings(sample_fps=3.0, bright_level=250, cell=8)
    signal = signal_settings(user)
    assert (signal.bright_level, signal.cell) == (250, 8), "the user's text-signal fields reach the area"
    assert signal.sample_fps == KeyframeSettings().sample_fps, "sampling does not change the band's cache key"


def test_area_signal_fallback_uses_the_given_signal(video):
    from stages.subtitles.area import _band_from_signal

    info, settings = probe_media(video), AreaSettings()
    frames = list(sampled_frames(info, 6, info.width))
    assert _band_from_signal(frames, info, settings, KeyframeSettings()).source == "signal"
    assert _band_from_signal(frames, info, settings, KeyframeSettings(dark_level=-1)).source == "none"


def test_ocr_reads_its_detector_and_score_settings(strips):
    _, band, keyframes = strips
    image = cv2.imread(str(keyframes.frames[-1].image_path))
    default = RapidOcrEngine(OcrSettings()).read(image)
    assert default, "the default engine reads the strip"
    assert not RapidOcrEngine(OcrSettings(det_max_side=32)).read(image), "a 32 px detector input finds none"
    strict = RapidOcrEngine(OcrSettings(min_text_score=0.9999)).read(image)
    assert len(strict) < len(default), (default, strict)


def test_postprocess_reads_its_settings():
    line = OcrLine("低置信度的一行", 0.6, (0, 0, 100, 20))
    frames = [FrameText(0, 0.0, 1.0, (line,)), FrameText(1, 1.0, 2.0, ())]
    assert not frames_to_events(frames, PostprocessSettings()), "below the default min_confidence 0.75"
    assert frames_to_events(frames, replace(PostprocessSettings(), min_confidence=0.5))


def test_area_detects_the_samples_while_they_decode(video):
    """The band's samples stream to the detector (ffmpeg decodes the next ones meanwhile, on another
    thread): the same frames and boxes as sampling them all first on this thread, at the sampled scale."""
    from stages.subtitles.area import sample_and_detect

    info, engine = probe_media(video), RapidOcrEngine(OcrSettings())
    frames, detected, scale = sample_and_detect(engine, info, 6, 320)
    listed = list(sampled_frames(info, 6, 320))
    assert scale == 320 / info.width and len(frames) == len(listed) > 0
    assert all((a == b).all() for a, b in zip(frames, listed, strict=True))
    boxes = [[tuple(round(v / scale) for v in box) for box in engine.detect(f)] for f in listed]
    assert detected == boxes and any(detected)


def test_read_ahead_makes_items_on_its_own_thread_and_hands_on_failures():
    import threading
    import time

    from core.read_ahead import read_ahead

    made: list[tuple[int, str]] = []
    closed = threading.Event()

    def items(fail_at: int | None = None):
        try:
            for i in range(5):
                if i == fail_at:
                    raise ValueError("broken frame")
                made.append((i, threading.current_thread().name))
                yield i
        finally:
            closed.set()

    ahead = read_ahead(items())
    assert next(ahead) == 0
    time.sleep(0.2)
    assert len(made) == 5, "the rest was made while the caller held the first"
    assert {name for _, name in made} == {"read-ahead"} and list(ahead) == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="broken frame"):
        list(read_ahead(items(fail_at=2)))
    closed.clear()
    stopped = read_ahead(items())
    next(stopped)
    stopped.close()
    assert closed.is_set(), "stopping early closes the source (a generator over ffmpeg kills it)"
