"""Plain test clips from ffmpeg's lavfi sources: any frame size (odd, portrait), with or without audio.

Odd sizes cannot be 4:2:0, so those clips are H.264 4:4:4, the way such files arrive from screen recorders.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from samples.media_cache import cached_media


@cached_media("out")
def make_clip(
    out: str | Path,
    *,
    size: tuple[int, int] = (640, 360),
    duration: float = 2.0,
    fps: float = 25,
    audio: bool = True,
    pattern: str = "testsrc2",
    preset: str = "ultrafast",
) -> Path:
    """An MP4 of a moving test pattern (and a 440 Hz tone when `audio`), `duration` seconds long."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
    cmd = [
        "ffmpeg",
        "-v",
        "error",
        "-nostdin",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"{pattern}=s={w}x{h}:r={fps}:d={duration}",
    ]
    if audio:
        cmd += [
            "-f",
            "lavfi",
            "-i",
            f"sine=f=440:sample_rate=48000:d={duration}",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
        ]
    cmd += ["-c:v", "libx264", "-preset", preset, "-pix_fmt", pix_fmt, "-movflags", "+faststart", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return out
