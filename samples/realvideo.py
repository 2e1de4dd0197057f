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
