"""A deployable flow that reports the process it runs in, for tests/test_zygote.py."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import psutil
from prefect import flow

import flows  # a package the worker's template process imports: a global set on it shows a shared process


@flow(name="zygote-probe")
def zygote_probe(report: str, seconds: float = 0.0) -> None:
    """Writes its process's facts to `report`, then sleeps `seconds` (a run to cancel or kill)."""
    from prefect.settings import get_current_settings

    seen = getattr(flows, "_zygote_probe_owner", None)
    flows._zygote_probe_owner = report
    facts = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "seconds_since_process_start": time.time() - psutil.Process().create_time(),
        "probe_env": os.environ.get("ZYGOTE_PROBE"),
        "client_max_retries": get_current_settings().client.max_retries,
        "global_seen": seen,
        "subtitles_imported": "flows.subtitles" in sys.modules,  # this flow never imports it
        "onnxruntime_imported": "onnxruntime" in sys.modules,
    }
    Path(report).write_text(json.dumps(facts))
    time.sleep(seconds)


async def deploy(client, repo: Path, pool: str) -> str:
    """The deployment of `zygote_probe` on `pool`, run from `repo`, with environment of its own."""
    flow_id = await client.create_flow_from_name(zygote_probe.name)
    deployment_id = await client.create_deployment(
        flow_id=flow_id, name="probe", work_pool_name=pool, path=str(repo),
        entrypoint="tests/zygote_target.py:zygote_probe",
        pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(repo)}}],
        job_variables={"env": {"ZYGOTE_PROBE": "from-deployment", "PREFECT_CLIENT_MAX_RETRIES": "7"}},
    )  # fmt: skip
    return str(deployment_id)
