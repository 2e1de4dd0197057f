"""Fault bench: inject faults into runs on a real Prefect server on PostgreSQL and count what survives.

python bench/faults.py [--runs 4] [--burst 200]   # fault, submitted, completed, lost, duplicated, recover

Setup as deployed: a `cpu` process pool (concurrency limit as bootstrap sets it), the crash re-run automation
(deployments/crash_reruns.py), one process worker, the deployment of tests/crash_target.py (a flow that
counts its starts in a folder and kills its own process -9 a chosen number of times). Per fault:
  kill -9 once      each run's process dies once mid-run; the automation re-runs it; it completes
  crash loop        each run's process always dies; after YIVIDEO_MAX_CRASH_RERUNS it ends Failed (capped)
  burst             N runs submitted at once with no fault; the pool limit queues them; all must end
  kill -9 worker    the worker dies (-9) while runs are going; a new worker starts; every run must end
"lost" = a run not in a terminal state at the deadline; "duplicated" = a run whose flow body completed more
than once (its marker says so) or two flow runs for one submission. "recover" = last terminal state minus
the fault's injection time (or minus the submission for the burst).
Not covered here (see the report): kill -9 of the server, PostgreSQL restart mid-run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from blocks.policy import AlertRules  # noqa: E402
from deployments.bootstrap import CPU_POOL_CONCURRENCY, alert_automations  # noqa: E402
from deployments.crash_reruns import MAX_RERUNS_ENV, crash_rerun_automation  # noqa: E402
from tests.crash_target import deploy  # noqa: E402
from tests.pg_server import prefect_postgres_server  # noqa: E402

TERMINAL = {"Completed", "Failed", "Cancelled"}
HEARTBEAT_EVERY, HEARTBEAT_GRACE = 30, 60.0  # Prefect allows heartbeats every 30 s at most often


async def setup() -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    async with get_client() as client:
        template = ProcessWorker.get_default_base_job_template()
        pool = WorkPoolCreate(name="cpu", type="process", base_job_template=template)
        await client.create_work_pool(pool.model_copy(update={"concurrency_limit": CPU_POOL_CONCURRENCY}))
        await client.create_automation(crash_rerun_automation("re-run crashed runs"))
        rules = AlertRules(heartbeat_grace_seconds=HEARTBEAT_GRACE)  # the heartbeat automation, test-sized
        for automation in alert_automations(rules):
            await client.create_automation(automation)
        deployment_id = await deploy(client, REPO)
    return deployment_id


async def submit(deployment_id: str, folders: list[Path], crashes: int, seconds: float) -> list:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return [
            (await client.create_flow_run_from_deployment(
                deployment_id, parameters={"marker_dir": str(f), "crashes": crashes, "seconds": seconds})).id
            for f in folders
        ]  # fmt: skip


async def wait_all(run_ids: list, deadline: float) -> dict:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        while True:
            runs = {r: await client.read_flow_run(r) for r in run_ids}
            states = {r: (run.state.name if run.state else "?") for r, run in runs.items()}
            if all(s in TERMINAL for s in states.values()) or time.monotonic() > deadline:
                return states
            await asyncio.sleep(1.0)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    prefect = str(Path(sys.executable).parent / "prefect")
    out = log.open("ab")
    return subprocess.Popen([prefect, "worker", "start", "--pool", "cpu"], cwd=REPO, env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def scenario(name: str, deployment_id: str, root: Path, count: int, crashes: int, timeout: float,
             during=None, seconds: float = 0.0) -> tuple:  # fmt: skip
    folders = [root / f"{name.replace(' ', '-')}-{i}" for i in range(count)]
    for f in folders:
        f.mkdir(parents=True)
    started = time.monotonic()
    ids = asyncio.run(submit(deployment_id, folders, crashes, seconds))
    injected = during() if during else started
    states = asyncio.run(wait_all(ids, started + timeout))
    recovered = time.monotonic() - injected
    completed = sum(s == "Completed" for s in states.values())
    lost = sum(s not in TERMINAL for s in states.values())
    finished = [int((f / "finished").read_text()) if (f / "finished").exists() else 0 for f in folders]
    duplicated = sum(n > 1 for n in finished)
    return name, count, completed, lost, duplicated, round(recovered, 1), dict_count(states)


def dict_count(states: dict) -> str:
    names = sorted(set(states.values()))
    return ", ".join(f"{n} {sum(s == n for s in states.values())}" for n in names)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="runs per fault scenario")
    parser.add_argument("--burst", type=int, default=200, help="runs submitted at once in the burst")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="yivideo-faults-"))
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = prefect_postgres_server("yivideo_faults_bench")
    with server as api_url, temporary_settings({PREFECT_API_URL: api_url}):
        os.environ["PREFECT_API_URL"] = api_url  # the worker's environment
        env = {**os.environ, "PYTHONPATH": str(REPO), MAX_RERUNS_ENV: "2"}
        env["PREFECT_WORKER_QUERY_SECONDS"] = "1"
        env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(HEARTBEAT_EVERY)
        deployment_id = asyncio.run(setup())
        worker = [start_worker(env, root / "worker.log")]
        rows = [
            scenario("kill -9 once", deployment_id, root, args.runs, 1, args.timeout),
            scenario("crash loop", deployment_id, root, args.runs, 99, args.timeout),
        ]

        def kill_worker() -> float:  # worker and its flow-run processes (one process group), mid-run
            time.sleep(15.0)
            os.killpg(worker[0].pid, signal.SIGKILL)
            worker[0].wait()
            at = time.monotonic()
            worker[0] = start_worker(env, root / "worker.log")
            return at

        rows.append(
            scenario("kill -9 worker", deployment_id, root, args.runs, 0, args.timeout, kill_worker, 40.0)
        )
        rows.append(scenario(f"burst of {args.burst}", deployment_id, root, args.burst, 0, args.timeout))
        os.killpg(worker[0].pid, signal.SIGTERM)
        worker[0].wait(timeout=30)
    head = f"{'fault':18} {'submitted':>9} {'completed':>9} {'lost':>5} {'dup':>4} {'recover s':>9}"
    print(f"\n{head}  final states")
    for name, count, completed, lost, dup, rec, states in rows:
        print(f"{name:18} {count:9d} {completed:9d} {lost:5d} {dup:4d} {rec:9.1f}  {states}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
