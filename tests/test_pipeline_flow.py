"""The workflow_chain flow: planning, fail-fast validation, and a real chain on generated video."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_no_partial_outputs

from blocks.policy import RunPolicy
from core.errors import ConfigError, MediaInputError, StageError
from flows.pipeline import SEED_CHAIN, STAGES, main, plan_chain, run_pipeline
from samples.scoring import score_subtitles
from samples.video import Cue, make_subtitled_video

CUES = [Cue(0.4, 2.4, "流水线第一句"), Cue(2.8, 4.8, "Pipeline second line", "yellow")]


@pytest.fixture(scope="module")
def chain_video(media_dir) -> Path:
    return make_subtitled_video(media_dir / "chain.mp4", CUES, duration=5.5, size=(640, 360))


def test_seed_order_runs_subtitle_area_ahead_of_keyframes():
    assert plan_chain(SEED_CHAIN) == ["subtitle_area", "keyframes", "crop", "stitch", "ocr", "postprocess"]
    assert plan_chain(["ocr"]) == ["subtitle_area", "keyframes", "crop", "stitch", "ocr"]
    assert plan_chain(["transcode", "postprocess"])[0] == "transcode"
    assert plan_chain(["transcribe"]) == ["transcribe"]


def test_the_windowed_stages_stay_together_where_keyframes_stands():
    """keyframes, crop, stitch and OCR run window by window (bounded temporary disk): the plan says so."""
    together = ["subtitle_area", "keyframes", "crop", "transcode"]
    assert plan_chain(["keyframes", "transcode", "crop"]) == together
    assert plan_chain(["transcode", "stitch", "transcribe", "postprocess"]) == [
        "transcode", "subtitle_area", "keyframes", "crop", "stitch", "ocr", "transcribe", "postprocess",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        (["keyframes", "burn_in"], "unknown stage(s) ['burn_in']"),
        ([], "workflow_chain is empty"),
        (["ocr", "ocr"], "more than once"),
    ],
)
def test_bad_chains_name_the_problem_and_the_known_stages(chain, message):
    with pytest.raises(ConfigError) as info:
        plan_chain(chain)
    assert message in str(info.value)
    if "unknown" in message:
        assert all(name in str(info.value) for name in STAGES)


def test_unknown_stage_fails_before_anything_runs(prefect_server, chain_video, tmp_path, capsys):
    with pytest.raises(Exception, match="burn_in") as info:
        run_pipeline(str(chain_video), ("keyframes", "burn_in"), str(tmp_path))
    assert "subtitle_area" in str(info.value), "the error lists the known stages"
    assert not any(tmp_path.iterdir()), "nothing ran, nothing was written"
    with pytest.raises(SystemExit):
        main([str(chain_video), "--chain", "burn_in", "--output-dir", str(tmp_path)])
    assert "known stages: subtitle_area" in capsys.readouterr().err


@pytest.mark.slow
def test_seed_chain_reads_the_subtitles_and_runs_the_sub_flows(prefect_server, chain_video, tmp_path):
    chain = (*SEED_CHAIN, "transcode", "transcribe")
    result = run_pipeline(str(chain_video), chain, str(tmp_path))
    assert result.plan == ("subtitle_area", "keyframes", "crop", "stitch", "ocr", "postprocess", *chain[-2:])
    assert [o.stage for o in result.stages] == list(result.plan)
    score = score_subtitles(CUES, list(result.events))
    assert score.recall == 1.0 and score.cer <= 0.05, (score, result.events)
    manifest = json.loads(result.manifest_path.read_text(encoding="utf-8"))
    assert manifest["plan"] == list(result.plan) and manifest["workflow_chain"] == list(chain)
    by_stage = {o.stage: o for o in result.stages}
    assert {"rendition_mp4_standard", "rendition_thumbnail"} <= set(by_stage["transcode"].outputs)
    assert set(by_stage["transcribe"].outputs) == {"speech_srt", "speech_vtt", "speech_json"}
    assert all(Path(p).is_file() for p in manifest["outputs"].values())
    assert "no speech detected" in by_stage["transcribe"].summary, "a sine tone is not speech"
    srt = Path(manifest["outputs"]["subtitles_srt"])
    assert srt.parent == result.run_dir and "流水线第一句" in srt.read_text(encoding="utf-8")
    assert not (result.run_dir / ".work").exists(), "intermediates are cleaned up"
    assert_no_partial_outputs(tmp_path)


def test_run_policy_retries_transient_failures_with_backoff_never_bad_input(prefect_server):
    from prefect import flow, task

    calls = {"bad": 0, "flaky": 0}

    @task
    def missing_input() -> None:
        calls["bad"] += 1
        raise MediaInputError("gone.mp4", "file does not exist")

    @task
    def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise StageError("ocr", "clip.mp4", "engine hiccup")
        return "read"

    policy = RunPolicy(stage_retries=2, stage_backoff_seconds=0.05, stage_backoff_jitter=0)
    assert policy.stage_retry_delays() == [0.05, 0.1]

    @flow
    def stages() -> str:
        with pytest.raises(MediaInputError):
            policy.apply_to_task(missing_input)()
        return policy.apply_to_task(flaky)()

    assert stages() == "read"
    assert calls == {"bad": 1, "flaky": 3}, "bad input is not retried; a transient error is, twice"


def test_the_stage_table_has_one_row_per_step_with_its_outcome():
    from core.schema import StageOutcome
    from flows.pipeline import stage_rows

    rows = stage_rows(
        ["subtitle_area", "keyframes", "crop"],
        [StageOutcome("subtitle_area", 1.5, "band y 0.80-0.95", {})],
        ("keyframes", 0.25, "StageError: no frames"),
    )
    assert [(r["stage"], r["seconds"], r["outcome"]) for r in rows] == [
        ("subtitle_area", 1.5, "completed"), ("keyframes", 0.25, "failed"), ("crop", None, "not run"),
    ]  # fmt: skip
    assert rows[1]["result"] == "StageError: no frames"


@pytest.mark.slow
def test_the_pipeline_table_lists_its_own_steps_and_sub_flows_keep_theirs(
    prefect_server, chain_video, tmp_path
):
    """Read back from the API: the pipeline's table has its steps only; transcode's is on its sub-flow."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter
    from prefect.client.schemas.filters import FlowRunFilterParentFlowRunId as Parent

    state = run_pipeline(str(chain_video), ("transcode",), str(tmp_path), return_state=True)
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=Parent(any_=[run_id]))
        )
        by_run = {
            rid: client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[rid]))
            )
            for rid in [run_id, *(c.id for c in children)]
        }
    tables = {a.key: a for a in by_run[run_id] if a.type == "table"}
    assert set(tables) == {"pipeline-chain-mp4"}, tables
    rows = json.loads(tables["pipeline-chain-mp4"].data)
    assert [(r["stage"], r["outcome"]) for r in rows] == [("transcode", "completed")], rows
    assert rows[0]["seconds"] > 0 and "renditions" in rows[0]["result"]
    sub_tables = [a.key for rid, found in by_run.items() if rid != run_id for a in found if a.type == "table"]
    assert "transcode-chain-mp4" in sub_tables, sub_tables


