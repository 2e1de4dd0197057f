"""What the page shows of a run, read back from the Prefect API and from the run's own output folder.

State and the error in plain words, the inputs (each with its own outcome), the outputs under names that
say what they are (`astronaut.x2.png`, `clip.standard.mp4`; the files on disk keep the flows' names), the
progress line of every stage (each rendition has its own), the SRT inline, who started it, from where.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from core.outputs import safe_stem
from deployments.web.jobs import DEPLOYMENTS, JOB_TAG, PAGE_TAG, USER_TAG

HIDDEN_OUTPUTS = {"manifest.json"}
SRT_PREVIEW_BYTES = 64 * 1024
PREVIEWABLE = {".jpg", ".jpeg", ".png", ".webp"}
_PATH = re.compile(r"'(/[^']+)'")
_EXC_PREFIX = re.compile(r"^(Flow run encountered an exception(\. )?:?\s*)?(\w+(Error|Exception)):\s*")


def plain_error(message: str | None) -> str:
    """Prefect's failure message without its wrapper, class name and folders: what happened, to what."""
    if not message:
        return ""
    text = _EXC_PREFIX.sub("", message.strip())
    return _PATH.sub(lambda m: Path(m.group(1)).name, text)


async def progress_of(client, run_ids: list[uuid.UUID]) -> tuple[float | None, list[str]]:
    """Mean of the runs' progress artifacts (child runs included) and each one's line, oldest first."""
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
        sort=ArtifactSort.CREATED_DESC,
        limit=50,
    )
    values = [float(a.data) for a in artifacts if isinstance(a.data, int | float)]
    if not values:
        return None, []
    lines = [a.description for a in reversed(artifacts) if a.description]
    return sum(values) / len(values), lines


class SettledProgress:
    """A final run's progress and lines, read from Prefect once per state, then kept.

    The page polls every second while one of its runs is busy (every 5 s otherwise), and each poll read
    every listed run's child runs and progress artifacts again: two API calls a run, ~0.3 CPU s of the
    Prefect server a poll for ten finished runs (measured; the list itself: 0.02). A final state does not
    change its artifacts; a crashed run that is re-run gets a new state, so it is read again."""

    KEPT = 4096  # runs' readings held (a poll lists at most 100); the oldest go first

    def __init__(self) -> None:
        self._kept: dict[tuple[uuid.UUID, uuid.UUID | None], tuple[float | None, list[str]]] = {}

    async def read(self, client, flow_run, final: bool) -> tuple[float | None, list[str]]:
        key = (flow_run.id, flow_run.state.id if flow_run.state else None)
        found = self._kept.get(key)
        if found is None:
            found = await progress_of(client, [flow_run.id])
            if final:
                self._kept[key] = found
                while len(self._kept) > self.KEPT:
                    del self._kept[next(iter(self._kept))]
        return found[0], list(found[1])


FUSE_PARTS = {"subtitles": "subtitles", "transcribe": "speech"}  # a fuse run's sub-flow folder -> its mark


def display_name(name: str, job: str, params: dict[str, Any], folder: str = "") -> str:
    """A download's name: the result marked (`photo.x2.png`), no double extension (`clip.smooth.mp4`);
    a fuse run's two sources apart from its fused files (`clip.subtitles.srt`, `clip.speech.srt`)."""
    path = Path(name)
    if job == "fuse" and folder in FUSE_PARTS:
        return f"{path.stem}.{FUSE_PARTS[folder]}{path.suffix}"
    if job == "enhance" and path.suffix.lower() in PREVIEWABLE:
        scale = float(params.get("scale") or 2.0)
        return f"{path.stem}.x{scale:g}{path.suffix}"
    if job == "transcode":
        stem, _, preset = path.stem.rpartition(".")
        ext = path.suffix.lstrip(".")
        if stem and preset.startswith(f"{ext}_"):
            return f"{stem}.{preset[len(ext) + 1 :]}{path.suffix}"
    return name


def job_outputs(run_dir: Path, root: Path, url_prefix: str, job: str, params: dict[str, Any]) -> list[dict]:
    """Every published, non-empty output under the job's folder (no temp files, no work folders)."""
    if not run_dir.is_dir():
        return []
    files = []
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if not path.is_file() or any(p.startswith(".") for p in rel.parts) or path.name in HIDDEN_OUTPUTS:
            continue
        size = path.stat().st_size
        if size == 0:  # a video without subtitles writes empty .srt/.txt: nothing to download
            continue
        shown = display_name(path.name, job, params, rel.parts[0] if len(rel.parts) > 1 else "")
        url = f"{url_prefix}/{path.relative_to(root).as_posix()}"
        if shown != path.name:
            url += f"?as={quote(shown)}"
        files.append({"name": shown, "file": path.name, "url": url, "bytes": size, "path": path})
    return files


