"""The transcription flow end to end: real ffmpeg, real faster-whisper, a real Prefect server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import srt
import webvtt
from conftest import assert_no_partial_outputs

from blocks.asr import AsrConfig
from core.errors import MediaInputError
from core.models import evict, load_count, resident_keys
from flows.transcribe import transcribe
from samples.audio import make_silence, make_speech, make_video_with_audio, word_error_rate
from stages.speech.engines import AsrSettings


@pytest.fixture(scope="module")
def speech(media_dir):
    return make_speech(media_dir / "flow-en.wav", "en")


@pytest.fixture(scope="module")
def speech_video(media_dir, speech):
    return make_video_with_audio(media_dir / "flow en speech.mp4", speech.path)


@pytest.fixture(scope="module")
def short_clip(media_dir):
    return make_speech(media_dir / "flow-short.m4a", "en", ("Short clips are transcribed quickly.",))


@pytest.mark.slow
def test_video_to_srt_vtt_json(prefect_server, speech, speech_video, tmp_path):
    result = transcribe(str(speech_video), str(tmp_path))
    run_dir = result.srt_path.parent
    assert run_dir.parent == tmp_path / "transcribe" and run_dir.name.startswith("flow_en_speech-")
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "flow_en_speech.json",
        "flow_en_speech.srt",
        "flow_en_speech.vtt",
        "manifest.json",
    ]
    cues = list(srt.parse(result.srt_path.read_text(encoding="utf-8")))
    assert word_error_rate(speech.text, " ".join(c.content for c in cues)) <= 0.15, cues
    assert [c.start.total_seconds() for c in cues] == sorted(c.start.total_seconds() for c in cues)
    captions = webvtt.read(str(result.vtt_path)).captions
    assert [c.text for c in captions] == [c.content for c in cues]
    payload = json.loads(result.json_path.read_text(encoding="utf-8"))
    assert payload["language"] == "en" and payload["language_probability"] > 0.5
    assert payload["engine"] == "faster-whisper" and len(payload["segments"]) == len(cues)
    first_word = payload["segments"][0]["words"][0]
    assert set(first_word) >= {"start", "end", "text", "probability"}
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["outputs"]) == {"srt", "vtt", "json"} and manifest["language"] == "en"
    assert not any((tmp_path / "transcribe").glob(".work-*")), "the work folder is removed"
    assert_no_partial_outputs(tmp_path)


def test_model_loads_once_across_runs(prefect_server, short_clip, tmp_path):
    for key in resident_keys():
        if key.capability == "asr":
            evict(key)
    AsrConfig(asr=AsrSettings(language="en", beam_size=2)).save("test-asr-greedier", overwrite=True)
    before = load_count("asr")
    texts = [transcribe(str(short_clip.path), str(tmp_path / f"run{i}"), language="en") for i in range(2)]
    texts.append(transcribe(str(short_clip.path), str(tmp_path / "run2"), settings_block="test-asr-greedier"))
    assert load_count("asr") - before == 1, "one load; decoding options from a block need no reload"
    assert all(word_error_rate(short_clip.text, " ".join(s.text for s in r.transcript.segments)) <= 0.15
               for r in texts)  # fmt: skip


def test_silence_gives_an_empty_srt(prefect_server, media_dir, tmp_path):
    result = transcribe(str(make_silence(media_dir / "flow-silence.m4a", 3.0)), str(tmp_path))
    assert result.srt_path.read_text(encoding="utf-8") == ""
    assert webvtt.read(str(result.vtt_path)).captions == []
    payload = json.loads(result.json_path.read_text(encoding="utf-8"))
    assert payload["segments"] == [] and payload["language"] is None


def _bad_inputs(root: Path, media_dir: Path) -> dict[str, tuple[Path, str]]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    (root / "empty.wav").write_bytes(b"")
    no_audio = make_video_with_audio(media_dir / "flow-no-audio.mp4", None, duration=2.0)
    return {
        "no-audio": (no_audio, "has no audio track"),
        "corrupt": (root / "corrupt.mp4", "not a readable media file"),
        "empty": (root / "empty.wav", "empty"),
        "missing": (root / "nope.wav", "does not exist"),
    }


@pytest.mark.parametrize("case", ["no-audio", "corrupt", "empty", "missing"])
def test_bad_input_fails_clearly_without_outputs(prefect_server, media_dir, tmp_path, case):
    path, cause = _bad_inputs(tmp_path / "in", media_dir)[case]
    out = tmp_path / "out"
    with pytest.raises(MediaInputError) as info:
        transcribe(str(path), str(out))
    assert str(path) in str(info.value) and cause in str(info.value)
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()], "no outputs at all"
    assert_no_partial_outputs(tmp_path)


@pytest.mark.slow
def test_cli_prints_the_srt_path_last(prefect_server, short_clip, tmp_path, capsys):
    """In process (`main` through run_cli, as the process runs it), so the model loaded by this module's
    other tests serves it; the last stdout line of a real CLI process: tests/test_bad_input.py."""
    from core.cli import run_cli
    from flows.transcribe import main

    code = run_cli(main, [str(short_clip.path), "--output-dir", str(tmp_path), "--language", "en"])
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    srt_path = Path(out.strip().splitlines()[-1])
    assert srt_path.suffix == ".srt" and srt_path.is_relative_to(tmp_path)
    assert "quickly" in srt_path.read_text(encoding="utf-8").lower()


@pytest.mark.slow
def test_diarized_conversation_gives_speaker_cues_rttm_and_a_table(prefect_server, media_dir, tmp_path):
    pytest.importorskip("resemblyzer", reason="the diarize extra: pip install -e '.[diarize]'")
    from samples.audio import CONVERSATIONS, make_conversation
    from samples.diarization import diarization_error_rate, read_rttm
    from stages.speech.cues import CueSettings, width

    turns, voices = CONVERSATIONS["two-speakers"]
    talk = make_conversation(media_dir / "flow-talk.m4a", turns, voices)
    result = transcribe(str(talk.path), str(tmp_path), language="en", diarize=True)
    assert set(result.stage_seconds) >= {"transcribe", "diarize"}
    assert result.rttm_path is not None and result.rttm_path.suffix == ".rttm"
    hyp = read_rttm(result.rttm_path)
    score = diarization_error_rate([(s.speaker, s.start, s.end) for s in talk.spans], hyp)
    assert score.der <= 0.10 and len({h[0] for h in hyp}) == 2, score
    cues = list(srt.parse(result.srt_path.read_text(encoding="utf-8")))
    rules = CueSettings()
    for cue in cues:
        lines = cue.content.splitlines()
        assert lines[0].startswith("[SPEAKER_0") and len(lines) <= rules.max_lines, cue
        assert all(width(line) <= rules.max_line_width for line in lines), cue
        assert (cue.end - cue.start).total_seconds() <= rules.max_seconds, cue
    payload = json.loads(result.json_path.read_text(encoding="utf-8"))
    assert payload["diarized"] and all(s["speaker"] for s in payload["segments"])
    assert all(w["speaker"] for s in payload["segments"] for w in s["words"])
    assert word_error_rate(talk.text, payload["text"]) <= 0.15
    manifest = json.loads((result.srt_path.parent / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["outputs"]) == {"srt", "vtt", "json", "rttm"} and len(manifest["speakers"]) == 2

    from prefect.artifacts import Artifact

    table = Artifact.get("speakers-flow-talk-m4a")
    assert table is not None and "SPEAKER_00" in str(table.data) and "talk_seconds" in str(table.data)
    transcript = Artifact.get("transcript-flow-talk-m4a")  # the first segments, a speaker column each
    assert transcript is not None and "| speaker | text |" in str(transcript.data)
    assert "| SPEAKER_0" in str(transcript.data)
