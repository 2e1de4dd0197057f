"""Where results go and how they are published: per-run folders, atomic writes, a manifest.

Each run writes into `<output_root>/<flow>/<stem>-<short input hash>/`. Files are written to a
temporary name in the same folder and renamed into place, so a reader or a crash never sees half a file.
A temporary name carries its writer's host and pid: what a killed writer (kill -9) left is removed by the
next write of the same file, never a live writer's.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.schema import to_jsonable

_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)
_UMASK = os.umask(0)
os.umask(_UMASK)


def file_digest(path: str | Path, *, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Content hash of a file (used for run folders and Prefect cache keys)."""
    if algorithm == "sha256":  # once per file version per process: the stage cache keys hash it too
        from core.caching import content_hash

        return content_hash(path)
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def safe_stem(path: str | Path, max_len: int = 60) -> str:
    """A file-system-safe rendering of an input's stem (hostile names stay inside the output folder)."""
    stem = _UNSAFE.sub("_", Path(path).stem).strip("._") or "input"
    return stem[:max_len]


def run_output_dir(output_root: str | Path, flow: str, input_path: str | Path) -> Path:
    """`<output_root>/<flow>/<stem>-<hash8>/`, created if missing."""
    digest = file_digest(input_path)[:8]
    out = Path(output_root) / flow / f"{safe_stem(input_path)}-{digest}"
    out.mkdir(parents=True, exist_ok=True)
    return out


def owner_tag() -> str:
    """`<host>-<pid>-<pid namespace>-`: starts the name of this process's temporary files and folders (see
    remove_orphans). The namespace tells two containers that share a hostname (host networking) apart."""
    return f"{re.sub(r'[^A-Za-z0-9]', '', socket.gethostname())[:32]}-{os.getpid()}-{_pid_namespace()}-"


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def remove_orphans(folder: Path, prefix: str) -> None:
    """Remove the entries of `folder` named `<prefix><owner_tag>...` whose process is gone: the temporary
    files and work folders of a run killed with -9, which nothing else would clean. Only this host's and
    this PID namespace's entries are judged (a pid means nothing in another container)."""
    host, _, namespace, _ = owner_tag().split("-")
    for entry in folder.glob(f"{glob.escape(prefix)}{host}-*"):
        pid, _, rest = entry.name[len(prefix) + len(host) + 1 :].partition("-")
        if pid.isdigit() and rest.startswith(namespace + "-") and not process_alive(int(pid)):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def scratch_dir(parent: Path) -> Path:
    """A run's scratch folder in `parent`, named by its owner; a killed run's (kill -9: no cleanup ran) is
    removed first."""
    parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(parent, ".work-")
    return Path(tempfile.mkdtemp(prefix=".work-" + owner_tag(), dir=parent))


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (another user's counts); pid 0 or less never does."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    return True


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `final`; rename it into place only if the block succeeds. A temp file of the
    same `final` left by a killed writer is removed first."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{final.stem}."
    remove_orphans(final.parent, prefix)
    suffix = f".part{final.suffix}"
    fd, tmp_name = tempfile.mkstemp(prefix=prefix + owner_tag(), suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; published files get the usual mode
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(final: str | Path, text: str) -> Path:
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)


def write_json_atomic(final: str | Path, payload: Any) -> Path:
    return write_text_atomic(final, json.dumps(to_jsonable(payload), ensure_ascii=False, indent=2) + "\n")


def write_manifest(
    run_dir: str | Path,
    *,
    flow: str,
    input_path: str | Path,
    outputs: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """manifest.json: what is in this folder, from which input. Runs into one folder (its name is the input's
    stem and content hash) merge: the outputs an earlier run published there and still on disk stay listed
    (this run's win on a name); a manifest of another flow (a folder reused by hand) is refused."""
    import fcntl

    from core.errors import OutputError

    path = Path(run_dir) / "manifest.json"
    folder = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)  # two runs finishing at once: one after the other
        earlier = _read_manifest(path) or {}
        if earlier.get("flow", flow) != flow:
            raise OutputError(run_dir, f"holds a {earlier['flow']} manifest, not {flow}: use another folder")
        before = earlier.get("outputs", {}) if isinstance(earlier.get("outputs"), dict) else {}
        kept = {k: v for k, v in before.items() if k not in outputs and _exists(v)}
        payload = {"flow": flow, "input": str(input_path), "outputs": {**kept, **outputs}, **(extra or {})}
        return write_json_atomic(path, payload)
    finally:
        os.close(folder)  # releases the lock


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or unreadable: this run's manifest replaces it
        return None
    return loaded if isinstance(loaded, dict) else None


def _exists(value: Any) -> bool:
    """An earlier output is listed again only while its file is there (a user may have deleted it)."""
    return not isinstance(value, str) or Path(value).exists()


def read_image(path: str | Path, what: str) -> Any:
    """cv2.imread (colour) that fails loudly: it returns None for a missing or unreadable work image."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{what} {path} is missing or unreadable")
    return image


def write_image(path: str | Path, image: Any, params: list[int] | None = None) -> Path:
    """cv2.imwrite that fails loudly: it returns False on a full or read-only disk instead of raising."""
    import cv2

    from core.errors import OutputError

    path = Path(path)
    try:
        ok = cv2.imwrite(str(path), image, params or [])
    except cv2.error as exc:
        raise OutputError(path, f"cannot write image ({exc.err})") from exc
    if not ok:
        raise OutputError(path, f"cannot write image ({disk_state(path.parent)})")
    return path


def disk_state(folder: str | Path) -> str:
    """Why a write may have failed, in words: the disk's free space and whether the folder is writable."""
    folder = Path(folder)
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        return f"folder unusable: {exc.strerror}"
    if free < 1 << 20:
        return f"no space left on device ({free:,} bytes free)"
    return "folder not writable" if not os.access(folder, os.W_OK) else f"{free:,} bytes free"


def write_failure(folder: str | Path, exc: OSError) -> OSError:
    """A failed write as an OutputError naming the folder and the cause in words ("no space left on
    device (N bytes free)"), so a full disk reads the same in every flow; other errors pass as they are."""
    import errno

    from core.errors import OutputError

    if isinstance(exc, OutputError):
        return exc
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(folder).free if Path(folder).exists() else 0
        return OutputError(folder, f"no space left on device ({free:,} bytes free)")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return OutputError(folder, f"not writable ({os.strerror(exc.errno)})")
    return exc


def full_disk_error(output: str | Path) -> OSError | None:
    """After a writer (ffmpeg) failed: an OutputError when the disk of `output` has no space left, so a full
    disk fails at once by its type (never retried, never read from ffmpeg's words); None otherwise."""
    import errno

    target = str(output)
    if not target or target.startswith(("-", "pipe:")) or target == os.devnull:
        return None
    folder = Path(target).parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    if free >= 1 << 20:
        return None
    return write_failure(folder, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))


def discard_if_empty(run_dir: str | Path, output_root: str | Path) -> None:
    """After a failed run: remove its folder (and the flow's folder) if nothing was published there."""
    root = Path(output_root).resolve()
    folder = Path(run_dir).resolve()
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()  # only an empty folder goes
        except OSError:
            return
        folder = folder.parent
