"""Worker faults on a real server on PostgreSQL, with the project's worker (deployments/worker.py):

- the heartbeat automation crashes a run whose process died with its worker (kill -9 of both), and its alert
  fires for that run; a run that completed is left Completed and alerts nothing;
- after the server died (kill -9), the worker exits within 5 s of SIGTERM (`prefect worker start` took ~9 s).

Heartbeats go every 30 s (Prefect's minimum) and the test's grace is 20 s: every run here ends or is killed
before it would send a second heartbeat, so the grace is never shorter than a healthy run's silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from blocks.policy import AlertRules
from deployments.bootstrap import ALERT_PREFIX, NO_HEARTBEAT, alert_automations
from tests.pg_server import SERVER_PIDS, prefect_postgres_server
from tests.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]
REPO = Path(__file__).resolve().parents[1]
GRACE = 20.0
HEARTBEAT_AUTOMATION = f"{ALERT_PREFIX}run without heartbeats marked crashed"
ALERT_AUTOMATION = f"{ALERT_PREFIX}run crashed for missing heartbeats"


async def _setup() -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    from tests.crash_target import deploy

    async with get_client() as client:
        template = ProcessWorker.get_default_base_job_template()
        await client.create_work_pool(WorkPoolCreate(name="cpu", type="process", base_job_template=template))
        for automation in alert_automations(AlertRules(heartbeat_grace_seconds=GRACE)):
            await client.create_automation(automation)
        return await deploy(client, REPO)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, str, dict[str, str]]]:
    """(API URL, deployment id, the worker's environment); the last test kills this server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with prefect_postgres_server("yivideo_worker_faults") as api_url:
        with temporary_settings({PREFECT_API_URL: api_url}):  # env alone: settings may be read already
            deployment_id = asyncio.run(_setup())
            env = {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(REPO),
                   "PREFECT_WORKER_QUERY_SECONDS": "1",
                   "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}  # fmt: skip
            yield api_url, deployment_id, env


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    """The project's worker, in its own process group with the flow-run processes it starts."""
    with log.open("ab") as out:
        command = [sys.executable, "-m", "deployments.worker", "--pool", "cpu"]
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _run(deployment_id: str, marker: Path, seconds: float):
    marker.mkdir()
    with _client() as client:
        params = {"marker_dir": str(marker), "crashes": 0, "seconds": seconds}
        return client.create_flow_run_from_deployment(deployment_id, parameters=params).id


def _flow_run_processes(run_id) -> list[psutil.Process]:
    """The processes running `run_id`: Prefect's process worker starts each in a session of its own, so
    killing the worker's process group leaves them running (one outlived a whole suite)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("PREFECT__FLOW_RUN_ID") == str(run_id):
                found.append(proc)
    return found


def _state_names(run_id) -> list[str]:
    with _client() as client:
        return [s.name for s in sorted(client.read_flow_run_states(run_id), key=lambda s: s.timestamp)]


def _fired_for(automation_name: str) -> set[str]:
    """The flow-run ids an automation fired for (its `prefect.automation.triggered` events)."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    with _client() as client:
        automation = client.read_automations_by_name(automation_name)[0]
        page = client.read_events(
            EventFilter(
                event=EventNameFilter(name=["prefect.automation.triggered"]),
                resource=EventResourceFilter(id=[f"prefect.automation.{automation.id}"]),
            ),
            limit=50,
        )
    labels = [e.payload.get("triggering_labels", {}) for e in page.events]
    return {label.get("prefect.resource.id", "").removeprefix("prefect.flow-run.") for label in labels}


def test_a_run_killed_with_its_worker_is_crashed_and_a_finished_run_is_left_alone(server, tmp_path):
    _, deployment_id, env = server
    log = tmp_path / "worker.log"
    worker, killed = _start_worker(env, log), None
    try:
        done = _run(deployment_id, tmp_path / "done", 1.0)
        wait_for("the short run to complete", lambda: _state_names(done)[-1:] == ["Completed"], 180, log)
        completed_at = time.monotonic()

        killed = _run(deployment_id, tmp_path / "killed", 300.0)
        wait_for("the long run's body to start", (tmp_path / "killed" / "starts").exists, 180, log)
        time.sleep(3.0)  # its first heartbeat (sent as the body starts) reaches the server
        running = _flow_run_processes(killed)
        assert running, "the long run's process was found"
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and the flow-run process: nobody reports a state
        for proc in running:
            proc.kill()
        worker.wait()
        psutil.wait_procs(running, timeout=10)
        killed_at = time.monotonic()

        def crashed():
            with _client() as client:
                state = client.read_flow_run(killed).state
            return state if state.type.value == "CRASHED" else None

        state = wait_for("the heartbeat automation to crash the killed run", crashed, GRACE + 90, log)
        print(f"\nkilled run Crashed {time.monotonic() - killed_at:.1f} s after the kill: {state.message}")
        assert state.message.startswith(NO_HEARTBEAT)
        fired = lambda: str(killed) in _fired_for(ALERT_AUTOMATION)  # noqa: E731
        alerted = wait_for("the alert for the crashed run", fired, 30, log)
        assert alerted

        # the completed run: a full grace (plus the proactive evaluation's period) after it ended, untouched
        time.sleep(max(0.0, completed_at + GRACE + 15 - time.monotonic()))
        history = _state_names(done)
        assert history[-1] == "Completed" and "Crashed" not in history, history
        assert str(done) not in _fired_for(ALERT_AUTOMATION), "no alert for a run that had finished"
        # What users see is asserted above (state, alert). The crash automation itself may still fire on the
        # finished run when a heartbeat lands after its final state (Prefect #21932): the server refuses it.
        fired = _fired_for(HEARTBEAT_AUTOMATION)
        print(f"heartbeat automation fired for: killed {str(killed) in fired}, done {str(done) in fired}")
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        for proc in _flow_run_processes(killed) if killed else []:
            proc.kill()


def test_the_worker_exits_within_5_s_of_sigterm_after_the_server_died(server, tmp_path):
    api_url, deployment_id, env = server
    log = tmp_path / "worker.log"
    worker = _start_worker(env, log)
    try:
        run = _run(deployment_id, tmp_path / "served", 0.0)  # it does serve runs
        wait_for("a run served by the worker", lambda: _state_names(run)[-1:] == ["Completed"], 180, log)
        os.killpg(SERVER_PIDS[api_url], signal.SIGKILL)
        time.sleep(3.0)  # the worker notices nothing yet, or is retrying its next poll
        assert worker.poll() is None, log.read_text()[-3000:]
        started = time.monotonic()
        os.kill(worker.pid, signal.SIGTERM)
        try:
            code = worker.wait(timeout=30)
        finally:
            took = time.monotonic() - started
        print(f"\nworker exit {took:.2f} s after SIGTERM with the server gone (status {code})")
        assert took < 5.0 and code == 0, log.read_text()[-3000:]
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
