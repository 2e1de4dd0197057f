"""Readable cues cut from word timestamps: line count and width (CJK by width), duration, reading speed,
sentence breaks, one speaker per cue; on real recognised speech, a real phone call between two women, and
on hand-made CJK words."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from core.media import probe_media
from core.schema import AudioTrack, SpeechSegment, SpeechWord, Transcript
from samples import conversations as real
from samples.audio import make_speech, word_error_rate
from samples.diarization import diarization_error_rate
from stages.speech.audio import extract_audio
from stages.speech.cues import Cue, CueSettings, build_cues, width
from stages.speech.diarize import assign_speakers, diarize_audio
from stages.speech.engines import AsrSettings, load_asr_engine
from stages.speech.transcribe import transcribe_audio

CPU = AsrSettings(device="cpu", language="en")
PARAGRAPH = (
    "Hello. Hello. Oh, hello. I did not know you were there. I need the design for the new kitchen by "
    "Friday, because the builders start on Monday and they cannot wait for us any longer. Okay. I thought "
    "you knew that already, since we talked about it last week at the meeting in the city."
)


@pytest.fixture(scope="module")
def long_speech(media_dir, tmp_path_factory) -> tuple[str, Transcript]:
    sample = make_speech(media_dir / "cues-en.wav", "en", (PARAGRAPH,), speed=170)
    track = extract_audio(probe_media(sample.path), tmp_path_factory.mktemp("cues"))
    return sample.text, transcribe_audio(track, load_asr_engine(CPU), CPU)


def assert_readable(cues: list[Cue], settings: CueSettings) -> None:
    previous_end = 0.0
    for cue in cues:
        assert 1 <= len(cue.lines) <= settings.max_lines, cue
        assert all(width(line) <= settings.max_line_width for line in cue.lines), cue
        assert cue.end - cue.start <= settings.max_seconds + 1e-6, cue
        assert cue.start >= previous_end - 1e-6, "cues never overlap"
        previous_end = cue.end


def test_recognised_speech_is_cut_into_readable_cues(long_speech):
    text, transcript = long_speech
    assert max(len(s.text) for s in transcript.segments) > 84, "the segments alone would be too long"
    settings = CueSettings()
    cues = build_cues(transcript, settings)
    assert_readable(cues, settings)
    assert word_error_rate(text, " ".join(c.text.replace("\n", " ") for c in cues)) <= 0.15
    joined = " ".join(w.text for s in transcript.segments for w in s.words)
    assert " ".join(c.text.replace("\n", " ") for c in cues) == joined, "every word once, in order"
    sentence_ends = sum(c.lines[-1].endswith((".", "?", "!")) for c in cues)
    assert sentence_ends >= len(cues) * 0.6, [c.text for c in cues]
    speed = [len(c.text.replace("\n", " ")) / (c.end - c.start) for c in cues]
    assert sum(s <= settings.max_cps + 0.01 for s in speed) >= len(cues) * 0.8, speed


def test_narrow_settings_are_obeyed(long_speech):
    _, transcript = long_speech
    settings = CueSettings(max_lines=1, max_line_width=30, max_seconds=3.0)
    cues = build_cues(transcript, settings)
    assert_readable(cues, settings)
    assert len(cues) > len(build_cues(transcript)), "narrower rules give more cues"


def _words(text: str, start: float, per_word: float, speaker: str | None = None) -> list[SpeechWord]:
    return [
        SpeechWord(start + i * per_word, start + (i + 1) * per_word - 0.02, w, 1.0, speaker)
        for i, w in enumerate(text.split("|"))
    ]


def test_cjk_counts_by_width_and_a_speaker_change_always_cuts():
    zh = _words("我们|今天|讨论|一下|明年|的|预算|，|因为|它|从|春天|以来|变化|很大|。", 0, 0.3, "SPEAKER_00")
    en = _words("Yes.", 4.9, 0.3, "SPEAKER_01")
    more = _words("预算|已经|发给|你|了|。", 5.3, 0.3, "SPEAKER_00")
    words = zh + en + more
    segment = SpeechSegment(1, 0.0, words[-1].end, "".join(w.text for w in words), tuple(words))
    transcript = Transcript(Path("x"), "zh", 1.0, 8.0, (segment,), "test", "m", "cpu", diarized=True)
    settings = CueSettings(max_line_width=24, max_lines=2)
    cues = build_cues(transcript, settings)
    assert_readable(cues, settings)
    assert [c.speaker for c in cues].count("SPEAKER_01") == 1
    assert all("Yes." not in c.text or c.speaker == "SPEAKER_01" for c in cues)
    assert width("预算") == 4 and "我们今天" in cues[0].text.replace("\n", ""), "CJK joined without spaces"


@pytest.mark.slow  # transcribes 60 s: ~25 s on an idle 2-core machine
@pytest.mark.skipif(not real.available(), reason="the shared real speech (../shared/realspeech) is absent")
def test_cues_of_a_real_phone_call_hold_one_speaker_each(media_dir):
    """Two women on the phone (real LibriSpeech voices, 8 kHz): Whisper's segments run across turns; the
    cues must not. Each cue's time is spoken by the speaker it is labelled with (the other woman: at most
    the overlap of a reply, 1.3 s), on at least 85% of the cues."""
    call = real.build(next(c for c in real.CASES if c.name == "ff-phone"), media_dir / "realspeech")
    track = AudioTrack(call.path, call.path, 16000, max(t[2] for t in call.reference) + 0.5)
    transcript = transcribe_audio(track, load_asr_engine(CPU), CPU)
    diarization = diarize_audio(track, replace(CPU, diarize=True))
    cues = build_cues(assign_speakers(transcript, diarization))
    turns = [(t.speaker, t.start, t.end) for t in diarization.turns]
    voice_of = {hyp: ref for ref, hyp in diarization_error_rate(call.reference, turns).mapping.items()}
    right = 0
    for cue in cues:
        talk = {who: 0.0 for who in call.speakers}
        for who, start, end in call.reference:
            talk[who] += max(0.0, min(end, cue.end) - max(start, cue.start))
        main, other = sorted(talk, key=talk.__getitem__, reverse=True)
        assert talk[other] <= 1.3, f"cue {cue.index} holds both women: {talk} {cue.text!r}"
        right += voice_of.get(cue.speaker or "") == main
    print(f"{right} of {len(cues)} cues carry the right speaker")
    assert right >= 0.85 * len(cues), f"{right} of {len(cues)} cues carry the right speaker"
