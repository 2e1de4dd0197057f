"""Damage inside a media file, found before a flow relies on it: a video whose middle is corrupt decodes
with errors (ffmpeg conceals them: frozen or smeared frames, lost subtitles) yet exits 0, so without this
a run that lost content to them reads as a clean success.

One decoding pass (ffmpeg's framecrc muxer: a line per decoded frame with its timestamp, flushed as it
goes, the decoders' own error reports interleaved, so each error gets the media time it happened at) gives
the number of errors and their time ranges; a flow puts them in its artifact, warns on stderr and exits 1
("partly done") when any were found. Dating errors by frames, not by progress reports (every 0.25 s of wall
time), keeps the times right where decoding is faster than that: a short clip, an audio track.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from core.cli import EXIT_OK, EXIT_PARTIAL
from core.errors import StageTimeout, printable
from core.media import require_tool
from core.schema import DecodeDamage, MediaInfo

JOIN_SECONDS = 1.0  # errors closer than this are one damaged range
MARGIN_SECONDS = 0.5  # an error follows its frame's line by a few frames (frame threads): a range is widened
_PROGRESS = re.compile(r"^[a-z_0-9]+=")  # progress lines (`-progress`); errors start otherwise
_FRAME = re.compile(r"^(\d+),\s*-?\d+,\s*(-?\d+),")  # framecrc: stream, dts, pts, duration, size, crc
_TIME_BASE = re.compile(r"^#tb (\d+): (\d+)/(\d+)")  # framecrc's header: each stream's time base


def scan_decode_errors(
    info: MediaInfo, timeout: float | None = None, audio_only: bool = False
) -> DecodeDamage:
    """Decode `info.path` once (the video and the audio stream ffmpeg picks, one of each; only the audio
    with `audio_only`: what speech recognition reads, damaged pictures lose it nothing) and collect the
    decoders' errors with their media times. The log is read as it comes: a line per frame, millions
    for a long recording, is never held whole."""
    limit = timeout if timeout is not None else 60.0 + 2.0 * max(info.duration, 0.0)
    # one decoding thread: the check runs beside the stages, whose own decodes and OCR want the cores
    cmd = [require_tool("ffmpeg"), "-v", "error", "-nostdin", "-nostats", "-threads", "1"]
    cmd += ["-i", str(info.path)]
    # the pictures go out as wrapped_avframe (a reference to the decoded frame, what the null muxer gets):
    # a CRC of each raw frame was a third of the check's CPU on 720p, and only the frame's time is read
    cmd += ["-vn", "-sn", "-dn"] if audio_only else ["-c:v", "wrapped_avframe"]
    cmd += ["-f", "framecrc", "-flush_packets", "1", "pipe:1"]
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
    return damage


def damage_from_log(path: Path, lines: Iterable[str], duration: float) -> DecodeDamage:
    """Errors and their time ranges from ffmpeg's interleaved frame lines (framecrc) or progress reports
    (`out_time_us=`) and error lines: an error is dated by the last time seen before it."""
    now, times, first = 0.0, [], ""
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
            times.append(max(now, 0.0))
            first = first or re.sub(r"^\[[^\]]+ @ 0x[0-9a-f]+\]\s*", "", line)
    ranges: list[list[float]] = []
    for t in sorted(times):
        if ranges and t - ranges[-1][1] <= JOIN_SECONDS:
            ranges[-1][1] = t
        else:
            ranges.append([t, t])
    end = duration if duration > 0 else float("inf")
    spans = tuple((max(0.0, a - MARGIN_SECONDS), min(end, b + MARGIN_SECONDS)) for a, b in ranges)
    return DecodeDamage(Path(path), len(times), spans, first)


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
def decode_check_task(info: MediaInfo, audio_only: bool = False) -> DecodeDamage:
    return scan_decode_errors(info, audio_only=audio_only)
