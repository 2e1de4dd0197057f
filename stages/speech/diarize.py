"""Diarization stage: who spoke when, merged onto the transcript's segments and words.

The diarizer (resemblyzer offline by default, pyannote where a local pipeline exists) gives speaker turns;
each word takes the speaker whose turns cover most of it (the nearest turn when none does), each segment
the speaker of most of its words' time. Turns are also written as RTTM and summed into a speakers table.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from core.outputs import write_text_atomic
from core.schema import AudioTrack, Diarization, SpeakerTurn, SpeechWord, Transcript
from gpu.devices import GPU_CAPABLE_TAG
from stages.speech.engines import AsrSettings, load_diarizer


def diarize_audio(track: AudioTrack, settings: AsrSettings) -> Diarization:
    """Speaker turns of the whole WAV (labels must agree across the file, so never per window)."""
    diarizer = load_diarizer(settings)
    turns = diarizer.diarize(track.path, settings)
    speakers = tuple(dict.fromkeys(t.speaker for t in turns))
    return Diarization(track.source, track.duration, tuple(turns), speakers, diarizer.name)


def _overlap(turn: SpeakerTurn, start: float, end: float) -> float:
    return max(0.0, min(turn.end, end) - max(turn.start, start))


def speaker_at(turns: tuple[SpeakerTurn, ...], start: float, end: float) -> str | None:
    """The speaker covering most of [start, end]; else the speaker of the nearest turn; None without turns."""
    if not turns:
        return None
    covered: dict[str, float] = {}
    for turn in turns:
        if turn.end > start and turn.start < end:
            covered[turn.speaker] = covered.get(turn.speaker, 0.0) + _overlap(turn, start, end)
    if covered and max(covered.values()) > 0:
        return max(covered, key=covered.__getitem__)
    middle = (start + end) / 2
    return min(turns, key=lambda t: max(t.start - middle, middle - t.end, 0.0)).speaker


def _majority(words: tuple[SpeechWord, ...]) -> str | None:
    time: dict[str, float] = {}
    for w in words:
        if w.speaker is not None:
            time[w.speaker] = time.get(w.speaker, 0.0) + max(w.end - w.start, 0.01)
    return max(time, key=time.__getitem__) if time else None


def _overlapped(turns: tuple[SpeakerTurn, ...], start: float, end: float) -> bool:
    """Two or more speakers' turns cover the middle of [start, end]."""
    middle = (start + end) / 2
    return len({t.speaker for t in turns if t.start <= middle <= t.end}) > 1


def assign_speakers(transcript: Transcript, diarization: Diarization) -> Transcript:
    """Every word and segment labelled with a speaker of `diarization` (segments keep their full text).

    A word inside overlapping speech cannot be told apart by the turns alone: Whisper writes down one of
    the voices, so such a word takes the speaker of the rest of its segment (the words outside overlap).
    """
    turns = diarization.turns
    segments = []
    for seg in transcript.segments:
        words = tuple(replace(w, speaker=speaker_at(turns, w.start, w.end)) for w in seg.words)
        clear = tuple(w for w in words if not _overlapped(turns, w.start, w.end))
        context = _majority(clear)
        if context is not None:
            words = tuple(
                replace(w, speaker=context) if _overlapped(turns, w.start, w.end) else w for w in words
            )
        speaker = _majority(words) or speaker_at(turns, seg.start, seg.end)
        segments.append(replace(seg, words=words, speaker=speaker))
    return replace(transcript, segments=tuple(segments), diarized=True)


def to_rttm(diarization: Diarization, uri: str) -> str:
    """NIST RTTM: one SPEAKER line per turn (the file's name without spaces as the recording id)."""
    uri = uri.replace(" ", "_") or "audio"
    return "".join(
        f"SPEAKER {uri} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n"
        for t in diarization.turns
    )


def write_rttm(diarization: Diarization, run_dir: Path, stem: str) -> Path:
    return write_text_atomic(run_dir / f"{stem}.rttm", to_rttm(diarization, stem))


def speaker_table(diarization: Diarization) -> list[dict[str, object]]:
    """One row per speaker: talk time (overlapping turns of one speaker counted once) and turns."""
    rows = []
    for speaker in diarization.speakers:
        turns = sorted((t for t in diarization.turns if t.speaker == speaker), key=lambda t: t.start)
        talk, reach = 0.0, 0.0
        for t in turns:
            talk += max(0.0, t.end - max(t.start, reach))
            reach = max(reach, t.end)
        rows.append({"speaker": speaker, "talk_seconds": round(talk, 2), "turns": len(turns)})
    return rows


@task(name="diarize", task_run_name="speakers", cache_policy=NONE, tags=[GPU_CAPABLE_TAG])
def diarize_task(
    track: AudioTrack, transcript: Transcript, settings: AsrSettings
) -> tuple[Transcript, Diarization]:
    """GPU-capable (pyannote on CUDA); the resemblyzer engine runs on the CPU and takes no slot."""
    from prefect import get_run_logger

    from gpu.slot import gpu_slot

    if settings.diarize_engine == "pyannote" and settings.device != "cpu":
        with gpu_slot("diarize") as grant:
            diarization = diarize_audio(track, replace(settings, device=grant.device))
    else:  # a CPU stage never waits on the GPU
        diarization = diarize_audio(track, replace(settings, device="cpu"))
    get_run_logger().info(
        "%s: %d speakers, %d turns (%s)",
        track.source.name,
        len(diarization.speakers),
        len(diarization.turns),
        diarization.engine,
    )
    return assign_speakers(transcript, diarization), diarization
