"""Resume instead of redo: one cache-key policy for every stage whose result can be reused.

A re-run or a retry of a flow on the same input with the same settings gets a finished stage's result
back from Prefect's result storage instead of running it again, so a crash near the end of a two-hour
video costs the last stage, not two hours. The key of a stage run is a hash of:
  - its inputs: files by their content (sha256, memoised by path, size and mtime), dataclasses and
    pydantic settings by their fields; files and folders inside a flow's work folder by the token written
    when the folder was made and their place in it (a stage may delete what an earlier one wrote), so a
    crashed run's re-run matches its finished stages, and a work folder made anew never matches results
    that point into the old one;
  - the code version: this package's version and the source of core/, gpu/ and stages/.
Results are stored where Prefect stores results (PREFECT_LOCAL_STORAGE_PATH, default $PREFECT_HOME/storage;
point it, or PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK, at shared storage when workers run on several hosts).
YIVIDEO_STAGE_CACHE=0 turns reuse off. Stages use it as `@task(..., **resumable())`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect.cache_policies import NONE, CachePolicy

CACHE_ENV = "YIVIDEO_STAGE_CACHE"
WORK_TOKEN = ".resume-token"
EXPIRATION = timedelta(days=7)


@functools.lru_cache(maxsize=4096)
def _content_hash(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def content_hash(path: str | Path) -> str:
    """sha256 of a file's bytes, computed once per (path, size, mtime) in this process."""
    st = os.stat(path)
    return _content_hash(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def open_work_dir(work: Path) -> Path:
    """A flow's scratch folder, with the token that ties cached results to these very files."""
    work.mkdir(parents=True, exist_ok=True)
    token = work / WORK_TOKEN
    if not token.exists():
        token.write_text(uuid.uuid4().hex, encoding="utf-8")
    return work


def fingerprint(value: Any) -> Any:
    """A JSON-able stand-in for a stage input: equal for equal content, whatever the process."""
    if isinstance(value, Path | str) and _is_path_like(value):
        p = Path(value)
        work = _work_root(p)
        if work is not None:  # scratch files: who made them (the token) and where, not their bytes, which a
            root, token = work  # later stage or window may already have deleted (the flow moves on)
            return {"work": token, "path": str(p.resolve().relative_to(root))}
        if p.is_file():
            return {"file": content_hash(p)}
        return {"missing": str(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: fingerprint(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {type(value).__name__: fields}
    if hasattr(value, "model_dump"):  # pydantic settings and blocks
        return {type(value).__name__: fingerprint(value.model_dump())}
    if isinstance(value, dict):
        return {str(k): fingerprint(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple | set | frozenset):
        items = [fingerprint(v) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, set | frozenset) else items
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, bool | int | float):
        return value
    return repr(value)


def _work_root(path: Path) -> tuple[Path, str] | None:
    """The work folder (made by open_work_dir) holding `path`, and its token; None outside any."""
    resolved = path.resolve()
    for folder in (resolved, *resolved.parents):
        token = folder / WORK_TOKEN
        if token.is_file():
            return folder, token.read_text(encoding="utf-8")
    return None


def _is_path_like(value: Path | str) -> bool:
    return isinstance(value, Path) or (os.sep in value and len(value) < 4096 and "\n" not in value)


CODE_PACKAGES = ("core", "gpu", "stages")  # everything a stage's result can depend on


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """This package's version and the source of every module below runtime/: changed code (a stage, the
    schema, a helper) never reuses a result computed by the old code."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        h = hashlib.sha256(version("yivideo-flows").encode())
    except PackageNotFoundError:
        h = hashlib.sha256(b"0")
    root = Path(__file__).resolve().parents[1]
    for package in CODE_PACKAGES:
        for source in sorted((root / package).rglob("*.py")):
            h.update(str(source.relative_to(root)).encode() + b"\0" + source.read_bytes())
    return h.hexdigest()[:16]


@dataclasses.dataclass
class StageInputs(CachePolicy):
    """Prefect cache policy: stage name + code version + content fingerprint of every input."""

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs):
        if os.environ.get(CACHE_ENV, "1") == "0":
            return None
        fn = task_ctx.task.fn
        payload = {
            "stage": f"{task_ctx.task.name}:{fn.__module__}.{fn.__qualname__}",
            "code": code_version(),
            "inputs": fingerprint(inputs),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def resumable() -> dict[str, Any]:
    """The @task options of a reusable stage: the policy above, results persisted, a week's expiry."""
    if os.environ.get(CACHE_ENV, "1") == "0":
        return {"cache_policy": NONE}
    return {"cache_policy": StageInputs(), "persist_result": True, "cache_expiration": EXPIRATION}
