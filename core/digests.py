"""Content digests kept across processes: a file version hashed once on a host, not once per run.

Every flow run of a process worker is a fresh process, and a re-run, the inbox watcher and the flow it
starts each hashed the input again (three full reads of a 2 GB film before any stage). A digest is stored
under the file's version (resolved path, size, mtime, ctime, inode: any write or metadata change makes a
new version) in one SQLite file, $YIVIDEO_DIGEST_STORE or ~/.cache/yivideo-flows/digests.sqlite3;
YIVIDEO_DIGEST_STORE=off keeps digests per process. The store only saves time: an unreadable or locked one
is passed over, never an error.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

STORE_ENV = "YIVIDEO_DIGEST_STORE"
STORED_FROM = 1 << 20  # smaller files hash in under a millisecond: not worth a row
KEEP = 20_000  # rows kept (the least recently used go first)
_TABLE = "CREATE TABLE IF NOT EXISTS digests (version TEXT PRIMARY KEY, digest TEXT, used REAL)"
_PRUNE = (
    "DELETE FROM digests WHERE version IN (SELECT version FROM digests ORDER BY used DESC LIMIT -1 OFFSET ?)"
)


def store_path() -> Path | None:
    where = os.environ.get(STORE_ENV, "")
    if where.lower() == "off":
        return None
    if where:
        return Path(where).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "yivideo-flows" / "digests.sqlite3"


def _query(sql: str, *args: object) -> list[tuple]:
    """Run one statement on the store (made on first use); [] where there is no store or it fails."""
    path = store_path()
    if path is None:
        return []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(path, timeout=2.0)) as db, db:
            db.execute(_TABLE)
            return db.execute(sql, args).fetchall()
    except (OSError, sqlite3.Error):
        return []


def stored_digest(version: str) -> str | None:
    """The digest stored for this file version (marked as used now), or None."""
    rows = _query("UPDATE digests SET used = ? WHERE version = ? RETURNING digest", time.time(), version)
    return str(rows[0][0]) if rows else None


def store_digest(version: str, digest: str) -> None:
    _query("INSERT OR REPLACE INTO digests VALUES (?, ?, ?)", version, digest, time.time())
    _query(_PRUNE, KEEP)
