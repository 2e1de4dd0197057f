"""Ctrl-C and SIGTERM stop a command line within seconds, with one line and exit 130 / 143.

Before, the terminal's SIGINT killed ffmpeg and the temporary Prefect server with the flow: the dead ffmpeg
counted as a stage failure and was retried, every call to the dead server retried, and the CLI exited 4
about five minutes later. Now the first signal sets `STOP` (`core.errors.is_transient` then retries
nothing: a stage that failed because the user stopped it is not a failure to retry), ends this process's
children (ffmpeg; the shared local Prefect server runs in its own session and stays), silences the console
log and raises in the main thread, where Prefect marks the flow run Crashed ("aborted by an interrupt
signal" / "by a termination signal") on the still running server. The CLI then exits at once: stage threads
that still run are not waited for (`leave`). A re-run resumes from the stages that finished.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

STOP = threading.Event()  # set by the first SIGINT/SIGTERM of a CLI run
CHILD_GRACE_S = 1.0
SIGNALLED_CHILD_WAIT_S = 2.0  # how long a child's death by SIGINT/SIGTERM waits for this process's handler
# a child's exit status after SIGINT or SIGTERM: killed by it (ffmpeg still starting), or ffmpeg's own exit
# once it caught one (255, measured on Debian's ffmpeg mid-decode)
SIGNALLED_EXITS = frozenset({-signal.SIGINT, -signal.SIGTERM, 255})


def stop_requested() -> bool:
    return STOP.is_set()


def settle_signalled_child(returncode: int | None) -> None:
    """Call before failing on a child (ffmpeg, ffprobe) that exited `returncode`: one stopped by SIGINT or
    SIGTERM (SIGNALLED_EXITS) waits (<= 2 s) for this process's handler of the same signal. A terminal's
    Ctrl-C reaches the whole process group at once, and the handler runs in the main thread between
    bytecodes, so the stage's thread could see ffmpeg gone before STOP was set: its failure was then logged
    and retried ("Retry 1/2 will start", once in a fresh-clone suite run). Once STOP is set the failure is
    neither (is_transient). Outside a CLI nothing sets STOP: such a child's failure comes 2 s later."""
    if returncode in SIGNALLED_EXITS:
        STOP.wait(SIGNALLED_CHILD_WAIT_S)


def child_failed(returncode: int | None) -> bool:
    """Whether a child's end (ffmpeg's) fails its stage: a nonzero exit, once a signalled one waited for this
    process's handler (above), or any end once the user stopped the run: what it wrote may be cut short
    whatever its status says, and a stage that returned it would be cached as finished."""
    if returncode != 0:
        settle_signalled_child(returncode)
        return True
    return STOP.is_set()


def child_failure(program: str, returncode: int | None, said: str) -> str:
    """What a stage whose child failed (`child_failed`) says: its exit status and last words, or, once the
    user stopped the run, that they did: the Prefect UI showed "ffmpeg exited 0" for a decode cut short by
    Ctrl-C, and ffmpeg's words then are the signal's ("Immediate exit requested")."""
    if STOP.is_set():
        return f"stopped by the user ({program} ended with exit status {returncode})"
    return f"{program} exited {returncode}: {said}"


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM stop the run as described above (main thread only; else nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    import prefect.utilities.engine as engine

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    prefects = engine._prefect_sigterm_handler
    STOP.clear()
    for sig in previous:
        signal.signal(sig, _on_signal)
    # A flow run swaps in Prefect's SIGTERM handler (`capture_sigterm`, raising TerminationSignal); ours
    # raises the same after silencing the console and ending ffmpeg, so it stands in for Prefect's.
    engine._prefect_sigterm_handler = _on_signal
    try:
        yield
    finally:
        engine._prefect_sigterm_handler = prefects
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _on_signal(signum: int, frame: object) -> None:
    if STOP.is_set():
        return  # a second Ctrl-C while stopping: the first one is being handled
    STOP.set()
    logging.disable(logging.CRITICAL)  # the stages still winding down print nothing more
    end_children()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    from prefect.exceptions import TerminationSignal

    raise TerminationSignal(signal=signum)  # Prefect records it as a crash "by a termination signal"


def end_children(grace: float = CHILD_GRACE_S) -> None:
    """Terminate then kill this process's children (ffmpeg and the like), not those in another session
    (the shared local Prefect server this process may have started).

    It waits for them without reaping them: the thread that started a child reads its exit status. psutil's
    wait_procs reaped them, and a stage thread's `Popen.wait` then got ECHILD, which subprocess reports as
    exit 0: a decode cut short by Ctrl-C counted as a finished one, was cached, and the re-run read "no
    subtitles found" (a fresh-clone suite run on the real drama …6392)."""
    import psutil

    own_session = os.getsid(0)
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    ours = []
    for child in children:
        with contextlib.suppress(psutil.Error, OSError):
            if os.getsid(child.pid) == own_session:
                ours.append(child)
    for child in ours:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    deadline = time.monotonic() + grace
    while (alive := [child for child in ours if _running(child)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


def _running(child) -> bool:
    """Still running: neither gone nor a zombie (dead, its exit status kept for whoever started it)."""
    import psutil

    try:
        return child.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def send_queued_records(seconds: float) -> None:
    """Send Prefect's queued events and logs now (bounded by `seconds`), while their API still answers: a
    process that stops its own server first would lose them at exit."""
    with contextlib.suppress(Exception):
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        for service in (APILogWorker, EventsWorker):
            service.drain_all(timeout=seconds / 2, at_exit=False)


def leave(status: int, line: str, drain_seconds: float = 2.0) -> None:
    """Print `line`, send Prefect's queued events and logs (bounded), and exit now: the stage threads still
    running are not joined (the interpreter's exit would wait for each of them)."""
    print(line, file=sys.stderr, flush=True)
    send_queued_records(drain_seconds)
    end_children(grace=0.5)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    os._exit(status)
