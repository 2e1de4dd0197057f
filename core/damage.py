"""Damage inside a media file, found before a flow relies on it: a video whose middle is corrupt decodes
with errors (ffmpeg conceals them: frozen or smeared frames, lost subtitles) yet exits 0, so without this
a run that lost content to them reads as a clean success.

One decoding pass (ffmpeg's framecrc muxer: a line per decoded frame with its timestamp, flushed as it
goes, the decoders' own error reports interleaved, so each error gets the media time it happened at) gives
the number of errors and their time ranges; a flow puts them in its artifact, warns on stderr and exits 1
("partly done") when any were found. Dating errors by frames, not by progress reports (every 0.25 s of wall
time), keeps the times right where decoding is faster than that: a short clip, an audio track.
The subtitles flow needs no pass of its own: its keyframes stage decodes every picture already, window by
window, and has the same ffmpeg write these frame lines beside its samples (core.media.iter_video_frames
`frame_log`); each window keeps the errors of its own part (`damage_in_window`), the flow joins them
(`combined_damage`).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from core.cli import EXIT_OK, EXIT_PARTIAL
from core.errors import StageError, StageTimeout, printable
from core.interrupt import stop_requested
from core.media import FRAME_LINES, Streams, require_tool
from core.schema import DecodeDamage, MediaInfo

JOIN_SECONDS = 1.0  # errors closer than this are one damaged range
MARGIN_SECONDS = 0.5  # an error follows its frame's line by a few frames (frame threads): a range is widened
_PROGRESS = re.compile(r"^[a-z_0-9]+=")  # progress lines (`-progress`); errors start otherwise
_FRAME = re.compile(r"^(\d+),\s*-?\d+,\s*(-?\d+),")  # framecrc: stream, dts, pts, duration, size, crc
_TIME_BASE = re.compile(r"^#tb (\d+): (\d+)/(\d+)")  # framecrc's header: each stream's time base


def scan_decode_errors(
    info: MediaInfo, timeout: float | None = None, streams: Streams = "both"
) -> DecodeDamage:
    """Decode `info.path` once (the video and the audio stream ffmpeg picks, one of each; only the audio:
    what speech recognition reads, damaged pictures lose it nothing; only the pictures: what subtitles are
    read from) and collect the decoders' errors with their media times. The log is read as it comes: a
    line per frame, millions for a long recording, is never held whole."""
    limit = timeout if timeout is not None else 60.0 + 2.0 * max(info.duration, 0.0)
    # one decoding thread: the check runs beside the stages, whose own decodes and OCR want the cores
    cmd = [require_tool("ffmpeg"), "-v", "error", "-nostdin", "-nostats", "-threads", "1"]
    cmd += ["-i", str(info.path), *FRAME_LINES[streams], "pipe:1"]
    # stderr into stdout: the error lines arrive between the frame lines that date them
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    expired = threading.Event()
    timer = threading.Timer(limit, lambda: (expired.set(), proc.kill()))
    timer.start()
    try:
        assert proc.stdout is not None
        damage = damage_from_log(
            info.path, (raw.decode("utf-8", "replace") for raw in proc.stdout), info.duration
        )
    finally:
        timer.cancel()
        if proc.poll() is None:  # stopped early (an error in the reading): no ffmpeg left behind
            proc.kill()
        proc.wait()
    if expired.is_set():
        raise StageTimeout("decode-check", info.path, f"ffmpeg decode timed out after {limit:.0f} s")
    # ffmpeg's exit status is not judged (damage is what it reports), but a check the user cut short fails
    if stop_requested():
        raise StageError("decode-check", info.path, "stopped by the user: the decode check was cut short")
    return damage


def dated_errors(lines: Iterable[str]) -> Iterator[tuple[float | None, str]]:
    """(media time, the decoder's words) of each error in ffmpeg's interleaved frame lines (framecrc) or
    progress reports (`out_time_us=`) and error lines: an error is dated by the last time seen before it,
    None before any was (a decode that began with an input seek: the frames before its first are the
    previous part's)."""
    now: float | None = None
    bases: dict[int, float] = {}
    for line in lines:
        line = line.strip()
        if (frame := _FRAME.match(line)) is not None:
            now = int(frame[2]) * bases.get(int(frame[1]), 0.0)
        elif (base := _TIME_BASE.match(line)) is not None:
            bases[int(base[1])] = int(base[2]) / max(1, int(base[3]))
        elif line.startswith("out_time_us="):
            value = line.partition("=")[2]
            now = int(value) / 1e6 if value.lstrip("-").isdigit() else now
        elif line and not line.startswith("#") and not _PROGRESS.match(line):
            yield now, re.sub(r"^\[[^\]]+ @ 0x[0-9a-f]+\]\s*", "", line)


def damage_from_log(path: Path, lines: Iterable[str], duration: float) -> DecodeDamage:
    """Errors and their time ranges from one decode of the whole input (dated_errors)."""
    return damage_of(path, ((now or 0.0, error) for now, error in dated_errors(lines)), duration)


def damage_in_window(
    path: Path, errors: Iterable[tuple[float | None, str]], start: float, until: float, duration: float
) -> DecodeDamage:
    """The damage of one window of a decode in windows: `errors` (dated_errors) of a decode that began at
    `start` (input seek; its times from there), those dated before `until`, where the next window's decode
    begins. Each window keeps what comes after its first frame and before the next one's first: the
    errors before a seek's first frame (its run-up from the keyframe before `start`) are the previous
    window's, whose frame lines go on past its end to date them (core.media FRAME_LINES_PAST_S), so none is
    counted twice or lost."""
    kept = (
        (start + (now or 0.0), error)
        for now, error in errors
        if (now is not None or start <= 0.0) and start + (now or 0.0) < until - 1e-3
    )
    return damage_of(path, kept, duration)


def damage_of(path: Path, errors: Iterable[tuple[float, str]], duration: float) -> DecodeDamage:
    """Dated errors to a count and time ranges: errors closer than JOIN_SECONDS are one range, widened by
    MARGIN_SECONDS each side within the input's duration."""
    times, first = [], ""
    for now, error in errors:
        times.append(max(now, 0.0))
        first = first or error
    ranges: list[list[float]] = []
    for t in sorted(times):
        if ranges and t - ranges[-1][1] <= JOIN_SECONDS:
            ranges[-1][1] = t
        else:
            ranges.append([t, t])
    end = duration if duration > 0 else float("inf")
    spans = tuple((max(0.0, a - MARGIN_SECONDS), min(end, b + MARGIN_SECONDS)) for a, b in ranges)
    return DecodeDamage(Path(path), len(times), spans, first)


def combined_damage(path: Path, parts: Sequence[DecodeDamage]) -> DecodeDamage:
    """One input's damage from its parts' (windows decoded apart), as one pass over it would say: two errors
    at most JOIN_SECONDS apart have widened ranges that overlap or touch, so those ranges join."""
    ranges: list[list[float]] = []
    for a, b in sorted(span for part in parts for span in part.ranges):
        if ranges and a - ranges[-1][1] <= JOIN_SECONDS - 2 * MARGIN_SECONDS + 1e-9:
            ranges[-1][1] = max(ranges[-1][1], b)
        else:
            ranges.append([a, b])
    first = next((part.first_error for part in parts if part.damaged), "")
    spans = tuple((a, b) for a, b in ranges)
    return DecodeDamage(Path(path), sum(part.errors for part in parts), spans, first)


def input_damage(
    path: Path, pictures: DecodeDamage | None, audio: DecodeDamage | None, both: DecodeDamage | None
) -> DecodeDamage | None:
    """One input's damage from the checks a run's steps made: a check of both streams (transcode's) says
    all of it; else the pictures' (the subtitle steps') and the audio's (transcribe's), joined. None: no
    step checked."""
    if both is not None:
        return both
    parts = [part for part in (pictures, audio) if part is not None]
    return combined_damage(path, parts) if parts else None


def exit_status(damage: DecodeDamage | None) -> int:
    """A CLI's status once its outputs are written: 0, or 1 (partly done) after one warning line naming
    the input, its decode errors and their time ranges."""
    if damage is None or not damage.damaged:
        return EXIT_OK
    print(f"warning: {printable(damage.path)}: {damage.describe()}", file=sys.stderr)
    return EXIT_PARTIAL


def report_damage(damage: DecodeDamage, flow: str) -> None:
    """Say it where users look: a warning in the run's log (the CLI's stderr) and an artifact with the
    damaged time ranges. Nothing when the input decoded cleanly."""
    if not damage.damaged:
        return
    from prefect import get_run_logger
    from prefect.artifacts import create_markdown_artifact

    get_run_logger().warning("%s: %s", damage.path.name, damage.describe())
    rows = "\n".join(f"| {a:.1f} | {b:.1f} |" for a, b in damage.ranges)
    slug = re.sub(r"[^a-z0-9]+", "-", f"{flow}-damage-{damage.path.stem}".lower()).strip("-")[:100]
    create_markdown_artifact(
        key=slug,
        markdown=f"**{damage.errors} decode errors** in `{damage.path.name}` (first: {damage.first_error}): "
        f"the outputs may freeze or miss content here.\n\n| from (s) | to (s) |\n|---|---|\n{rows}\n",
        description=f"damage inside {damage.path.name}",
    )


@task(name="decode-check", task_run_name="check {info.path.name} decodes", cache_policy=NONE)
def decode_check_task(info: MediaInfo, streams: Streams = "both") -> DecodeDamage:
    return scan_decode_errors(info, streams=streams)
