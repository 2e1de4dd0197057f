"""Resume instead of redo: one cache-key policy for every stage whose result can be reused.

A re-run or a retry of a flow on the same input with the same settings gets a finished stage's result
back from Prefect's result storage instead of running it again, so a crash near the end of a two-hour
video costs the last stage, not two hours. The key of a stage run is a hash of:
  - its inputs: files by their content (sha256, memoised by path, size and mtime), dataclasses and
    pydantic settings by their fields; files and folders inside a flow's work folder by the token written
    when the folder was made and their place in it (a stage may delete what an earlier one wrote), so a
    crashed run's re-run matches its finished stages, and a work folder made anew never matches results
    that point into the old one;
  - the code version: this package's version and the source of the modules the stage runs.
A stored result is never trusted over missing files: one whose files (every Path in it) are gone is
passed over and the stage runs again (its new result stored under the next key of a chain), unless the
flow consumed those files on purpose (`consume`: a finished window's folder), since nothing reads them again.
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
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect.cache_policies import NONE, CachePolicy

from core.digests import STORED_FROM, store_digest, stored_digest

CACHE_ENV = "YIVIDEO_STAGE_CACHE"
WORK_TOKEN = ".resume-token"
CONSUMED = ".consumed"  # in a work folder: the sub-folders a flow finished with and deleted, one a line
MAX_REDOS = 16  # stale results passed over per key before a stage stops being cached
EXPIRATION = timedelta(days=7)


@functools.lru_cache(maxsize=4096)
def _content_hash(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    version = f"{path}\0{size}\0{mtime_ns}\0{ctime_ns}\0{inode}"
    stored = size >= STORED_FROM  # small files: hashing beats a store lookup
    if stored and (known := stored_digest(version)) is not None:
        return known
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    digest = h.hexdigest()
    if stored:
        store_digest(version, digest)
    return digest


def content_hash(path: str | Path) -> str:
    """sha256 of a file's bytes, computed once per file version (path, size, mtime, ctime, inode) on this
    host: in this process, and through the digest store (core/digests.py) in the next process too (a
    deployed run, a re-run, the inbox and the flow it starts), so a 2 GB film is read once, not per run."""
    st = os.stat(path)
    resolved = str(Path(path).resolve())
    return _content_hash(resolved, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def open_work_dir(work: Path) -> Path:
    """A flow's scratch folder, with the token that ties cached results to these very files."""
    work.mkdir(parents=True, exist_ok=True)
    token = work / WORK_TOKEN
    if not token.exists():
        token.write_text(uuid.uuid4().hex, encoding="utf-8")
    return work


def close_work_dir(work: Path, stopped_by: BaseException | None = None) -> None:
    """Remove a flow's scratch folder as its run ends, unless the user stopped the run (Ctrl-C, SIGTERM):
    then it stays, with its token, so the re-run into the same folder reuses the stages that finished
    (their results point into it), as it does after a kill -9. The finished re-run removes it."""
    import shutil

    from prefect.exceptions import TerminationSignal

    if not isinstance(stopped_by, KeyboardInterrupt | TerminationSignal):
        shutil.rmtree(work, ignore_errors=True)


def consume(folder: Path) -> None:
    """Delete a finished part of a work folder (a window's strips and crops) and note it, so the results
    pointing into it stay reusable: a re-run skips the part instead of redoing it for files nobody reads."""
    import shutil

    work = _work_root(folder)
    if work is not None:
        root, _ = work
        with open(root / CONSUMED, "a", encoding="utf-8") as f:
            f.write(str(folder.resolve().relative_to(root)) + "\n")
    shutil.rmtree(folder, ignore_errors=True)


def missing_files(value: Any) -> list[Path]:
    """The files a stage result points at (every Path in it) that are gone, apart from consumed ones."""
    gone = [p for p in dict.fromkeys(_paths(value)) if not p.exists()]
    consumed = {folder: _consumed(folder) for folder in {p.parent for p in gone}}
    return [p for p in gone if not consumed[p.parent]]


def _paths(value: Any) -> list[Path]:
    if isinstance(value, Path):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [p for f in dataclasses.fields(value) for p in _paths(getattr(value, f.name))]
    if isinstance(value, dict):
        return [p for v in value.values() for p in _paths(v)]
    if isinstance(value, list | tuple | set | frozenset):
        return [p for v in value for p in _paths(v)]
    return []


