"""Transcript outputs: SRT and WebVTT (srt, webvtt-py) and JSON with segments and words, written atomically.

Kept apart from the engines so any flow that produces a Transcript (or reads one back) writes the same files.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import srt
import webvtt
from prefect import task
from prefect.cache_policies import NONE

from core.outputs import write_json_atomic, write_text_atomic
from core.schema import SpeechSegment, Transcript


def cue_text(segment: SpeechSegment) -> str:
    """A cue's text, with the speaker in front when the transcript was diarized."""
    return f"[{segment.speaker}] {segment.text}" if segment.speaker else segment.text


def to_srt(transcript: Transcript) -> str:
    """SRT of the segments; an empty string (a valid, empty SRT) when nothing was said."""
    subs = [
        srt.Subtitle(s.index, dt.timedelta(seconds=s.start), dt.timedelta(seconds=s.end), cue_text(s))
        for s in transcript.segments
    ]
    return srt.compose(subs, reindex=False) if subs else ""


def _vtt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def to_vtt(transcript: Transcript) -> str:
    """WebVTT of the segments (a header alone when nothing was said)."""
    vtt = webvtt.WebVTT(
        captions=[
            webvtt.Caption(_vtt_time(s.start), _vtt_time(s.end), cue_text(s), identifier=str(s.index))
            for s in transcript.segments
        ]
    )
    return vtt.content


def transcript_payload(transcript: Transcript) -> dict:
    """The JSON document: language (+ probability), engine, and every segment with its words."""
    return {
        "source": str(transcript.source),
        "language": transcript.language,
        "language_probability": transcript.language_probability,
        "duration": round(transcript.duration, 3),
        "engine": transcript.engine,
        "model": transcript.model,
        "device": transcript.device,
        "diarized": transcript.diarized,
        "text": " ".join(s.text for s in transcript.segments),
        "segments": transcript.segments,
    }


def write_transcript_files(transcript: Transcript, run_dir: Path, stem: str) -> dict[str, Path]:
    """<stem>.srt, .vtt and .json, each written to a temp file and renamed into place."""
    return {
        "srt": write_text_atomic(run_dir / f"{stem}.srt", to_srt(transcript)),
        "vtt": write_text_atomic(run_dir / f"{stem}.vtt", to_vtt(transcript)),
        "json": write_json_atomic(run_dir / f"{stem}.json", transcript_payload(transcript)),
    }


@task(name="write_transcript", task_run_name="write transcript", retries=0, cache_policy=NONE)
def write_transcript_task(transcript: Transcript, run_dir: Path, stem: str) -> dict[str, Path]:
    return write_transcript_files(transcript, run_dir, stem)
