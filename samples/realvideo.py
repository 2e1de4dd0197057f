"""Real short videos with creator-burned subtitles, and our timed answer keys for them.

The videos live outside the project, in `../shared/realvideo/` next to the repository (or where
`YIVIDEO_REALVIDEO` points): six douyin clips from a public short-video OCR benchmark, whose own text
lists are untimed and have typos. `realvideo_keys/<stem>.srt` are our keys, made by eye frame by frame:
a line starts at the first frame where it is legible and ends after the last one; the text is what the
screen shows (a line shown in two stacked copies is said once). Tests and benches skip with
`REALVIDEO_MISSING` where the folder is absent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import srt

KEYS = Path(__file__).resolve().parent / "realvideo_keys"


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def realvideo_dir() -> Path:
    """Where the shared videos are: `YIVIDEO_REALVIDEO`, else `../shared/realvideo` beside the repo."""
    env = os.environ.get("YIVIDEO_REALVIDEO")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "realvideo"


REALVIDEO_STEMS = tuple(sorted(p.stem for p in KEYS.glob("*.srt")))
REALVIDEO_MISSING = (
    f"the shared real videos are not at {realvideo_dir()} (a clone outside the workspace): "
    "set YIVIDEO_REALVIDEO to the folder holding douyin_*.mp4"
)


def realvideo_available() -> bool:
    return all((realvideo_dir() / f"{stem}.mp4").is_file() for stem in REALVIDEO_STEMS)


def realvideo_path(stem: str) -> Path:
    return realvideo_dir() / f"{stem}.mp4"


def answer_key(stem: str) -> list[Cue]:
    """The timed key of one video, in order."""
    subs = srt.parse((KEYS / f"{stem}.srt").read_text(encoding="utf-8"))
    return [Cue(s.start.total_seconds(), s.end.total_seconds(), s.content.strip()) for s in subs]


MIN_ON_SCREEN = 0.5  # a key line shown less than this inside a cut is left out of the cut's key


def cut_realvideo(stem: str, start: float, seconds: float, out: str | Path) -> Path:
    """`seconds` of one shared video from `start`, re-encoded without audio (as a user trims a clip, and
    each cut a new file: the stage cache cannot answer for it)."""
    import subprocess

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-ss", f"{start}", "-i", str(realvideo_path(stem))]
    cmd += ["-t", f"{seconds}", "-an", "-c:v", "libx264", "-preset", "veryfast", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return out


def cut_key(stem: str, start: float, seconds: float, shown: float = MIN_ON_SCREEN) -> list[Cue]:
    """The key of a cut: the lines on screen at least `shown` seconds inside it, timed from its start."""
    return [cue for cue in _cut_cues(stem, start, seconds) if cue.end - cue.start >= shown]


def cut_edges(stem: str, start: float, seconds: float, shown: float = MIN_ON_SCREEN) -> list[Cue]:
    """The lines a cut shows for less than `shown` seconds (at its edges): reading them is neither
    required nor wrong."""
    return [cue for cue in _cut_cues(stem, start, seconds) if cue.end - cue.start < shown]


def _cut_cues(stem: str, start: float, seconds: float) -> list[Cue]:
    cues = []
    for cue in answer_key(stem):
        a, b = max(cue.start, start) - start, min(cue.end, start + seconds) - start
        if b > a:
            cues.append(Cue(round(a, 3), round(b, 3), cue.text))
    return cues
