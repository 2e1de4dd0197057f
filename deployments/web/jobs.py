"""Jobs: what each upload asks for, and the flow runs that do it, tagged with who started them and where.

A job is one flow run of a deployment, started with `run_deployment` (parameters, a name after its input,
tags). A file may ask for several jobs (subtitles, renditions, a transcript, subtitles and speech fused,
of one video; a photo enhanced with two settings): each is its own run on the one upload. Enhance jobs
group the photos of one start that share engine and scale into one batch run, as the photo service did
(one ZIP). Rows are checked one at a time (`choices.check_choice`): a refused row starts nothing, the
others start.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployments.web.choices import JobChoice, JobRefused, Refusal, check_choice
from runtime.naming import input_label

WEB_TAG = "yivideo-web"
PAGE_TAG = "web-page:"
USER_TAG = "web-user:"
JOB_TAG = "web-job:"  # the job a run does: its deployment's own tags may name other jobs (fuse: subtitles)
DEPLOYMENTS = {
    "subtitles": "extract-subtitles/subtitles",
    "transcode": "transcode/transcode",
    "transcribe": "transcribe/transcribe",
    "fuse": "fuse-subtitles/fuse",
    "enhance": "enhance-images/enhance",
}
_USER = re.compile(r"[^a-z0-9._-]+")


@dataclass
class PlannedRun:
    """One flow run to start: the deployment, its parameters, its name and the uploads it reads."""

    job: str
    deployment: str
    parameters: dict[str, Any]
    name: str
    inputs: list[Path]
    key: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


def user_slug(name: str | None) -> str:
    """A user name as a tag can carry it (lowercase letters, digits, . _ -), at most 32 characters."""
    return _USER.sub("-", (name or "").strip().lower()).strip("-")[:32]


def page_id(data_dir: Path, given: str | None = None) -> str:
    """This page's name on the Prefect server: given, else a hash of its host and data folder."""
    import socket

    return user_slug(given) or hashlib.sha1(f"{socket.gethostname()}:{data_dir}".encode()).hexdigest()[:8]


def plan_runs(
    rows: list[list[tuple[JobChoice, Path, str]]], outputs_root: Path, known_presets: set[str]
) -> tuple[list[PlannedRun], list[Refusal]]:
    """The runs for rows of (choice, saved upload, probed kind); a row with a bad choice is refused whole."""
    runs: list[PlannedRun] = []
    refused: list[Refusal] = []
    batches: dict[tuple[str | None, float | None], list[Path]] = {}
    for index, row in enumerate(rows):
        try:
            wanted = [(job, choice, path) for choice, path, kind in row
                      for job in check_choice(choice, path.name, kind, known_presets)]  # fmt: skip
        except JobRefused as exc:
            refused.append(Refusal(index, row[0][1].name if row else "", str(exc)))
            continue
        seen: set[tuple[str, str]] = set()
        for job, choice, path in wanted:
            if job == "enhance":
                paths = batches.setdefault((choice.engine, choice.scale), [])
                if path not in paths:
                    paths.append(path)
                continue
            params = _parameters(job, choice, path)
            if (job, repr(params)) not in seen:  # the same job twice on one file runs once
                seen.add((job, repr(params)))
                runs.append(_planned(job, params, [path], outputs_root))
    for (engine, scale), paths in batches.items():
        params = {"images": [str(p) for p in paths]}
        params.update({k: v for k, v in (("engine", engine), ("scale", scale)) if v is not None})
        runs.append(_planned("enhance", params, paths, outputs_root))
    return runs, refused


def _parameters(job: str, choice: JobChoice, path: Path) -> dict[str, Any]:
    params: dict[str, Any] = {"media" if job == "transcribe" else "video": str(path)}
    if job == "transcode" and choice.presets:
        params["presets"] = list(dict.fromkeys(choice.presets))
    if job in ("subtitles", "fuse") and choice.subtitle_lang:
        params["lang"] = choice.subtitle_lang  # chosen on the page (auto too); none: the settings block's
    if job in ("transcribe", "fuse"):
        if choice.language:
            params["language"] = choice.language
        if choice.diarize or choice.speakers:
            params["diarize"] = True
    if job == "transcribe" and choice.speakers:
        params["speakers"] = choice.speakers
    return params


def _planned(job: str, params: dict[str, Any], inputs: list[Path], outputs_root: Path) -> PlannedRun:
    run = PlannedRun(job, DEPLOYMENTS[job], params, input_label(job, [p.name for p in inputs]), inputs)
    run.parameters["output_dir"] = str(outputs_root / run.key)
    return run


async def start_runs(runs: list[PlannedRun], tags: list[str]) -> list[str]:
    """Create one flow run per planned run through its deployment; returns the flow run ids."""
    from prefect.deployments import run_deployment

    ids = []
    for run in runs:
        flow_run = await run_deployment(
            run.deployment,
            parameters=run.parameters,
            flow_run_name=run.name,
            timeout=0,
            tags=[WEB_TAG, *tags, run.job, f"{JOB_TAG}{run.job}"],
            as_subflow=False,
        )
        ids.append(str(flow_run.id))
    return ids
