"""Speaker diarization on real human speech with known turns (samples/conversations.py: LibriSpeech
speakers in conversations, AMI meeting starts) and on espeak-ng conversations with exact ground truth.

Scored by DER (missed + false alarm + confusion, optimal mapping, 0.25 s collar, overlap counted) and the
speaker count. bench/diarization.py prints the whole table; these gates hold on the cases below.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.media import probe_media
from core.schema import AudioTrack, Diarization, SpeakerTurn, SpeechSegment, SpeechWord, Transcript
from samples import conversations as real
from samples.audio import CONVERSATIONS, make_conversation, make_speech
from samples.diarization import diarization_error_rate, read_rttm
from stages.speech.audio import extract_audio
from stages.speech.diarize import assign_speakers, diarize_audio, speaker_table, to_rttm
from stages.speech.engines import AsrSettings, load_diarizer

# looked up, not imported: resemblyzer imports torch (~1.7 s), which every xdist worker paid at collection
if importlib.util.find_spec("resemblyzer") is None:
    pytest.skip("the diarize extra: pip install -e '.[diarize]'", allow_module_level=True)

CPU = AsrSettings(device="cpu", diarize=True)
DER_GATE = 0.10
REAL_DER_GATE = 0.12  # issue 25: DER <= 12% with missed speech <= 5%
REAL_CASES = ("ff-phone", "three-room", "four-phone", "fm-room-h")  # -h: voices held out of calibration
needs_real_speech = pytest.mark.skipif(
    not real.available(), reason="the shared real speech (../shared/realspeech) is absent"
)


def _track(recording: real.Recording) -> AudioTrack:
    return AudioTrack(recording.path, recording.path, 16000, max(t[2] for t in recording.reference) + 0.5)


@pytest.fixture(scope="module", params=REAL_CASES)
def real_conversation(request, media_dir) -> real.Recording:
    case = next(c for c in real.CASES if c.name == request.param)
    return real.build(case, media_dir / "realspeech")


@needs_real_speech
def test_real_conversation_count_der_and_missed_speech(real_conversation):
    diarization = diarize_audio(_track(real_conversation), CPU)
    hypothesis = [(t.speaker, t.start, t.end) for t in diarization.turns]
    score = diarization_error_rate(real_conversation.reference, hypothesis)
    print(f"{real_conversation.name}: {len(diarization.speakers)} speakers, {score}")
    assert len(diarization.speakers) == len(real_conversation.speakers), diarization.speakers
    assert score.der <= REAL_DER_GATE, score
    assert score.missed <= 0.05 * score.scored, score


@needs_real_speech
def test_two_women_on_the_phone_are_two_and_a_given_count_is_kept(media_dir):
    call = real.build(next(c for c in real.CASES if c.name == "ff-phone"), media_dir / "realspeech")
    shares = [sum(e - s for n, s, e in call.reference if n == who) for who in call.speakers]
    assert min(shares) >= 0.2 * sum(shares), "each woman holds at least 20% of the talk"
    assert len(diarize_audio(_track(call), CPU).speakers) == 2
    three = diarize_audio(_track(call), replace(CPU, speakers=3))
    assert len(three.speakers) == 3


@needs_real_speech
def test_real_meeting_two_men():
    """AMI ES2003a as recorded (far-field, 30 s): the count, and the DER this engine reaches there."""
    meeting = next(r for r in real.meetings() if r.name == "ami_ES2003a")
    diarization = diarize_audio(_track(meeting), CPU)
    score = diarization_error_rate(
        meeting.reference, [(t.speaker, t.start, t.end) for t in diarization.turns]
    )
    assert len(diarization.speakers) == 2, diarization.speakers
    assert score.der <= 0.3, score  # measured 0.24: far-field speech is missed (see bench/diarization.py)


@needs_real_speech
def test_real_meeting_where_a_man_talks_over_a_woman_is_two():
    """AMI EN2009b: he talks 10 of the 30 s, mostly over her; never one speaker (issue 25)."""
    meeting = next(r for r in real.meetings() if r.name == "ami_EN2009b")
    diarization = diarize_audio(_track(meeting), CPU)
    assert len(diarization.speakers) == 2, diarization.speakers


@needs_real_speech
@pytest.mark.parametrize("speaker,channel", [("2414", "clean"), ("3080", "phone"), ("533", "room")])
def test_one_real_voice_is_one_speaker(media_dir, speaker, channel):
    """One LibriSpeech reader for 30 s (the check on the rule that finds a second voice with 10%)."""
    wav = real.single_voice(speaker, channel, 30.0, media_dir / "realspeech")
    diarization = diarize_audio(AudioTrack(wav, wav, 16000, 30.0), CPU)
    assert diarization.speakers == ("SPEAKER_00",), diarization.turns


@needs_real_speech
def test_the_mel_spectrogram_is_resemblyzers_without_librosa(media_dir):
    """The encoder's input, computed in numpy (stages/speech/engines/mel.py), as resemblyzer has librosa
    compute it: the filters are librosa's own, and the frames are scipy's STFT with librosa's conventions
    (centred, zero-padded, periodic Hann), on real phone-band speech, lengths not a whole number of frames
    included. Not librosa's STFT itself: importing it compiles numba kernels, ~20 CPU s in a fresh venv
    (measured against it by hand: within 1.2e-7 of its peak)."""
    import numpy as np
    from librosa.filters import mel as librosa_mel
    from scipy.signal import get_window, stft

    from stages.speech.audio import iter_audio_windows
    from stages.speech.engines.mel import HOP, N_FFT, N_MELS, SAMPLE_RATE, mel_filters, mel_spectrogram

    assert np.abs(mel_filters() - librosa_mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)).max() <= 1e-8
    wav = real.single_voice("3080", "phone", 30.0, media_dir / "realspeech")
    ((_, samples),) = iter_audio_windows(wav, window=60.0)
    window = get_window("hann", N_FFT)
    for length in (len(samples), SAMPLE_RATE * 7 + 123, N_FFT + 1):
        *_, spectrum = stft(samples[:length], window=window, nperseg=N_FFT, noverlap=N_FFT - HOP,
                            boundary="zeros", padded=False, detrend=False, scaling="spectrum")  # fmt: skip
        expected = (np.abs(spectrum * window.sum()) ** 2).T @ mel_filters().T.astype(np.float64)
        ours = mel_spectrogram(samples[:length])
        assert ours.shape == expected.shape and ours.dtype == np.float32
        assert np.abs(ours - expected).max() <= 1e-5 * expected.max(), length


@pytest.fixture(scope="module", params=sorted(CONVERSATIONS))
def conversation(request, media_dir, tmp_path_factory):
    turns, voices = CONVERSATIONS[request.param]
    sample = make_conversation(media_dir / f"diarize-{request.param}.wav", turns, voices)
    return request.param, sample, extract_audio(probe_media(sample.path), tmp_path_factory.mktemp("dia"))


def _score(sample, diarization: Diarization):
    reference = [(s.speaker, s.start, s.end) for s in sample.spans]
    return diarization_error_rate(reference, [(t.speaker, t.start, t.end) for t in diarization.turns])


def test_conversation_truth_has_an_interjection_and_an_overlap(conversation):
    _, sample, _ = conversation
    assert any(s.end - s.start < 0.6 for s in sample.spans), "a short interjection"
    ordered = sorted(sample.spans, key=lambda s: s.start)
    assert any(b.start < a.end and a.speaker != b.speaker for a, b in zip(ordered, ordered[1:], strict=False))
    assert max(s.end - s.start for s in sample.spans) <= 8.0


def test_speaker_count_estimated_and_der_within_gate(conversation):
    name, sample, track = conversation
    diarization = diarize_audio(track, CPU)
    score = _score(sample, diarization)
    print(f"{name}: {len(diarization.speakers)} of {len(sample.speakers)} speakers, {score}")
    assert len(diarization.speakers) == len(sample.speakers), diarization.speakers
    assert score.der <= DER_GATE, score
    assert sorted(score.mapping.values()) == sorted(diarization.speakers), "one voice per label"


def test_given_speaker_count_is_kept(conversation):
    _, sample, track = conversation
    diarization = diarize_audio(track, replace(CPU, speakers=len(sample.speakers)))
    assert len(diarization.speakers) == len(sample.speakers)
    assert _score(sample, diarization).der <= DER_GATE
    fewer = diarize_audio(track, replace(CPU, speakers=1))
    assert fewer.speakers == ("SPEAKER_00",)


def test_one_voice_is_one_speaker(media_dir, tmp_path):
    sample = make_speech(media_dir / "diarize-one.wav", "en")
    diarization = diarize_audio(extract_audio(probe_media(sample.path), tmp_path), CPU)
    assert diarization.speakers == ("SPEAKER_00",), diarization.turns


def test_diarizer_is_resident():
    assert load_diarizer(CPU) is load_diarizer(CPU)


def test_der_scoring_counts_each_error_kind():
    ref = [("a", 0.0, 10.0), ("b", 10.0, 20.0)]
    perfect = diarization_error_rate(ref, [("x", 0.0, 10.0), ("y", 10.0, 20.0)])
    assert perfect.der == 0.0 and perfect.mapping == {"a": "x", "b": "y"}
    swapped = diarization_error_rate(ref, [("x", 0.0, 20.0)], collar=0.0)
    assert swapped.confusion == pytest.approx(10.0) and swapped.der == pytest.approx(0.5)
    missed = diarization_error_rate(ref, [("x", 0.0, 10.0)], collar=0.0)
    assert missed.missed == pytest.approx(10.0) and missed.false_alarm == 0.0
    assert missed.unheard == pytest.approx(10.0), "no label at all there: unheard, not overlap"
    extra = diarization_error_rate(ref, [*ref, ("c", 20.0, 25.0)], collar=0.0)
    assert extra.false_alarm == pytest.approx(5.0) and extra.der == pytest.approx(0.25)
    collared = diarization_error_rate(ref, [("x", 0.2, 10.2), ("y", 10.2, 20.0)], collar=0.25)
    assert collared.der == 0.0, "boundary errors inside the collar are not scored"


OVERLAP_REF = [("a", 0.0, 10.0), ("b", 8.0, 12.0), ("c", 14.0, 15.0)]  # 8-10: two at once
OVERLAP_HYP = [("x", 0.0, 9.0), ("y", 9.0, 12.0), ("x", 13.5, 15.0)]


def test_der_counts_overlap_by_hand():
    """Reference speech 8 + 2x2 + 2 + 1 = 15 s. Missed: one voice of the overlap, 8-10 = 2 s. False alarm:
    13.5-14 = 0.5 s. Mapping a->x, b->y leaves c (14-15) on x: 1 s confused. (2 + 0.5 + 1) / 15."""
    score = diarization_error_rate(OVERLAP_REF, OVERLAP_HYP, collar=0.0)
    assert (score.missed, score.false_alarm, score.confusion, score.scored) == (2.0, 0.5, 1.0, 15.0)
    assert score.unheard == 0.0, "the 2 s missed are the overlap's second voice"
    assert score.der == pytest.approx(3.5 / 15, abs=1e-4)


def test_der_agrees_with_pyannote_metrics():
    """pyannote.metrics' collar is both sides together: 0.5 there is our 0.25 s each side."""
    pytest.importorskip("pyannote.metrics", reason="pyannote.metrics not installed (optional cross-check)")
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(turns):
        out = Annotation()
        for i, (speaker, start, end) in enumerate(turns):
            out[Segment(start, end), i] = speaker
        return out

    for collar in (0.0, 0.25):
        ours = diarization_error_rate(OVERLAP_REF, OVERLAP_HYP, collar=collar).der
        theirs = DiarizationErrorRate(collar=2 * collar)(annotation(OVERLAP_REF), annotation(OVERLAP_HYP))
        assert ours == pytest.approx(theirs, abs=1e-3)


