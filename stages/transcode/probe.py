"""What ffprobe says about a video's first video and audio streams, as displayed (rotation, aspect ratio)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.media import ffprobe_command, run_media_command, video_and_audio_streams
from stages.transcode.presets import STAGE


@dataclass(frozen=True)
class StreamFacts:
    """What ffprobe says about a file's first video and audio streams (inputs and outputs alike)."""

    format_name: str
    video_codec: str | None
    width: int  # as displayed: rotation and sample aspect ratio applied
    height: int
    coded_width: int
    coded_height: int
    fps: float
    video_duration: float
    frames: int
    has_audio: bool
    audio_duration: float


def _ratio(value: str | None) -> float:
    if not value or value in ("0/0", "N/A", "0:1"):
        return 0.0
    sep = "/" if "/" in value else ":" if ":" in value else None
    if sep is None:
        return float(value)
    num, den = (float(x) for x in value.split(sep, 1))
    return num / den if den else 0.0


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def probe_streams(path: str | Path, *, timeout: float = 60.0) -> StreamFacts:
    """ffprobe of the first video stream (cover art skipped) and whether there is audio."""
    proc = run_media_command(ffprobe_command(path), timeout=timeout, stage=STAGE, subject=path)
    data = json.loads(proc.stdout or b"{}")
    streams, fmt = data.get("streams", []), data.get("format", {})
    videos, audios = video_and_audio_streams(streams)
    v = videos[0] if videos else {}
    coded_w, coded_h = int(v.get("width") or 0), int(v.get("height") or 0)
    sar = _ratio(v.get("sample_aspect_ratio")) or 1.0
    width, height = round(coded_w * sar) if sar != 1.0 else coded_w, coded_h
    rotation = _rotation(v)
    if rotation in (90, 270):
        width, height = height, width
    format_duration = _float(fmt.get("duration"))
    return StreamFacts(
        format_name=str(fmt.get("format_name", "")),
        video_codec=v.get("codec_name"),
        width=width,
        height=height,
        coded_width=coded_w,
        coded_height=coded_h,
        fps=_ratio(v.get("avg_frame_rate")) or _ratio(v.get("r_frame_rate")),
        video_duration=_float(v.get("duration")) or (format_duration if v else 0.0),
        frames=int(_float(v.get("nb_frames"))),
        has_audio=bool(audios),
        audio_duration=_float(audios[0].get("duration")) if audios else 0.0,
    )


def _rotation(stream: dict) -> int:
    """Display rotation of a stream (phone videos), which ffmpeg applies while decoding (autorotate)."""
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            return int(_float(side["rotation"])) % 360
    return int(_float(stream.get("tags", {}).get("rotate"))) % 360
