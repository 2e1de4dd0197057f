"""Speech recognition stage: the packaged model, real faster-whisper on espeak-ng speech, engine choice."""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import replace

import pytest

from core.errors import ConfigError
from core.media import probe_media
from core.models import evict, load_count
from core.packaged_models import packaged_model_dir
from core.schema import SpeechSegment, SpeechWord, Transcript
from samples.audio import make_silence, make_speech, word_error_rate
from stages.speech.audio import extract_audio
from stages.speech.engines import AsrSettings, asr_model_key, load_asr_engine
from stages.speech.transcribe import make_monotonic, transcribe_audio

CPU = AsrSettings(device="cpu")


@pytest.fixture(scope="module")
def english(media_dir, tmp_path_factory):
    sample = make_speech(media_dir / "asr-en.wav", "en")
    return sample, extract_audio(probe_media(sample.path), tmp_path_factory.mktemp("asr-en"))


@pytest.fixture(scope="module")
def english_transcript(english) -> Transcript:
    return transcribe_audio(english[1], load_asr_engine(CPU), CPU)


def assert_monotonic(transcript: Transcript) -> None:
    previous_end = 0.0
    for seg in transcript.segments:
        assert previous_end <= seg.start <= seg.end <= transcript.duration, seg
        cursor = seg.start
        for word in seg.words:
            assert cursor <= word.start <= word.end <= seg.end, (word, seg)
            cursor = word.end
        previous_end = seg.end


def test_packaged_model_is_joined_once_and_atomically(tmp_path):
    first = packaged_model_dir(tmp_path)
    parts = sorted(p.name for p in first.iterdir())
    assert parts == ["config.json", "model.bin", "tokenizer.json", "vocabulary.json"]
    assert first.parent == tmp_path and first.name.startswith("whisper-base-")
    assert (first / "model.bin").stat().st_size == 94371840 + 50845767  # part1 + part2
    stamp = (first / "model.bin").stat().st_mtime_ns
    assert packaged_model_dir(tmp_path) == first and (first / "model.bin").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.is_dir() and p != first], "no temp folders left"
    with open(first / "model.bin", "r+b") as f:  # a damaged folder (truncated copy) is rebuilt
        f.truncate(1000)
    assert (packaged_model_dir(tmp_path) / "model.bin").stat().st_size == 94371840 + 50845767
    shutil.rmtree(first)  # 145 MB: not left for pytest's kept temp folders


def test_english_speech_meets_wer_and_detects_language(english, english_transcript):
    sample, _ = english
    hypothesis = " ".join(s.text for s in english_transcript.segments)
    assert word_error_rate(sample.text, hypothesis) <= 0.15, hypothesis
    assert english_transcript.language == "en" and english_transcript.language_probability > 0.5
    assert english_transcript.engine == "faster-whisper" and english_transcript.device == "cpu"


def test_timestamps_are_monotonic_and_match_the_spoken_lines(english, english_transcript):
    sample, _ = english
    assert_monotonic(english_transcript)
    assert [s.index for s in english_transcript.segments] == list(
        range(1, len(english_transcript.segments) + 1)
    )
    assert all(s.words for s in english_transcript.segments), "word timestamps on every segment"
    for line in sample.lines:  # each sentence's middle lies in a segment that starts and ends near it
        middle = (line.start + line.end) / 2
        (seg,) = [s for s in english_transcript.segments if s.start <= middle <= s.end]
        assert abs(seg.start - line.start) < 0.8 and abs(seg.end - line.end) < 0.8, (seg, line)


@pytest.mark.slow
def test_second_language_meets_wer(media_dir, tmp_path):
    sample = make_speech(media_dir / "asr-es.wav", "es")
    transcript = transcribe_audio(
        extract_audio(probe_media(sample.path), tmp_path), load_asr_engine(CPU), CPU
    )
    hypothesis = " ".join(s.text for s in transcript.segments)
    assert transcript.language == "es", (transcript.language, hypothesis)
    assert word_error_rate(sample.text, hypothesis) <= 0.15, hypothesis
    assert_monotonic(transcript)


