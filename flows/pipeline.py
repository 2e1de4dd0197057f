"""An ordered `workflow_chain` of stages on one video: the seeds' workflow API as one Prefect flow.

python -m flows.pipeline VIDEO --chain keyframes subtitle_area crop stitch ocr postprocess transcode
python -m flows.pipeline VIDEO --chain fuse            # subtitles + speech, fused into one SRT/VTT/JSON
python -m flows.pipeline --list                        # the known stages and what each needs

Stages run in the order given. A stage whose input no earlier stage produced pulls its prerequisite in
ahead of it (keyframes are sampled inside the subtitle band, so `keyframes` pulls `subtitle_area` in
first; `fuse` pulls the subtitle stages and `transcribe`, and runs after `diarize` when the chain has it);
the plan that ran is in the manifest and the results table. Unknown names fail before anything runs.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

from prefect import flow
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from pydantic import WithJsonSchema

from blocks.loader import load_block
from blocks.subtitles import SubtitleConfig
from core.caching import close_work_dir, open_work_dir
from core.cli import EPILOG, CliParser, api_ready, preflight_media, preflight_output_dir, run_cli
from core.damage import combined_damage, decode_check_task, exit_status, input_damage, report_damage
from core.errors import ConfigError, PartlyDone
from core.media import probe_task
from core.outputs import discard_if_empty, run_output_dir, safe_stem, write_manifest
from core.schema import (
    Band,
    DecodeDamage,
    FrameText,
    MediaInfo,
    PipelineResult,
    StageOutcome,
    SubtitleEvent,
    TranscodeResult,
    TranscriptResult,
)
from flows.subtitles import WINDOW_STAGES, find_band, pictures_damage, read_band_texts, spaced_for
from runtime.naming import artifact_key, run_named_after
from runtime.runner import StageRunner
from runtime.stage import Stages
from stages.subtitles.area import describe_band
from stages.subtitles.band import WHOLE_FRAME
from stages.subtitles.postprocess import postprocess_task, write_subtitle_files

T = TypeVar("T")


@dataclass(frozen=True)
class ChainStage:
    """A stage a chain may name: the stages it reads from, and what it does (`--list`); `after`: stages
    it is not pulled in by but runs after when the chain names them (fusion takes diarize's speakers)."""

    needs: tuple[str, ...]
    about: str
    after: tuple[str, ...] = ()


STAGES: dict[str, ChainStage] = {
    "subtitle_area": ChainStage((), "find the subtitle band (OCR text detection)"),
    "keyframes": ChainStage(("subtitle_area",), "sample the band, keep frames where it changed"),
    "crop": ChainStage(("keyframes",), "crop keyframes to the text, static overlays masked"),
    "stitch": ChainStage(("crop",), "stack crops into batches so OCR runs once per batch"),
    "ocr": ChainStage(("stitch",), "read each batch with PP-OCR, map lines back to keyframes"),
    "postprocess": ChainStage(("ocr",), "merge readings into timed events; write SRT/JSON/TXT"),
    "transcribe": ChainStage((), "speech to SRT/VTT/JSON (the transcribe flow, as a sub-flow)"),
    "diarize": ChainStage(("transcribe",), "who spoke when: speaker labels on the transcript, RTTM"),
    "transcode": ChainStage((), "renditions and thumbnails (the transcode flow, as a sub-flow)"),
    "fuse": ChainStage(
        ("postprocess", "transcribe"),
        "subtitles and speech fused: one SRT/VTT/JSON, a disagreement table",
        after=("diarize",),
    ),
}
SUBFLOW_STEPS = ("transcribe", "diarize", "transcode")  # the flows (and label_speakers) check their input
# The seeds' default chain, in the seeds' order (keyframes first): the plan puts subtitle_area ahead of it.
SEED_CHAIN = ("keyframes", "subtitle_area", "crop", "stitch", "ocr", "postprocess")
# The UI and the server's parameter check offer the known names; plan_chain says what is wrong otherwise.
WorkflowChain = Annotated[
    tuple[str, ...], WithJsonSchema({"type": "array", "items": {"type": "string", "enum": list(STAGES)}})
]


def plan_chain(chain: Sequence[str]) -> list[str]:
    """The stages to run, in order: `chain` with missing prerequisites pulled in ahead of their users, and
    the windowed stages (keyframes, crop, stitch, ocr) together where keyframes stands: they run window by
    window, each window's images deleted after its last stage.

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
            for need in STAGES[name].needs + tuple(n for n in STAGES[name].after if n in chain):
                add(need)
            plan.append(name)

    for name in chain:
        add(name)
    windowed = [name for name in plan if name in WINDOW_STAGES]
    if not windowed:
        return plan
    at, others = plan.index(windowed[0]), [name for name in plan if name not in WINDOW_STAGES]
    return others[:at] + windowed + others[at:]


class StepLog:
    """Each step's outcome as it ends: the stage table, the manifest, the progress artifact, the failure."""

    def __init__(self, plan: list[str], info: MediaInfo, stages: Stages) -> None:
        self.plan, self.stages = plan, stages
        self.outcomes: list[StageOutcome] = []
        self.outputs: dict[str, Path] = {}
        self.failed: tuple[str, float, str] | None = None
        self._progress = create_progress_artifact(
            0.0, key=artifact_key("pipeline-progress", info.path), description=" → ".join(plan)
        )
        self._started, self._timings = 0.0, dict(stages.timings)

    @contextmanager
    def step(self, names: Sequence[str]) -> Iterator[None]:
        """Around the steps `names` run together: a failure is put on the one running (`Stages.started`)."""
        self._started, self._timings = time.perf_counter(), dict(self.stages.timings)
        try:
            yield
        except BaseException as exc:
            started = self.stages.started
            name = started if started is not None and started in names else names[0]
            self.failed = (name, self._seconds(name), f"{type(exc).__name__}: {exc}")
            raise

    def done(self, name: str, summary: str, outputs: dict[str, Path] | None = None) -> None:
        outcome = StageOutcome(name, self._seconds(name), summary, dict(outputs or {}))
        self.outcomes.append(outcome)
        self.outputs.update(outcome.outputs)
        update_progress_artifact(
            self._progress, 100.0 * len(self.outcomes) / len(self.plan), description=f"{name} done"
        )

    def _seconds(self, name: str) -> float:
        """A windowed step's share of the windows' time (its task runs); any other step's wall time."""
        if name in WINDOW_STAGES:
            return round(self.stages.timings.get(name, 0.0) - self._timings.get(name, 0.0), 3)
        return round(time.perf_counter() - self._started, 3)


def _made(value: T | None, step: str) -> T:
    """What an earlier step made (plan_chain puts prerequisites first, so it is there)."""
    if value is None:
        raise ConfigError(f"{step} ran before its prerequisite")
    return value


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
    settings = load_block(SubtitleConfig, settings_block)  # a wrong block name fails before the decode check
    # a corrupt middle loses lines: the keyframes decode dates the pictures' errors window by window; the
    # steps run as sub-flows check the input themselves (input_damage joins what each saw)
    pictures: DecodeDamage | None = None
    window_damage: list[DecodeDamage] = []
    audio = both = None
    if "keyframes" not in plan and any(name not in SUBFLOW_STEPS for name in plan):
        pictures = stages.run(decode_check_task, info, "video")  # the band's samples are not dated
        report_damage(pictures, "pipeline")
    run_dir = run_output_dir(output_dir, "pipeline", info.path)
    work = open_work_dir(run_dir / ".work")  # a crashed run's .work (and its token) lets a re-run resume
    windowed = [name for name in plan if name in WINDOW_STAGES]
    log = StepLog(plan, info, stages)
    band: Band | None = None
    texts: list[FrameText] | None = None
    events: list[SubtitleEvent] = []
    speech: TranscriptResult | None = None
    stopped: BaseException | None = None
    try:
        for name in plan:
            if name in windowed[1:]:
                continue  # ran with keyframes, window by window
            with log.step(windowed if name == "keyframes" else [name]):
                if name == "subtitle_area":
                    band = find_band(info, settings, stages)
                    log.done(name, describe_band(band, info))
                elif name == "keyframes":
                    reading = read_band_texts(
                        info, _made(band, name), settings, stages, work, windowed[-1], keep_intermediates,
                        window_damage=window_damage,
                    )  # fmt: skip
                    pictures = pictures_damage(info, window_damage, stages)
                    report_damage(pictures, "pipeline")
                    texts = reading.texts
                    for step in windowed:
                        log.done(step, reading.summary(step))
                elif name == "postprocess":
                    by_position = _made(band, name).source == WHOLE_FRAME  # lines all over the frame
                    events = stages.run(
                        postprocess_task, _made(texts, name), spaced_for(reading, settings), by_position
                    )
                    log.done(name, *_subtitle_files(events, _made(band, name), info, run_dir, settings))
                elif name == "transcribe":
                    speech = _transcribe(info, output_dir)
                    audio = speech.damage
                    log.done(name, *_heard(speech))
                elif name == "diarize":
                    speech = _diarize(_made(speech, name), output_dir)
                    log.done(name, *_speakers(speech))
                elif name == "fuse":
                    log.done(name, *_fused(run_dir, info, events, _made(speech, name), stages))
                else:
                    rendered = _transcode(info, output_dir)
                    both = rendered.damage
                    log.done(name, *_renditions(rendered))
    except Exception as exc:
        stopped = exc
        if pictures is None and window_damage:  # a failed run is explained by what was decoded
            pictures = combined_damage(info.path, window_damage)
            with contextlib.suppress(Exception):
                report_damage(pictures, "pipeline")
        damage = input_damage(info.path, pictures, audio, both)
        if not log.outputs:  # nothing published: no empty run folder left, the error as it is
            discard_if_empty(run_dir, output_dir)
            raise
        manifest = write_manifest(
            run_dir, flow="pipeline", input_path=info.path, outputs=log.outputs,
            extra={"workflow_chain": list(workflow_chain), "plan": plan, "stages": log.outcomes,
                   "failed": log.failed, "decode_errors": damage, "stage_seconds": stages.timings},
        )  # fmt: skip
        step = log.failed[0] if log.failed else "a stage"
        kept = f"{len(log.outputs)} outputs kept, listed in {manifest}"
        raise PartlyDone("pipeline", info.path, f"{step} failed ({exc}); {kept}") from exc
    except BaseException as exc:  # Ctrl-C, SIGTERM
        stopped = exc
        raise
    finally:
        _report(info, plan, log.outcomes, log.failed)
        if not keep_intermediates:  # kept when the user stopped the run: the re-run resumes from it
            close_work_dir(work, stopped)
    damage = input_damage(info.path, pictures, audio, both)
    manifest = write_manifest(
        run_dir,
        flow="pipeline",
        input_path=info.path,
        outputs=log.outputs,
        extra={
            "workflow_chain": list(workflow_chain),
            "plan": plan,
            "stages": log.outcomes,
            "events": len(events),
            "decode_errors": damage,
            "stage_seconds": stages.timings,
        },
    )
    return PipelineResult(
        info.path, tuple(workflow_chain), tuple(plan), run_dir, tuple(log.outcomes), tuple(events), manifest,
        damage if damage is not None and damage.damaged else None,
    )  # fmt: skip


def _subtitle_files(
    events: list[SubtitleEvent], band: Band, info: MediaInfo, run_dir: Path, settings: SubtitleConfig
) -> tuple[str, dict[str, Path]]:
    files = write_subtitle_files(
        events, run_dir, safe_stem(info.path), video=info.path, band=band, sample_fps=settings.sample_fps
    )
    first = events[0].text.replace("\n", " / ") if events else "(none)"
    return f"{len(events)} subtitle events; first: {first}", {f"subtitles_{k}": p for k, p in files.items()}


def _transcribe(info: MediaInfo, output_dir: str) -> TranscriptResult:
    from flows.transcribe import transcribe

    return transcribe(str(info.path), output_dir)


def _heard(result: TranscriptResult) -> tuple[str, dict[str, Path]]:
    heard = result.transcript
    language = f"language {heard.language}" if heard.language else "no speech detected"
    outputs = {"speech_srt": result.srt_path, "speech_vtt": result.vtt_path, "speech_json": result.json_path}
    return f"{len(heard.segments)} speech segments, {language}", outputs


def _diarize(speech: TranscriptResult, output_dir: str) -> TranscriptResult:
    from flows.transcribe import label_speakers

    return label_speakers(speech, output_dir)


def _speakers(result: TranscriptResult) -> tuple[str, dict[str, Path]]:
    turns = result.diarization
    summary = f"{len(turns.speakers)} speakers, {len(turns.turns)} turns" if turns else "no speakers"
    files = {"speech_srt": result.srt_path, "speech_rttm": result.rttm_path}
    return summary, {kind: path for kind, path in files.items() if path is not None}


def _fused(
    run_dir: Path, info: MediaInfo, events: list[SubtitleEvent], speech: TranscriptResult, stages: Stages
) -> tuple[str, dict[str, Path]]:
    from flows.fuse import fuse_into

    fused, files = fuse_into(run_dir, info, events, speech, stages)
    summary = f"{len(fused.lines)} fused lines, {len(fused.disagreements)} where subtitles and speech differ"
    return summary, {f"fused_{kind}": path for kind, path in files.items()}


def _transcode(info: MediaInfo, output_dir: str) -> TranscodeResult:
    from flows.transcode import transcode

    return transcode(str(info.path), output_dir=output_dir)


def _renditions(result: TranscodeResult) -> tuple[str, dict[str, Path]]:
    outputs = {f"rendition_{r.preset}": r.path for r in result.renditions}
    return f"{len(result.renditions)} renditions: " + ", ".join(
        f"{r.preset} {r.width}x{r.height}" for r in result.renditions
    ), outputs


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
    parser = CliParser(description="Run an ordered chain of stages on one video.", epilog=EPILOG)
    parser.add_argument("video", nargs="?")
    parser.add_argument("--chain", nargs="+", default=list(SEED_CHAIN), metavar="STAGE")
    parser.add_argument("--output-dir", default="output")
    parser.add_argument("--keep-intermediates", action="store_true")
    parser.add_argument("--list", action="store_true", help="list the known stages and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, stage in STAGES.items():
            needs = f" (needs {', '.join(stage.needs)})" if stage.needs else ""
            print(f"{name:14} {stage.about}{needs}")
        return 0
    if not args.video:
        parser.error("give a VIDEO (or --list)")
    try:
        plan_chain(args.chain)
    except ConfigError as exc:
        parser.error(str(exc))
    preflight_output_dir(args.output_dir)
    preflight_media(args.video, "video")
    api_ready()
    result = run_pipeline(args.video, tuple(args.chain), args.output_dir, None, args.keep_intermediates)
    for outcome in result.stages:
        print(f"{outcome.stage:14} {outcome.seconds:7.2f} s  {outcome.summary}")
    for path in sorted({p for o in result.stages for p in o.outputs.values()}):
        print(path)
    print(result.manifest_path)
    return exit_status(result.damage)  # 1 (partly done) with a warning when the video was damaged


if __name__ == "__main__":
    sys.exit(run_cli(main))
