"""The enhancement flow on a real (temporary) Prefect server: isolation, partial results, ZIP, artifacts."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import pytest

from core.schema import EnhanceBatchResult
from flows.enhance import enhance_images, enhance_yardstick, main
from samples.images import make_corrupt_image, make_face_set, make_huge_image, write_real_photos
from tests.conftest import assert_no_partial_outputs, recorded_task_runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(media_dir) -> dict[str, list[Path]]:
    folder = media_dir / "enhance"
    return {
        "faces": make_face_set(folder, 4, size=(96, 72)),
        "corrupt": [make_corrupt_image(folder / "broken.jpg")],
        "huge": [make_huge_image(media_dir / "huge.png", (6000, 4000))],
    }


def _run_records(flow_run_id):
    """Child flow runs, task runs and artifacts of one run, as the Prefect API recorded them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    with get_client(sync_client=True) as client:
        parent = FlowRunFilterParentFlowRunId(any_=[flow_run_id])
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=parent))
        ids = [flow_run_id] + [c.id for c in children]
        tasks = recorded_task_runs(client, ids)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids))
        )
    return children, [t for t in tasks if t.name.startswith("enhance ")], artifacts


def _max_overlap(task_runs) -> int:
    events = sorted([(t.start_time, 1) for t in task_runs] + [(t.end_time, -1) for t in task_runs])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_bad_images_fail_alone_and_the_batch_is_partial(prefect_server, tmp_path, inputs):
    faces, corrupt, huge = inputs["faces"], inputs["corrupt"][0], inputs["huge"][0]
    images = [str(p) for p in [faces[0], corrupt, faces[1], faces[2], huge, faces[3]]]
    state = enhance_images(
        images,
        str(tmp_path),
        engine="realesrgan-ncnn",
        scale=2,
        model="realesr-animevideov3",
        max_concurrency=2,
        batch_size=4,
        return_state=True,
    )
    assert state.is_failed()
    assert state.message.startswith("partially completed: 4 of 6 images enhanced; failed: broken.jpg")
    result = state.result(raise_on_failure=False)
    assert isinstance(result, EnhanceBatchResult)
    assert [e.source.name for e in result.enhanced] == [f.name for f in faces]
    assert {f.source.name: f.error for f in result.failed} == {
        "broken.jpg": "MediaInputError",
        "huge.png": "MediaInputError",
    }
    assert "max_pixels" in next(f.reason for f in result.failed if f.source == huge)
    for item in result.enhanced:
        assert cv2.imread(str(item.output)).shape == (144, 192, 3) and item.output_size == (192, 144)
    with zipfile.ZipFile(result.zip_path) as archive:
        assert sorted(archive.namelist()) == sorted(e.output.name for e in result.enhanced)
        for item in result.enhanced:
            assert archive.read(item.output.name) == item.output.read_bytes()
    assert not list(result.run_dir.glob("broken*")) and not list(result.run_dir.glob("huge*"))
    assert_no_partial_outputs(tmp_path)

    children, task_runs, artifacts = _run_records(state.state_details.flow_run_id)
    assert sorted(c.name for c in children) == ["enhance batch 1/2", "enhance batch 2/2"]
    red = [c for c in children if c.state.is_failed()]  # a batch with a failed image is not shown green
    assert red and all("images failed:" in c.state.message for c in red), [c.state for c in children]
    assert len(task_runs) == 6
    failed = {t.name: t.state for t in task_runs if t.state.is_failed()}
    assert set(failed) == {"enhance broken.jpg", "enhance huge.png"}
    assert "max_pixels" in failed["enhance huge.png"].message
    assert _max_overlap(task_runs) <= 2  # max_concurrency
    progress = [a for a in artifacts if a.type == "progress"]
    batches = [a for a in progress if a.task_run_id is None]  # one per batch, and one per image read
    images = [a for a in progress if a.task_run_id is not None]
    assert len(batches) == 2 and all(a.data == 100.0 for a in batches)
    assert len(images) == 4 and all(a.data == 100.0 and "done in" in a.description for a in images)
    table = next(a for a in artifacts if a.key == f"enhance-{result.run_dir.name}")  # one card per batch
    assert table.type == "table" and table.data.count('"failed"') == 2 and table.data.count('"enhanced"') == 4
    assert table.data.count('"realesr-animevideov3"') == 4 and all(
        e.model == "realesr-animevideov3" for e in result.enhanced
    )


def test_all_good_batch_completes(prefect_server, tmp_path, inputs):
    result = enhance_images(
        [str(p) for p in inputs["faces"][:2]], str(tmp_path), engine="opencv-classic", scale=1.5
    )
    assert isinstance(result, EnhanceBatchResult) and result.complete and len(result.enhanced) == 2
    assert all(e.output_size == (144, 108) for e in result.enhanced)


def test_bad_settings_fail_the_run_before_any_image(prefect_server, tmp_path, inputs):
    state = enhance_images([str(inputs["faces"][0])], str(tmp_path), engine="waifu9000", return_state=True)
    assert state.is_failed() and "engine" in state.message
    assert not (tmp_path / "enhance").exists()


def test_cli_prints_outputs_then_the_zip(prefect_server, tmp_path, inputs, capsys):
    images = [str(p) for p in inputs["faces"][:2]] + [str(inputs["corrupt"][0])]
    code = main([*images, "--output-dir", str(tmp_path), "--model", "realesr-animevideov3", "--scale", "2"])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert code == 1  # partial
    assert lines[-1].endswith("enhanced.zip") and Path(lines[-1]).is_file()
    assert [Path(line).name for line in lines[:-1]] == ["face00.jpg", "face01.png"]
    assert "broken.jpg" in err and "partially completed: 2 of 3" in err
    manifest = json.loads((Path(lines[-1]).parent / "manifest.json").read_text())
    assert [e["model"] for e in manifest["enhanced"]] == ["realesr-animevideov3"] * 2


def test_yardstick_flow_scores_against_baselines_with_a_table_and_pictures(prefect_server, tmp_path):
    photo = write_real_photos(tmp_path / "photos", ("astronaut",))[0]
    methods = ["bicubic", "lanczos", "realesrgan-ncnn:realesr-animevideov3"]
    state = enhance_yardstick([str(photo)], str(tmp_path), methods=methods, return_state=True)
    scores = state.result()
    assert [s.method for s in scores] == methods and all(s.photo == "astronaut" for s in scores)
    bicubic, lanczos, anime = scores
    assert 20 < bicubic.psnr < 40 and 0.5 < bicubic.ssim < 1 and anime.niqe < bicubic.niqe
    assert anime.model == "realesr-animevideov3" and bicubic.model is None
    pictures = tmp_path / "yardstick" / "pictures"
    assert sorted(p.name for p in pictures.iterdir()) == ["astronaut-face1.jpg", "astronaut.jpg"]
    whole = cv2.imread(str(pictures / "astronaut.jpg"))
    assert whole.shape[0] == 256 and whole.shape[1] > 4 * 256  # input, bicubic, anime model, original
    *_, artifacts = _run_records(state.state_details.flow_run_id)
    table = next(a for a in artifacts if a.key == "enhance-yardstick")
    assert table.type == "table" and table.data.count('"astronaut"') == 3 and table.data.count('"mean"') == 3
