"""Where one stage runs: nothing to decide on local threads; on Ray, what its submission asks of the cluster.

Every stage of every flow is submitted inside `placed(task, gpu, model)` (runtime/stage.py does it):
- resources from the runner block (blocks/runner.py): CPUs, memory, custom resources, per stage by name;
- a GPU only where the stage will use one: `gpu` True (or None and the task is tagged "gpu-capable"), the
  cluster has GPUs and the block's `gpus` is not "never". On a cluster without GPUs a GPU stage runs on a
  CPU node (gpu_slot gives it the CPU there); `gpu="required"` (the stage's settings pin CUDA) fails at once;
- the "gpu" tag on exactly the task runs that get a GPU (`runs_on_gpu`, `with_gpu_tag`): on Ray when Ray
  gives them one, locally when this host has one. A stage declares only that it may use one (its
  "gpu-capable" tag); the UI's `gpu` filter and any tag concurrency limit on `gpu` see real GPU work only;
- a stage given its `model` (engine settings) runs in that model's warm actor (runtime/ray_engine.py)
  when the block's `warm_models` is on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from prefect import Task
from prefect.context import FlowRunContext

from blocks.runner import RunnerConfig
from core.errors import ConfigError
from gpu.devices import GPU_CAPABLE_TAG, GPU_TAG, visible_gpus
from runtime.runner import StageRunner

GpuUse = bool | Literal["required"] | None  # None: as the task's "gpu-capable" tag says


def _ray_run() -> tuple[RunnerConfig, float] | None:
    """(runner settings, cluster GPUs) when the current flow run's stages go to Ray, else None."""
    context = FlowRunContext.get()
    runner = context.task_runner if context else None
    if isinstance(runner, StageRunner) and runner.on_ray:
        return runner.active_settings, runner.cluster_gpus  # type: ignore[return-value]
    if type(runner).__name__ == "RayTaskRunner":  # a flow given prefect-ray's runner directly
        import ray

        return RunnerConfig(kind="ray"), float(ray.cluster_resources().get("GPU", 0.0))
    return None


def on_gpu(task: Task, gpu: GpuUse, settings: RunnerConfig, cluster_gpus: float) -> bool:
    """Whether `task` asks Ray for a GPU; ConfigError when its settings require one the cluster lacks."""
    wants = may_use_gpu(task, gpu)
    if gpu == "required" and cluster_gpus <= 0:
        raise ConfigError(
            f"stage {task.name!r} requires a GPU (its settings pin a CUDA device) but the Ray cluster has "
            "none: add a GPU node, or set the stage's device to auto/cpu"
        )
    return wants and settings.gpus != "never" and cluster_gpus > 0


def may_use_gpu(task: Task, gpu: GpuUse) -> bool:
    """The stage's own say: `gpu` when the flow knows (its settings), else its "gpu-capable" tag."""
    return GPU_CAPABLE_TAG in task.tags if gpu is None else bool(gpu)


def runs_on_gpu(task: Task, gpu: GpuUse = None, host_gpus: Sequence[int] | None = None) -> bool:
    """Whether this submission of `task` will get a GPU: on Ray, when Ray gives it one (`on_gpu`); locally,
    when it may use one and this host has one (`host_gpus`, default: the GPUs this process sees)."""
    ray_run = _ray_run()
    if ray_run is not None:
        return on_gpu(task, gpu, *ray_run)
    return may_use_gpu(task, gpu) and bool(visible_gpus() if host_gpus is None else host_gpus)


def with_gpu_tag(task: Task, gpu_run: bool) -> Task:
    """`task` carrying the "gpu" tag exactly when its run gets a GPU (`gpu_run`, from `runs_on_gpu`)."""
    tags = set(task.tags) - {GPU_TAG} | ({GPU_TAG} if gpu_run else set())
    return task if tags == set(task.tags) else task.with_options(tags=tags)


def timeouts_enforced(task: Task) -> bool:
    """Whether Prefect can enforce a timeout on `task`'s runs here.

    A sync task on local threads runs in a worker thread, where Prefect's timeout cannot interrupt it (no
    SIGALRM outside the main thread: it injects an exception that lands only when the blocking call, an
    ffmpeg wait or a model call, returns) and Prefect warns so on every such run. There the stage gets no
    task timeout: what bounds it is the run's flow timeout (the flow runs in its process's main thread)
    and the time limits of the work itself (ffmpeg subprocesses, the GPU slot's max wait). A Ray task or
    warm actor runs the task in its worker's main thread, and async tasks are cancelled at their awaits:
    both take the policy's timeout.
    """
    return task.isasync or _ray_run() is not None


def placement_options(task: Task, gpu: GpuUse = None) -> dict[str, Any]:
    """Ray remote options for `task` in the current flow run; {} when it does not run on Ray."""
    ray_run = _ray_run()
    if ray_run is None:
        return {}
    settings, gpus = ray_run
    return settings.remote_options(task.name, on_gpu(task, gpu, settings, gpus))


@contextlib.contextmanager
def placed(task: Task, gpu: GpuUse = None, model: object | None = None) -> Iterator[None]:
    """Submissions inside go where `task` belongs: on Ray with its options (and to `model`'s warm actor)."""
    ray_run = _ray_run()
    if ray_run is None:
        yield
        return
    from prefect_ray.context import remote_options

    from runtime.ray_engine import serving

    settings, _ = ray_run
    options = placement_options(task, gpu)
    warm = serving(model, options) if model is not None and settings.warm_models else contextlib.nullcontext()
    with remote_options(**options), warm:
        yield


def shared_paths(inputs: Sequence[str | Path], output_dir: str | Path) -> tuple[list[str], str]:
    """Inputs and output folder as every stage will see them. On Ray: absolute, and checked on every node
    (MediaInputError naming the path and the node when one cannot see them); locally: as given."""
    if _ray_run() is None:
        return [str(p) for p in inputs], str(output_dir)
    from runtime.ray_engine import check_shared_paths

    paths = [Path(p).absolute() for p in inputs]
    out = Path(output_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    check_shared_paths([p for p in paths if p.exists()], out)  # a missing input fails in its stage as usual
    return [str(p) for p in paths], str(out)