def _consumed(folder: Path) -> bool:
    """Whether `folder` is (inside) a part of a work folder that `consume` deleted."""
    existing = next((f for f in (folder, *folder.parents) if f.exists()), None)
    work = _work_root(existing) if existing is not None else None
    if work is None:
        return False
    root, _ = work
    try:
        done = {Path(d) for d in (root / CONSUMED).read_text(encoding="utf-8").splitlines() if d}
        rel = folder.resolve().relative_to(root)
    except (OSError, ValueError):
        return False
    return any(d == rel or d in rel.parents for d in done)


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


CODE_PACKAGES = ("core", "gpu", "stages")  # where a stage's code lives (flows/ and runtime/ only compose)
ROOT = Path(__file__).resolve().parents[1]
_SOURCE_PARSE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=64)
def code_version(module: str, root: Path = ROOT) -> str:
    """This package's version and the source of `module` and of every module of ours it imports, directly
    or not: changed code a stage runs (the stage, the schema, a helper) never reuses a result computed by
    the old code, and code it does not run (the GPU broker, another stage) leaves its results valid."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        h = hashlib.sha256(version("yivideo-flows").encode())
    except PackageNotFoundError:
        h = hashlib.sha256(b"0")
    with _SOURCE_PARSE_LOCK:  # CPython 3.11's ast.parse in two threads at once can raise "AST constructor
        sources = source_closure(module, root)  # recursion depth mismatch" (the stage runner's threads)
    for source in sources:
        h.update(str(source.relative_to(root)).encode() + b"\0" + source.read_bytes())
    return h.hexdigest()[:16]


def source_closure(module: str, root: Path) -> list[Path]:
    """The source files of `module` and of the modules of CODE_PACKAGES it imports (at the top or inside a
    function), found by reading the sources, sorted: what a stage runs, not what shares its package."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        source = _module_file(name, root)
        if name in seen or source is None:
            continue
        seen[name] = source
        todo += imported_names(source)
        todo += [name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)]  # its packages' __init__
    return sorted(set(seen.values()))


@functools.lru_cache(maxsize=512)
def imported_names(source: Path) -> tuple[str, ...]:
    """What `source` imports (modules, and names that may be modules), parsed once a process: the closures
    of a flow's stages share most of their files (the subtitle stages' nine: 168 parses of 43 files, 0.41
    CPU s in each run's process, a deployed run's fork included; 43 parses now). tests/test_structure.py
    reads the import graph with it too."""
    import ast

    names: list[str] = []
    for node in ast.walk(ast.parse(source.read_bytes(), str(source))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return tuple(names)


def _module_file(name: str, root: Path) -> Path | None:
    if name.split(".")[0] not in CODE_PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@dataclasses.dataclass
class StageInputs(CachePolicy):
    """Prefect cache policy: stage name + code version + content fingerprint of every input."""

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs):
        if os.environ.get(CACHE_ENV, "1") == "0":
            return None
        fn = task_ctx.task.fn
        payload = {
            "stage": f"{task_ctx.task.name}:{fn.__module__}.{fn.__qualname__}",
            "code": code_version(fn.__module__),
            "inputs": fingerprint(inputs),
        }
        key = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        return usable_key(getattr(task_ctx, "result_store", None), key)


def usable_key(store: Any, key: str) -> str | None:
    """`key`, or the first key of its chain whose stored result is absent or has all its files: a result
    pointing at deleted files (an interrupted run's cleanup, a user's `rm`) is passed over, never returned."""
    if store is None:
        return key
    for n in range(MAX_REDOS):
        candidate = key if n == 0 else hashlib.sha256(f"{key}#{n}".encode()).hexdigest()
        if not store.exists(candidate):
            return candidate
        try:
            result = store.read(candidate).result
        except Exception:  # unreadable (written by other code, truncated): run the stage again
            continue
        if not missing_files(result):
            return candidate
    return None


def resumable() -> dict[str, Any]:
    """The @task options of a reusable stage: the policy above, results persisted, a week's expiry."""
    if os.environ.get(CACHE_ENV, "1") == "0":
        return {"cache_policy": NONE}
    return {"cache_policy": StageInputs(), "persist_result": True, "cache_expiration": EXPIRATION}
