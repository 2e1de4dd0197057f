"""Fault bench: inject faults into runs on a real Prefect server on PostgreSQL and count what survives.

flock /tmp/bench.lock python bench/faults.py [--only ROW,ROW] [--runs 4] [--burst 200] [--inbox-per-kind 4]
    rows: kill-once, crash-loop, worker-kill, server-kill, pg-restart, burst, inbox-kill (default: all)
    prints: fault, submitted, completed, lost, duplicated, recover (s), final states / notes

Setup as deployed: a private PostgreSQL cluster (tests/pg_cluster.py: its own port under /tmp, so it can be
restarted; the shared one never is), a Prefect server on it (tests/pg_server.py, durable lease storage as
deployments/server.py sets it), a `cpu` process pool (concurrency limit as bootstrap sets it), the crash
re-run automation (deployments/crash_reruns.py), one process worker with prefect.yaml's client retry
settings, the deployment of tests/crash_target.py (a flow that counts its starts in a folder and kills its
own process -9 a chosen number of times; it can hold a GPU slot while it works). Per fault:
  kill-once    each run's process dies once mid-run; the automation re-runs it; it completes
  crash-loop   each run's process always dies; after YIVIDEO_MAX_CRASH_RERUNS it ends Failed (capped)
  worker-kill  the worker dies (-9) while runs are going; a new worker starts; every run must end
  server-kill  kill -9 of the Prefect server while runs hold GPU slots; restarted on the same database
               and home; every run ends Completed, once, and the GPU limit is back to 0 slots in use
  pg-restart   `pg_ctl restart -m immediate` of the cluster while runs hold GPU slots; same checks
  burst        N runs submitted at once with no fault; the pool limit queues them; all must complete and
               none may crash (Crashed in its history) for want of a database connection
  inbox-kill   bench/faults_inbox.py: the inbox watcher killed -9 mid-burst of uploads, restarted
The user-side rows of issue 29 (a corrupt middle, animated images, two runs into one folder, a re-run
after an interrupted run's cleanup) are bench/faults_cli.py: exit code, seconds, lines, what was left.
"lost" = a run not in a terminal state at the deadline; "duplicated" = a run whose flow body completed more
than once (its marker says so). "recover" = last terminal state minus the fault's injection time (or minus
the submission for the burst).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.faults_inbox import inbox_row  # noqa: E402
from blocks.policy import AlertRules  # noqa: E402
from deployments.bootstrap import CPU_POOL_CONCURRENCY, CRASH_RERUN_AUTOMATION, alert_automations  # noqa: E402
from deployments.crash_reruns import MAX_RERUNS_ENV, crash_rerun_automation  # noqa: E402
from gpu.devices import limit_name  # noqa: E402
from tests.crash_target import deploy  # noqa: E402
from tests.pg_cluster import private_cluster  # noqa: E402
from tests.pg_server import postgres_prefect_server  # noqa: E402

ROWS = ("kill-once", "crash-loop", "worker-kill", "server-kill", "pg-restart", "burst", "inbox-kill")
TERMINAL = {"Completed", "Failed", "Cancelled"}
HEARTBEAT_EVERY, HEARTBEAT_GRACE = 30, 60.0  # Prefect allows heartbeats every 30 s at most often
POOL_ERRORS = ("QueuePool limit", "too many clients", "remaining connection slots")


async def setup(gpu_units: int) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    from gpu.limits import ensure_limit

    async with get_client() as client:
        template = ProcessWorker.get_default_base_job_template()
        pool = WorkPoolCreate(name="cpu", type="process", base_job_template=template)
        await client.create_work_pool(pool.model_copy(update={"concurrency_limit": CPU_POOL_CONCURRENCY}))
        await client.create_automation(crash_rerun_automation(CRASH_RERUN_AUTOMATION))
        rules = AlertRules(heartbeat_grace_seconds=HEARTBEAT_GRACE)  # the heartbeat automation, test-sized
        for automation in alert_automations(rules):
            await client.create_automation(automation)
        await ensure_limit(client, limit_name(0), gpu_units)  # the one "device" of this gated CPU host
        deployment_id = await deploy(client, REPO)
    return deployment_id


async def submit(deployment_id: str, folders: list[Path], crashes: int, seconds: float, gpu: bool) -> list:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return [
            (await client.create_flow_run_from_deployment(deployment_id, parameters={
                "marker_dir": str(f), "crashes": crashes, "seconds": seconds, "gpu": gpu})).id
            for f in folders
        ]  # fmt: skip


async def read_states(run_ids: list) -> dict:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        runs = {r: await client.read_flow_run(r) for r in run_ids}
    return {r: (run.state.name if run.state else "?") for r, run in runs.items()}


def wait_all(run_ids: list, deadline: float) -> dict:
    while True:
        try:
            states = asyncio.run(read_states(run_ids))
        except Exception:  # the server or its database is down (a fault being injected): ask again
            states = {r: "?" for r in run_ids}
        if all(s in TERMINAL for s in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(1.0)


def wait_running(run_ids: list, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(s == "Running" for s in asyncio.run(read_states(run_ids)).values()) >= count:
            return
        time.sleep(0.5)


async def crashed_runs(run_ids: list) -> int:
    """Runs with a Crashed state anywhere in their history."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return sum([any(s.name == "Crashed" for s in await client.read_flow_run_states(r)) for r in run_ids])


