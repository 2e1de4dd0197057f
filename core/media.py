"""Probing and running ffmpeg as subprocesses with their own timeouts.

Prefect's task timeout cannot interrupt native code, so every ffmpeg/ffprobe call here has a timeout
of its own and turns a non-zero exit into an error that names the input and ffmpeg's own words.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from prefect import task
from prefect.cache_policies import NONE

from core.errors import MediaInputError, StageError, StageTimeout
from core.interrupt import child_failed, child_failure, settle_signalled_child
from core.outputs import full_disk_error
from core.schema import MediaInfo

MAX_INPUT_BYTES_ENV = "YIVIDEO_MAX_INPUT_BYTES"  # read per check, not at import (a bad value: one line)
DEFAULT_MAX_INPUT_BYTES = 64 * 1024**3
MAX_PIXELS = 8192 * 8192
MAX_SIDE = 16384  # ffmpeg's own limit on a frame side is about this
MAX_DURATION_S = 24 * 3600.0
PROBE_TIMEOUT_S = 60.0

Streams = Literal["both", "audio", "video"]
# frames as framecrc lines to date errors by (core/damage.py); wrapped_avframe: no pixel CRC (1/3 of the CPU)
FRAME_LINES: dict[Streams, list[str]] = {
    "both": ["-sn", "-dn", "-c:v", "wrapped_avframe", "-f", "framecrc", "-flush_packets", "1"],
    "audio": ["-vn", "-sn", "-dn", "-f", "framecrc", "-flush_packets", "1"],
    "video": ["-an", "-sn", "-dn", "-c:v", "wrapped_avframe", "-f", "framecrc", "-flush_packets", "1"],
}
FRAME_LINES_PAST_S = 2.0  # past a decode's end: its reorder delay's errors get a frame line after them

IMAGE_FORMATS = set(  # ffprobe's format names of still images
    "image2 apng png_pipe jpeg_pipe webp_pipe bmp_pipe tiff_pipe gif gif_pipe pgm_pipe ppm_pipe pam_pipe "
    "qdraw_pipe j2k_pipe jpegls_pipe dpx_pipe exr_pipe".split()
)


def max_input_bytes() -> int:
    from core.environment import check_environment

    check_environment({MAX_INPUT_BYTES_ENV: os.environ.get(MAX_INPUT_BYTES_ENV, "")})
    return int(os.environ.get(MAX_INPUT_BYTES_ENV, "").strip() or DEFAULT_MAX_INPUT_BYTES)


def require_tool(name: str) -> str:
    """Path of a system tool, or a clear error saying how to install it."""
    found = shutil.which(name)
    if not found:
        raise StageError("setup", name, f"{name} is not on PATH: install it (Debian: apt-get install ffmpeg)")
    return found


def utf8_name(path: str | Path) -> bool:
    """The path decodes as UTF-8 (Linux lets a name hold any bytes; JSON and the Prefect API cannot)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_name(path: str | Path) -> str:
    """A path as the user typed it, its undecodable bytes shown escaped (\\xff)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def check_input_file(path: str | Path) -> Path:
    """The input exists, is a regular readable file, is not empty and not absurdly large."""
    p = Path(path)
    if not p.exists():
        raise MediaInputError(p, "file does not exist")
    if not utf8_name(p):  # Prefect stores parameters as JSON: such a name failed deep in the run
        raise MediaInputError(shown_name(p), "the file name is not valid UTF-8: rename the file")
    if not p.is_file():
        raise MediaInputError(p, "not a regular file")
    size = p.stat().st_size
    if size == 0:
        raise MediaInputError(p, "file is empty (0 bytes)")
    if size > (limit := max_input_bytes()):
        raise MediaInputError(p, f"file is {size} bytes, above the limit of {limit} ({MAX_INPUT_BYTES_ENV})")
    if not os.access(p, os.R_OK):
        raise MediaInputError(p, "file is not readable")
    return p


def run_media_command(
    cmd: Sequence[str], *, timeout: float, stage: str, subject: str | Path
) -> subprocess.CompletedProcess[bytes]:
    """Run ffmpeg/ffprobe with a hard timeout; the error carries the tail of ffmpeg's stderr."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise StageTimeout(stage, subject, f"{Path(cmd[0]).name} timed out after {timeout:.0f} s") from exc
    if child_failed(proc.returncode):
        if full := full_disk_error(cmd[-1]):
            raise full
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise StageError(stage, subject, child_failure(Path(cmd[0]).name, proc.returncode, " | ".join(tail)))
    return proc


