"""The inbox: one Prefect event per new, completely written media file (the seeds' S3 upload events).

python -m deployments.inbox --dir DIR            # watch DIR (inotify through watchdog) until Ctrl-C
python -m deployments.inbox --dir DIR --once     # sweep DIR once and exit (what the nightly schedule runs)

A file is complete when the writer closed it (inotify IN_CLOSE_WRITE) or moved it in, its size and
mtime then stay put for `settle` seconds, and no process holds it open for writing where /proc shows it;
a file still open for writing waits for its close (at most `open_wait` seconds, for writers that never
close and that /proc cannot see, e.g. on network shares). A writer that appends in bursts, reopening the
file each time, is told from a finished upload by the file itself where its container can tell (an MP4/MOV
whose boxes run past its end or that has no `moov` yet, a WAV shorter than its RIFF header says: it waits,
at most `open_wait`, however long the writer pauses), else by time: once the watcher has seen a file written
again after a close, files wait twice the longest such pause (at most `open_wait`) before they count as
finished, and a file that grows after it was announced is logged as such (announced again when it settles).
Media files emit `yivideo.media.uploaded` with the kind in a resource label, which prefect.yaml's
deployment triggers match on: video -> subtitles and transcode, audio -> transcribe, image -> enhance.
Anything else emits `yivideo.media.skipped` (no trigger listens to it) and is logged as skipped.
A ledger (SQLite in `<DIR>/.yivideo-inbox/`) keyed by path, size and mtime makes each file emit once,
across restarts; the event id is derived from the same key, so the server recognises a resend after a crash.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import re
import signal
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from prefect import flow, get_run_logger

from core.client_tls import share_client_tls_contexts
from core.errors import MediaInputError, printable
from core.media import probe_media
from core.outputs import file_digest
from deployments.inbox_ledger import STATE_DIR_NAME, FileKey, Ledger
from runtime.naming import run_named_after

UPLOADED = "yivideo.media.uploaded"
SKIPPED = "yivideo.media.skipped"
KIND_LABEL = "yivideo.media.kind"
PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ".filepart")
RETRY_SECONDS = 10.0  # after the API refused an event
OPENED = "opened"  # a change that says only "someone opened it" (between a create and its writes)

log = logging.getLogger("yivideo.inbox")


@dataclass(frozen=True)
class Outcome:
    path: Path
    status: str  # "emitted", "skipped" (not media) or "seen" (already in the ledger)
    kind: str
    detail: str = ""


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


def open_for_writing(path: Path) -> bool:
    """Whether a process holds `path` open for writing, where /proc shows it (Linux; the processes this
    user may inspect): such a file is still being written, however long it has been quiet."""
    target = str(path.resolve())
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or not ours to inspect
            continue
        for fd in fds:
            try:
                if os.readlink(fd_dir / fd) != target:
                    continue
                flags = _FLAGS.search((fd_dir.parent / "fdinfo" / fd).read_text())
            except OSError:
                continue
            if flags and int(flags.group(1), 8) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                return True
    return False


_FLAGS = re.compile(r"^flags:\s*([0-7]+)", re.MULTILINE)
MAX_BOXES = 10_000  # top-level MP4 boxes read before a file counts as "not boxes": time decides then


def container_incomplete(path: Path) -> bool:
    """Whether the file's own container says bytes are still to come: an MP4/MOV/M4A (ISO boxes) whose last
    box runs past the end of the file or without its `moov` (a recorder writes it last), or a WAV shorter
    than its RIFF header says. Then a writer's pause, however long, is not its end. Other formats: False."""
    try:
        with open(path, "rb") as f:
            head, size = f.read(12), os.fstat(f.fileno()).st_size
            if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
                return struct.unpack("<I", head[4:8])[0] + 8 > size
            return head[4:8] == b"ftyp" and _boxes_incomplete(f, size)
    except OSError:
        return False


def _boxes_incomplete(f: BinaryIO, size: int) -> bool:
    pos, moov = 0, False
    for _ in range(MAX_BOXES):
        if pos >= size:
            return pos > size or not moov
        f.seek(pos)
        header = f.read(16)
        if len(header) < 8 or (header[:4] == b"\0\0\0\1" and len(header) < 16):
            return True  # the file ends inside a box header
        length, kind = struct.unpack(">I4s", header[:8])
        if length == 1:
            length = struct.unpack(">Q", header[8:16])[0]
        elif length == 0:  # "to the end of the file": how a muxer still writing may leave its last box
            length = size - pos
        if length < 8:
            return False  # not ISO boxes after all
        moov, pos = moov or kind == b"moov", pos + length
    return False


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
        if now - path.stat().st_mtime >= settle and not open_for_writing(path):
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
        self.announced: dict[Path, tuple[int, int]] = {}  # size and mtime_ns when announced
        self.reopen_gap = 0.0  # the longest pause seen before a closed file was written again
        self.stopped = threading.Event()

    def quiet_needed(self) -> float:
        """How long a closed file must stay unchanged: `settle`, or twice the longest pause of a writer seen
        reopening a file (a burst writer's pause is not its end), at most `open_wait`."""
        return max(self.settle, min(2 * self.reopen_gap, self.open_wait))

    def _written_again(self, path: Path, before_ns: int, after_ns: int) -> None:
        """A file changed after its close (or after its announcement): learn how long its writer paused,
        from the file's own mtimes (the watcher may have been busy announcing when the change came in)."""
        gap = (after_ns - before_ns) / 1e9
        if gap > self.reopen_gap:
            self.reopen_gap = gap
            log.info(
                "%s was written again after %.1f s closed: files now wait %.1f s of quiet",
                printable(path), gap, self.quiet_needed(),
            )  # fmt: skip

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
                if p.closed and p.size >= 0:
                    self._written_again(path, p.mtime_ns, st.st_mtime_ns)
                p.size, p.mtime_ns, p.since = st.st_size, st.st_mtime_ns, max(now, p.since)  # a retry waits
            elif now - p.since >= (self.open_wait if p.closed is False else self.quiet_needed()):
                if open_for_writing(path):  # still held by its writer: wait for the close, however long
                    p.closed = False
                    continue
                if now - p.since < self.open_wait and container_incomplete(path):
                    continue  # its container says more is coming: a writer's pause, not its end
                del self.pending[path]
                self.announced[path] = (st.st_size, st.st_mtime_ns)
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
                self._grown_since_announced(path, st)
                self.pending[path] = _Pending(st.st_size, st.st_mtime_ns, time.monotonic(), closed)
            elif closed:
                known.closed = True
            elif (st.st_size, st.st_mtime_ns) != (known.size, known.mtime_ns):  # written again: wait anew
                if known.closed:
                    self._written_again(path, known.mtime_ns, st.st_mtime_ns)
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

    def _grown_since_announced(self, path: Path, st: os.stat_result) -> None:
        before = self.announced.pop(path, None)
        if before is None or (st.st_size, st.st_mtime_ns) == before:
            return
        log.warning(
            "%s changed after it was announced (%d -> %d bytes): its writer paused longer than the quiet "
            "time; it is announced again once it settles (raise --settle-seconds for such writers)",
            printable(path), before[0], st.st_size,
        )  # fmt: skip
        self._written_again(path, before[1], st.st_mtime_ns)

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


@flow(name="sweep-inbox", flow_run_name=run_named_after("sweep", "inbox_dir"))
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
    share_client_tls_contexts()
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
