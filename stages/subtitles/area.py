"""Subtitle area: find the band where subtitles appear, ignoring static overlays.

Text boxes are detected on frames sampled across the video. A box that sits at the same place in most
samples is a static overlay (a logo, a clock): it is set aside, unless the pixels inside it show subtitle
lines held there (overlays.py: a short clip holds one line over most of its samples). The remaining boxes
are grouped into vertical clusters; the cluster seen in the most samples (the lowest one on a tie) is the
subtitle band.
The band is widened to the full frame width (a later, longer line must still fit) and one line height
upwards (room for a second line), with static overlays inside it masked later by the crop stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass

import numpy as np
from prefect import task

from core.caching import resumable
from core.media import iter_video_frames
from core.models import release_freed_memory
from core.read_ahead import read_ahead
from core.schema import Band, MediaInfo
from gpu.devices import GPU_CAPABLE_TAG
from gpu.slot import gpu_slot
from stages.subtitles.band import WHOLE_FRAME, band_from_fractions, clamp_band
from stages.subtitles.ocr import OcrEngine, OcrSettings, load_ocr_engine
from stages.subtitles.overlays import held_line, reads_as_text
from stages.subtitles.text_signal import KeyframeSettings, text_signal

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class AreaSettings:
    samples: int = 0  # 0: one per 4 s of video, between 10 and 20
    detect_width: int = 512  # frames are scaled to this width for detection (subtitles are large text)
    static_fraction: float = 0.6  # a box at the same place in this share of samples is an overlay
    position_tolerance: float = 0.01  # of the frame width: "same place"
    extra_lines_above: float = 1.2  # room for a second line, in line heights
    signal_band_top: float = 0.65  # no text box found: the text signal is looked for below this height
    max_line_height: float = 0.2  # of the frame height: taller boxes are not subtitle lines (big titles are)
    neighbour_lines: float = 1.5  # text rows this many line heights from the band's row join it
    room_below: float = 0.5  # line heights of room under the lowest line seen (a later one sits lower)
    scattered_share: float = 1.0  # samples with lines outside the band, per sample with one inside, from
    # which the lines sit all over the frame (a meme edit: 6 vs 3) and the whole frame is read
    min_scattered: int = 3  # ... and at least this many samples (a title card now and then is not that)
    line_aspect: float = 1.5  # a box this much wider than high is a line (faces, icons, one glyph: square)


SIGNAL_FIELDS = ("bright_level", "dark_level", "cell", "min_text_cells")  # what text_signal and its count use
DEFAULT_SIGNAL = KeyframeSettings()


def signal_settings(keyframes: KeyframeSettings) -> KeyframeSettings:
    """The user's text-signal fields for the band's last resort; the sampling fields stay at their defaults,
    so a `keyframes.sample_fps` edit still reuses the cached band."""
    return KeyframeSettings(**{name: getattr(keyframes, name) for name in SIGNAL_FIELDS})


def sample_count(duration: float, requested: int = 0) -> int:
    return requested if requested > 0 else int(min(20, max(10, duration / 4)))


CANDIDATES_PER_SLOT = 4
GOLDEN = 0.6180339887


def jittered_pick(slot: int) -> int:
    """Which of a slot's CANDIDATES_PER_SLOT frames is kept: a golden-ratio sequence, never periodic.

    Evenly spaced samples alias with evenly timed subtitles: a 10-minute video with a line every 3 s,
    sampled every 30 s, can land every sample in a gap and conclude there is no subtitle band.
    """
    return int(CANDIDATES_PER_SLOT * ((slot * GOLDEN + 0.31) % 1.0))


SEEK_FROM_SECONDS = 120.0  # longer videos seek to each picked frame instead of decoding all of them:
# 20 frames of a 10-minute 720p video cost a whole decode (~25 CPU s), an hour's six times that


def sample_size(info: MediaInfo, width: int) -> tuple[int, int]:
    """The sampled frames' size: `width` wide (never enlarged), even sides."""
    scale = min(1.0, width / info.width)
    return max(2, int(info.width * scale) // 2 * 2), max(2, int(info.height * scale) // 2 * 2)


def sampled_frames(info: MediaInfo, count: int, width: int, phase: float = 0.0) -> Iterator[np.ndarray]:
    """About `count` frames at jittered times over the video, scaled to `width` (`sample_size`), one at a
    time as ffmpeg decodes them. `phase` (0-1) changes the picks for a second, denser look."""
    w, h = sample_size(info, width)
    k = CANDIDATES_PER_SLOT
    fps = k * count / max(info.duration, 0.1)
    shift = int(phase * 97)
    if info.duration >= SEEK_FROM_SECONDS:
        picks = [(slot, slot * k + jittered_pick(slot + shift)) for slot in range(count)]
        times = [(n + 0.5 + seek_jitter(slot + shift)) / fps for slot, n in picks]
        yield from (frame for t in times if (frame := _frame_at(info, t, w, h)) is not None)
        return
    decoded = iter_video_frames(
        info.path,
        fps=fps,
        filters=f"scale={w}:{h}",
        out_width=w,
        out_height=h,
        timeout=60 + info.duration,
        stage="subtitle_area",
    )
    with closing(decoded):
        yield from (frame.copy() for n, frame in decoded if n % k == jittered_pick(n // k + shift))


def sample_and_detect(
    engine: OcrEngine, info: MediaInfo, count: int, width: int, phase: float = 0.0
) -> tuple[list[np.ndarray], list[list[Box]], float]:
    """`sampled_frames`, the detector's boxes on each (in video pixels) and the scale: each frame is detected
    while ffmpeg decodes the next ones, the decoder and the detector each on a core."""
    scale = sample_size(info, width)[0] / info.width
    frames: list[np.ndarray] = []
    detected: list[list[Box]] = []
    for frame in read_ahead(sampled_frames(info, count, width, phase)):
        frames.append(frame)
        detected.append([tuple(int(round(v / scale)) for v in box) for box in engine.detect(frame)])
    return frames, detected, scale


def seek_jitter(slot: int) -> float:
    """A slot's offset from its candidate's time, within +-0.4 of the candidate spacing, never periodic.

    Candidates are evenly spaced: an hour sampled 80 times puts them 45 s apart, a multiple of a line
    every 3 s, so every pick can land in the same gap between lines (the first hour-long run found no
    band). Decoding every frame hid this at the candidates' midpoints; a seek can be anywhere.
    """
    return 0.8 * ((slot * GOLDEN * 7 + 0.13) % 1.0 - 0.5)


def _frame_at(info: MediaInfo, seconds: float, w: int, h: int) -> np.ndarray | None:
    """The frame shown at `seconds`, scaled to w x h: ffmpeg seeks to the keyframe before it and decodes
    from there (a GOP, not the video). None past the last frame."""
    decoded = iter_video_frames(
        info.path,
        fps=info.fps or 25.0,
        filters=f"scale={w}:{h}",
        out_width=w,
        out_height=h,
        timeout=60,
        stage="subtitle_area",
        start=seconds,
        duration=2.0,
    )
    with closing(decoded):
        return next((frame.copy() for _, frame in decoded), None)


def _same_place(a: Box, b: Box, tol: float) -> bool:
    return all(abs(p - q) <= tol for p, q in zip(a, b, strict=True))


def split_static_boxes(
    boxes_per_frame: list[list[Box]],
    frame_width: int,
    settings: AreaSettings,
    held: Callable[[Box, set[int]], bool] | None = None,
) -> tuple[list[Box], list[list[Box]]]:
    """Overlays (same place in most samples) and, per frame, the boxes that remain. `held(box, seen)` says
    which of those places hold subtitle lines instead (stages/subtitles/overlays.py): they remain."""
    tol = settings.position_tolerance * frame_width
    clusters: list[tuple[Box, set[int]]] = []
    for i, boxes in enumerate(boxes_per_frame):
        for box in boxes:
            for ref, seen in clusters:
                if _same_place(ref, box, tol):
                    seen.add(i)
                    break
            else:
                clusters.append((box, {i}))
    needed = max(3, int(np.ceil(settings.static_fraction * len(boxes_per_frame))))
    static = [ref for ref, seen in clusters if len(seen) >= needed and not (held and held(ref, seen))]
    moving = [
        [b for b in boxes if not any(_same_place(s, b, tol) for s in static)] for boxes in boxes_per_frame
    ]
    return static, moving


def is_text_line(box: Box, height: int, settings: AreaSettings) -> bool:
    """A box shaped like a subtitle line: about as wide as high or wider, at most a fifth of the frame
    high. The detector also boxes faces and patterned cloth in generated footage (a 636 px tall box put
    the band over the whole top of a 1280 px frame) and vertical calligraphy on a wall (taller than wide).
    """
    x0, y0, x1, y1 = box
    return 0 < y1 - y0 <= settings.max_line_height * height and x1 - x0 >= 0.8 * (y1 - y0)


def choose_band(
    moving: list[list[Box]], width: int, height: int, settings: AreaSettings, min_seen: int = 1
) -> Band | None:
    """The vertical cluster of text boxes seen as a line (several glyphs wide) in the most samples, then
    seen at all in the most, padded; None when there is none seen in `min_seen` samples or never as a
    line (one glyph-sized box in one sample is no band: look again). Lines first: on a 5 s cut of a real
    drama, four samples boxed the glyph-sized icons of a tile on the wall and two the one subtitle line,
    and the band went on the wall."""
    rows: list[tuple[int, int, set[int], list[int], set[int]]] = []  # y0, y1, seen, heights, seen as lines
    for i, boxes in enumerate(moving):
        for x0, y0, x1, y1 in boxes:
            line_h = y1 - y0
            if not is_text_line((x0, y0, x1, y1), height, settings):
                continue
            wide = x1 - x0 >= settings.line_aspect * line_h
            for k, (ry0, ry1, seen, heights, lines) in enumerate(rows):
                if y0 <= ry1 + 0.6 * line_h and y1 >= ry0 - 0.6 * line_h:
                    seen.add(i)
                    heights.append(line_h)
                    lines.update([i] if wide else [])
                    rows[k] = (min(ry0, y0), max(ry1, y1), seen, heights, lines)
                    break
            else:
                rows.append((y0, y1, {i}, [line_h], {i} if wide else set()))
    if not rows:
        return None
    y0, y1, seen, heights, lines = max(rows, key=lambda r: (len(r[4]), len(r[2]), r[1]))
    if len(seen) < min_seen or not lines:  # glyph-sized boxes only (icons on a wall): look again, then
        return None  # the text signal decides (a one-glyph line is still found there)
    line_h = float(np.median(heights))
    reach = settings.neighbour_lines * line_h  # short dramas move a line up or down between lines
    for ry0, ry1, *_ in rows:
        if ry0 <= y1 + reach and ry1 >= y0 - reach:
            y0, y1 = min(y0, ry0), max(y1, ry1)
    pad = max(4, int(0.3 * line_h))
    top = int(y0 - pad - settings.extra_lines_above * line_h)
    return clamp_band(Band(0, top, width, int(y1 + pad + settings.room_below * line_h)), width, height)


def detect_subtitle_band(
    info: MediaInfo,
    ocr: OcrSettings,
    settings: AreaSettings = AreaSettings(),
    user_band: tuple[float, float, float, float] | None = None,
    signal: KeyframeSettings = DEFAULT_SIGNAL,
) -> Band:
    """The subtitle band of a video: the user's, or the detected one; an empty band when there is no text.

    Where the first samples show no changing text, a second look takes three times as many at other
    times; where that finds no text box either, the keyframe text signal has the last word: outlined
    strokes in the lower part of the frame give that part as the band (OCR then decides).
    """
    engine = load_ocr_engine(ocr)
    count = sample_count(info.duration, settings.samples)
    frames, detected, scale = sample_and_detect(engine, info, count, settings.detect_width)

    def held(*looks: list[np.ndarray]) -> Callable[[Box, set[int]], bool]:
        return lambda box, seen: held_line(box, seen, looks, scale, engine.read_line, ocr.min_text_score)

    def read_in(frames: list[np.ndarray]) -> Callable[[int, Box], bool]:
        return lambda i, box: reads_as_text(frames[i], box, scale, engine.read_line, ocr.min_text_score)

    static, moving = split_static_boxes(detected, info.width, settings, held(frames))
    if user_band is not None:
        band = band_from_fractions(user_band, info.width, info.height)
    else:
        band = choose_band(moving, info.width, info.height, settings, min_seen=2)
        if band is not None and scattered(moving, band, info.height, settings, read_in(frames)):
            band = Band(0, 0, info.width, info.height, source=WHOLE_FRAME)
        if band is None:
            more, found, _ = sample_and_detect(engine, info, min(60, 3 * count), settings.detect_width, 0.5)
            detected += found
            static, moving = split_static_boxes(detected, info.width, settings, held(frames, more))
            band = choose_band(moving, info.width, info.height, settings) or _band_from_signal(
                frames + more, info, settings, signal
            )
    inside = tuple(s for s in static if s[1] < band.y1 and s[3] > band.y0)
    return Band(band.x0, band.y0, band.x1, band.y1, source=band.source, static_boxes=inside)


def scattered(
    moving: list[list[Box]],
    band: Band,
    height: int,
    settings: AreaSettings,
    reads: Callable[[int, Box], bool] | None = None,
) -> bool:
    """Lines sit all over the frame, not in one band: as many samples show a text line outside the band
    as inside it. A meme edit puts each caption under its picture (left, right, top, middle); a drama's
    band holds its lines in most samples, a title or a face (square, not a line) now and then aside.
    Where that hinges on the band's own lines, `reads(sample, box)` says which are text: a row of emoji
    under a meme caption is boxed like a line for a few seconds, and a 5 s cut counted it as the band's."""
    inside: list[list[Box]] = []
    outside = 0
    for boxes in moving:
        lines = [b for b in boxes if is_text_line(b, height, settings)]
        within = [band.y0 <= (b[1] + b[3]) / 2 < band.y1 for b in lines]
        inside.append([b for b, w in zip(lines, within, strict=True) if w])
        outside += any(
            not w and b[2] - b[0] >= settings.line_aspect * (b[3] - b[1])
            for b, w in zip(lines, within, strict=True)
        )
    shown = [bool(lines) for lines in inside]
    if outside < settings.min_scattered:
        return False
    if outside < settings.scattered_share * sum(shown) and reads is not None:
        shown = [any(reads(i, b) for b in lines) for i, lines in enumerate(inside)]
    return outside >= settings.scattered_share * sum(shown)


def _band_from_signal(
    frames: list[np.ndarray], info: MediaInfo, settings: AreaSettings, signal: KeyframeSettings
) -> Band:
    """The lower part of the frame when outlined text strokes show there in some samples, else none."""
    lower = settings.signal_band_top
    seen = 0
    for frame in frames:
        strip = frame[int(frame.shape[0] * lower) :]
        if np.count_nonzero(text_signal(strip, signal)) >= signal.min_text_cells:
            seen += 1
    if seen < max(2, 0.1 * len(frames)):
        return Band(0, 0, 0, 0, source="none")
    band = clamp_band(Band(0, int(info.height * lower), info.width, info.height), info.width, info.height)
    return Band(band.x0, band.y0, band.x1, band.y1, source="signal")


def describe_band(band: Band, info: MediaInfo) -> str:
    if band.is_empty:
        return "no subtitle band found (no changing text in the sampled frames, nor a text signal)"
    top, bottom = band.y0 / info.height, band.y1 / info.height
    return (
        f"band x {band.x0}-{band.x1}, y {band.y0}-{band.y1} ({top:.0%}-{bottom:.0%} of the height, "
        f"{band.source}); {len(band.static_boxes)} static overlay(s) masked"
    )


@task(
    name="subtitle_area",
    task_run_name="find subtitle band",
    **resumable(),
    tags=[GPU_CAPABLE_TAG],
)
def subtitle_area_task(
    info: MediaInfo,
    ocr: OcrSettings,
    settings: AreaSettings,
    user_band: tuple[float, float, float, float] | None,
    signal: KeyframeSettings,
) -> Band:
    """GPU-capable: detection runs inside a GPU slot when the OCR engine runs on CUDA."""
    from prefect import get_run_logger

    with gpu_slot("subtitle_area") as grant:
        band = detect_subtitle_band(info, _on_device(ocr, grant.device), settings, user_band, signal)
    release_freed_memory()  # the sampled frames and the detector's tensors, freed in this thread's arena
    get_run_logger().info("subtitle area of %s: %s", info.path.name, describe_band(band, info))
    return band


def _on_device(ocr: OcrSettings, device: str) -> OcrSettings:
    from dataclasses import replace

    return replace(ocr, device=device)
