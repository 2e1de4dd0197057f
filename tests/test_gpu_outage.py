"""A GPU slot asked for while the Prefect server is down (being restarted) waits for it, then is granted.

Found by bench/faults.py (kill -9 of the server): runs that reached their GPU stage during the outage
failed at once ("the GPU broker could not reach Prefect to set up the GPU limits"), though the server was
back seconds later. A real server on PostgreSQL, killed with -9 and started again on the same database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpu.devices import limit_name
from tests.gpu_brokers import stop_brokers
from tests.pg_server import postgres_prefect_server

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.postgres, pytest.mark.timeout(400)]


# The slot is asked for in a child process of its own: the session's test-harness server (conftest's
# prefect_server, active once an earlier test used it) must not be the API the slot reaches.
TAKE_SLOT = """
from gpu.slot import gpu_slot
with gpu_slot("outage-test", timeout=300) as grant:
    print(grant.limit, flush=True)
"""


def test_a_slot_asked_during_a_server_restart_is_granted_once_it_is_back(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    run_dir = tmp_path / "gpu-run"
    with postgres_prefect_server(f"yivideo_gpu_outage_{os.getpid()}") as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env |= {"PREFECT_API_URL": server.api_url, "PREFECT_HOME": str(tmp_path / "home")}
        env |= {"PYTHONPATH": str(REPO), "YIVIDEO_GPU_RUN_DIR": str(run_dir), "YIVIDEO_GPU_GATE": "always"}
        try:
            server.kill()
            waiter = subprocess.Popen(
                [sys.executable, "-c", TAKE_SLOT], env=env, cwd=REPO, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            deadline = time.monotonic() + 120
            while waiter.poll() is None and time.monotonic() < deadline:  # the broker meets the outage
                logs = " ".join(p.read_text(errors="replace") for p in run_dir.glob("*/broker.log"))
                if "Prefect unreachable" in logs:
                    break
                time.sleep(0.5)
            assert waiter.poll() is None, f"the slot did not wait for the server: {waiter.communicate()}"
            server.start()
            out, err = waiter.communicate(timeout=240)
            assert waiter.returncode == 0 and out.strip() == limit_name(0), (out, err[-3000:])
            with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
                with get_client(sync_client=True) as client:
                    assert client.read_global_concurrency_limit_by_name(limit_name(0)).active_slots <= 1
        finally:
            stop_brokers(run_dir)
