"""Boxes held at one place: logos, clocks and decoration are masked, subtitle lines held there are not."""

from __future__ import annotations

import cv2
import numpy as np

from core.schema import Band
from stages.subtitles.area import AreaSettings, scattered, split_static_boxes
from stages.subtitles.overlays import held_line

BOX = (40, 30, 600, 100)  # where every text below is drawn, in a 640 x 120 sample at scale 1
SEEN = set(range(2, 10))  # the detector boxed it in samples 2-9 of 10


def sample(text: str | None, background: int = 60) -> np.ndarray:
    img = np.full((120, 640, 3), background, np.uint8)
    img[15:105, 30:610] = (background + 40) % 256  # the scene behind changes with `background`
    if text:
        cv2.putText(img, text, (50, 85), cv2.FONT_HERSHEY_SIMPLEX, 1.8, (255, 255, 255), 4, cv2.LINE_AA)
    return img


def reader(texts: list[str | None], frames: list[np.ndarray], score: float = 0.99):
    """A recogniser that knows what was drawn: the text of the sample a crop was cut from."""
    x0, y0, x1, y1 = BOX

    def read_line(crop: np.ndarray) -> tuple[str, float]:
        for text, frame in zip(texts, frames, strict=True):
            if text and np.array_equal(frame[y0:y1, x0:x1], crop):
                return text, score
        return "", 0.0

    return read_line


def held(texts: list[str | None], score: float = 0.99, seen: set[int] = SEEN) -> bool:
    frames = [sample(t, background=40 + 15 * i) for i, t in enumerate(texts)]
    return held_line(BOX, seen, [frames], 1.0, reader(texts, frames, score), 0.5)


def test_lines_held_at_one_place_over_most_of_a_short_clip_are_text():
    """A 5 s cut of a drama whose lines are all six characters wide: one box at one place in 8 of 10
    samples, showing three lines in turn (…1610 from 3.4 s read no line while this was a logo)."""
    assert held([None, None] + ["NO MORE"] * 3 + ["NOT AGAIN"] * 3 + ["YOUR EYES"] * 2)
    assert held([None] + ["ONE LINE HELD"] * 6 + [None] * 3, seen=set(range(1, 7)))  # …2089 from 5.1 s


def test_a_logo_a_clock_and_a_row_of_emoji_stay_overlays():
    assert not held(["LOGO TV"] * 10, seen=set(range(10)))  # the same over the whole clip
    assert not held(["LOGO TV"] * 10, seen={0, 1, 2, 3, 5, 6, 8})  # ... missed by the detector now and then
    assert not held([f"00:00:0{i}.{i * 37 % 100:02d}" for i in range(10)], seen=set(range(10)))  # a clock
    assert not held([None] * 4 + ["@@@@@@@"] * 6, score=0.4, seen=set(range(4, 10)))  # unread: decoration


def test_a_held_line_stays_among_the_moving_boxes():
    line = (210, 924, 509, 984)
    boxes = [[]] * 2 + [[line]] * 8
    static, moving = split_static_boxes(boxes, 720, AreaSettings())
    assert static == [line]  # by place alone: an overlay
    static, moving = split_static_boxes(boxes, 720, AreaSettings(), held=lambda box, seen: True)
    assert static == [] and sum(len(m) for m in moving) == 8


def test_a_row_of_emoji_is_not_the_bands_line_when_captions_sit_all_over_the_frame():
    """The meme cut …405 from 6.8 s (720x734, boxes as detected): captions top left and middle in five
    samples, the band's row in six, three of them a row of emoji under a caption (not text). Counted as
    the band's lines they kept the band and three of four captions were missed; the band holds three."""
    band = Band(0, 488, 720, 630)
    emoji = (96, 553, 595, 593)
    moving = [[(66, 307, 274, 352)], [(260, 553, 436, 598), (66, 307, 273, 352)], [(260, 553, 436, 596)]]
    moving += [[(262, 551, 436, 596)], [(233, 333, 487, 401), (55, 285, 329, 329)]]
    moving += [[(232, 332, 489, 404), (55, 284, 330, 330)], [(55, 285, 332, 329), (506, 91, 627, 224)]]
    moving += [[emoji], [emoji], [emoji]]
    assert not scattered(moving, band, 734, AreaSettings())  # the band's own lines unread: as before
    assert scattered(moving, band, 734, AreaSettings(), reads=lambda i, box: box != emoji)
    assert not scattered(moving, band, 734, AreaSettings(), reads=lambda i, box: True)
