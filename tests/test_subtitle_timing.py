"""Line starts and ends on the first and last legible frame (issue 21 point 4), where the text signal or the
read confidence came late: a pale line without an outline, white text over a bright patch."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.schema import Band, FrameText, Keyframe, KeyframeSet, OcrLine, StitchedBatch
from samples.realvideo import REALVIDEO_MISSING, answer_key, realvideo_available, realvideo_path
from stages.subtitles.band import WHOLE_FRAME
from stages.subtitles.lead import read_lead
from stages.subtitles.ocr import OcrSettings, RapidOcrEngine, recognize_batches
from stages.subtitles.postprocess import PostprocessSettings, events_by_position, frames_to_events

BOX = (0, 0, 300, 40)


def frame(i: int, start: float, end: float, text: str = "", conf: float = 0.98, since=None) -> FrameText:
    return FrameText(i, start, end, (OcrLine(text, conf, BOX, since),) if text else ())


def test_frames_read_below_the_threshold_widen_the_line_they_read_and_make_none():
    weak, sure = 0.55, 0.86  # the meme edit's "这是她真心的么……" over olive slime: 0.55, 0.86, 0.64
    frames = [
        frame(0, 0.0, 0.5, "终究是我错付了么"),
        frame(1, 0.5, 0.9),
        frame(2, 0.9, 1.5, "这是她真心的么oooooo", weak),
        frame(3, 1.5, 1.9, "这是她真心的么oooooo", sure),
        frame(4, 1.9, 2.4, "这是她真心的么oooooo", 0.64),
        frame(5, 2.4, 2.9, "别的一行字", weak),
        frame(6, 2.9, 3.4),
    ]
    events = frames_to_events(frames, PostprocessSettings(spacing="none"))
    assert [(e.start, e.end, e.text) for e in events] == [
        (0.0, 0.5, "终究是我错付了么"),
        (0.9, 2.4, "这是她真心的么……"),  # not over frame 5: it reads another text
    ]
    assert not frames_to_events([frame(0, 0.0, 1.0, "只有低置信度", weak)], PostprocessSettings())


def test_a_line_legible_inside_a_weak_frame_grows_over_it():
    """The meme edit read per stitched batch (as the flow reads it): a batch's first keyframe knows no
    keyframe before it, so its lead samples were read and put "这是她真心的么……" legible from 23.3 s,
    inside the weak frame (22.8-23.4 s at 0.71) before it: the event still grows over that frame (it
    began at 23.3 s, 0.53 s late, when the weak frame was looked up only by its end)."""
    line = "这是她真心的么oooooo"
    frames = [
        frame(0, 22.3, 22.8),
        frame(1, 22.8, 23.4, line, 0.708),
        frame(2, 23.4, 23.8, line, 0.863, since=23.3),
        frame(3, 23.8, 24.3, line, 0.695),
    ]
    events = frames_to_events(frames, PostprocessSettings(spacing="none"))
    assert [(e.start, e.end, e.text) for e in events] == [(22.8, 24.3, "这是她真心的么……")]


def test_a_weak_frame_between_two_reads_of_a_line_leaves_one_event_and_a_blank_two():
    """The reviewer's case: strong, weak, strong reads of one line are one event (it never left the
    screen); the same line twice with a blank between stays two events."""
    line = "同一句话字幕"
    settings = PostprocessSettings(spacing="none")
    bridged = [frame(0, 0.0, 1.0, line), frame(1, 1.0, 1.5, line, 0.5), frame(2, 1.5, 2.5, line)]
    assert [(e.start, e.end) for e in frames_to_events(bridged, settings)] == [(0.0, 2.5)]
    apart = [frame(0, 0.0, 1.0, line), frame(1, 1.0, 1.5), frame(2, 1.5, 2.5, line)]
    assert [(e.start, e.end) for e in frames_to_events(apart, settings)] == [(0.0, 1.0), (1.5, 2.5)]


def test_a_sure_misread_between_weak_frames_of_one_image_line_is_not_an_event():
    """The Ukrainian corpus line read by Tesseract rus+ukr, keyframe by keyframe (image line 3): the one
    frame read at the threshold was "]жакп'е чай зугавою", the frames after it below it, then sure ones. The
    weak frame between split the line into two events (precision 100% -> 80%); the image saw one line
    on, so its reads are voted. Two image lines with a weak frame between stay two events."""
    reads = [(5.4, 5.9, "Їжак п'е чай згавою", 0.52), (5.9, 6.2, "]жакп'е чай зугавою", 0.75),
             (6.2, 6.6, "Їжак п'є чай згавою", 0.70), (6.6, 7.0, "Їжак п'є чай з Гавою", 0.86),
             (7.0, 7.4, "Їжак п'єчай згавою", 0.84)]  # fmt: skip
    frames = [FrameText(i, a, b, (OcrLine(t, c, BOX),), 3) for i, (a, b, t, c) in enumerate(reads)]
    events = frames_to_events(frames, PostprocessSettings(spacing="keep"))
    assert [(e.start, e.end, e.text) for e in events] == [(5.9, 7.4, "Їжак п'є чай з Гавою")]
    two = [FrameText(0, 0.0, 1.0, (OcrLine("Добрий день", 0.9, BOX),), 1),
           FrameText(1, 1.0, 1.4, (OcrLine("Добрий день", 0.5, BOX),), 1),
           FrameText(2, 1.4, 1.7, (OcrLine("Побачимося", 0.9, BOX),), 2)]  # fmt: skip
    events = frames_to_events(two, PostprocessSettings(spacing="keep"))
    assert [(e.start, e.end, e.text) for e in events] == [(0.0, 1.4, "Добрий день"), (1.4, 1.7, "Побачимося")]


def test_a_line_read_in_its_lead_samples_starts_there_and_only_a_new_line_does():
    frames = [frame(0, 8.8, 9.4, "躲了这么久", since=8.2), frame(1, 9.4, 10.0, "躲了这么久", since=9.0)]
    events = frames_to_events(frames, PostprocessSettings(spacing="none"))
    assert [(e.start, e.end) for e in events] == [(8.2, 10.0)]  # the second frame joins: its lead is moot


def pale_line(text: str | None) -> np.ndarray:
    """Pale grey text with no outline on a skin-toned picture (…297's last line), or the picture alone."""
    img = np.full((60, 420, 3), (150, 170, 205), np.uint8)
    if text:
        cv2.putText(img, text, (10, 42), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (215, 220, 225), 2, cv2.LINE_AA)
    return img


@pytest.mark.slow
def test_lead_samples_are_read_at_the_line_box_back_to_the_first_that_shows_it(tmp_path):
    engine = RapidOcrEngine(OcrSettings())
    lead = []
    for k, text in enumerate([None, "See you later", "See you later"]):
        path = tmp_path / f"lead_{k}.png"
        cv2.imwrite(str(path), pale_line(text))
        lead.append((round(0.1 * k, 3), path))
    (line,) = engine.read(pale_line("See you later"))
    assert line.text.replace(" ", "").lower() == "seeyoulater", line
    keyframe = tmp_path / "keyframe.png"
    cv2.imwrite(str(keyframe), pale_line("See you later"))
    (read,) = read_lead(tuple(lead), [line], engine, keyframe)
    assert read.since == 0.1, read  # the picture alone at 0.0 reads nothing like the line
    other = OcrLine("Something else entirely", line.confidence, line.box)
    assert read_lead(tuple(lead), [other], engine, keyframe)[0].since is None
    fading = tmp_path / "fading.png"  # the line at a third of its strength: read, but not yet legible
    cv2.imwrite(str(fading), cv2.addWeighted(pale_line(None), 0.67, pale_line("See you later"), 0.33, 0))
    assert read_lead(((0.2, fading),), [line], engine, keyframe)[0].since is None


class _CountingEngine:
    """Reads nothing in the stitched batch; a second look reads a line only in crops drawn bright."""

    def __init__(self) -> None:
        self.settings, self.rereads = OcrSettings(), 0

    def read(self, image: np.ndarray) -> list[OcrLine]:
        if image.shape[0] == 60:  # a crop enlarged 1.5x (40 px): the second look
            self.rereads += 1
            return [OcrLine("嗯", 0.9, (0, 0, 30, 30))] if image.mean() > 100 else []
        return []


def test_a_line_read_empty_twice_at_second_look_is_not_looked_at_again(tmp_path):
    """Background the signal took for one line kept 44 keyframes on a real drama, each enlarged and detected
    again for nothing; a line whose second looks find text (a lone "嗯") keeps them all."""
    from stages.subtitles.ocr import REREAD_MISSES

    frames = []
    for i in range(10):
        path = tmp_path / f"crop_{i}.png"
        cv2.imwrite(str(path), np.full((40, 40, 3), 200 if i >= 6 else 20, np.uint8))
        frames.append(Keyframe(i, i / 10, (i + 1) / 10, path, line=1 if i < 6 else 2))
    batch = tmp_path / "batch.png"
    cv2.imwrite(str(batch), np.zeros((10 * 64, 40, 3), np.uint8))
    stitched = StitchedBatch(batch, tuple(range(10)), tuple(i * 64 for i in range(10)), (40,) * 10)
    engine = _CountingEngine()
    texts = recognize_batches(
        [stitched], KeyframeSet(tmp_path, Band(0, 0, 40, 40), 10, 1.0, tuple(frames), 10), engine
    )
    assert engine.rereads == REREAD_MISSES + 4  # line 1: two looks, then none; line 2: all four read
    assert [t.text for t in texts] == [""] * 6 + ["嗯"] * 4
    whole = KeyframeSet(tmp_path, Band(0, 0, 40, 40, source=WHOLE_FRAME), 10, 1.0, tuple(frames), 10)
    engine = _CountingEngine()
    assert [t.text for t in recognize_batches([stitched], whole, engine)] == [""] * 10 and engine.rereads == 0


class _LeadEngine:
    """Reads one caption in every keyframe's row of the batch; counts the lead samples it recognises."""

    def __init__(self, rows: int) -> None:
        self.settings, self.rows, self.line_reads = OcrSettings(), rows, 0

    def read(self, image: np.ndarray) -> list[OcrLine]:
        return [OcrLine("撸思面馆", 0.99, (10, 64 * k + 10, 190, 64 * k + 30)) for k in range(self.rows)]

    def read_line(self, crop: np.ndarray) -> tuple[str, float]:
        self.line_reads += 1
        return "撸思面馆", 0.99


def test_a_line_on_screen_since_the_earliest_lead_sample_costs_one_read(tmp_path):
    """A whole frame keeps lead samples before every keyframe (each read in a stitched batch of its own), and
    most of its lines were on screen before them: the earliest sample is read first, and where it shows the
    line the later ones are not read (they were, latest first, one by one: 3 reads a keyframe)."""
    shown = np.zeros((40, 200, 3), np.uint8)
    shown[15:25, 10:190:6] = 255  # strokes: the box stands out in every sample
    lead, frames = [], []
    for i in range(4):
        path = tmp_path / f"frame_{i}.jpg"
        cv2.imwrite(str(path), shown)
        lead.append((round(i / 10, 3), path))
    for i, (start, end) in enumerate([(1.0, 1.5), (1.5, 2.0)]):
        frames.append(Keyframe(i, start, end, lead[0][1], lead=tuple(lead[1:])))
    batch = tmp_path / "batch.png"
    cv2.imwrite(str(batch), np.zeros((2 * 64, 200, 3), np.uint8))
    stitched = StitchedBatch(batch, (0, 1), (0, 64), (40, 40))
    engine = _LeadEngine(2)
    whole = KeyframeSet(tmp_path, Band(0, 0, 200, 40, source=WHOLE_FRAME), 10, 2.0, tuple(frames), 20)
    texts = recognize_batches([stitched], whole, engine)
    assert [t.lines[0].since for t in texts] == [0.1, 0.1]
    assert engine.line_reads == 2


SCATTERED = "douyin_7625248139076178405_zh"  # the meme edit: read whole frame, events per position


@pytest.mark.slow
@pytest.mark.skipif(not realvideo_available(), reason=REALVIDEO_MISSING)
@pytest.mark.parametrize(("text", "window"), [("撸思面馆", (0.0, 3.0)), ("若无人", (15.0, 17.0))])
def test_a_whole_frame_caption_starts_on_its_first_legible_frame(tmp_path, text, window):
    """The meme edit's small pale "撸思面馆" is legible from frame 56 (1.867 s), but a few cells of the whole
    frame's text signal did not change it enough for a keyframe before 2.1 s (0.233 s late): the samples
    before each whole-frame keyframe are read at the line's box back to its first legible one. "若无人"
    (from 14.867 s) is first kept at 15.0 s, where the flow's first window ends: the next window's first
    keyframe has the previous window's last samples as its lead (it had none: 0.133 s late)."""
    from dataclasses import replace

    from blocks.subtitles import SubtitleConfig
    from core.media import probe_media
    from stages.subtitles.area import detect_subtitle_band, signal_settings
    from stages.subtitles.crop import crop_keyframes
    from stages.subtitles.keyframes import extract_keyframes
    from stages.subtitles.ocr import load_ocr_engine
    from stages.subtitles.stitch import stitch_keyframes

    config = SubtitleConfig()
    info = probe_media(realvideo_path(SCATTERED))
    band = detect_subtitle_band(info, config.ocr, config.area, None, signal_settings(config.keyframes))
    assert band.source == WHOLE_FRAME, band
    keyframes = extract_keyframes(info, band, tmp_path, config.keyframes, window)
    crops = crop_keyframes(keyframes, tmp_path, config.keyframes)
    engine = load_ocr_engine(replace(config.ocr, lang="ch"))
    texts = recognize_batches(stitch_keyframes(crops, tmp_path), crops, engine)
    events = events_by_position(texts, replace(config.postprocess, spacing="none", simplified=True))
    (cue,) = [c for c in answer_key(SCATTERED) if c.text == text]
    starts = [e.start for e in events if e.text == text]
    assert starts and abs(starts[0] - cue.start) <= 0.1, (cue, [(e.start, e.end, e.text) for e in events])
