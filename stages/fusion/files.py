"""The fused lines as SRT, WebVTT and JSON, and the disagreement table a person checks."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import srt
import webvtt
from prefect import task

from core.outputs import write_json_atomic, write_text_atomic
from core.schema import SubtitleResult, TranscriptResult, to_jsonable
from stages.fusion.fuse import FusedLine, FusionResult


@dataclass(frozen=True)
class FusedOutput:
    """What the fuse flow returns: the fused lines and where they were written."""

    result: FusionResult
    srt_path: Path
    vtt_path: Path
    json_path: Path
    subtitles: SubtitleResult  # the two flows' own results, each published in its own folder
    speech: TranscriptResult


def cue_text(line: FusedLine) -> str:
    """What a viewer reads: the shown text, with the spoken words under it where the subtitles translate."""
    if line.source == "translated" and line.speech_text:
        speaker = f"[{line.speaker}] " if line.speaker else ""
        return f"{line.text}\n{speaker}{line.speech_text}"
    return line.text


def to_srt(result: FusionResult) -> str:
    subs = [
        srt.Subtitle(
            line.index, dt.timedelta(seconds=line.start), dt.timedelta(seconds=line.end), cue_text(line)
        )
        for line in result.lines
    ]
    return srt.compose(subs, reindex=False) if subs else ""


def _vtt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def to_vtt(result: FusionResult) -> str:
    captions = [
        webvtt.Caption(_vtt_time(line.start), _vtt_time(line.end), cue_text(line), identifier=str(line.index))
        for line in result.lines
    ]
    return webvtt.WebVTT(captions=captions).content


def payload(result: FusionResult) -> dict:
    """The JSON document: every line with both sources' texts and times, its source and its notes."""
    return {
        "speech_language": result.language,
        "translated": result.translated,
        "lines": [{**to_jsonable(line), "disagrees": line.disagrees} for line in result.lines],
        "disagreements": len(result.disagreements),
    }


def write_fused_files(result: FusionResult, run_dir: Path, stem: str) -> dict[str, Path]:
    """<stem>.fused.srt, .fused.vtt and .fused.json, each written atomically."""
    return {
        "srt": write_text_atomic(run_dir / f"{stem}.fused.srt", to_srt(result)),
        "vtt": write_text_atomic(run_dir / f"{stem}.fused.vtt", to_vtt(result)),
        "json": write_json_atomic(run_dir / f"{stem}.fused.json", payload(result)),
    }


def _times(start: float | None, end: float | None) -> str:
    return "" if start is None or end is None else f"{start:.2f}-{end:.2f}"


def disagreement_rows(result: FusionResult) -> list[dict[str, str]]:
    """One row per line where the sources differ: both texts and times, and why it is listed."""
    rows = []
    for line in result.disagreements:
        why = [line.source.replace("_", " ")] if line.source != "both" else []
        why += list(line.timing)
        why += [f"OCR read it {len(line.reads) + 1} ways; the speech chose this read"] if line.reads else []
        why += [f"{c.ocr} / {c.speech}: {c.reason}" for c in line.corrections]
        rows.append({
            "line": str(line.index),
            "shown": _times(line.shown_start, line.shown_end),
            "subtitle": line.ocr_text or "",
            "spoken": _times(line.speech_start, line.speech_end),
            "speech": line.speech_text or "",
            "fused": line.text,
            "why": "; ".join(why) or "texts differ",
        })  # fmt: skip
    return rows


write_fused_files_task = task(name="write-fused")(write_fused_files)
