"""The subtitle flow end to end: real ffmpeg, real PP-OCRv4, a real Prefect server, exact ground truth."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import assert_no_partial_outputs, read_back_run, run_logs_at_info

from core.cli import run_cli
from core.errors import MediaInputError
from flows.subtitles import extract_subtitles, main
from samples.scoring import score_subtitles, squash
from samples.video import Cue, busy_script, corpus_script, make_subtitled_video

SAMPLE_FPS = 5.0
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus_video(media_dir) -> Path:
    return make_subtitled_video(
        media_dir / "corpus.mp4", corpus_script(), duration=30.0, background="gradient", logo=True, clock=True
    )


@pytest.fixture(scope="module")
def busy_video(media_dir) -> Path:
    return make_subtitled_video(
        media_dir / "busy.mp4", busy_script(), duration=11.0, size=(960, 540), background="busy"
    )


@pytest.fixture(scope="module")
def many_cues_video(media_dir) -> Path:
    """18 short lines in 10.5 s at 640x360: two stitched OCR batches."""
    words = ["一", "Two", "三个字", "Four", "五", "Six six", "七", "Eight", "九九", "Ten", "十一", "Twelve",
             "十三", "Fourteen", "十五", "Sixteen", "十七", "Eighteen"]  # fmt: skip
    cues = [Cue(0.2 + 0.55 * i, 0.7 + 0.55 * i, word) for i, word in enumerate(words)]
    return make_subtitled_video(
        media_dir / "many cues.mp4", cues, duration=10.5, size=(640, 360), background="gradient"
    )


def assert_meets_targets(cues, result) -> None:
    score = score_subtitles(cues, list(result.events))
    assert score.cer <= 0.02, (score, result.events)
    assert score.recall >= 0.98, (score, result.events)
    assert score.precision >= 0.98, (score, result.events)
    assert score.median_start_error <= 1 / SAMPLE_FPS, score
    assert score.median_end_error <= 1 / SAMPLE_FPS, score


@pytest.mark.slow
def test_corpus_meets_accuracy_targets(prefect_server, corpus_video, tmp_path):
    result = extract_subtitles(str(corpus_video), str(tmp_path), sample_fps=SAMPLE_FPS)
    assert_meets_targets(corpus_script(), result)
    assert result.band.source == "auto" and result.band.y0 > 720 // 2, "subtitles are in the lower half"
    run_dir = result.srt_path.parent
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "corpus.json",
        "corpus.srt",
        "corpus.txt",
        "manifest.json",
    ]
    payload = json.loads(result.json_path.read_text(encoding="utf-8"))
    assert [e["text"] for e in payload["events"]] == [e.text for e in result.events]
    assert {"start", "end", "text", "confidence"} <= set(payload["events"][0])
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["lang"] == "ch", "Chinese with English words (it was told English, once Cyrillic)"
    assert_no_partial_outputs(tmp_path)


@pytest.fixture(scope="module")
def busy_runs(prefect_server, busy_video, tmp_path_factory):
    """The busy video read twice in this process, its band found, then the user's band; and the OCR model
    loads counted after each run (a second run loads none)."""
    from core.models import load_count

    out = tmp_path_factory.mktemp("busy")
    found = extract_subtitles(str(busy_video), str(out / "found"))
    loads = load_count("ocr", "rapidocr")
    user = extract_subtitles(str(busy_video), str(out / "user"), band=(0.0, 0.6, 1.0, 1.0))
    return found, user, (loads, load_count("ocr", "rapidocr"))


@pytest.mark.slow
def test_busy_background_meets_accuracy_targets(busy_runs):
    found, _, _ = busy_runs
    assert found.band.source == "auto"
    assert_meets_targets(busy_script(), found)


@pytest.mark.slow
def test_user_band_is_used(busy_runs):
    _, user, _ = busy_runs
    assert user.band.source == "user" and user.band.y0 == 324
    assert_meets_targets(busy_script(), user)


@pytest.mark.slow
def test_ocr_model_loads_once_across_runs(busy_runs):
    _, _, (after_first, after_second) = busy_runs
    assert after_first >= 1 and after_second == after_first


def test_video_without_subtitles_gives_an_empty_srt(prefect_server, media_dir, tmp_path):
    video = make_subtitled_video(
        media_dir / "nosubs.mp4", [], duration=5.0, size=(640, 360), logo=True, clock=True
    )
    state = extract_subtitles(str(video), str(tmp_path), return_state=True)
    assert state.is_completed() and state.message.startswith("no subtitles found"), state.message
    result = state.result()
    assert result.events == ()
    # no band, no keyframes decode: the decode check decoded the pictures itself (clean: no damage)
    assert result.band.is_empty and "decode-check" in result.stage_seconds and result.damage is None, result
    assert result.srt_path.read_text(encoding="utf-8") == ""
    assert json.loads(result.json_path.read_text(encoding="utf-8"))["events"] == []


def test_cli_reads_a_path_with_spaces_and_unicode_and_prints_the_srt_path_last(
    prefect_server, media_dir, tmp_path, capsys
):
    """In process; `python -m flows.subtitles` as a process: test_ray_cluster.py, test_cli_lifecycle.py."""
    name = media_dir / "my vidéo 字幕 'quoted' -x.mp4"
    make_subtitled_video(name, busy_script()[:2], duration=5.0, size=(640, 360))
    code = run_cli(main, [str(name), "--output-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    srt_path = Path(out.strip().splitlines()[-1])
    assert srt_path.suffix == ".srt" and srt_path.is_relative_to(tmp_path) and srt_path.exists()
    events = json.loads(srt_path.with_suffix(".json").read_text(encoding="utf-8"))["events"]
    assert [squash(e["text"]) for e in events] == ["背景在动", "Movingbackgroundtest"]
    assert "Moving background test" in srt_path.read_text(encoding="utf-8")


def _bad_inputs(root: Path) -> dict[str, tuple[Path, str]]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "zero bytes.mp4").write_bytes(b"")
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    (root / "notes.mp4").write_text("this is not a video\n" * 50)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=d=1", str(root / "tone.m4a")], check=True
    )
    return {
        "zero": (root / "zero bytes.mp4", "empty"),
        "corrupt": (root / "corrupt.mp4", "not a readable media file"),
        "text": (root / "notes.mp4", "not a readable media file"),
        "audio": (root / "tone.m4a", "is audio, expected video"),
        "missing": (root / "nope.mp4", "does not exist"),
    }


@pytest.mark.parametrize("case", ["zero", "corrupt", "text", "audio", "missing"])
def test_bad_input_fails_clearly_without_outputs(prefect_server, tmp_path, case):
    path, cause = _bad_inputs(tmp_path / "in")[case]
    out = tmp_path / "out"
    with pytest.raises(MediaInputError) as info:
        extract_subtitles(str(path), str(out))
    assert str(path) in str(info.value) and cause in str(info.value)
    assert not out.exists() or not any(out.rglob("*.srt"))
    assert_no_partial_outputs(tmp_path)


def read_back_artifacts(state) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        own = ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
        return client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=own))


def test_the_ui_shows_each_ocr_batch_and_no_cpu_work_tagged_gpu(prefect_server, many_cues_video, tmp_path):
    """What the Prefect UI shows of a run on this CPU host: OCR as one task run per stitched batch (`ocr
    batch i/n`); the GPU-capable stages marked "gpu-capable" and none tagged "gpu" (the UI filter and a
    tag concurrency limit on `gpu` see real GPU work only); each says why it runs on the CPU; and no
    "timeout in a worker thread" warning (no stage timeout Prefect cannot enforce), read back from the API."""
    from gpu.devices import GPU_CAPABLE_TAG, GPU_TAG

    with run_logs_at_info():
        state = extract_subtitles(str(many_cues_video), str(tmp_path), return_state=True)
    result = state.result()
    runs, logs = read_back_run(state.state_details.flow_run_id)
    assert runs and not [run.name for run in runs if GPU_TAG in run.tags]
    capable = sorted(run.name for run in runs if GPU_CAPABLE_TAG in run.tags)
    ocr = sorted(run.name for run in runs if run.name.startswith("ocr"))
    total = len(ocr)
    assert ocr == [f"ocr batch {i}/{total}" for i in range(1, total + 1)] and total >= 2, ocr
    assert capable == sorted([*ocr, "find subtitle band", "tell the subtitle language"])
    assert sum("running on cpu: no GPU on this host (no slot)" in m for m in logs) == len(capable), logs
    assert not [m for m in logs if "worker thread" in m]
    assert result.stage_seconds["ocr"] > 0
    texts = [a.description or "" for a in read_back_artifacts(state)]
    (text,) = [t for t in texts if t.startswith("OCR of")]
    assert "keyframes/s" in text and "done in" in text, text  # speed through core/progress.py


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ("tesseract", "unknown OCR engine 'tesseract'; known: paddleocr, rapidocr"),
        ("paddleocr", "paddleocr engine needs local model folders"),
    ],
)
def test_engine_choice_errors_are_clear(engine, message):
    from core.errors import ConfigError
    from stages.subtitles.ocr import OcrSettings, load_ocr_engine

    with pytest.raises(ConfigError, match=message):
        load_ocr_engine(OcrSettings(engine=engine))
