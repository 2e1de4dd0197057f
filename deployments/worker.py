"""A Prefect process worker that exits within seconds of SIGTERM, even when the server has gone away.

python -m deployments.worker --pool cpu [--name NAME] [--limit N] [--work-queue Q]... [--shutdown-seconds 3]
                                        [--query-seconds 1]

`prefect worker start` stops polling at once on SIGTERM, but then waits for its last events (the
`prefect.worker.stopped` event) to reach the server: with the server gone, Prefect's events client retries
its websocket ten times a second apart (no setting changes that) and the process lingers ~9 s, past the
5 s a supervisor (systemd, Kubernetes, a test) gives before it kills. Here the first SIGTERM or SIGINT
cancels the worker, as Prefect's own handler does, and arms a watchdog: whatever is left of the shutdown
(API calls, the events drain at exit) gets `--shutdown-seconds`, then the process exits 0. With the server
up the shutdown ends well within that and nothing is lost; a second signal exits at once.

It also reports a dead flow-run process as Crashed once, not twice (`SingleCrashReportWorker`), and asks
the server for due runs every second (`--query-seconds`; Prefect's default is 10 s). An idle worker took a
due run up (Pending) after 7.3 s (median of 4) with 10 s and after 2.5 s with 2 s (load 22-24); with 1 s
after 0.6 s (median of 5, load 1.5), due -> Running 2.8 s (bench/throughput.py --solo 5 --runs 0). Short
runs are most of the work. A query is one small API call.

Each flow run is forked from a template process the worker starts once (deployments/zygote.py: Prefect and
the deployed flows imported, nothing else), instead of a new `python -m prefect.engine` importing them
again (`--zygote off`, or YIVIDEO_WORKER_ZYGOTE=off: as before). Each run is still a fresh process of its
own, with its own environment, that the worker signals, kills and reads the exit status of. Runs alone,
Pending -> Running: 1.5-2.0 s (load 8-15) against 10.1-25.0 s without (load ~20) (bench/throughput.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from prefect.workers.process import ProcessJobConfiguration, ProcessWorker

from core.client_tls import share_client_tls_contexts

if TYPE_CHECKING:
    from uuid import UUID

    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import Flow, FlowRun, WorkPool
    from prefect.client.schemas.responses import DeploymentResponse

SHUTDOWN_ENV = "YIVIDEO_WORKER_SHUTDOWN_SECONDS"
QUERY_ENV, QUERY_SECONDS = "PREFECT_WORKER_QUERY_SECONDS", 1.0  # Prefect's own setting, another default
ZYGOTE_ENV = "YIVIDEO_WORKER_ZYGOTE"
CLIENT = Path(__file__).with_name("zygote_client.py")


def _exit_after(seconds: float) -> None:
    """End the process after `seconds` unless it ended by itself (a daemon timer: it never holds exit up)."""

    def expire() -> None:
        print(f"shutdown took over {seconds:g} s (Prefect server unreachable?): exiting now", file=sys.stderr)
        sys.stderr.flush()
        os._exit(0)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


class ForkedRunJobConfiguration(ProcessJobConfiguration):
    """A run's job, started by the template process's client where this worker runs one.

    A command the pool or the deployment configures stays theirs. Prefect starts a configured command
    directly (its `python -m prefect.engine` path: the engine runs the deployment's pull steps and loads
    the flow), not through its workspace supervisor, a second Python process per run."""

    zygote_command: ClassVar[str | None] = None  # set while this worker's template process runs

    def prepare_for_flow_run(
        self,
        flow_run: FlowRun,
        deployment: DeploymentResponse | None = None,
        flow: Flow | None = None,
        work_pool: WorkPool | None = None,
        worker_name: str | None = None,
        worker_id: UUID | None = None,
    ) -> None:
        if self.command is None and self.zygote_command:
            self.command = self.zygote_command
        super().prepare_for_flow_run(flow_run, deployment, flow, work_pool, worker_name, worker_id=worker_id)


class SingleCrashReportWorker(ProcessWorker):
    """Prefect's process worker, without its second, late crash report of the same dead process.

    When a flow-run process dies, the runner inside the worker reports the run Crashed at once; the worker
    reports it again when its submission returns, seconds later on a busy host. By then the crash re-run
    automation (deployments/crash_reruns.py) may have scheduled the run again and a worker submitted it: the
    late report crashed that new attempt, the automation scheduled a third while the second still ran, and
    the flow ran twice at once (seen in a test suite on a loaded host). A crash already on record since this
    worker picked the run up is that same crash: it is not reported again."""

    job_configuration = ForkedRunJobConfiguration

    @classmethod
    def __dispatch_key__(cls) -> str:
        return "yivideo-process"  # Prefect's registry keeps "process" for ProcessWorker; pools stay "process"

    async def _propose_crashed_state(
        self, flow_run: FlowRun, message: str, client: PrefectClient | None = None
    ) -> None:
        if await crash_on_record_since_pickup(client or self.client, flow_run):
            self.get_flow_run_logger(flow_run).info(f"Crash already reported; not reported again: {message}")
            return
        await super()._propose_crashed_state(flow_run, message, client=client)


async def crash_on_record_since_pickup(client: PrefectClient, flow_run: FlowRun) -> bool:
    """Whether the run has a Crashed state newer than the state it had when this worker picked it up."""
    from prefect.client.schemas.objects import StateType

    picked_at = flow_run.state.timestamp if flow_run.state else None
    states = await client.read_flow_run_states(flow_run.id)
    return any(s.type == StateType.CRASHED and (picked_at is None or s.timestamp > picked_at) for s in states)


@contextlib.asynccontextmanager
async def template_process(enabled: bool, ready_seconds: float = 30.0) -> AsyncIterator[str | None]:
    """Start the template process runs are forked from; yield the per-run command (None: Prefect's own)
    once it listens, or after `ready_seconds` (a run before then, or after it died, starts as
    `python -m prefect.engine`: the client falls back).

    It listens in a private folder; its stdin is its lifeline: when this process ends, however, it takes
    no more runs and exits after the runs it started."""
    if not enabled:
        yield None
        return
    folder = tempfile.mkdtemp(prefix="yivideo-zygote-")
    path = os.path.join(folder, "socket")
    command = [sys.executable, "-m", "deployments.zygote", "--socket", path]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + ready_seconds
        while not os.path.exists(path) and process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        yield shlex.join([sys.executable, "-I", "-S", str(CLIENT), path])
    finally:
        process.stdin.close()


async def serve(args: argparse.Namespace) -> int:
    """Run our process worker on `args.pool` until the first SIGTERM/SIGINT; then stop within the budget."""
    main = asyncio.current_task()
    stopping: list[int] = []

    def stop(signum: int) -> None:
        if stopping:  # a second signal: no more patience
            os._exit(0)
        stopping.append(signum)
        name, budget = signal.Signals(signum).name, args.shutdown_seconds
        print(f"Received {name}: stopping the worker (exit within {budget:g} s)", flush=True)
        _exit_after(args.shutdown_seconds)
        if main is not None:
            main.cancel()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    from prefect.settings import PREFECT_WORKER_QUERY_SECONDS, temporary_settings

    worker = SingleCrashReportWorker(
        work_pool_name=args.pool, work_queues=args.work_queue or None, name=args.name, limit=args.limit
    )
    try:
        async with template_process(args.zygote != "off") as zygote_command:
            ForkedRunJobConfiguration.zygote_command = zygote_command
            with temporary_settings({PREFECT_WORKER_QUERY_SECONDS: args.query_seconds}):
                await worker.start(printer=print)
    except asyncio.CancelledError:
        if not stopping:
            raise
        print(f"Worker {worker.name!r} stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A Prefect process worker with a bounded shutdown.")
    parser.add_argument("--pool", required=True, help="work pool (process type: cpu, gpu)")
    parser.add_argument("--name", default=None, help="worker name shown in the UI (default: generated)")
    parser.add_argument("--work-queue", action="append", default=[], help="only these queues (repeatable)")
    parser.add_argument("--limit", type=int, default=None, help="flow runs at once (default: no limit)")
    parser.add_argument(
        "--shutdown-seconds",
        type=float,
        default=float(os.environ.get(SHUTDOWN_ENV, "3")),
        help=f"after SIGTERM/SIGINT, exit within this many seconds (default 3; {SHUTDOWN_ENV})",
    )
    parser.add_argument(
        "--query-seconds",
        type=float,
        default=float(os.environ.get(QUERY_ENV) or QUERY_SECONDS),
        help=f"seconds between queries for due runs (default {QUERY_SECONDS:g}; {QUERY_ENV})",
    )
    parser.add_argument(
        "--zygote",
        choices=("on", "off"),
        default="off" if os.environ.get(ZYGOTE_ENV, "").strip().lower() in ("0", "off", "false") else "on",
        help=f"fork each run from a template process with Prefect imported (default on; {ZYGOTE_ENV})",
    )
    args = parser.parse_args(argv)
    share_client_tls_contexts()
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
