"""Line starts and ends on the first and last legible frame (issue 21 point 4), where the text signal or the
read confidence came late: a pale line without an outline, white text over a bright patch."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.schema import FrameText, OcrLine
from stages.subtitles.ocr import OcrSettings, RapidOcrEngine, read_lead
from stages.subtitles.postprocess import PostprocessSettings, frames_to_events

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


def test_a_weak_frame_between_two_reads_of_a_line_leaves_one_event_and_a_blank_two():
    """The reviewer's case: strong, weak, strong reads of one line are one event (it never left the
    screen); the same line twice with a blank between stays two events."""
    line = "同一句话字幕"
    settings = PostprocessSettings(spacing="none")
    bridged = [frame(0, 0.0, 1.0, line), frame(1, 1.0, 1.5, line, 0.5), frame(2, 1.5, 2.5, line)]
    assert [(e.start, e.end) for e in frames_to_events(bridged, settings)] == [(0.0, 2.5)]
    apart = [frame(0, 0.0, 1.0, line), frame(1, 1.0, 1.5), frame(2, 1.5, 2.5, line)]
    assert [(e.start, e.end) for e in frames_to_events(apart, settings)] == [(0.0, 1.0), (1.5, 2.5)]


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
    from core.schema import Band, Keyframe, KeyframeSet, StitchedBatch
    from stages.subtitles.band import WHOLE_FRAME
    from stages.subtitles.ocr import REREAD_MISSES, recognize_batches

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