def _transcript(*segments: SpeechSegment) -> Transcript:
    return Transcript(
        source=Path("x.wav"), language="en", language_probability=1.0, duration=10.0,
        segments=segments, engine="test", model="m", device="cpu",
    )  # fmt: skip


def test_words_and_segments_take_speakers_and_overlap_follows_the_segment():
    w = SpeechWord
    turns = (
        SpeakerTurn("SPEAKER_00", 0.0, 4.1),
        SpeakerTurn("SPEAKER_01", 3.6, 8.0),  # 3.6-4.1 overlapped
        SpeakerTurn("SPEAKER_00", 8.5, 9.0),
    )
    diarization = Diarization(Path("x.wav"), 10.0, turns, ("SPEAKER_00", "SPEAKER_01"), "t")
    hello = (w(0.0, 1.0, "Hello", 1.0), w(1.1, 3.0, "there.", 1.0))
    first = SpeechSegment(1, 0.0, 3.0, "Hello there.", hello)
    second = SpeechSegment(
        2, 3.7, 7.0, "Yes I know.",
        (w(3.7, 4.0, "Yes", 1.0), w(4.3, 5.0, "I", 1.0), w(5.1, 7.0, "know.", 1.0)),
    )  # fmt: skip
    gap = SpeechSegment(3, 9.2, 9.6, "Bye.", (w(9.2, 9.6, "Bye.", 1.0),))
    labelled = assign_speakers(_transcript(first, second, gap), diarization)
    assert labelled.diarized
    assert [s.speaker for s in labelled.segments] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]
    assert [x.speaker for x in labelled.segments[1].words] == ["SPEAKER_01"] * 3, "overlap: segment's voice"
    assert labelled.segments[2].words[0].speaker == "SPEAKER_00", "outside every turn: the nearest"
    rows = speaker_table(diarization)
    assert rows == [
        {"speaker": "SPEAKER_00", "talk_seconds": 4.6, "turns": 2},
        {"speaker": "SPEAKER_01", "talk_seconds": 4.4, "turns": 1},
    ]
    rttm = to_rttm(diarization, "my clip").splitlines()
    assert rttm[1] == "SPEAKER my_clip 1 3.600 4.400 <NA> <NA> SPEAKER_01 <NA> <NA>"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (replace(CPU, diarize_engine="nemo"), "engine 'nemo'; known: pyannote, resemblyzer"),
        (replace(CPU, diarize_engine="pyannote"), "pyannote diarization needs diarize_model"),
        (replace(CPU, diarize_engine="pyannote", diarize_model="/nope"), "'/nope' does not exist"),
        (replace(CPU, device="auto"), "resolve the diarization device"),
    ],
)
def test_configuration_errors_are_clear(settings, message):
    with pytest.raises(ConfigError, match=message):
        load_diarizer(settings)


@pytest.mark.slow
def test_pipeline_chain_diarize_labels_the_transcript(prefect_server, media_dir, tmp_path):
    from flows.pipeline import plan_chain, run_pipeline
    from samples.audio import make_video_with_audio

    assert plan_chain(["diarize"]) == ["transcribe", "diarize"]
    turns, voices = CONVERSATIONS["two-speakers"]
    talk = make_conversation(media_dir / "pipeline-talk.wav", turns, voices)
    video = make_video_with_audio(media_dir / "pipeline-talk.mp4", talk.path)
    result = run_pipeline(str(video), workflow_chain=("diarize",), output_dir=str(tmp_path))
    by_stage = {o.stage: o for o in result.stages}
    assert list(by_stage) == ["transcribe", "diarize"]
    assert by_stage["diarize"].summary.startswith("2 speakers"), by_stage["diarize"].summary
    hyp = read_rttm(by_stage["diarize"].outputs["speech_rttm"])
    assert diarization_error_rate([(s.speaker, s.start, s.end) for s in talk.spans], hyp).der <= DER_GATE
    srt_path = by_stage["transcribe"].outputs["speech_srt"]  # rewritten in place by diarize
    assert "[SPEAKER_0" in srt_path.read_text(encoding="utf-8")
