"""The inbox: one Prefect event per new, completely written media file (the seeds' S3 upload events).

python -m deployments.inbox --dir DIR            # watch DIR (inotify through watchdog) until Ctrl-C
python -m deployments.inbox --dir DIR --once     # sweep DIR once and exit (what the nightly schedule runs)

A file is complete when the writer closed it (inotify IN_CLOSE_WRITE) or moved it in, and its size and
mtime then stay put for `settle` seconds; a file still open for writing waits for its close (at most
`open_wait` seconds, for writers that never close, e.g. network shares). Media files emit
`yivideo.media.uploaded` with the kind in a resource label, which prefect.yaml's deployment triggers match
on: video -> subtitles and transcode, audio -> transcribe, image -> enhance. Anything else emits
`yivideo.media.skipped` (no trigger listens to it) and is logged as skipped. A ledger (SQLite in
`<DIR>/.yivideo-inbox/`) keyed by path, size and mtime makes each file emit once, across restarts;
the event id is derived from the same key, so a resend after a crash is recognised by the server.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger

from core.errors import MediaInputError, printable
from core.media import probe_media
from core.outputs import file_digest

UPLOADED = "yivideo.media.uploaded"
SKIPPED = "yivideo.media.skipped"
KIND_LABEL = "yivideo.media.kind"
STATE_DIR_NAME = ".yivideo-inbox"
PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ".filepart")
RETRY_SECONDS = 10.0  # after the API refused an event
OPENED = "opened"  # a change that says only "someone opened it" (between a create and its writes)
STALE_CLAIM_SECONDS = 300.0  # a claim older than this is taken over even if its owner's pid is alive
_EVENT_NAMESPACE = uuid.UUID("3f0c6a52-7f3e-4e0e-9d43-6b1f2f5d9a11")

log = logging.getLogger("yivideo.inbox")


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


@dataclass(frozen=True)
class Outcome:
    path: Path
    status: str  # "emitted", "skipped" (not media) or "seen" (already in the ledger)
    kind: str
    detail: str = ""


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


def is_candidate(path: Path, inbox: Path) -> bool:
    """Regular, visible, not a temp/partial name, not inside the state folder, and really in the inbox:
    a symbolic link (to /etc/passwd, or a folder elsewhere) is never followed out of it."""
    try:
        rel = path.relative_to(inbox)
    except ValueError:
        return False
    if any(part.startswith(".") for part in rel.parts):
        return False
    if path.name.lower().endswith(PARTIAL_SUFFIXES):
        return False
    here = inbox
    for part in rel.parts:  # no link anywhere on the way, the file itself included
        here = here / part
        if here.is_symlink():
            return False
    return path.is_file()


def media_event(path: Path, key: FileKey) -> tuple[dict[str, object], Outcome]:
    """The event announcing `path`: uploaded (with kind) for media, skipped (with the reason) otherwise."""
    digest = file_digest(path)
    resource = {"prefect.resource.id": f"yivideo.media.{digest}", "prefect.resource.name": path.name}
    payload: dict[str, object] = {"path": key.path, "size": key.size, "sha256": digest}
    try:
        info = probe_media(path)
    except MediaInputError as exc:
        kind, name, detail = "other", SKIPPED, exc.cause
        payload["reason"] = exc.cause
    else:
        kind, name, detail = info.kind, UPLOADED, f"{info.duration:.1f} s {info.width}x{info.height}"
        payload.update(duration=info.duration, width=info.width, height=info.height)
    payload["kind"] = kind
    resource[KIND_LABEL] = kind
    event = {"id": str(key.event_id), "event": name, "resource": resource, "payload": payload}
    status = "emitted" if name == UPLOADED else "skipped"
    return event, Outcome(path, status, kind, detail)


def send_events(events: list[dict[str, object]]) -> None:
    """POST the events to the Prefect API; returns only once the server has accepted them."""
    from prefect.client.orchestration import get_client
    from prefect.events import Event

    body = [Event.model_validate(e).model_dump(mode="json") for e in events]
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/events", json=body)
        response.raise_for_status()


def announce(path: Path, ledger: Ledger, logger: logging.Logger | logging.LoggerAdapter = log) -> Outcome:
    """Emit the event for one complete file, once: the ledger is claimed first and completed after."""
    key = FileKey.of(path)
    if not ledger.claim(key):
        return Outcome(path, "seen", "", "already announced")
    try:
        event, outcome = media_event(path, key)
        send_events([event])
    except BaseException:
        ledger.release(key)
        raise
    ledger.finish(key, outcome.status, outcome.kind, outcome.detail)
    shown = printable(path)  # a newline in a file name must not split the log line
    if outcome.status == "emitted":
        logger.info("emitted %s for %s (%s, %s)", UPLOADED, shown, outcome.kind, outcome.detail)
    else:
        logger.warning("skipped %s: not media (%s)", shown, printable(outcome.detail))
    return outcome


def scan(
    inbox: Path, ledger: Ledger, settle: float, logger: logging.Logger | logging.LoggerAdapter = log
) -> list[Outcome]:
    """Announce every file under `inbox` untouched for `settle` seconds (newer ones are still arriving)."""
    now = time.time()
    outcomes = []
    for path in sorted(p for p in inbox.rglob("*") if is_candidate(p, inbox)):
        if now - path.stat().st_mtime >= settle:
            outcomes.append(announce(path, ledger, logger))
    return outcomes


@dataclass
class _Pending:
    size: int
    mtime_ns: int
    since: float  # when the size/mtime was last seen to change
    closed: bool | None  # True: closed after writing, or moved in; None: created, no open seen (yet)


class InboxWatcher:
    """inotify (watchdog) events in, settled files out; the ledger makes restarts safe."""

    def __init__(
        self, inbox: Path, ledger: Ledger, *, settle: float = 2.0, open_wait: float = 60.0, poll: float = 0.2
    ) -> None:
        self.inbox = inbox.resolve()
        self.ledger = ledger
        self.settle = settle
        self.open_wait = open_wait
        self.poll = poll
        self.changes: queue.Queue[tuple[Path, bool | str | None]] = queue.Queue()  # (path, closed or OPENED)
        self.pending: dict[Path, _Pending] = {}
        self.stopped = threading.Event()

    def _observer(self):
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        changes = self.changes

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                if event.is_directory or event.event_type in ("closed_no_write", "deleted"):
                    return
                if event.event_type == "moved":
                    changes.put((Path(event.dest_path), True))
                elif event.event_type == "created":  # a writer's create is followed by its open at once;
                    changes.put((Path(event.src_path), None))  # a file moved in from outside has none
                elif event.event_type == "opened":
                    changes.put((Path(event.src_path), OPENED))
                else:
                    changes.put((Path(event.src_path), event.event_type == "closed"))

        observer = Observer()
        observer.schedule(Handler(), str(self.inbox), recursive=True)
        return observer

    def _ready(self) -> Iterator[Path]:
        now = time.monotonic()
        for path, p in list(self.pending.items()):
            try:
                st = path.stat()
            except FileNotFoundError:
                del self.pending[path]
                continue
            if (st.st_size, st.st_mtime_ns) != (p.size, p.mtime_ns):
                p.size, p.mtime_ns, p.since = st.st_size, st.st_mtime_ns, max(now, p.since)  # a retry waits
            elif now - p.since >= (self.open_wait if p.closed is False else self.settle):
                del self.pending[path]
                yield path

    def step(self) -> list[Outcome]:
        """Take in the filesystem changes so far; announce the files that settled."""
        while True:
            try:
                path, closed = self.changes.get_nowait()
            except queue.Empty:
                break
            if not is_candidate(path, self.inbox):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            known = self.pending.get(path)
            if closed is OPENED:  # opened for writing after its create: wait for the close
                if known is not None and known.closed is None:
                    known.closed = False
                continue
            if known is None:
                self.pending[path] = _Pending(st.st_size, st.st_mtime_ns, time.monotonic(), closed)
            elif closed:
                known.closed = True
            elif (st.st_size, st.st_mtime_ns) != (known.size, known.mtime_ns):  # written again: wait anew
                known.size, known.mtime_ns, known.since, known.closed = (
                    st.st_size, st.st_mtime_ns, time.monotonic(), False
                )  # fmt: skip
            # (a change of mode or owner after the close leaves size and mtime alone: still closed)
        outcomes = []
        for path in self._ready():
            try:
                outcomes.append(announce(path, self.ledger))
            except FileNotFoundError:
                log.info("%s was removed before it could be announced", printable(path))
            except Exception as exc:  # the API is down: keep the file and try again later
                shown = printable(path)
                log.error("could not announce %s (%s); retrying in %.0f s", shown, exc, RETRY_SECONDS)
                later = time.monotonic() + RETRY_SECONDS - self.settle
                self.pending[path] = _Pending(-1, -1, later, True)  # -1: re-read the file's stat then
        return outcomes

    def catch_up(self) -> list[Outcome]:
        """Announce what arrived while no watcher ran: first the files a killed watcher had claimed but not
        finished (they were due already, and would otherwise wait behind the whole sorted scan), then the
        rest of the settled files."""
        outcomes = []
        for path in self.ledger.pending():
            if not is_candidate(path, self.inbox):  # removed (or replaced by a link) since its claim
                continue
            log.info("announcing %s again: the watcher that claimed it died", printable(path))
            try:
                outcomes.append(announce(path, self.ledger))
            except Exception as exc:  # the API is down: the scan and the steps after it try again
                log.error("could not announce %s (%s)", printable(path), exc)
        return outcomes + scan(self.inbox, self.ledger, self.settle)

    def run(self) -> None:
        """Catch up with files that arrived while no watcher ran, then follow the directory."""
        observer = self._observer()
        observer.start()
        try:
            self.catch_up()
            for path in self.inbox.rglob("*"):  # files too fresh for the catch-up scan settle here
                if is_candidate(path, self.inbox):
                    self.changes.put((path, True))
            while not self.stopped.is_set():
                self.step()
                self.stopped.wait(self.poll)
        finally:
            observer.stop()
            observer.join(timeout=5)


@flow(name="sweep-inbox")
def sweep_inbox(inbox_dir: str, settle_seconds: float = 60.0) -> dict[str, int]:
    """Announce what the watcher missed (it was down, or files came through a path inotify cannot see).

    Args:
        inbox_dir: the inbox folder the watcher follows
        settle_seconds: files changed more recently than this are still arriving and wait for the next sweep
    """
    inbox = Path(inbox_dir)
    if not inbox.is_dir():
        raise MediaInputError(inbox, "inbox directory does not exist")
    ledger = Ledger.for_inbox(inbox)
    try:
        outcomes = scan(inbox, ledger, settle_seconds, get_run_logger())
    finally:
        ledger.close()
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in ("emitted", "skipped", "seen")}
    get_run_logger().info("inbox %s: %s", inbox, counts)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Emit a Prefect event per new media file in a directory.")
    parser.add_argument("--dir", required=True, type=Path, help="the inbox directory (created if missing)")
    parser.add_argument("--state-dir", type=Path, default=None, help=f"default DIR/{STATE_DIR_NAME}")
    parser.add_argument("--settle-seconds", type=float, default=2.0, help="quiet time after a close")
    parser.add_argument("--open-wait-seconds", type=float, default=60.0, help="most we wait for a close")
    parser.add_argument("--once", action="store_true", help="sweep once and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args.dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger.for_inbox(args.dir, args.state_dir)
    try:
        if args.once:
            for outcome in scan(args.dir, ledger, args.settle_seconds):
                print(f"{outcome.status:8} {outcome.kind or '-':6} {outcome.path}")
            return 0
        watcher = InboxWatcher(args.dir, ledger, settle=args.settle_seconds, open_wait=args.open_wait_seconds)
        signal.signal(signal.SIGTERM, lambda *_: watcher.stopped.set())
        log.info("watching %s (ledger %s)", watcher.inbox, ledger.path)
        try:
            watcher.run()
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        ledger.close()


if __name__ == "__main__":
    sys.exit(main())
