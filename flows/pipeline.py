"""An ordered `workflow_chain` of stages on one video: the seeds' workflow API as one Prefect flow.

python -m flows.pipeline VIDEO --chain keyframes subtitle_area crop stitch ocr postprocess transcode
python -m flows.pipeline --list                        # the known stages and what each needs

Stages run in the order given. A stage whose input no earlier stage produced pulls its prerequisite in
ahead of it (keyframes are sampled inside the subtitle band, so `keyframes` pulls `subtitle_area` in
first); the plan that ran is in the manifest and the results table. Unknown names fail before anything runs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from prefect import flow
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from pydantic import WithJsonSchema

from blocks.loader import load_block
from blocks.subtitles import SubtitleConfig
from core.caching import open_work_dir
from core.cli import EPILOG, preflight_media, preflight_output_dir, run_cli
from core.errors import ConfigError
from core.media import probe_task
from core.outputs import run_output_dir, write_manifest
from core.schema import MediaInfo, PipelineResult, StageOutcome
from flows.subtitles import SUBTITLE_STEPS, ChainState, Step
from runtime.naming import artifact_key, run_named_after
from runtime.runner import StageRunner
from runtime.stage import Stages

# The seeds' default chain, in the seeds' order (keyframes first): the plan puts subtitle_area ahead of it.
SEED_CHAIN = ("keyframes", "subtitle_area", "crop", "stitch", "ocr", "postprocess")


def _transcribe(s: ChainState) -> str:
    from flows.transcribe import transcribe

    s.speech = result = transcribe(str(s.info.path), str(s.output_root))
    s.outputs.update(speech_srt=result.srt_path, speech_vtt=result.vtt_path, speech_json=result.json_path)
    heard = result.transcript
    language = f"language {heard.language}" if heard.language else "no speech detected"
    return f"{len(heard.segments)} speech segments, {language}"


def _diarize(s: ChainState) -> str:
    from flows.transcribe import label_speakers

    s.speech = result = label_speakers(s.speech, str(s.output_root))
    s.outputs.update(speech_srt=result.srt_path, speech_rttm=result.rttm_path)
    return f"{len(result.diarization.speakers)} speakers, {len(result.diarization.turns)} turns"


def _transcode(s: ChainState) -> str:
    from flows.transcode import transcode

    result = transcode(str(s.info.path), output_dir=str(s.output_root))
    s.outputs.update({f"rendition_{r.preset}": r.path for r in result.renditions})
    return f"{len(result.renditions)} renditions: " + ", ".join(
        f"{r.preset} {r.width}x{r.height}" for r in result.renditions
    )


STAGES: dict[str, Step] = {
    **SUBTITLE_STEPS,
    "transcribe": Step(
        "transcribe", (), _transcribe, "speech to SRT/VTT/JSON (the transcribe flow, as a sub-flow)"
    ),
    "diarize": Step(
        "diarize", ("transcribe",), _diarize, "who spoke when: speaker labels on the transcript, RTTM"
    ),
    "transcode": Step(
        "transcode", (), _transcode, "renditions and thumbnails (the transcode flow, as a sub-flow)"
    ),
}
# The UI and the server's parameter check offer the known names; plan_chain says what is wrong otherwise.
WorkflowChain = Annotated[
    tuple[str, ...], WithJsonSchema({"type": "array", "items": {"type": "string", "enum": list(STAGES)}})
]


def plan_chain(chain: Sequence[str]) -> list[str]:
    """The stages to run, in order: `chain` with missing prerequisites pulled in ahead of their users.

    Raises ConfigError, before anything runs, for an empty chain, an unknown or a repeated stage name.
    """
    if not chain:
        raise ConfigError(f"workflow_chain is empty; known stages: {', '.join(STAGES)}")
    unknown = [name for name in chain if name not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown} in workflow_chain; known stages: {', '.join(STAGES)}")
    repeated = sorted({name for name in chain if list(chain).count(name) > 1})
    if repeated:
        raise ConfigError(f"stage(s) {repeated} appear more than once in workflow_chain")
    plan: list[str] = []

    def add(name: str) -> None:
        if name not in plan:
            for need in STAGES[name].needs:
                add(need)
            plan.append(name)

    for name in chain:
        add(name)
    return plan


@flow(name="run-pipeline", flow_run_name=run_named_after("pipeline", "video"), task_runner=StageRunner())
def run_pipeline(
    video: str,
    workflow_chain: WorkflowChain = SEED_CHAIN,
    output_dir: str = "output",
    settings_block: str | None = None,
    keep_intermediates: bool = False,
) -> PipelineResult:
    """Run the stages of `workflow_chain` on `video` into `<output_dir>/pipeline/<stem>-<hash>/`.

    Args:
        video: path of the video file (as the worker sees it)
        workflow_chain: stages in order; a stage's prerequisites are added ahead of it
        output_dir: folder under which `pipeline/<stem>-<hash>/` is written
        settings_block: name of a saved YiVideo Subtitle Settings block for the subtitle stages
        keep_intermediates: keep the keyframe and crop images under the run folder
    """
    plan = plan_chain(workflow_chain)
    stages = Stages()
    (video,), output_dir = stages.shared([video], output_dir)
    info = stages.run(probe_task, video, "video")
    run_dir = run_output_dir(output_dir, "pipeline", info.path)
    settings = load_block(SubtitleConfig, settings_block)
    work = open_work_dir(run_dir / ".work")  # a crashed run's .work (and its token) lets a re-run resume
    state = ChainState(info, run_dir, work, settings, stages, Path(output_dir))
    progress = create_progress_artifact(
        0.0, key=artifact_key("pipeline-progress", info.path), description=f"{' → '.join(plan)}"
    )
    outcomes: list[StageOutcome] = []
    failed: tuple[str, float, str] | None = None
    try:
        for done, name in enumerate(plan, start=1):
            before = dict(state.outputs)
            started = time.perf_counter()
            try:
                summary = STAGES[name].run(state)
            except BaseException as exc:
                failed = (name, round(time.perf_counter() - started, 3), f"{type(exc).__name__}: {exc}")
                raise
            added = {k: v for k, v in state.outputs.items() if before.get(k) != v}
            outcomes.append(StageOutcome(name, round(time.perf_counter() - started, 3), summary, added))
            update_progress_artifact(progress, 100.0 * done / len(plan), description=f"{name} done")
    finally:
        _report(info, plan, outcomes, failed)
        if not keep_intermediates:
            shutil.rmtree(state.work_dir, ignore_errors=True)
    manifest = write_manifest(
        run_dir,
        flow="pipeline",
        input_path=info.path,
        outputs=state.outputs,
        extra={
            "workflow_chain": list(workflow_chain),
            "plan": plan,
            "stages": outcomes,
            "events": len(state.events or ()),
        },
    )
    return PipelineResult(
        info.path, tuple(workflow_chain), tuple(plan), run_dir, tuple(outcomes), tuple(state.events or ()),
        manifest,
    )  # fmt: skip


def stage_rows(
    plan: Sequence[str], outcomes: Sequence[StageOutcome], failed: tuple[str, float, str] | None = None
) -> list[dict[str, object]]:
    """One row per planned step, in order: its seconds and outcome (completed, failed, not run).

    Only the pipeline's own steps: a sub-flow (transcode, transcribe) keeps its stage table on its own run.
    """
    ran = {o.stage: o for o in outcomes}
    rows: list[dict[str, object]] = []
    for name in plan:
        if name in ran:
            o = ran[name]
            files = ", ".join(Path(p).name for p in o.outputs.values())
            rows.append({"stage": name, "seconds": o.seconds, "outcome": "completed", "result": o.summary,
                         "outputs": files})  # fmt: skip
        elif failed and failed[0] == name:
            rows.append({"stage": name, "seconds": failed[1], "outcome": "failed", "result": failed[2],
                         "outputs": ""})  # fmt: skip
        else:
            rows.append({"stage": name, "seconds": None, "outcome": "not run", "result": "", "outputs": ""})
    return rows


def _report(
    info: MediaInfo, plan: list[str], outcomes: list[StageOutcome], failed: tuple[str, float, str] | None
) -> None:
    """The pipeline's stage table in the UI (written when a step fails too, so the failure shows where)."""
    total = sum(o.seconds for o in outcomes) + (failed[1] if failed else 0.0)
    verdict = f"failed at {failed[0]}" if failed else "completed"
    create_table_artifact(
        stage_rows(plan, outcomes, failed),
        key=artifact_key("pipeline", info.path),
        description=f"workflow chain on {info.path.name}: {len(plan)} steps, {total:.1f} s, {verdict}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run an ordered chain of stages on one video.", epilog=EPILOG
    )
    parser.add_argument("video", nargs="?")
    parser.add_argument("--chain", nargs="+", default=list(SEED_CHAIN), metavar="STAGE")
    parser.add_argument("--output-dir", default="output")
    parser.add_argument("--keep-intermediates", action="store_true")
    parser.add_argument("--list", action="store_true", help="list the known stages and exit")
    args = parser.parse_args(argv)
    if args.list:
        for stage in STAGES.values():
            needs = f" (needs {', '.join(stage.needs)})" if stage.needs else ""
            print(f"{stage.name:14} {stage.about}{needs}")
        return 0
    if not args.video:
        parser.error("give a VIDEO (or --list)")
    try:
        plan_chain(args.chain)
    except ConfigError as exc:
        parser.error(str(exc))
    preflight_output_dir(args.output_dir)
    preflight_media(args.video, "video")
    result = run_pipeline(args.video, tuple(args.chain), args.output_dir, None, args.keep_intermediates)
    for outcome in result.stages:
        print(f"{outcome.stage:14} {outcome.seconds:7.2f} s  {outcome.summary}")
    for path in sorted({p for o in result.stages for p in o.outputs.values()}):
        print(path)
    print(result.manifest_path)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
