"""The inbox's ledger: which files were announced, keyed by path, size and mtime, in SQLite shared by the
watcher and the nightly sweep; a claim names its owner's pid so a killed watcher's claims are taken over."""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

STATE_DIR_NAME = ".yivideo-inbox"
STALE_CLAIM_SECONDS = 300.0  # a claim older than this is taken over even if its owner's pid is alive
_EVENT_NAMESPACE = uuid.UUID("3f0c6a52-7f3e-4e0e-9d43-6b1f2f5d9a11")


@dataclass(frozen=True)
class FileKey:
    """What makes a file "the same file" for the ledger: its path, size and modification time."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileKey:
        st = path.stat()
        return cls(str(path.resolve()), st.st_size, st.st_mtime_ns)

    @property
    def event_id(self) -> uuid.UUID:
        return uuid.uuid5(_EVENT_NAMESPACE, f"{self.path}\0{self.size}\0{self.mtime_ns}")


class Ledger:
    """Files already announced, in SQLite: safe to share between the watcher and the nightly sweep."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS files (path TEXT, size INTEGER, mtime_ns INTEGER, status TEXT, "
            "kind TEXT, event_id TEXT, detail TEXT, at REAL, PRIMARY KEY (path, size, mtime_ns))"
        )

    @classmethod
    def for_inbox(cls, inbox: Path, state_dir: Path | None = None) -> Ledger:
        return cls((state_dir or inbox / STATE_DIR_NAME) / "ledger.sqlite")

    def claim(self, key: FileKey) -> bool:
        """True if this caller is to announce the file: it is new, or an earlier attempt never finished.

        A pending row names its owner (`pid:<pid>` in `detail`); one whose owner is gone (a watcher killed
        with -9 between claiming and recording) is taken over at once, so a restart announces the file."""
        owner = f"pid:{os.getpid()}"
        cur = self._db.execute(
            "INSERT OR IGNORE INTO files VALUES (?, ?, ?, 'pending', NULL, ?, ?, ?)",
            (key.path, key.size, key.mtime_ns, str(key.event_id), owner, time.time()),
        )
        if cur.rowcount == 1:
            return True
        row = self._db.execute(
            "SELECT status, at, detail FROM files WHERE path=? AND size=? AND mtime_ns=?",
            (key.path, key.size, key.mtime_ns),
        ).fetchone()
        if row is None or row[0] != "pending" or row[2] == owner:
            return False
        if _owner_alive(row[2]) and time.time() - row[1] <= STALE_CLAIM_SECONDS:
            return False
        cur = self._db.execute(  # take it over, unless another process just did
            "UPDATE files SET at=?, detail=? WHERE path=? AND size=? AND mtime_ns=? AND status='pending' "
            "AND detail IS ?",
            (time.time(), owner, key.path, key.size, key.mtime_ns, row[2]),
        )
        return cur.rowcount == 1

    def pending(self) -> list[Path]:
        """Files claimed by a process that is gone: the restarted watcher announces them first."""
        rows = self._db.execute("SELECT path, detail FROM files WHERE status='pending'").fetchall()
        return [Path(path) for path, owner in rows if not _owner_alive(owner)]

    def finish(self, key: FileKey, status: str, kind: str, detail: str = "") -> None:
        self._db.execute(
            "UPDATE files SET status=?, kind=?, detail=?, at=? WHERE path=? AND size=? AND mtime_ns=?",
            (status, kind, detail, time.time(), key.path, key.size, key.mtime_ns),
        )

    def release(self, key: FileKey) -> None:
        """Forget a claim whose event could not be sent, so a later attempt sends it."""
        self._db.execute(
            "DELETE FROM files WHERE path=? AND size=? AND mtime_ns=? AND status='pending'",
            (key.path, key.size, key.mtime_ns),
        )

    def entries(self) -> list[dict[str, object]]:
        cur = self._db.execute("SELECT path, size, status, kind, detail FROM files ORDER BY at")
        return [dict(zip(("path", "size", "status", "kind", "detail"), row, strict=True)) for row in cur]

    def close(self) -> None:
        self._db.close()


def _owner_alive(owner: str | None) -> bool:
    """Whether the process named by a pending row (`pid:<pid>`) still runs on this host."""
    if not owner or not owner.startswith("pid:"):
        return False
    try:
        os.kill(int(owner[4:]), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
