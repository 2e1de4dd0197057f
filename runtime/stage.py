"""The one way a flow runs a stage: through the flow's task runner, placed, under the run policy, timed.

    stages = Stages()                                     # the run policy of this deployment (or defaults)
    (video,), output_dir = stages.shared([video], output_dir)   # on Ray: seen alike on every node
    info = stages.run(probe_task, video, "video")         # submit, wait, record stages.timings["probe"]
    texts = stages.run(ocr_task, batches, crops, ocr, model=ocr)    # a model stage: warm actor on Ray
    future = stages.submit(transcode_task, ...)           # several at once
    futures = stages.map(enhance_image_task, sources, dests, unmapped(settings), gpu=True)

Retries and the timeout come from the `RunPolicy` block (retrying only what `core.errors.is_transient`
allows); where the stage runs comes from the flow's runner (runtime/placement.py: threads, Ray task, or a
warm Ray actor). Every flow uses this; flows/ only compose stages and hold their command lines.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from prefect import Task
from prefect.futures import PrefectFuture, PrefectFutureList

from blocks.policy import RunPolicy, current_run_policy
from runtime.placement import GpuUse, placed, shared_paths

R = TypeVar("R")


class Stages:
    """Runs one flow run's stages; `timings`: each stage's wall seconds by task name (manifest, bench)."""

    def __init__(self, policy: RunPolicy | None = None) -> None:
        self.policy = policy if policy is not None else current_run_policy()
        self.timings: dict[str, float] = {}

    def prepare(self, task: Task[..., R], min_timeout: float = 0.0) -> Task[..., R]:
        """`task` with the policy's retries, backoff and timeout; the timeout at least `min_timeout` s."""
        task = self.policy.apply_to_task(task)
        if task.timeout_seconds is not None and task.timeout_seconds < min_timeout:
            task = task.with_options(timeout_seconds=min_timeout)
        return task

    @staticmethod
    def shared(inputs: Sequence[str | Path], output_dir: str | Path) -> tuple[list[str], str]:
        """The inputs and output folder as stages see them (on Ray: absolute, checked on every node)."""
        return shared_paths(inputs, output_dir)

    def run(
        self, task: Task[..., R], *args: Any, min_timeout: float = 0.0, gpu: GpuUse = None,
        model: object | None = None,
    ) -> R:  # fmt: skip
        """Run one stage and wait for it; its exception is re-raised as is (after the policy's retries)."""
        started = time.perf_counter()
        result = self.submit(task, *args, min_timeout=min_timeout, gpu=gpu, model=model).result()
        elapsed = time.perf_counter() - started  # a stage run per window adds up
        self.timings[task.name] = round(self.timings.get(task.name, 0.0) + elapsed, 3)
        return result

    def submit(
        self, task: Task[..., R], *args: Any, min_timeout: float = 0.0, gpu: GpuUse = None,
        model: object | None = None,
    ) -> PrefectFuture[R]:  # fmt: skip
        """Start one stage without waiting. `gpu`: will it use a GPU (None: its "gpu" tag; "required": its
        settings pin CUDA); `model`: the engine settings of a model stage (served warm on Ray)."""
        prepared = self.prepare(task, min_timeout)
        with placed(prepared, gpu, model):
            return prepared.submit(*args)

    def map(
        self, task: Task[..., R], *iterables: Any, min_timeout: float = 0.0, gpu: GpuUse = None,
        model: object | None = None,
    ) -> PrefectFutureList[PrefectFuture[R]]:  # fmt: skip
        """One run of the stage per item (Prefect's `Task.map`), each placed like `submit`."""
        prepared = self.prepare(task, min_timeout)
        with placed(prepared, gpu, model):
            return prepared.map(*iterables)


def run_stage(task: Task[..., R], *args: Any, gpu: GpuUse = None, model: object | None = None) -> R:
    """Submit one task through the flow's runner, placed, and wait for it: no policy applied (tests, benches
    and ad-hoc flows that set their own retries)."""
    with placed(task, gpu, model):
        future = task.submit(*args)
    return future.result()
