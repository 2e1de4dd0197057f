"""A deployable flow that kills its own process (kill -9) a given number of times, for the crash tests."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from prefect import flow

from deployments.crash_reruns import refuse_crash_loops
from gpu.slot import gpu_slot


@flow(name="crash-target")
def _crash_target(marker_dir: str, crashes: int = 1, seconds: float = 0.0, gpu: bool = False) -> int:
    """Counts its starts in `marker_dir`; dies by SIGKILL on the first `crashes` starts, then completes
    after `seconds` of work (sleep), so a fault from outside can land mid-run. With `gpu` the work holds a
    GPU slot (gpu/slot.py; YIVIDEO_GPU_GATE=always on a host without CUDA), to see slots come back."""
    starts = Path(marker_dir) / "starts"
    count = int(starts.read_text()) + 1 if starts.exists() else 1
    starts.write_text(str(count))
    if count <= crashes:
        os.kill(os.getpid(), signal.SIGKILL)
    with gpu_slot("fault-bench") if gpu else contextlib.nullcontext():
        time.sleep(seconds)
    done = Path(marker_dir) / "finished"  # how often the body ran to its end (a duplicate shows as 2)
    done.write_text(str(int(done.read_text()) + 1 if done.exists() else 1))
    return count


crash_target = refuse_crash_loops(_crash_target)


async def deploy(client, repo: Path) -> str:
    """The deployment of `crash_target` on the `cpu` process pool, run from `repo`, tagged like ours."""
    from deployments.crash_reruns import DEPLOYMENT_TAG

    flow_id = await client.create_flow_from_name(crash_target.name)
    deployment_id = await client.create_deployment(
        flow_id=flow_id, name="crash", work_pool_name="cpu", path=str(repo), tags=[DEPLOYMENT_TAG],
        entrypoint="tests/crash_target.py:crash_target",
        pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(repo)}}],
    )  # fmt: skip
    return str(deployment_id)
