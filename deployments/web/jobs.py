"""Jobs: what each upload asks for, the flow runs that do it, and what the page shows of them.

A job is one flow run of a deployment, started with `run_deployment` (parameters, a name after its input,
tags). Enhance jobs group the photos of one start that share engine and scale into one batch run, as the
photo service did (one ZIP); every other job is one run per file. The page reads everything back from the
Prefect API (state, progress artifacts) and from the job's own output folder.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from core.outputs import safe_stem
from runtime.naming import input_label

WEB_TAG = "yivideo-web"
DEPLOYMENTS = {
    "subtitles": "extract-subtitles/subtitles",
    "transcode": "transcode/transcode",
    "transcribe": "transcribe/transcribe",
    "enhance": "enhance-images/enhance",
}
TAKES = {
    "subtitles": {"video"},
    "transcode": {"video"},
    "transcribe": {"video", "audio"},
    "enhance": {"image"},
}
AUTOMATIC = {"video": ["subtitles", "transcode"], "audio": ["transcribe"], "image": ["enhance"]}
JOB_OF_FLOW = {deployment.split("/")[0]: job for job, deployment in DEPLOYMENTS.items()}
HIDDEN_OUTPUTS = {"manifest.json"}
SRT_PREVIEW_BYTES = 64 * 1024
PREVIEWABLE = {".jpg", ".jpeg", ".png", ".webp"}

JobName = Literal["automatic", "subtitles", "transcode", "transcribe", "enhance"]


class JobChoice(BaseModel):
    """What one uploaded file is for, as the page sends it."""

    upload: str = Field(description="the upload's id, as the upload answer gave it")
    job: JobName = "automatic"
    engine: Literal["realesrgan-ncnn", "opencv-classic", "gfpgan"] | None = None
    scale: float | None = Field(None, ge=1, le=4)
    presets: list[str] = Field(default_factory=list)


@dataclass
class PlannedRun:
    """One flow run to start: the deployment, its parameters, its name and the uploads it reads."""

    job: str
    deployment: str
    parameters: dict[str, Any]
    name: str
    inputs: list[Path]
    key: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


class JobError(ValueError):
    """A choice that cannot run (a photo sent to transcode, an unknown preset): said before any run starts."""


def plan_runs(
    choices: list[tuple[JobChoice, Path, str]], outputs_root: Path, known_presets: set[str]
) -> list[PlannedRun]:
    """The runs for (choice, saved upload, probed kind) triples; enhance photos batched by their settings."""
    runs: list[PlannedRun] = []
    batches: dict[tuple[str | None, float | None], list[Path]] = {}
    for choice, path, kind in choices:
        jobs = AUTOMATIC[kind] if choice.job == "automatic" else [choice.job]
        for job in jobs:
            if kind not in TAKES[job]:
                wanted = " or ".join(sorted(TAKES[job]))
                article = "an" if kind[0] in "aeiou" else "a"
                raise JobError(f"{path.name} is {article} {kind}: {job} takes {wanted}")
            if job == "enhance":
                batches.setdefault((choice.engine, choice.scale), []).append(path)
                continue
            params: dict[str, Any] = {"media" if job == "transcribe" else "video": str(path)}
            if job == "transcode" and choice.presets:
                unknown = sorted(set(choice.presets) - known_presets)
                if unknown:
                    known = ", ".join(sorted(known_presets))
                    raise JobError(f"unknown preset(s) {', '.join(unknown)}; known: {known}")
                params["presets"] = list(dict.fromkeys(choice.presets))
            runs.append(_planned(job, params, [path], outputs_root))
    for (engine, scale), paths in batches.items():
        params = {"images": [str(p) for p in paths]}
        params.update({k: v for k, v in (("engine", engine), ("scale", scale)) if v is not None})
        runs.append(_planned("enhance", params, paths, outputs_root))
    return runs


def _planned(job: str, params: dict[str, Any], inputs: list[Path], outputs_root: Path) -> PlannedRun:
    run = PlannedRun(job, DEPLOYMENTS[job], params, input_label(job, [p.name for p in inputs]), inputs)
    run.parameters["output_dir"] = str(outputs_root / run.key)
    return run


async def start_runs(runs: list[PlannedRun], batch: str) -> list[str]:
    """Create one flow run per planned run through its deployment; returns the flow run ids."""
    from prefect.deployments import run_deployment

    ids = []
    for run in runs:
        flow_run = await run_deployment(
            run.deployment,
            parameters=run.parameters,
            flow_run_name=run.name,
            timeout=0,
            tags=[WEB_TAG, f"web-batch:{batch}", run.job],
            as_subflow=False,
        )
        ids.append(str(flow_run.id))
    return ids


_PATH = re.compile(r"'(/[^']+)'")
_EXC_PREFIX = re.compile(r"^(Flow run encountered an exception(\. )?:?\s*)?(\w+(Error|Exception)):\s*")


def plain_error(message: str | None) -> str:
    """Prefect's failure message without its wrapper, class name and folders: what happened, to what."""
    if not message:
        return ""
    text = _EXC_PREFIX.sub("", message.strip())
    return _PATH.sub(lambda m: Path(m.group(1)).name, text)