@pytest.mark.slow
def test_a_short_chain_keeps_its_window_images_when_asked(prefect_server, chain_video, tmp_path):
    """The pipeline reads window by window like the subtitle flow; `crop` as the last step stops there."""
    result = run_pipeline(str(chain_video), ("crop",), str(tmp_path), keep_intermediates=True)
    assert [o.stage for o in result.stages] == ["subtitle_area", "keyframes", "crop"]
    by_stage = {o.stage: o for o in result.stages}
    crops = sorted((result.run_dir / ".work").glob("*/crop_*"))  # band crops, whatever their image format
    assert crops and by_stage["crop"].summary == f"{len(crops)} band crops", (crops, by_stage["crop"])
    assert not list((result.run_dir / ".work").glob("*/batch_*")), "nothing stitched past the chain's end"


def test_the_failed_step_of_the_windowed_ones_is_the_stage_that_raised(prefect_server, chain_video):
    from prefect import flow, task

    from core.media import probe_media
    from flows.pipeline import StepLog
    from runtime.stage import Stages

    @task(name="keyframes")
    def keyframes() -> int:
        return 1

    @task(name="crop")
    def crop() -> int:
        raise ValueError("no strips")

    @flow
    def windowed() -> tuple[str, float, str] | None:
        stages, plan = Stages(), ["keyframes", "crop", "stitch"]
        log = StepLog(plan, probe_media(chain_video), stages)
        with pytest.raises(ValueError), log.step(plan):
            stages.run(keyframes)
            stages.run(crop)
        return log.failed

    failed = windowed()
    assert failed is not None and failed[0] == "crop" and failed[2] == "ValueError: no strips", failed
