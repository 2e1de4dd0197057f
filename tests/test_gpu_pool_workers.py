"""Two Prefect process workers on the `gpu` pool, one per host: a deployment's runs spread over them, and each
run's GPU stages take its own host's device limit. No Ray here: this module had lived in
tests/test_ray_runner.py, and its ~40 s kept the Ray group's xdist worker busy while it used no Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gpu_brokers import stop_brokers

from flows.subtitles import extract_subtitles
from gpu.client import RUN_DIR_ENV
from gpu.devices import GATE_ENV, HOST_ENV, limit_name
from samples.scoring import squash
from samples.video import busy_script, make_subtitled_video

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def short_video(media_dir) -> Path:
    """tests/test_ray_runner.py's short video (the media cache renders it once for both)."""
    return make_subtitled_video(media_dir / "short-ray.mp4", busy_script()[:2], duration=5.0, size=(640, 360))


def _limit_names() -> set[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return {limit.name for limit in client.read_global_concurrency_limits(limit=200)}


def _start_worker(name: str, queue: str, log: Path, env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "deployments.worker", "--pool", "gpu", "--work-queue", queue]
    command += ["--name", name, "--limit", "1"]
    with log.open("w") as out:  # a file, not a pipe: nobody drains a pipe while the runs go on
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def test_two_workers_on_the_gpu_pool_share_the_runs(prefect_server, short_video, tmp_path):
    """One Prefect worker per host on the `gpu` pool: each takes runs while the other is busy, and the GPU
    stages of its runs take its own host's device limit."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL
    from prefect.workers.process import ProcessWorker

    queue = f"two-hosts-{os.getpid()}"
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool("gpu")
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(WorkPoolCreate(name="gpu", type="process", base_job_template=template))
        flow_id = client.create_flow_from_name(extract_subtitles.name)
        client.create_deployment(
            flow_id=flow_id,
            name=queue,
            work_pool_name="gpu",
            work_queue_name=queue,
            entrypoint="flows/subtitles.py:extract_subtitles",
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}],
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIVIDEO_")}  # local runner per host
    # a Prefect home of this test's own: the runs' model service is keyed by it (core/model_service.py), so
    # the one stopped below is this test's, never one another xdist worker's runs share
    home, run_dir = tmp_path / "prefect-home", tmp_path / "gpu-run"
    env |= {"PREFECT_HOME": str(home), "YIVIDEO_MODEL_SERVICE_IDLE_S": "20"}  # 20 s: a backstop
    env |= {"PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    env |= {"PREFECT_LOGGING_LEVEL": "INFO", GATE_ENV: "always", RUN_DIR_ENV: str(run_dir)}
    hosts = [f"host-{letter}-{os.getpid()}" for letter in "ab"]  # two hosts, each with its own device limit
    logs = {host: tmp_path / f"{host}.log" for host in hosts}
    workers = [_start_worker(host, queue, log, env | {HOST_ENV: host}) for host, log in logs.items()]
    try:
        _wait_polling("gpu", hosts, workers)  # a worker still starting could leave both runs to the other
        runs = [
            run_deployment(
                f"{extract_subtitles.name}/{queue}",
                parameters={"video": str(short_video), "output_dir": str(tmp_path / f"out{i}")},
                timeout=0,
            )
            for i in range(2)  # each worker takes one at a time (--limit 1): the second goes to the other
        ]
        states = _wait_final([r.id for r in runs], timeout=240)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
        _stop_model_service(env)  # else it and the brokers idled on 20-30 s, past the end of a session
        stop_brokers(run_dir)
    assert all(s.is_completed() for s in states.values()), {k: s.message for k, s in states.items()}
    taken = {host: _runs_taken(log.read_text(), runs) for host, log in logs.items()}
    assert all(taken.values()), f"one worker took every run: {taken}"
    assert not set.intersection(*taken.values()) and len(set.union(*taken.values())) == len(runs), taken
    assert {limit_name(0, host) for host in hosts} <= _limit_names(), "each host's stages took its own limit"
    for i in range(len(runs)):
        (srt,) = (tmp_path / f"out{i}").rglob("*.srt")
        assert "Movingbackgroundtest" in squash(srt.read_text(encoding="utf-8"))


def _stop_model_service(env: dict[str, str]) -> None:
    stop = [sys.executable, "-m", "core.model_service", "stop"]
    subprocess.run(stop, cwd=REPO, env=env, capture_output=True, timeout=60, check=False)


def _wait_polling(pool: str, names: list[str], workers: list[subprocess.Popen], timeout: float = 120) -> None:
    """Until every named worker has reported to the server (it polls from then on)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while not set(names) <= {w.name for w in client.read_workers_for_work_pool(pool)}:
            assert time.monotonic() < deadline and all(w.poll() is None for w in workers), "workers not up"
            time.sleep(0.5)


def _runs_taken(worker_log: str, runs) -> set[str]:
    """Runs this worker claimed: it logs every run it tries, and an abort for those another worker won."""
    tried = {str(r.id) for r in runs if f"submitting flow run '{r.id}'" in worker_log}
    return {i for i in tried if f"Aborted submission of flow run '{i}'" not in worker_log}


def _wait_final(run_ids, timeout: float) -> dict:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            states = {str(i): client.read_flow_run(i).state for i in run_ids}
            if all(s.is_final() for s in states.values()) or time.monotonic() > deadline:
                return states
            time.sleep(1)
