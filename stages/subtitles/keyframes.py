"""Keyframes: decode the subtitle band at a sampling rate and keep only the samples where it changed.

ffmpeg decodes the band's rows only (crop in the filter graph), so memory stays at one strip. The change
signal is the subtitle text itself: bright strokes next to a dark outline or shadow, the way burned-in
subtitles are drawn. Background motion barely moves that signal; a new line moves it a lot. Each kept
sample stands for the span until the next kept sample. ffmpeg's fps filter gives sample n the last frame
before (n + 0.5) / fps, so a change first seen in sample n happened, on average, at n / fps: spans start
there (shifted back half an interval, every start and end was 0.05 s early on the real dramas).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
from prefect import task

from core.caching import resumable
from core.damage import damage_in_window, dated_errors
from core.media import iter_video_frames
from core.outputs import write_image
from core.schema import Band, Keyframe, KeyframeSet, MediaInfo
from stages.subtitles.band import WHOLE_FRAME, mask_static_boxes, strip_crop_filter
from stages.subtitles.crop import scratch_format
from stages.subtitles.text_signal import KeyframeSettings, new_line, signal_change, text_signal, thinned


def steady_signals(frames, band: Band, settings: KeyframeSettings):
    """(index, strip, signal) where a cell counts only if it is also set in a neighbouring sample.

    Subtitle strokes stay put for many samples; the edges of moving footage behind them (cars, grass,
    a car window) flicker from sample to sample. Keeping the cells seen in a sample and in the one
    before or after it drops the flicker, so the background stops triggering keyframes, while a line
    appearing or vanishing still changes the signal at the right sample (lines of one sample are lost:
    at 5 fps they last under 0.2 s, below the shortest event kept).
    """
    prev = cur = None
    for index, strip in frames:
        new = (index, strip, text_signal(mask_static_boxes(strip, band), settings))
        if cur is not None:
            neighbours = new[2] if prev is None else prev[2] | new[2]
            yield cur[0], cur[1], cur[2] & neighbours
        prev, cur = cur, new
    if cur is not None:
        yield cur[0], cur[1], cur[2] if prev is None else cur[2] & prev[2]


FIRST_WINDOW_SECONDS = 15.0  # the first window is short: its language and OCR run while the rest decodes
# (one core reads, the other decodes): a fresh 60 s 720p clip read in one window waited for all of it


def video_windows(
    duration: float, seconds: float, first: float = FIRST_WINDOW_SECONDS
) -> list[tuple[float, float]]:
    """(start, end) windows covering the video: the first `first` seconds (at most `seconds`), then
    `seconds` each; the last one runs to the end (a remainder of a second or less joins it, and a video
    at most 5 s longer than the first window is one window)."""
    first = min(first, seconds)
    if duration <= first + 5.0:
        return [(0.0, duration)]
    rest = duration - first
    count = max(1, int(rest // seconds) + (rest % seconds > 1.0))
    ends = [first + (i + 1) * seconds for i in range(count - 1)] + [duration]
    return list(zip([0.0, first, *ends[:-1]], [first, *ends], strict=True))


def extract_keyframes(
    info: MediaInfo,
    band: Band,
    work_dir: Path,
    settings: KeyframeSettings,
    window: tuple[float, float] | None = None,
) -> KeyframeSet:
    """Kept band strips (PNG in `work_dir`) with their time spans; none when the band is empty.

    `window` (start, end seconds) decodes one part of the video, so a flow can crop, read and delete
    each part's strips before the next: temporary disk stays bounded whatever the video's length.
    A line crossing the window's end continues, contiguous, into the next window's first keyframe, whose
    lead samples are the previous window's last `lead_seconds` (decoded again, kept for OCR only).
    Every frame is decoded (the fps filter picks the samples), so the same ffmpeg dates the decoders'
    errors in the window too (`damage`: the subtitles flow's decode check; None when nothing was decoded).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    fps = settings.sample_fps
    if band.is_empty:
        return KeyframeSet(info.path, band, fps, info.duration, (), 0)
    w_start, w_end = window if window is not None else (0.0, info.duration)
    first = round(w_start * fps)
    last_window = w_end >= info.duration - 1e-6
    lead_samples = max(0, round(settings.lead_seconds * fps))
    pre = _decode_from(w_start, band, settings)
    kept: list[tuple[int, float, Path, bool, float, int, tuple]] = []  # index, time, path, has_text, change,
    # line, lead samples
    lead: deque[tuple[int, np.ndarray]] = deque(maxlen=lead_samples)
    last_signal: np.ndarray | None = None
    samples, line = 0, first  # line ids unique across windows (a window has fewer lines than samples)
    recent: list[np.ndarray] = []  # the current line's last two signals (a cross-fade is one mixed sample)
    faded_run = 0  # samples in a row where the current line's strokes thinned below the count
    suffix, params = scratch_format(band)
    errors: list[tuple[float | None, str]] = []  # the decoders' errors, dated by the frames around them
    frames = iter_video_frames(
        info.path,
        fps=fps,
        filters=strip_crop_filter(band, info.width),
        out_width=info.width,
        out_height=band.height,
        timeout=120 + 2 * (w_end - w_start),
        stage="keyframes",
        start=pre / fps,
        duration=None if last_window else w_end - pre / fps,
        frame_log=lambda lines: errors.extend(dated_errors(lines)),
    )
    for local, strip, signal in steady_signals(frames, band, settings):
        index = pre + local
        if index < first:  # before the window: a lead sample only (its keyframes are the previous window's)
            lead.append((index, strip))
            continue
        samples += 1
        has_text = int(np.count_nonzero(signal)) >= settings.min_text_cells
        faded = not has_text and bool(recent) and faded_run < settings.faded_samples
        faded = faded and thinned(recent[-1], signal)  # the same line, pale for a moment
        faded_run = faded_run + 1 if faded else 0
        has_text = has_text or faded
        if has_text and not faded and (not recent or any(new_line(ref, signal, settings) for ref in recent)):
            line, recent = line + 1, []
        recent = recent if faded else (recent + [signal])[-2:] if has_text else []
        if last_signal is None:
            change = 1.0
        elif not has_text and not kept[-1][3]:
            change = 0.0  # blank after blank: nothing to see
        else:
            change = signal_change(last_signal, signal)
        toggled = has_text != (kept[-1][3] if kept else not has_text)
        if change >= settings.change_threshold or toggled or (has_text and line != kept[-1][5]):
            path = work_dir / f"strip_{index:06d}{suffix}"
            early: tuple[tuple[float, Path], ...] = ()
            if has_text:
                write_image(path, strip, params)
                faint = toggled and not faded and np.count_nonzero(signal) < settings.character_cells
                if faint or band.source == WHOLE_FRAME:
                    early = tuple(_write_lead(work_dir, lead, fps, band))
            kept.append((index, index / fps, path, has_text, change, line, early))
            last_signal = signal
            lead.clear()
        else:
            lead.append((index, strip))
    end_of_video = max(info.duration, (first + samples) / fps) if last_window else w_end
    keyframes = []
    for k, (index, start, path, has_text, change, line_id, early) in enumerate(kept):
        if not has_text:
            continue
        end = kept[k + 1][1] if k + 1 < len(kept) else end_of_video
        keyframes.append(
            Keyframe(
                index=index,
                start=round(start, 3),
                end=round(min(end, end_of_video), 3),
                image_path=path,
                change=round(change, 4),
                line=line_id,
                lead=early,
            )
        )
    until = float("inf") if last_window else _decode_from(w_end, band, settings) / fps  # the next window's
    damage = damage_in_window(info.path, errors, pre / fps, until, info.duration)
    return KeyframeSet(info.path, band, fps, info.duration, tuple(keyframes), samples, damage)


def _decode_from(start: float, band: Band, settings: KeyframeSettings) -> int:
    """The sample a window starting at `start` seconds decodes from: its first; a whole frame's, the
    previous window's tail as its first keyframe's lead (a band's keyframes are as they were: its lines'
    text signal shows when they appear; a pre-roll there moved the first sample's steady signal and ended
    a line of …7489 0.2 s early)."""
    first = round(start * settings.sample_fps)
    lead_samples = max(0, round(settings.lead_seconds * settings.sample_fps))
    return max(0, first - lead_samples) if band.source == WHOLE_FRAME else first


def _write_lead(work_dir: Path, lead: deque[tuple[int, np.ndarray]], fps: float, band: Band):
    """The samples before a keyframe, (time, strip path), where a line may already have been legible: a
    faint line's (its strokes gave too few cells to count: pale text without an outline), and every
    whole frame's (a small caption is a few cells of the whole frame's signal: the meme edit's pale
    "撸思面馆" appeared at 1.87 s and changed it enough only at 2.1 s)."""
    suffix, params = scratch_format(band)
    for index, strip in lead:
        path = work_dir / f"lead_{index:06d}{suffix}"
        write_image(path, strip, params)
        yield round(index / fps, 3), path


@task(name="keyframes", task_run_name="keyframes", **resumable())
def keyframes_task(
    info: MediaInfo,
    band: Band,
    work_dir: Path,
    settings: KeyframeSettings,
    window: tuple[float, float] | None = None,
) -> KeyframeSet:
    """CPU stage: decoding and change detection never wait on the GPU."""
    from prefect import get_run_logger

    result = extract_keyframes(info, band, work_dir, settings, window)
    get_run_logger().info(
        "%s: %d samples at %.1f fps, %d keyframes with text",
        info.path.name,
        result.samples_decoded,
        settings.sample_fps,
        len(result.frames),
    )
    return result