@pytest.mark.slow
def test_short_windows_keep_timestamps_and_words(english, english_transcript):
    """Long files are read in windows: with 9 s windows the result still lines up with the truth."""
    sample, track = english
    settings = replace(CPU, window_seconds=9.0, language="en")
    transcript = transcribe_audio(track, load_asr_engine(settings), settings)
    hypothesis = " ".join(s.text for s in transcript.segments)
    assert word_error_rate(sample.text, hypothesis) <= 0.15, hypothesis
    assert_monotonic(transcript)
    assert transcript.language == "en" and transcript.language_probability == 1.0
    last = sample.lines[-1]
    assert abs(transcript.segments[-1].start - last.start) < 0.8, "later windows are shifted by their offset"


def test_silence_gives_no_segments(media_dir, tmp_path):
    silence = make_silence(media_dir / "asr-silence.wav", 4.0)
    transcript = transcribe_audio(extract_audio(probe_media(silence), tmp_path), load_asr_engine(CPU), CPU)
    assert transcript.segments == () and transcript.language is None and transcript.duration == 4.0


def test_make_monotonic_repairs_overlaps_and_overruns():
    w = SpeechWord
    raw = [
        SpeechSegment(0, 2.0, 3.5, "second", (w(1.9, 2.5, "sec", 0.9), w(2.4, 3.9, "ond", 0.9))),
        SpeechSegment(0, 0.0, 2.2, "first", (w(0.0, 2.2, "first", 0.9),)),
        SpeechSegment(0, 3.6, 3.7, "  ", ()),
        SpeechSegment(0, 3.4, 9.0, "third", (w(3.4, 9.0, "third", 0.9),)),
    ]
    fixed = make_monotonic([replace(s, text=s.text.strip()) for s in raw], duration=5.0)
    assert [(s.index, s.text, s.start, s.end) for s in fixed] == [
        (1, "first", 0.0, 2.2),
        (2, "second", 2.2, 3.5),
        (3, "third", 3.5, 5.0),
    ]
    assert [(x.start, x.end) for x in fixed[1].words] == [(2.2, 2.5), (2.5, 3.5)]
    assert [(x.start, x.end) for x in fixed[2].words] == [(3.5, 5.0)]


def test_eviction_unloads_the_model():
    settings = replace(CPU, cpu_threads=1)  # its own key: the shared model stays resident for other tests
    before = load_count("asr", "faster-whisper")
    engine = load_asr_engine(settings)
    assert load_asr_engine(settings) is engine and load_count("asr", "faster-whisper") == before + 1
    weights = engine.model.model
    assert weights.model_is_loaded
    assert evict(asr_model_key(settings)) == 1
    assert not weights.model_is_loaded and engine.model is None, "weights freed, not left to the GC"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            AsrSettings(engine="kaldi", device="cpu"),
            "unknown ASR engine 'kaldi'; known: faster-whisper, whisperx",
        ),
        (
            AsrSettings(model="/nonexistent/model", device="cpu"),
            "ASR model folder '/nonexistent/model' does not",
        ),
        (AsrSettings(device="auto"), "resolve the ASR device"),
        (
            AsrSettings(engine="whisperx", model="/nonexistent", device="cpu"),
            "local CTranslate2 Whisper folder",
        ),
    ],
)
def test_configuration_errors_are_clear(settings, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_asr_engine(settings)


@pytest.mark.skipif(importlib.util.find_spec("whisperx") is not None, reason="whisperx is installed here")
def test_whisperx_without_the_package_says_how_to_install():
    folder = packaged_model_dir()  # a real local model folder: only the package is missing
    with pytest.raises(ConfigError, match=r"pip install 'yivideo-flows\[whisperx\]'"):
        load_asr_engine(AsrSettings(engine="whisperx", model=str(folder), device="cpu"))


def test_block_settings_become_stage_settings():
    from blocks.asr import AsrConfig

    block = AsrConfig(
        asr=AsrSettings(engine="whisperx", model="/models/whisper", language="de",
                        align_models=(("de", "/models/w2v-de"),))
    )  # fmt: skip
    settings = AsrConfig.model_validate(block.model_dump(mode="json")).asr  # as saved and loaded
    assert isinstance(settings, AsrSettings) and settings.engine == "whisperx" and settings.language == "de"
    assert settings.align_models == (("de", "/models/w2v-de"),) and settings.device == "auto"
    with pytest.raises(ValueError, match="device"):
        AsrConfig(asr={"device": "tpu"})