def _fraction(value: str | None) -> float:
    if not value or value in ("0/0", "N/A"):
        return 0.0
    if "/" in value:
        num, den = value.split("/", 1)
        return float(num) / float(den) if float(den) else 0.0
    return float(value)


_FFMPEG_PREFIX = re.compile(r"^\[[^\]]+ @ 0x[0-9a-f]+\]\s*")


def ffmpeg_reason(stderr: bytes, path: str | Path) -> str:
    """ffmpeg's last error line, without its `[png @ 0x...]` prefix or the path we already name."""
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    if not lines:
        return ""
    line = _FFMPEG_PREFIX.sub("", lines[-1])
    return line.removeprefix(f"{path}: ").strip().rstrip(".")


def ffprobe_command(path: str | Path) -> list[str]:
    """ffprobe printing format and streams as JSON; `--` keeps a name starting with '-' a path."""
    return [
        require_tool("ffprobe"),
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        "--",
        str(path),
    ]


def video_and_audio_streams(streams: list[dict]) -> tuple[list[dict], list[dict]]:
    """Video streams (cover art left out) and audio streams of an ffprobe answer."""
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
    ]
    return videos, [s for s in streams if s.get("codec_type") == "audio"]


def probe_media(path: str | Path, *, timeout: float = PROBE_TIMEOUT_S) -> MediaInfo:
    """Probe a file and classify it as video, audio or image; anything else is a MediaInputError.

    Once per version of the file (path, size, mtime, inode) in a process: the CLI's preflight and the flow's
    probe stage used to run ffprobe and the decode-to-the-end check twice on every input."""
    p = check_input_file(path)
    st = p.stat()
    return _probe_once(p, st.st_size, st.st_mtime_ns, st.st_ino, timeout)