def describe_run(flow_run, outputs_root: Path, uploads_root: Path, ui_url: str | None) -> dict[str, Any]:
    """What the page shows of one run: state, error in plain words, inputs, outputs, ZIP, SRT, previews."""
    params = flow_run.parameters or {}
    job = next((t.removeprefix(JOB_TAG) for t in flow_run.tags if t.startswith(JOB_TAG)), "")
    job = job or next((t for t in flow_run.tags if t in DEPLOYMENTS), "")  # runs started before JOB_TAG
    given = params.get("images") or [params.get("video") or params.get("media") or ""]
    inputs = [Path(p) for p in given if p]
    run_dir = Path(params.get("output_dir", ""))
    served = _inside(run_dir, outputs_root)
    outputs = job_outputs(run_dir, outputs_root, "/files/outputs", job, params) if served else []
    state = flow_run.state
    final = bool(state and state.is_final())
    message = plain_error(state.message) if state and (state.is_failed() or state.is_crashed()) else ""
    return {
        "id": str(flow_run.id),
        "name": flow_run.name,
        "job": job,
        "group": " + ".join(p.name for p in inputs),
        "user": next((t.removeprefix(USER_TAG) for t in flow_run.tags if t.startswith(USER_TAG)), ""),
        "page": next((t.removeprefix(PAGE_TAG) for t in flow_run.tags if t.startswith(PAGE_TAG)), ""),
        "served": served,
        "settings": _settings(job, params),
        "state": state.type.value if state else "PENDING",
        "state_name": state.name if state else "Pending",
        "final": final,
        "error": message,
        "ui_url": f"{ui_url}/runs/flow-run/{flow_run.id}" if ui_url else None,
        "created": flow_run.created.isoformat() if flow_run.created else None,
        "inputs": [_input_view(p, uploads_root, outputs, message, final, served) for p in inputs],
        "outputs": [{k: v for k, v in o.items() if k != "path"} for o in outputs],
        "zip": next((o["url"] for o in outputs if o["name"].endswith(".zip")), None),
        "srt": _srt_text(outputs),
    }


def _settings(job: str, params: dict[str, Any]) -> str:
    """The choices the run was started with, in a few words (two enhance runs of one photo differ here)."""
    if job == "enhance":
        return f"{params.get('engine') or 'default engine'}, x{float(params.get('scale') or 2.0):g}"
    if job == "transcode":
        return ", ".join(params.get("presets") or ["default renditions"])
    if job == "fuse":
        speech = f"speech {params.get('language') or 'detected'}"
        labels = "speaker labels" if params.get("diarize") else ""
        return ", ".join(x for x in (f"text {params.get('lang') or 'as set'}", speech, labels) if x)
    if job == "subtitles":
        return f"text {params['lang']}" if params.get("lang") else ""
    if job == "transcribe":
        language = params.get("language") or "language detected"
        speakers = params.get("speakers")
        labels = f"{speakers} speakers" if speakers else ("speakers counted" if params.get("diarize") else "")
        return ", ".join(x for x in (language, labels) if x)
    return ""


def _input_view(
    path: Path, uploads_root: Path, outputs: list[dict[str, Any]], message: str, final: bool, served: bool
) -> dict[str, Any]:
    """One input of a run: its own outcome (a photo of a batch can fail alone) and before/after URLs."""
    stem = safe_stem(path)
    own = re.compile(rf"{re.escape(stem)}(-\d+)?(\..+)?")  # photo.jpg; clip.mp4_smooth.mp4; clip.srt
    made = [o for o in outputs if own.fullmatch(Path(o["file"]).stem)]
    before = None
    if _inside(path, uploads_root):
        before = f"/files/uploads/{path.relative_to(uploads_root).as_posix()}"
    parts = re.split(r"; (?:failed: )?", message)
    reason = next((p.split(": ", 1)[1] for p in parts if p.startswith(f"{path.name}: ")), "")
    status = "done" if made and final and not reason else ("failed" if final and (reason or not made) else "")
    if not served:  # another page's run: its files are not under this page's folders
        status, reason = ("elsewhere", "its files are kept by the page that started it")
    image = next((o["url"] for o in made if Path(o["file"]).suffix.lower() in PREVIEWABLE), None)
    return {"name": path.name, "url": before, "status": status, "reason": reason, "after": image}


def _srt_text(outputs: list[dict[str, Any]]) -> str | None:
    """The SRT shown inline: a fuse run's fused one, else the run's only one."""
    srts = [o["path"] for o in outputs if o["file"].endswith(".srt")]
    srt = next((p for p in srts if p.name.endswith(".fused.srt")), srts[0] if srts else None)
    if srt is None:
        return None
    with open(srt, encoding="utf-8", errors="replace") as f:
        return f.read(SRT_PREVIEW_BYTES)


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, ValueError):
        return False
