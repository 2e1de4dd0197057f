"""The one way a flow runs a stage: through the flow's task runner, placed, under the run policy, timed.

    stages = Stages()                                     # the run policy of this deployment (or defaults)
    (video,), output_dir = stages.shared([video], output_dir)   # on Ray: seen alike on every node
    info = stages.run(probe_task, video, "video")         # submit, wait, record stages.timings["probe"]
    transcript = stages.run(transcribe_task, audio, asr, model=asr)   # a model stage: warm actor on Ray
    future = stages.submit(transcode_task, ...)           # several at once
    futures = stages.map(enhance_image_task, sources, dests, unmapped(settings), gpu=True)
    texts = stages.run_each(ocr_task, batches, parts, unmapped(ocr), model=ocr)  # map, wait, in order

Retries and the timeout come from the `RunPolicy` block (retrying only what `core.errors.is_transient`
allows; the stage timeout only where Prefect can enforce it: `placement.timeouts_enforced`); where the
stage runs comes from the flow's runner (runtime/placement.py: threads, Ray task, or a warm Ray actor).
Every flow uses this; flows/ only compose stages and hold their command lines.

Test-only, off by default: YIVIDEO_TEST_INTERRUPT_AT=<stage name> stops a run as that stage starts, the
stages before it finished (tests/test_resume.py interrupts each stage of each flow, then re-runs): a
KeyboardInterrupt in the flow's thread, as a Ctrl-C arriving then would. `<stage>:announce` instead prints
one line to stderr once the stage is submitted and lets the run go on (the test SIGKILLs it meanwhile).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from prefect import Task
from prefect.futures import PrefectFuture, PrefectFutureList, as_completed

from blocks.policy import RunPolicy, current_run_policy
from runtime.placement import GpuUse, placed, runs_on_gpu, shared_paths, timeouts_enforced, with_gpu_tag

R = TypeVar("R")
INTERRUPT_ENV = "YIVIDEO_TEST_INTERRUPT_AT"  # test-only: see the module's docstring
ANNOUNCE = "announce"


def _interrupt_hook(task: Task, submitted: bool) -> None:
    """The test-only interruption named by YIVIDEO_TEST_INTERRUPT_AT, when `task` is the named stage."""
    stage, _, mode = os.environ.get(INTERRUPT_ENV, "").partition(":")
    if stage != task.name:
        return
    if mode == ANNOUNCE and submitted:
        print(f"{INTERRUPT_ENV}: stage {stage} started", file=sys.stderr, flush=True)
    elif not mode and not submitted:
        raise KeyboardInterrupt(f"{INTERRUPT_ENV}={stage}")


class Stages:
    """Runs one flow run's stages; `timings`: each stage's wall seconds by task name (manifest, bench)."""

    def __init__(self, policy: RunPolicy | None = None) -> None:
        self.policy = policy if policy is not None else current_run_policy()
        self.timings: dict[str, float] = {}
        self.started: str | None = None  # the stage started last: the one that failed when a run raised

    def prepare(self, task: Task[..., R], min_timeout: float = 0.0, gpu: GpuUse = None) -> Task[..., R]:
        """`task` with the policy's retries and backoff, its timeout (at least `min_timeout` s) where Prefect
        can enforce one (`timeouts_enforced`), and the "gpu" tag exactly when this run gets a GPU."""
        task = self.policy.apply_to_task(task)  # a copy: with_options cannot unset a timeout (None keeps it)
        if not timeouts_enforced(task):
            task.timeout_seconds = None
        elif task.timeout_seconds is not None and task.timeout_seconds < min_timeout:
            task = task.with_options(timeout_seconds=min_timeout)
        return with_gpu_tag(task, runs_on_gpu(task, gpu))

    @staticmethod
    def shared(inputs: Sequence[str | Path], output_dir: str | Path) -> tuple[list[str], str]:
        """The inputs and output folder as stages see them (on Ray: absolute, checked on every node)."""
        return shared_paths(inputs, output_dir)

    def run(
        self, task: Task[..., R], *args: Any, min_timeout: float = 0.0, gpu: GpuUse = None,
        model: object | None = None,
    ) -> R:  # fmt: skip
        """Run one stage and wait for it; its exception is re-raised as is (after the policy's retries)."""
        started, self.started = time.perf_counter(), task.name
        result = self.submit(task, *args, min_timeout=min_timeout, gpu=gpu, model=model).result()
        self._record(task, started)
        return result

    def start(
        self, task: Task[..., R], *args: Any, min_timeout: float = 0.0, gpu: GpuUse = None,
        model: object | None = None,
    ) -> Callable[[], R]:  # fmt: skip
        """Start one stage now, wait for it later: the returned call waits and re-raises its exception (after
        the policy's retries). Its time runs from now until it finished, not until it was waited on. Stages
        started ahead overlap the ones run meanwhile (a video's next window decodes while this one is read),
        so the times add up to more than the flow's wall time."""
        started = time.perf_counter()
        finished: list[float] = []
        future = self.submit(task, *args, min_timeout=min_timeout, gpu=gpu, model=model)
        future.add_done_callback(lambda _: finished.append(time.perf_counter()))

        def wait() -> R:
            self.started = task.name
            result = future.result()
            self._record(task, started, finished[0] if finished else None)
            return result

        return wait

    def run_each(
        self, task: Task[..., R], *iterables: Any, min_timeout: float = 0.0, gpu: GpuUse = None,
        model: object | None = None, on_each: Callable[[R], None] | None = None,
    ) -> list[R]:  # fmt: skip
        """`map` and wait for every run: their results in order; a failure is re-raised as soon as it happens
        (after the policy's retries). The stage's time is the wall time of all its runs together.
        `on_each` sees each run's result as it finishes (progress with speed and time left)."""
        started, self.started = time.perf_counter(), task.name
        futures = self.map(task, *iterables, min_timeout=min_timeout, gpu=gpu, model=model)
        if on_each is not None:
            for future in as_completed(list(futures)):
                on_each(future.result())
        results = futures.result()
        self._record(task, started)
        return list(results)

    def _record(self, task: Task, started: float, finished: float | None = None) -> None:
        elapsed = (finished or time.perf_counter()) - started  # a stage run per window adds up
        self.timings[task.name] = round(self.timings.get(task.name, 0.0) + elapsed, 3)

    def submit(
        self, task: Task[..., R], *args: Any, min_timeout: float = 0.0, gpu: GpuUse = None,
        model: object | None = None,
    ) -> PrefectFuture[R]:  # fmt: skip
        """Start one stage without waiting. `gpu`: may it use a GPU (None: its "gpu-capable" tag; "required":
        its settings pin CUDA); `model`: the engine settings of a model stage (served warm on Ray)."""
        prepared = self.prepare(task, min_timeout, gpu)
        _interrupt_hook(task, submitted=False)
        with placed(prepared, gpu, model):
            future = prepared.submit(*args)
        _interrupt_hook(task, submitted=True)
        return future

    def map(
        self, task: Task[..., R], *iterables: Any, min_timeout: float = 0.0, gpu: GpuUse = None,
        model: object | None = None,
    ) -> PrefectFutureList[PrefectFuture[R]]:  # fmt: skip
        """One run of the stage per item (Prefect's `Task.map`), each placed like `submit`."""
        prepared = self.prepare(task, min_timeout, gpu)
        _interrupt_hook(task, submitted=False)
        with placed(prepared, gpu, model):
            futures = prepared.map(*iterables)
        _interrupt_hook(task, submitted=True)
        return futures


def run_stage(task: Task[..., R], *args: Any, gpu: GpuUse = None, model: object | None = None) -> R:
    """Submit one task through the flow's runner, placed, and wait for it: no policy applied (tests, benches
    and ad-hoc flows that set their own retries)."""
    task = with_gpu_tag(task, runs_on_gpu(task, gpu))
    with placed(task, gpu, model):
        future = task.submit(*args)
    return future.result()
