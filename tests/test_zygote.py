"""Deployed runs forked from the worker's template process (deployments/zygote.py), on a real server on
PostgreSQL with the project's worker: each run a fresh process of its own, with its own environment and
Prefect settings, forked from a template that imported Prefect and the flows but loaded no model; a run
cancelled from Prefect stops; a run whose process the worker kills (its client) dies with it, Crashed once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]
REPO = Path(__file__).resolve().parents[1]
POOL = "zygote-test"


@pytest.fixture(scope="module")
def worker(postgres_api, tmp_path_factory) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """(deployment id, the project's worker on its own pool, its log)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    log = tmp_path_factory.mktemp("zygote") / "worker.log"
    with temporary_settings({PREFECT_API_URL: postgres_api}):  # env alone: settings may be read already
        deployment_id = asyncio.run(_setup())
        env = {**os.environ, "PREFECT_API_URL": postgres_api, "PYTHONPATH": str(REPO),
               "PREFECT_WORKER_QUERY_SECONDS": "1"}  # fmt: skip
        env.pop("ZYGOTE_PROBE", None)
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "deployments.worker", "--pool", POOL], cwd=REPO, env=env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_for("the template process to be ready", lambda: "ready on" in log.read_text(), 120, log)
            yield deployment_id, process, log
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


async def _setup() -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    from tests.zygote_target import deploy

    async with get_client() as client:
        template = ProcessWorker.get_default_base_job_template()
        await client.create_work_pool(WorkPoolCreate(name=POOL, type="process", base_job_template=template))
        return await deploy(client, REPO, POOL)


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _start(deployment_id: str, report: Path, seconds: float = 0.0, env: dict | None = None):
    with _client() as client:
        return client.create_flow_run_from_deployment(
            deployment_id, parameters={"report": str(report), "seconds": seconds},
            job_variables={"env": env} if env else None,
        ).id  # fmt: skip


def _history(run_id) -> list[str]:
    with _client() as client:
        return [s.name for s in sorted(client.read_flow_run_states(run_id), key=lambda s: s.timestamp)]


def _ended(run_id, *names: str):
    return lambda: (h := _history(run_id)) and h[-1] in names and h


def _children(worker: subprocess.Popen, running: str) -> list[psutil.Process]:
    return [p for p in psutil.Process(worker.pid).children() if running in " ".join(p.cmdline())]


def test_each_run_is_a_fresh_process_forked_from_the_template_with_its_own_environment(worker, tmp_path):
    deployment_id, process, log = worker
    (template,) = _children(process, "deployments.zygote")
    first = _start(deployment_id, tmp_path / "first.json")
    wait_for("the first run to complete", _ended(first, "Completed", "Failed", "Crashed"), 180, log)
    second = _start(deployment_id, tmp_path / "second.json", env={"ZYGOTE_PROBE": "from-run"})
    wait_for("the second run to complete", _ended(second, "Completed", "Failed", "Crashed"), 180, log)
    assert _history(first)[-1] == _history(second)[-1] == "Completed", log.read_text()[-3000:]
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("first", "second"))
    print(f"\nruns forked from {template.pid}: {a}\n{b}")
    assert a["ppid"] == b["ppid"] == template.pid, "each run's process is a child of the template"
    assert a["pid"] != b["pid"], "a fresh process per run"
    assert a["pgid"] == a["pid"] and b["pgid"] == b["pid"], "each run leads its own process group"
    assert a["subtitles_imported"] and b["subtitles_imported"], "the flows came imported from the template"
    assert a["global_seen"] is None and b["global_seen"] is None, "nothing one run set is seen by the next"
    assert (a["probe_env"], b["probe_env"]) == ("from-deployment", "from-run"), "each run's own environment"
    assert a["client_max_retries"] == b["client_max_retries"] == 7, "Prefect's settings from the run's env"
    assert not a["onnxruntime_imported"] and not b["onnxruntime_imported"]
    maps = Path(f"/proc/{template.pid}/maps").read_text()
    assert "onnxruntime" not in maps and "ctranslate2" not in maps, "no model runtime in the template"
    assert "ZYGOTE_PROBE" not in template.environ(), "the template holds no run's environment"


def test_a_cancelled_run_stops_and_a_killed_run_process_is_crashed_once(worker, tmp_path):
    deployment_id, process, log = worker
    from prefect.client.schemas.objects import StateType
    from prefect.states import State

    for how in ("cancel", "kill the worker's process", "kill the run's process"):
        report = tmp_path / f"{how.replace(' ', '-')}.json"
        run = _start(deployment_id, report, seconds=300)
        wait_for(f"the run to {how} to start", report.exists, 180, log)
        pid = json.loads(report.read_text())["pid"]
        started = time.monotonic()
        if how == "cancel":
            with _client() as client:
                client.set_flow_run_state(run, State(type=StateType.CANCELLING))
        elif how == "kill the worker's process":  # the client standing in for the run: the worker's hard kill
            (client_process,) = _children(process, "zygote_client.py")
            client_process.kill()
        else:
            os.kill(pid, signal.SIGKILL)
        ended = ("Cancelled",) if how == "cancel" else ("Crashed",)
        history = wait_for(f"the run to end after '{how}'", _ended(run, *ended), 90, log)
        wait_for("its process to be gone", lambda pid=pid: not psutil.pid_exists(pid), 30, log)
        print(f"\n{how}: {history[-1]} after {time.monotonic() - started:.1f} s; states {history}")
        time.sleep(3.0)  # a late second crash report would land by now
        assert _history(run).count("Crashed") <= 1, _history(run)
