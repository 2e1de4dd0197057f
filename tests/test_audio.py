"""Audio extraction and windowed reading: real ffmpeg on generated speech, video and bad inputs."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from core.errors import MediaInputError
from core.media import probe_media
from samples.audio import make_speech, make_video_with_audio
from stages.speech.audio import SAMPLE_RATE, extract_audio, iter_audio_windows, read_wav_info


@pytest.fixture(scope="module")
def speech(media_dir):
    return make_speech(media_dir / "audio-test-speech.m4a", "en")


@pytest.fixture(scope="module")
def speech_video(media_dir, speech):
    return make_video_with_audio(media_dir / "audio-test-speech.mp4", speech.path)


def test_video_audio_becomes_16k_mono_pcm(speech, speech_video, tmp_path):
    track = extract_audio(probe_media(speech_video), tmp_path)
    assert track.source == speech_video and track.sample_rate == SAMPLE_RATE
    assert track.path.parent == tmp_path and track.path.suffix == ".wav"
    with wave.open(str(track.path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, SAMPLE_RATE)
    assert read_wav_info(track.path) == (SAMPLE_RATE, pytest.approx(track.duration))
    assert abs(track.duration - speech.duration) < 0.15, (track.duration, speech.duration)
    assert [p.name for p in tmp_path.iterdir()] == [track.path.name], "no temp files left"


def test_video_without_audio_is_a_clear_error(media_dir, tmp_path):
    silent = make_video_with_audio(media_dir / "audio-test-no-audio.mp4", None, duration=2.0)
    with pytest.raises(MediaInputError, match="has no audio track") as info:
        extract_audio(probe_media(silent), tmp_path)
    assert str(silent) in str(info.value)
    assert not any(tmp_path.iterdir()), "nothing written for a bad input"


def test_image_is_not_audio(tmp_path):
    import cv2

    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.full((32, 32, 3), 128, np.uint8))
    with pytest.raises(MediaInputError, match="is image, expected video or audio"):
        extract_audio(probe_media(image), tmp_path / "work")


def test_windows_cover_the_file_and_cut_between_sentences(speech, tmp_path):
    track = extract_audio(probe_media(speech.path), tmp_path)
    with wave.open(str(track.path), "rb") as wav:
        whole = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32) / 32768.0
    windows = list(iter_audio_windows(track.path, window=8.0, search=4.0))
    assert len(windows) >= 3
    rebuilt = np.concatenate([samples for _, samples in windows])
    assert np.array_equal(rebuilt, whole), "windows are contiguous, nothing lost or repeated"
    offsets = [offset for offset, _ in windows]
    lengths = [len(samples) / SAMPLE_RATE for _, samples in windows]
    assert offsets == pytest.approx(np.concatenate([[0.0], np.cumsum(lengths)[:-1]]))
    # every 4 s stretch holds part of a 1 s pause (sentences last under 3.7 s): the cut lands in one
    for cut in offsets[1:]:
        assert not any(line.start + 0.05 < cut < line.end - 0.05 for line in speech.lines), (
            cut,
            speech.lines,
        )
