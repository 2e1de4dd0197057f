"""Frame size and timing of a rendition: the box, the aspect ratio kept, even sides, the thumbnail time."""

from __future__ import annotations

from dataclasses import dataclass

from stages.transcode.presets import TranscodePreset
from stages.transcode.probe import StreamFacts


@dataclass(frozen=True)
class Geometry:
    """The picture is scaled to `scaled_*`, then padded (centred, black) to `out_*` when they differ."""

    scaled_width: int
    scaled_height: int
    out_width: int
    out_height: int


ASPECT_TOLERANCE = 0.01  # a source within 1% of the box's shape fills the box exactly (16:9 -> 848x480)


def _even(value: float, limit: int) -> int:
    """Nearest even integer, at least 2 and at most `limit` rounded down to even."""
    return max(2, min(limit - limit % 2, 2 * round(value / 2)))


def plan_geometry(width: int, height: int, preset: TranscodePreset) -> Geometry:
    """Frame size for a `width`x`height` source as displayed: aspect ratio kept, sides even, box respected.

    A source whose aspect ratio is within 1% of the box's, and at least as large (or `upscale`), fills the
    box exactly (a 16:9 video in mp4_standard's 848x480 box is 848x480, the seed's size, stretched by 0.6%);
    any other source is fitted inside the box (and padded to it with `fit="pad"`).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"source frame size {width}x{height} is not positive")
    if preset.width is None or preset.height is None:
        w, h = _even(width, width), _even(height, height)
        return Geometry(w, h, w, h)
    box_w, box_h = preset.width, preset.height
    if preset.follow_orientation and (height > width) != (box_h > box_w):
        box_w, box_h = box_h, box_w
    factor = min(box_w / width, box_h / height)
    if (factor <= 1.0 or preset.upscale) and abs(width * box_h / (height * box_w) - 1) <= ASPECT_TOLERANCE:
        return Geometry(box_w, box_h, box_w, box_h)  # the seed's sizes: 848x480, not 848x476 (0.6% off 16:9)
    if not preset.upscale:
        factor = min(factor, 1.0)
    w, h = _even(width * factor, box_w), _even(height * factor, box_h)
    if preset.fit == "pad":
        return Geometry(w, h, box_w, box_h)
    return Geometry(w, h, w, h)


def thumbnail_time(preset: TranscodePreset, duration: float, fps: float = 0.0) -> float:
    """The seed's frame at 4 s; mid-video when the video is too short for that.

    Never past the last frame's start (`duration - 1/fps`): ffmpeg's input seek drops every frame before
    the seek point, so a one-frame or slideshow video seeked to its middle would give no picture at all."""
    wanted = preset.thumbnail_at if preset.thumbnail_at < duration - 0.5 else duration / 2
    last_frame = duration - 1 / fps if fps > 0 else duration / 2
    return max(0.0, min(wanted, last_frame))


def expected_duration(preset: TranscodePreset, source: StreamFacts) -> float:
    """How long a video rendition must be: the source's video, cut to `max_duration` for previews."""
    if preset.max_duration is not None:
        return min(preset.max_duration, source.video_duration)
    return source.video_duration
