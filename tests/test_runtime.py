"""The one way to run a stage, rule by rule (fast: no Ray, no server): what retries, what a stage asks of
Ray, when it asks for a GPU. The flows on Ray are tests/test_ray_runner.py and tests/test_ray_cluster.py."""

from __future__ import annotations

import pytest
from prefect import task

from blocks.policy import RunPolicy
from blocks.runner import NOSET_CUDA_ENV, RunnerConfig, StageResources
from core.errors import (
    ConfigError,
    MediaInputError,
    OutputError,
    StageError,
    StageTimeout,
    is_transient,
    retry_if_transient,
)
from gpu.devices import GPU_CAPABLE_TAG, GPU_TAG
from runtime.placement import on_gpu, runs_on_gpu, with_gpu_tag
from runtime.stage import Stages
from stages.transcode.checks import OutputCheckError


@task(name="ocr", tags=[GPU_CAPABLE_TAG])
def gpu_stage() -> None: ...


@task(name="crop")
def cpu_stage() -> None: ...


def test_one_retry_rule_for_every_stage() -> None:
    """Transient is named by type: a crashed stage, a dropped connection, a timeout. A bug, bad input, bad
    settings, a failed check and a full disk fail at once, whatever their message says."""
    import errno

    import httpx

    from gpu.client import GpuSlotError, GpuSlotTimeout

    never = [MediaInputError("a.mp4", "empty"), ConfigError("no such engine")]
    never.append(OutputCheckError("transcode", "a.mp4", "frame is 640x360, expected 1280x720"))
    never += [KeyError("band"), RuntimeError("connection timed out"), OutputError("/out", "disk full")]
    never += [OSError(errno.ENOSPC, "No space left on device"), ValueError("temporarily unavailable")]
    again = [StageError("ocr", "a.mp4", "engine hiccup"), StageTimeout("keyframes", "a.mp4", "ffmpeg: 60 s")]
    again += [ConnectionResetError("reset"), TimeoutError(), httpx.ConnectError("refused")]
    again += [GpuSlotError("no GPU broker is listening"), GpuSlotTimeout("waited 600 s")]
    assert [is_transient(e) for e in never] == [False] * len(never)
    assert [is_transient(e) for e in again] == [True] * len(again)
    prepared = Stages(RunPolicy(stage_retries=3, stage_backoff_seconds=1.0)).prepare(cpu_stage)
    assert prepared.retries == 3 and prepared.retry_delay_seconds == [1.0, 2.0, 4.0]
    assert prepared.retry_condition_fn is retry_if_transient


@task(name="fetch")
async def async_stage() -> None: ...


def test_a_stage_timeout_only_where_prefect_can_enforce_it() -> None:
    """A sync stage on local threads gets none (Prefect cannot interrupt a worker thread and warns on every
    run); an async one (as a Ray task: the worker's main thread) gets the policy's, at least its own."""
    stages = Stages(RunPolicy(stage_timeout_seconds=60.0))
    assert stages.prepare(cpu_stage).timeout_seconds is None
    assert stages.prepare(cpu_stage, min_timeout=600.0).timeout_seconds is None
    assert stages.prepare(async_stage).timeout_seconds == 60.0
    assert stages.prepare(async_stage, min_timeout=600.0).timeout_seconds == 600.0
    assert Stages(RunPolicy(stage_timeout_seconds=None)).prepare(async_stage, 600.0).timeout_seconds is None


def test_each_stage_asks_ray_for_the_block_s_resources() -> None:
    settings = RunnerConfig(
        kind="ray",
        stage_cpus=0.5,
        stage_memory_mb=256,
        gpu_fraction=0.25,
        gpu_resources={"gpu_node": 1},
        stage_resources={"ocr": StageResources(cpus=2, resources={"ocr_node": 0.01})},
    )
    assert settings.remote_options("crop", gpu=False) == {"num_cpus": 0.5, "memory": 256 * 1024**2}
    assert settings.remote_options("ocr", gpu=False) == {
        "num_cpus": 2, "memory": 256 * 1024**2, "resources": {"ocr_node": 0.01},
    }  # fmt: skip
    on_a_gpu = settings.remote_options("ocr", gpu=True)
    assert on_a_gpu["num_gpus"] == 0.25 and on_a_gpu["resources"] == {"gpu_node": 1, "ocr_node": 0.01}
    assert on_a_gpu["max_calls"] == 0 and on_a_gpu["runtime_env"]["env_vars"] == {NOSET_CUDA_ENV: "1"}


def test_a_gpu_only_where_the_stage_uses_one_and_the_cluster_has_one() -> None:
    auto, never = RunnerConfig(kind="ray"), RunnerConfig(kind="ray", gpus="never")
    assert on_gpu(gpu_stage, None, auto, cluster_gpus=2.0)  # tagged "gpu-capable"
    assert not on_gpu(gpu_stage, False, auto, cluster_gpus=2.0)  # its settings pin the CPU
    assert not on_gpu(cpu_stage, None, auto, cluster_gpus=2.0)
    assert on_gpu(cpu_stage, True, auto, cluster_gpus=2.0)
    assert not on_gpu(gpu_stage, None, auto, cluster_gpus=0.0), "no GPU on the cluster: a CPU node runs it"
    assert not on_gpu(gpu_stage, None, never, cluster_gpus=2.0)
    assert on_gpu(gpu_stage, "required", auto, cluster_gpus=1.0)
    with pytest.raises(ConfigError, match="stage 'ocr' requires a GPU .* the Ray cluster has none"):
        on_gpu(gpu_stage, "required", auto, cluster_gpus=0.0)


def test_the_gpu_tag_only_on_runs_that_get_a_gpu() -> None:
    """A stage declares that it may use a GPU ("gpu-capable"); its run is tagged "gpu" only when placement
    gives it one, so the UI's `gpu` filter and a tag concurrency limit on `gpu` never see CPU work."""
    on_host = with_gpu_tag(gpu_stage, runs_on_gpu(gpu_stage, None, host_gpus=[0]))
    assert GPU_TAG in on_host.tags and GPU_CAPABLE_TAG in on_host.tags
    assert GPU_TAG not in with_gpu_tag(gpu_stage, runs_on_gpu(gpu_stage, None, host_gpus=[])).tags
    assert GPU_TAG not in with_gpu_tag(gpu_stage, runs_on_gpu(gpu_stage, False, host_gpus=[0])).tags
    assert GPU_TAG not in with_gpu_tag(cpu_stage, runs_on_gpu(cpu_stage, None, host_gpus=[0])).tags
    assert GPU_TAG in with_gpu_tag(cpu_stage, runs_on_gpu(cpu_stage, True, host_gpus=[0])).tags
    assert GPU_TAG not in with_gpu_tag(on_host, False).tags, "a copy placed on the CPU loses the tag"
    # the one runtime path: Stages.prepare tags by the same decision (this host has no GPU)
    assert GPU_TAG not in Stages(RunPolicy()).prepare(gpu_stage).tags