async def progress_of(client, run_ids: list[uuid.UUID]) -> tuple[float | None, str]:
    """Mean of the runs' progress artifacts (child runs included) and the latest one's description."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterType,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    children = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=run_ids))
    )
    artifacts = await client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=run_ids + [c.id for c in children]),
            type=ArtifactFilterType(any_=["progress"]),
        ),
        sort=ArtifactSort.UPDATED_DESC,
        limit=50,
    )
    values = [float(a.data) for a in artifacts if isinstance(a.data, int | float)]
    if not values:
        return None, ""
    return sum(values) / len(values), artifacts[0].description or ""


def job_outputs(run_dir: Path, root: Path, url_prefix: str) -> list[dict[str, Any]]:
    """Every published output under the job's folder (no temp files, no work folders), for download."""
    if not run_dir.is_dir():
        return []
    files = []
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if not path.is_file() or any(p.startswith(".") for p in rel.parts) or path.name in HIDDEN_OUTPUTS:
            continue
        files.append(
            {"name": path.name, "url": f"{url_prefix}/{path.relative_to(root).as_posix()}",
             "bytes": path.stat().st_size, "path": path}  # fmt: skip
        )
    return files


def describe_run(flow_run, outputs_root: Path, uploads_root: Path, ui_url: str) -> dict[str, Any]:
    """What the page shows of one run: state, error in plain words, inputs, outputs, ZIP, SRT, previews."""
    params = flow_run.parameters or {}
    job = next((t for t in flow_run.tags if t in DEPLOYMENTS), "")
    given = params.get("images") or [params.get("video") or params.get("media") or ""]
    inputs = [Path(p) for p in given if p]
    run_dir = Path(params.get("output_dir", ""))
    outputs = job_outputs(run_dir, outputs_root, "/files/outputs") if _inside(run_dir, outputs_root) else []
    state = flow_run.state
    final = bool(state and state.is_final())
    message = plain_error(state.message) if state and (state.is_failed() or state.is_crashed()) else ""
    view: dict[str, Any] = {
        "id": str(flow_run.id),
        "name": flow_run.name,
        "job": job,
        "state": state.type.value if state else "PENDING",
        "state_name": state.name if state else "Pending",
        "final": final,
        "error": message,
        "ui_url": f"{ui_url}/runs/flow-run/{flow_run.id}",
        "created": flow_run.created.isoformat() if flow_run.created else None,
        "inputs": [_input_view(p, uploads_root, outputs, message, final) for p in inputs],
        "outputs": [{k: v for k, v in o.items() if k != "path"} for o in outputs],
        "zip": next((o["url"] for o in outputs if o["name"].endswith(".zip")), None),
        "srt": _srt_text(outputs),
    }
    return view


def _input_view(
    path: Path, uploads_root: Path, outputs: list[dict[str, Any]], message: str, final: bool
) -> dict[str, Any]:
    """One input of a run: its own outcome (a photo of a batch can fail alone) and before/after URLs."""
    stem = safe_stem(path)
    own = re.compile(rf"{re.escape(stem)}(-\d+)?(\..+)?")  # photo.jpg; clip.mp4_smooth.mp4; clip.srt
    made = [o for o in outputs if own.fullmatch(Path(o["name"]).stem)]
    before = None
    if _inside(path, uploads_root):
        before = f"/files/uploads/{path.relative_to(uploads_root).as_posix()}"
    parts = re.split(r"; (?:failed: )?", message)
    reason = next((p.split(": ", 1)[1] for p in parts if p.startswith(f"{path.name}: ")), "")
    status = "done" if made and final and not reason else ("failed" if final and (reason or not made) else "")
    image = next((o["url"] for o in made if Path(o["name"]).suffix.lower() in PREVIEWABLE), None)
    return {"name": path.name, "url": before, "status": status, "reason": reason, "after": image}


def _srt_text(outputs: list[dict[str, Any]]) -> str | None:
    srt = next((o["path"] for o in outputs if o["name"].endswith(".srt")), None)
    if srt is None:
        return None
    with open(srt, encoding="utf-8", errors="replace") as f:
        return f.read(SRT_PREVIEW_BYTES)


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, ValueError):
        return False
