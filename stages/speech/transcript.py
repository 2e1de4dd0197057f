"""Transcript outputs: SRT and WebVTT cues (srt, webvtt-py), JSON with full segments and words, RTTM.

Kept apart from the engines so any flow that produces a Transcript (or reads one back) writes the same files.
Subtitle cues are cut from the word timestamps for reading (stages/speech/cues.py); the JSON keeps Whisper's
full segments, each word and segment with its speaker when the transcript was diarized.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import srt
import webvtt
from prefect import task
from prefect.cache_policies import NONE

from core.outputs import write_json_atomic, write_text_atomic
from core.schema import Diarization, SpeechSegment, Transcript
from stages.speech.cues import CueSettings, build_cues
from stages.speech.diarize import write_rttm


def cue_text(segment: SpeechSegment) -> str:
    """A cue's text, with the speaker in front when the transcript was diarized."""
    return f"[{segment.speaker}] {segment.text}" if segment.speaker else segment.text


def to_srt(transcript: Transcript, settings: CueSettings | None = None) -> str:
    """SRT of the readable cues; an empty string (a valid, empty SRT) when nothing was said."""
    subs = [
        srt.Subtitle(c.index, dt.timedelta(seconds=c.start), dt.timedelta(seconds=c.end), c.text)
        for c in build_cues(transcript, settings)
    ]
    return srt.compose(subs, reindex=False) if subs else ""


def _vtt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def to_vtt(transcript: Transcript, settings: CueSettings | None = None) -> str:
    """WebVTT of the readable cues (a header alone when nothing was said)."""
    vtt = webvtt.WebVTT(
        captions=[
            webvtt.Caption(_vtt_time(c.start), _vtt_time(c.end), c.text, identifier=str(c.index))
            for c in build_cues(transcript, settings)
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


def write_transcript_files(
    transcript: Transcript,
    run_dir: Path,
    stem: str,
    cues: CueSettings | None = None,
    diarization: Diarization | None = None,
) -> dict[str, Path]:
    """<stem>.srt, .vtt, .json (and .rttm when diarized), each written to a temp file and renamed."""
    files = {
        "srt": write_text_atomic(run_dir / f"{stem}.srt", to_srt(transcript, cues)),
        "vtt": write_text_atomic(run_dir / f"{stem}.vtt", to_vtt(transcript, cues)),
        "json": write_json_atomic(run_dir / f"{stem}.json", transcript_payload(transcript)),
    }
    if diarization is not None:
        files["rttm"] = write_rttm(diarization, run_dir, stem)
    return files


write_transcript_task = task(
    name="write_transcript", task_run_name="write transcript", cache_policy=NONE
)(write_transcript_files)