def slots_in_use(timeout: float) -> tuple[int, float]:
    """Slots of the GPU limit still in use, waiting up to `timeout` s for 0; and the seconds it took."""
    from prefect.client.orchestration import get_client

    start = time.monotonic()
    while True:
        try:
            with get_client(sync_client=True) as client:
                held = client.read_global_concurrency_limit_by_name(limit_name(0)).active_slots
        except Exception:
            held = -1
        if held == 0 or time.monotonic() - start > timeout:
            return held, time.monotonic() - start
        time.sleep(1.0)


def wait_slots_held(count: int, timeout: float) -> None:
    """Until `count` GPU slots are held (the runs are inside their GPU stage), at most `timeout` s."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            if client.read_global_concurrency_limit_by_name(limit_name(0)).active_slots >= count:
                return
            time.sleep(0.5)


def start_worker(env: dict[str, str], log: Path, pool: str = "cpu") -> subprocess.Popen:
    out = log.open("ab")
    command = [sys.executable, "-m", "deployments.worker", "--pool", pool]  # a bounded shutdown
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def scenario(name: str, deployment_id: str, root: Path, count: int, crashes: int, timeout: float,
             during=None, seconds: float = 0.0, gpu: bool = False) -> tuple:  # fmt: skip
    folders = [root / f"{name.replace(' ', '-')}-{i}" for i in range(count)]
    for f in folders:
        f.mkdir(parents=True)
    started = time.monotonic()
    ids = asyncio.run(submit(deployment_id, folders, crashes, seconds, gpu))
    injected = during(ids) if during else started
    states = wait_all(ids, started + timeout)
    recovered = time.monotonic() - injected
    completed = sum(s == "Completed" for s in states.values())
    lost = sum(s not in TERMINAL for s in states.values())
    finished = [int((f / "finished").read_text()) if (f / "finished").exists() else 0 for f in folders]
    duplicated = sum(n > 1 for n in finished)
    notes = dict_count(states)
    if gpu:
        held, took = slots_in_use(120.0)
        notes += f"; GPU slots in use after: {held} ({took:.0f} s after the last run ended)"
    if crashes == 0:
        notes += f"; {asyncio.run(crashed_runs(ids))} crashed on the way"
    return name, count, completed, lost, duplicated, round(recovered, 1), notes


def dict_count(states: dict) -> str:
    names = sorted(set(states.values()))
    return ", ".join(f"{n} {sum(s == n for s in states.values())}" for n in names)


def client_env() -> dict[str, str]:
    """prefect.yaml's environment for media runs (the client's retries across a server restart)."""
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    media = spec["definitions"]["env"]["media"]
    return {k: str(v) for k, v in media.items() if k.startswith("PREFECT_")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(ROWS), help=f"comma-separated rows of {', '.join(ROWS)}")
    parser.add_argument("--runs", type=int, default=4, help="runs per fault scenario")
    parser.add_argument("--burst", type=int, default=200, help="runs submitted at once in the burst")
    parser.add_argument("--inbox-per-kind", type=int, default=4, help="files of each kind in the inbox row")
    parser.add_argument("--down", type=float, default=10.0, help="seconds the killed server stays down")
    parser.add_argument("--timeout", type=float, default=600, help="per row, seconds")
    args = parser.parse_args()
    wanted = args.only.split(",")
    if unknown := set(wanted) - set(ROWS):
        parser.error(f"unknown rows {sorted(unknown)}; choose from {', '.join(ROWS)}")
    root = Path(tempfile.mkdtemp(prefix="yivideo-faults-"))
    from prefect.settings import PREFECT_API_URL, temporary_settings

    rows = []
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(private_cluster())
        server = stack.enter_context(postgres_prefect_server("yivideo_faults_bench", pg_port=pg.port))
        stack.enter_context(temporary_settings({PREFECT_API_URL: server.api_url}))
        os.environ["PREFECT_API_URL"] = server.api_url  # the worker's environment
        env = {**os.environ, **client_env(), "PYTHONPATH": str(REPO), MAX_RERUNS_ENV: "2"}
        env["PREFECT_WORKER_QUERY_SECONDS"] = "1"
        env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(HEARTBEAT_EVERY)
        env.update(YIVIDEO_GPU_GATE="always", YIVIDEO_GPU_RUN_DIR=str(root / "gpu"))
        deployment_id = asyncio.run(setup(args.runs))
        worker = [start_worker(env, root / "worker.log")]
        stack.callback(lambda: stop_all(worker[0], root / "gpu"))

        def kill_worker(ids: list) -> float:  # worker and its flow-run processes (one process group), mid-run
            wait_running(ids, 1, 120.0)
            time.sleep(5.0)
            os.killpg(worker[0].pid, signal.SIGKILL)
            worker[0].wait()
            at = time.monotonic()
            worker[0] = start_worker(env, root / "worker.log")
            return at

        def kill_server(ids: list) -> float:  # while half the runs hold GPU slots
            wait_running(ids, max(1, len(ids) // 2), 180.0)
            wait_slots_held(max(1, len(ids) // 2), 180.0)
            server.kill()
            at = time.monotonic()
            time.sleep(args.down)
            server.start()
            # durable leases: the slots the runs hold are still held (not freed, not doubled) after it
            print(f"  GPU slots in use right after the restart: {slots_in_use(0)[0]}", flush=True)
            return at

        def restart_pg(ids: list) -> float:  # while half the runs hold GPU slots
            wait_running(ids, max(1, len(ids) // 2), 180.0)
            wait_slots_held(max(1, len(ids) // 2), 180.0)
            at = time.monotonic()
            pg.restart()
            print(f"  GPU slots in use right after the restart: {slots_in_use(0)[0]}", flush=True)
            return at

        for row in wanted:
            print(f"[{time.strftime('%H:%M:%S')}] {row}", flush=True)
            if row == "kill-once":
                rows.append(scenario("kill -9 once", deployment_id, root, args.runs, 1, args.timeout))
            elif row == "crash-loop":
                rows.append(scenario("crash loop", deployment_id, root, args.runs, 99, args.timeout))
            elif row == "worker-kill":
                rows.append(scenario("kill -9 worker", deployment_id, root, args.runs, 0, args.timeout,
                                     kill_worker, 40.0))  # fmt: skip
            elif row == "server-kill":
                rows.append(scenario("kill -9 server", deployment_id, root, args.runs, 0, args.timeout,
                                     kill_server, 30.0, gpu=True))  # fmt: skip
            elif row == "pg-restart":
                rows.append(scenario("postgres restart", deployment_id, root, args.runs, 0, args.timeout,
                                     restart_pg, 30.0, gpu=True))  # fmt: skip
            elif row == "burst":
                before = server.log.read_text(errors="replace")
                row_ = scenario(f"burst of {args.burst}", deployment_id, root, args.burst, 0, args.timeout)
                log = server.log.read_text(errors="replace")[len(before) :]
                errors = sum(log.count(e) for e in POOL_ERRORS)
                rows.append((*row_[:-1], f"{row_[-1]}; {errors} DB pool errors in the server log"))
            elif row == "inbox-kill":
                rows.append(inbox_row(root, env, args.inbox_per_kind, args.timeout))
            print(f"  {rows[-1]}", flush=True)
    head = f"{'fault':18} {'submitted':>9} {'completed':>9} {'lost':>5} {'dup':>4} {'recover s':>9}"
    print(f"\n{head}  final states / notes")
    for name, count, completed, lost, dup, rec, states in rows:
        print(f"{name:18} {count:9d} {completed:9d} {lost:5d} {dup:4d} {rec:9.1f}  {states}")
    return 0


def stop_all(worker: subprocess.Popen, gpu_dir: Path) -> None:
    """The worker (SIGTERM, its group) and the GPU broker the runs started (SIGTERM, by its pid file)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        worker.wait(timeout=30)
    for pid_file in gpu_dir.glob("*/broker.pid"):
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