@functools.lru_cache(maxsize=256)
def _probe_once(p: Path, size: int, mtime_ns: int, inode: int, timeout: float) -> MediaInfo:
    cmd = ffprobe_command(p)
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MediaInputError(p, f"ffprobe timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        settle_signalled_child(proc.returncode)
        raise MediaInputError(
            p, f"not a readable media file ({ffmpeg_reason(proc.stderr, p) or 'ffprobe failed'})"
        )
    data = json.loads(proc.stdout or b"{}")
    streams = data.get("streams", [])
    fmt = data.get("format", {})
    videos, audios = video_and_audio_streams(streams)
    duration = _fraction(fmt.get("duration"))
    format_names = set(str(fmt.get("format_name", "")).split(","))
    if videos and (format_names & IMAGE_FORMATS) and not audios:
        kind = "image"
    elif videos:
        kind = "video"
    elif audios:
        kind = "audio"
    else:
        raise MediaInputError(p, "no video or audio stream found")
    v = videos[0] if videos else {}
    width, height = display_size(v)
    if kind == "image" and (width <= 0 or height <= 0):
        width, height = image_header_size(p, proc.stderr)
    if kind == "image" and (frames := image_frames(p)) > 1:
        raise MediaInputError(
            p, f"animated image ({frames} frames): only still images are read; convert it to a video "
            "(ffmpeg -i IN OUT.mp4) or save the frame you want as a still PNG or JPEG",
        )  # fmt: skip
    check_geometry(p, width, height)
    if kind != "image" and duration > MAX_DURATION_S:
        raise MediaInputError(p, f"duration {duration:.0f} s is above the limit of {MAX_DURATION_S:.0f} s")
    if kind == "video" and (width <= 0 or height <= 0):
        raise MediaInputError(p, "video stream has no frame size (corrupt header?)")
    if kind in ("video", "audio") and duration <= 0:
        stream_durations = [_fraction(s.get("duration")) for s in videos + audios]
        duration = max(stream_durations, default=0.0)
        if duration <= 0:
            raise MediaInputError(p, "media has no duration (corrupt or truncated file?)")
    if kind in ("video", "audio"):
        check_decodes_to_end(p, duration, timeout=timeout)
    return MediaInfo(
        path=p,
        kind=kind,
        duration=duration,
        width=width,
        height=height,
        fps=_fraction(v.get("avg_frame_rate")) or _fraction(v.get("r_frame_rate")),
        video_codec=v.get("codec_name"),
        audio_codec=audios[0].get("codec_name") if audios else None,
        has_audio=bool(audios),
        size_bytes=p.stat().st_size,
    )


def display_size(stream: dict) -> tuple[int, int]:
    """Width and height of decoded frames: ffmpeg applies a display rotation (phone videos) when decoding,
    so a stream stored 1920x1080 with rotate=90 yields 1080x1920 frames; every frame reader needs those."""
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    rotation = next(
        (side["rotation"] for side in stream.get("side_data_list") or [] if "rotation" in side),
        (stream.get("tags") or {}).get("rotate", 0),
    )
    try:
        quarter_turns = round(float(rotation) / 90.0) % 2
    except (TypeError, ValueError):
        quarter_turns = 0
    return (height, width) if quarter_turns else (width, height)


def image_frames(path: Path) -> int:
    """How many frames an image holds (GIF, APNG, WebP may be animated): a reader of stills would take the
    first and drop the rest without a word. 1 where Pillow cannot tell."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return int(getattr(img, "n_frames", 1))
    except Exception:  # unreadable here: the reader says why, with the error of its own library
        return 1


def image_header_size(path: Path, ffprobe_stderr: bytes = b"") -> tuple[int, int]:
    """Size from the image's own header where ffprobe gives none: a decompression bomb (20000x20000) is
    then "too large", and a text file named .png is "not a readable image", by content."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:  # reads the header only; no pixels are decoded
            width, height = img.size
    except Image.DecompressionBombError as exc:
        more = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise MediaInputError(
            path, f"image too large (max_pixels {MAX_PIXELS:,}): its header says over {more:,} pixels"
        ) from exc
    except (UnidentifiedImageError, OSError) as exc:
        cause = ffmpeg_reason(ffprobe_stderr, path) or str(exc)
        raise MediaInputError(path, f"not a readable image ({cause})") from exc
    if width <= 0 or height <= 0:
        raise MediaInputError(path, "not a readable image (no size in its header)")
    return width, height


def check_geometry(path: Path, width: int, height: int) -> None:
    """Absurd frame sizes fail before anything is decoded (memory stays bounded)."""
    if width * height > MAX_PIXELS:
        raise MediaInputError(
            path, f"{width}x{height} = {width * height:,} pixels is too large (max_pixels {MAX_PIXELS:,})"
        )
    if min(width, height) > 0 and max(width, height) > MAX_SIDE:
        raise MediaInputError(path, f"{width}x{height} is too large (longest side above {MAX_SIDE})")


def check_decodes_to_end(path: Path, duration: float, *, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Decode the last second: a file cut short with its index in front (faststart, an interrupted upload)
    probes with its full duration, but its data ends early. Streams failing together are tried alone: the
    seek starts at a keyframe before a damaged middle, whose garbled AAC can stop ffmpeg (1 real drama in
    ~150 with random bytes over its middle: "Error reinitializing filters!") while its video decodes."""
    start = max(0.0, duration - 1.0)
    cmd = [require_tool("ffmpeg"), "-v", "error", "-nostdin", "-ss", f"{start:.3f}", "-i", str(path)]
    for maps in (["-map", "0:v:0?", "-map", "0:a:0?"], ["-map", "0:v:0?"], ["-map", "0:a:0?"]):
        try:
            proc = subprocess.run([*cmd, *maps, "-f", "framecrc", "-"], capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise MediaInputError(path, f"decoding its end timed out after {timeout:.0f} s") from exc
        frames = sum(1 for line in proc.stdout.splitlines() if line and not line.startswith(b"#"))
        if proc.returncode == 0 and b"partial file" not in proc.stderr and frames:
            return
    raise MediaInputError(path, f"truncated or corrupt: nothing decodes near its end ({duration:.2f} s)")


def require_kind(info: MediaInfo, *kinds: str) -> MediaInfo:
    """Fail clearly when a flow gets the wrong kind of media (an image for a video flow, say)."""
    if info.kind not in kinds:
        raise MediaInputError(info.path, f"is {info.kind}, expected {' or '.join(kinds)}")
    return info


def iter_video_frames(
    path: str | Path,
    *,
    fps: float,
    filters: str,
    out_width: int,
    out_height: int,
    timeout: float,
    stage: str,
    fast_decode: bool = False,
    start: float = 0.0,
    duration: float | None = None,
    frame_log: Callable[[Iterator[str]], object] | None = None,
):
    """Yield (sample_index, BGR frame) decoded by ffmpeg at `fps` after `filters` (e.g. a crop or scale).

    `start`/`duration` decode one window (input seek): sample 0 is at `start`. `frame_log` reads the
    same ffmpeg's stderr as it comes, on a thread, with a framecrc line per decoded frame between the
    decoders' error lines (core/damage.py dates the errors by them: every frame is decoded anyway, the fps
    filter picks its samples among them). Frames stream through a pipe, so memory stays at one frame
    whatever the video's length; the decode is bounded by `timeout`; ffmpeg is killed if we stop early."""
    import time

    import numpy as np

    # one decoding thread: frame threads cost CPU (60 s of 720p: 3.5 -> 2.8 CPU s) and every caller has work
    # on the other core (the detector beside the band's samples, OCR beside the next window's decode)
    cmd = [require_tool("ffmpeg"), "-v", "error", "-nostdin", "-threads", "1"]
    if fast_decode:  # skip the deblocking filter: ~25% faster, plenty for finding text boxes
        cmd += ["-skip_loop_filter", "all"]
    cmd += ["-ss", f"{start:.3f}"] if start > 0 else []
    cmd += ["-i", str(path), "-an", "-sn"]
    cmd += ["-t", f"{duration:.3f}"] if duration is not None else []
    cmd += ["-vf", f"fps={fps:.6f},{filters}", "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"]
    past = ["-t", f"{duration + FRAME_LINES_PAST_S:.3f}"] if duration is not None else []
    cmd += [*FRAME_LINES["video"], *past, "pipe:2"] if frame_log is not None else []
    frame_bytes = out_width * out_height * 3
    deadline = time.monotonic() + timeout
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=frame_bytes * 2)
    said, failed, reader = _read_stderr(proc, frame_log)
    index = 0
    try:
        assert proc.stdout is not None
        while True:
            if time.monotonic() > deadline:
                raise StageTimeout(stage, path, f"ffmpeg decode timed out after {timeout:.0f} s")
            buf = proc.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                break
            yield index, np.frombuffer(buf, np.uint8).reshape(out_height, out_width, 3)
            index += 1
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        reader.join()
        broken = child_failed(proc.returncode)
        if failed:
            raise failed[0]
        if broken:
            raise StageError(stage, path, child_failure("ffmpeg decode", proc.returncode, " | ".join(said)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def _read_stderr(proc: subprocess.Popen, frame_log: Callable[[Iterator[str]], object] | None):
    """ffmpeg's stderr drained on a thread (read at the end, 64 kB of errors would stall ffmpeg and us): its
    last lines but frame lines (a failed decode's words); each line to `frame_log` (its error: `failed`)."""
    said: deque[str] = deque(maxlen=3)
    failed: list[BaseException] = []

    def lines() -> Iterator[str]:
        for line in (raw.decode("utf-8", "replace").strip() for raw in proc.stderr or ()):
            if line and not line[:1].isdigit() and not line.startswith("#"):
                said.append(line)
            yield line

    def drain() -> None:
        source = lines()
        try:
            if frame_log is not None:
                frame_log(source)
        except BaseException as exc:  # noqa: BLE001 (raised on the caller's thread)
            failed.append(exc)
        deque(source, maxlen=0)

    reader = threading.Thread(target=drain, name="ffmpeg-stderr", daemon=True)
    reader.start()
    return said, failed, reader


@task(name="probe", task_run_name="probe input", cache_policy=NONE)
def probe_task(path: str | Path, *kinds: str) -> MediaInfo:
    """Probe and check the kind up front, so bad input fails before any output folder exists."""
    info = probe_media(path)
    return require_kind(info, *kinds) if kinds else info
