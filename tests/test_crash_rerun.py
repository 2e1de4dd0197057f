"""Faults on a real server on PostgreSQL: a flow-run process killed with -9 is re-run by the automation
(deployments/crash_reruns.py) and completes; a run that keeps crashing stops after the cap, Failed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployments.crash_reruns import MAX_RERUNS_ENV, crash_rerun_automation

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]
REPO = Path(__file__).resolve().parents[1]


async def _setup(api_url: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    from tests.crash_target import deploy

    async with get_client() as client:
        template = ProcessWorker.get_default_base_job_template()
        await client.create_work_pool(WorkPoolCreate(name="cpu", type="process", base_job_template=template))
        await client.create_automation(crash_rerun_automation("re-run crashed runs"))
        deployment_id = await deploy(client, REPO)
    return deployment_id


async def _run_and_wait(deployment_id: str, params: dict, timeout: float) -> tuple[str, list[str], str]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        run = await client.create_flow_run_from_deployment(deployment_id, parameters=params)
        deadline = time.monotonic() + timeout
        while True:
            current = await client.read_flow_run(run.id)
            states = await client.read_flow_run_states(run.id)
            history = [s.name for s in sorted(states, key=lambda s: s.timestamp)]
            if current.state and current.state.name in ("Completed", "Failed") or time.monotonic() > deadline:
                return current.state.name, history, current.state.message or ""
            await asyncio.sleep(1.0)


def test_a_killed_run_is_re_run_and_a_crash_loop_is_capped(postgres_api, tmp_path):
    api_url = postgres_api  # the session's server on PostgreSQL (conftest): this test does not kill it
    env = {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(REPO), MAX_RERUNS_ENV: "2",
           "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_LOGGING_LEVEL": "INFO"}  # fmt: skip
    from prefect.settings import PREFECT_API_URL, temporary_settings

    settings = temporary_settings({PREFECT_API_URL: api_url})  # env alone: settings may be read already
    settings.__enter__()
    deployment_id = asyncio.run(_setup(api_url))
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "deployments.worker", "--pool", "cpu"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        once = tmp_path / "once"
        once.mkdir()
        started = time.monotonic()
        state, history, _ = asyncio.run(_run_and_wait(deployment_id, {"marker_dir": str(once)}, 300))
        took = time.monotonic() - started
        print(f"\nkill -9 once: {state} after {took:.1f} s; states {history}")
        assert state == "Completed", (history, (tmp_path / "worker.log").read_text()[-3000:])
        assert "Crashed" in history and (once / "starts").read_text() == "2", "crashed, then done"

        loop = tmp_path / "loop"
        loop.mkdir()
        started = time.monotonic()
        state, history, message = asyncio.run(
            _run_and_wait(deployment_id, {"marker_dir": str(loop), "crashes": 99}, 400)
        )
        print(f"kill -9 always: {state} after {time.monotonic() - started:.1f} s; states {history}")
        # past the cap (2 re-runs) it fails at its start; a crash while the worker submits a re-run (seen
        # on a loaded machine: Pending -> Submitting -> Crashed) counts as one too
        crashes = history.count("Crashed")
        assert state == "Failed" and f"crashed {crashes} times" in message, (history, message)
        assert crashes >= 3, history
        assert int((loop / "starts").read_text()) <= crashes
    finally:
        try:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)
        finally:  # a worker slow to stop must not leave this server's API URL to the tests after it
            settings.__exit__(None, None, None)


async def _late_second_report(worker_type) -> tuple[str, str]:
    """A run picked up, crashed (reported by the runner), re-scheduled by the automation and submitted
    again; then the first worker's late report of the same dead process, then a real crash of the re-run."""
    from prefect import flow, get_client
    from prefect.states import Crashed, Pending, Running, Scheduled

    @flow(name="late-crash-report")
    def body() -> None: ...

    async with get_client() as client, worker_type(work_pool_name="late-crash-report") as worker:
        run = await client.create_flow_run(body, state=Scheduled())
        picked = await client.read_flow_run(run.id)
        for state in (Pending(), Running(), Crashed(message="runner: process exited -9")):
            await client.set_flow_run_state(run.id, state)
        await client.set_flow_run_state(run.id, Scheduled(name="AwaitingRetry"), force=True)
        repicked = await client.read_flow_run(run.id)
        await client.set_flow_run_state(run.id, Pending())
        await worker._propose_crashed_state(picked, "infrastructure exited with -9 (late)")
        after_late = (await client.read_flow_run(run.id)).state.name
        await worker._propose_crashed_state(repicked, "the re-run's process died")
        after_real = (await client.read_flow_run(run.id)).state.name
    return after_late, after_real


def test_a_late_second_report_of_one_crash_leaves_the_re_run_alone(prefect_server):
    """Prefect's worker reports a dead process a second time, seconds after its runner did: it crashed the
    re-run the automation had started meanwhile, and the flow ran twice at once. Ours reports it once."""
    from prefect.workers.process import ProcessWorker

    from deployments.worker import SingleCrashReportWorker

    assert asyncio.run(_late_second_report(ProcessWorker)) == ("Crashed", "Crashed"), "Prefect's behaviour"
    assert asyncio.run(_late_second_report(SingleCrashReportWorker)) == ("Pending", "Crashed")


def test_a_killed_sessions_database_is_dropped_when_the_next_session_starts(postgres_api):
    """A session killed with -9 never drops its `yivideo_session_<pid>` database; the next session does
    (`postgres_api` calls drop_stale_databases), where the pid is gone, and only this checkout's names."""
    from deployments.server import ensure_database
    from tests import pg_server as pg

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    suffix = os.environ.get("YIVIDEO_TEST_DB_SUFFIX", "")
    stale, other = f"yivideo_session_{gone.pid}{suffix}", f"yivideo_deployed_{gone.pid}{suffix}-elsewhere"
    for name in (stale, other):
        asyncio.run(ensure_database(name, pg.PG_HOST, pg.PG_PORT, pg.PG_USER, pg.PG_PASSWORD))
    try:
        assert stale in pg.drop_stale_databases()
        names = asyncio.run(pg._database_names())
        assert stale not in names and other in names
        assert f"yivideo_session_{os.getpid()}{suffix}" in names, "a live session's database stays"
    finally:
        for name in (stale, other):
            asyncio.run(pg._drop_database(name))
