"""A finished rendition is probed before it is published: codec, frame size, audio, duration."""

from __future__ import annotations

from pathlib import Path

from core.errors import StageError
from stages.transcode.geometry import expected_duration, plan_geometry
from stages.transcode.presets import STAGE, TranscodePreset
from stages.transcode.probe import StreamFacts, probe_streams

CODEC_NAMES = {"h264": "h264", "h265": "hevc"}  # preset codec -> ffprobe codec_name


class OutputCheckError(StageError):
    """A finished ffmpeg run produced an output that fails its checks (wrong size, codec, duration...)."""

    transient = False  # the same input and preset give the same output again


def check_output(
    path: str | Path, preset: TranscodePreset, source: StreamFacts, *, subject: str | Path
) -> StreamFacts:
    """Probe a finished output; OutputCheckError listing every check it fails."""
    geometry = plan_geometry(source.width, source.height, preset)
    try:
        out = probe_streams(path)
    except StageError as exc:
        raise OutputCheckError(STAGE, subject, f"output is unreadable: {exc.cause}") from exc
    problems: list[str] = []
    want_codec = "mjpeg" if preset.kind == "thumbnail" else CODEC_NAMES[preset.video_codec]
    if out.video_codec != want_codec:
        problems.append(f"video codec is {out.video_codec}, expected {want_codec}")
    if (out.width, out.height) != (geometry.out_width, geometry.out_height):
        problems.append(
            f"frame is {out.width}x{out.height}, expected {geometry.out_width}x{geometry.out_height}"
        )
    if preset.kind == "thumbnail":
        if out.format_name not in ("image2", "jpeg_pipe"):
            problems.append(f"format is {out.format_name}, expected a JPEG image")
    else:
        want_audio = preset.audio and source.has_audio
        if out.has_audio != want_audio:
            problems.append(
                f"audio is {'present' if out.has_audio else 'absent'}, expected "
                f"{'present' if want_audio else 'absent'}"
            )
        want = expected_duration(preset, source)
        frame = 1.0 / (preset.fps or source.fps or out.fps or 25.0)
        tolerance = 2 * frame + 1e-3
        if abs(out.video_duration - want) > tolerance:
            problems.append(
                f"video lasts {out.video_duration:.3f} s, expected {want:.3f} s "
                f"(within {tolerance:.3f} s; truncated or corrupt input?)"
            )
        if (
            want_audio
            and abs(out.audio_duration - min(want, source.audio_duration or want)) > tolerance + 0.05
        ):
            problems.append(f"audio lasts {out.audio_duration:.3f} s, expected about {want:.3f} s")
    if problems:
        raise OutputCheckError(
            STAGE, subject, f"{preset.kind} output failed its checks: " + "; ".join(problems)
        )
    return out
