"""Uploads: safe names, streaming to disk in chunks under a temp name, a size limit, a per-client rate.

A browser PUTs each file as the raw request body (no multipart: nothing is spooled in memory or copied
twice). The bytes go to `.<name>.<random>.part` beside the final name and are renamed only once complete
and within the limit; the file is then probed before any run may use it, and removed when it is not media.
"""

from __future__ import annotations

import os
import re
import time
import unicodedata
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from core.errors import MediaInputError
from core.media import probe_media
from core.schema import MediaInfo

MAX_NAME = 120
_UNREADABLE = re.compile(r"not a readable ([\w ]+?)(?: \(.*\))?$")
_UNSAFE = re.compile(r"[^\w.\- ()+,]+")  # word characters of any script stay: 字幕.mp4 is a fine name


class UploadRejected(Exception):
    """An upload refused with a message for the person who sent it; `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def sanitize_name(name: str) -> str:
    """The last path component only, visible (no leading dot), without control or shell characters."""
    base = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" ").lstrip(".-_ ")
    if not base or set(base) <= {".", "_"}:
        raise UploadRejected(f"{name!r} is not a usable file name")
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    ext = ext[:12]
    stem = stem[: MAX_NAME - len(ext) - 1] or "upload"
    return f"{stem}.{ext}" if ext else stem


def human_size(size: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _free_name(folder: Path, name: str) -> Path:
    """`name`, or `name (2)`... when a file of that name is already there (two drops of one file)."""
    candidate, n = folder / name, 1
    stem, suffix = Path(name).stem, Path(name).suffix
    while candidate.exists():
        n += 1
        candidate = folder / f"{stem} ({n}){suffix}"
    return candidate


async def save_stream(
    chunks: AsyncIterator[bytes], folder: Path, name: str, limit: int, declared: int | None = None
) -> Path:
    """Write `chunks` to `folder/name` (temp name, then rename); over `limit` bytes: nothing is kept."""
    if declared is not None and declared > limit:
        raise UploadRejected(
            f"{name} is {human_size(declared)}, above the upload limit of {human_size(limit)}", 413
        )
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{name}.{uuid.uuid4().hex[:8]}.part"
    written = 0
    try:
        with open(partial, "wb") as out:
            async for chunk in chunks:
                written += len(chunk)
                if written > limit:
                    raise UploadRejected(
                        f"{name} is larger than the upload limit of {human_size(limit)}", 413
                    )
                out.write(chunk)
        if written == 0:
            raise UploadRejected(f"{name} is empty (0 bytes)")
        final = _free_name(folder, name)
        os.rename(partial, final)
        return final
    finally:
        partial.unlink(missing_ok=True)


def probe_upload(path: Path) -> MediaInfo:
    """Probe a saved upload; a file that is not media is removed and refused with ffprobe's reason."""
    try:
        info = probe_media(path)
    except MediaInputError as exc:
        path.unlink(missing_ok=True)
        cause = exc.cause
        unreadable = _UNREADABLE.match(cause)  # a decoder's detail ("bits 237 is invalid") tells nobody much
        if unreadable:
            what = {"media file": "photo, video or audio file"}.get(unreadable[1], unreadable[1])
            article = "an" if what[0] in "aeiou" else "a"
            cause = f"not a readable {what}: the file is damaged, or is not {article} {what}"
        raise UploadRejected(f"{path.name}: {cause}") from exc
    if info.kind in ("image", "video") and not (info.width and info.height):  # garbage.jpg probes 0x0
        path.unlink(missing_ok=True)
        raise UploadRejected(f"{path.name}: not a readable media file (no picture could be decoded)")
    return info


def describe(info: MediaInfo) -> str:
    """One line a person reads: `video, 12.0 s, 1280x720, with audio`."""
    parts = [info.kind]
    if info.kind != "image":
        parts.append(f"{info.duration:.1f} s")
    if info.width:
        parts.append(f"{info.width}x{info.height}")
    if info.kind == "video":
        parts.append("with audio" if info.has_audio else "no audio")
    parts.append(human_size(info.size_bytes or info.path.stat().st_size))
    return ", ".join(parts)


@dataclass
class RateLimiter:
    """At most `limit` uploads per client within `window` seconds (a sliding window per address)."""

    limit: int
    window: float = 60.0

    def __post_init__(self) -> None:
        self._seen: dict[str, deque[float]] = {}

    def check(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        seen = self._seen.setdefault(client, deque())
        while seen and now - seen[0] >= self.window:
            seen.popleft()
        if len(seen) >= self.limit:
            wait = self.window - (now - seen[0])
            raise UploadRejected(
                f"too many uploads from {client}: at most {self.limit} per {self.window:.0f} s; "
                f"try again in {wait:.0f} s",
                429,
            )
        seen.append(now)
