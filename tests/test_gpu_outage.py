"""A GPU slot asked for while the Prefect server is down (being restarted) waits for it, then is granted.

Found by bench/faults.py (kill -9 of the server): runs that reached their GPU stage during the outage
failed at once ("the GPU broker could not reach Prefect to set up the GPU limits"), though the server was
back seconds later. A real server on PostgreSQL, killed with -9 and started again on the same database.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from gpu.devices import limit_name
from gpu.slot import gpu_slot
from tests.gpu_brokers import stop_brokers
from tests.pg_server import postgres_prefect_server

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(400)]


def test_a_slot_asked_during_a_server_restart_is_granted_once_it_is_back(tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    run_dir = tmp_path / "gpu-run"
    with postgres_prefect_server(f"yivideo_gpu_outage_{os.getpid()}") as server:
        monkeypatch.setenv("PREFECT_API_URL", server.api_url)
        monkeypatch.setenv("YIVIDEO_GPU_RUN_DIR", str(run_dir))
        monkeypatch.setenv("YIVIDEO_GPU_GATE", "always")
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            try:
                server.kill()
                got: dict[str, object] = {}

                def take() -> None:
                    try:
                        with gpu_slot("outage-test", timeout=300) as grant:
                            got["limit"] = grant.limit
                    except Exception as exc:
                        got["error"] = exc

                waiter = threading.Thread(target=take, daemon=True)
                waiter.start()
                deadline = time.monotonic() + 120
                while waiter.is_alive() and time.monotonic() < deadline:  # the broker meets the outage
                    logs = " ".join(p.read_text(errors="replace") for p in run_dir.glob("*/broker.log"))
                    if "Prefect unreachable" in logs:
                        break
                    time.sleep(0.5)
                assert waiter.is_alive(), f"the slot did not wait for the server: {got}"
                server.start()
                waiter.join(timeout=240)
                assert got == {"limit": limit_name(0)}, got
                with get_client(sync_client=True) as client:
                    assert client.read_global_concurrency_limit_by_name(limit_name(0)).active_slots <= 1
            finally:
                stop_brokers(run_dir)
