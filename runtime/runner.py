"""Where a flow's stages run: threads in the flow's process (default) or Prefect tasks on a Ray cluster.

Every flow declares `task_runner=StageRunner()`; the runner picks its engine when a run starts, from the
settings it was given (`with_runner(flow, settings)`), else the block named by YIVIDEO_RUNNER_BLOCK, else
YIVIDEO_RUNNER / YIVIDEO_RAY_ADDRESS, else local threads: a deployment moves to Ray by its environment.
Stages are submitted through it by runtime/stage.py (`Stages`), placed by runtime/placement.py.

It lives in runtime/ (not stages/) because it is flow-level dispatch over the runner block: stages stay plain
functions that know nothing of where they run, and stages/ never import blocks/.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Self

from prefect import Flow
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from blocks.runner import RunnerConfig
from core.errors import ConfigError
from core.models import limit_malloc_arenas

RUNNER_ENV = "YIVIDEO_RUNNER"  # local | ray
RAY_ADDRESS_ENV = "YIVIDEO_RAY_ADDRESS"  # ray://<head>:10001 | auto | <head>:6379; implies YIVIDEO_RUNNER=ray
RUNNER_BLOCK_ENV = "YIVIDEO_RUNNER_BLOCK"  # name of a RunnerConfig block; wins over the two above


def runner_settings_from_env() -> RunnerConfig:
    """The settings a deployment's environment asks for; local threads when it asks for nothing."""
    block = os.environ.get(RUNNER_BLOCK_ENV, "").strip()
    if block:
        try:
            return RunnerConfig.load(block, _sync=True)
        except ValueError as exc:
            raise ConfigError(f"runner block {block!r} ({RUNNER_BLOCK_ENV}) not found: {exc}") from exc
    address = os.environ.get(RAY_ADDRESS_ENV, "").strip() or None
    kind = os.environ.get(RUNNER_ENV, "").strip().lower() or ("ray" if address else "local")
    if kind not in ("local", "ray"):
        raise ConfigError(f"{RUNNER_ENV}={kind!r} is not a runner; use 'local' or 'ray'")
    return RunnerConfig(kind=kind, address=address)


def build_task_runner(settings: RunnerConfig) -> TaskRunner:
    """ThreadPoolTaskRunner for local runs, prefect_ray.RayTaskRunner for Ray (the `ray` extra)."""
    if settings.kind == "local":
        return ThreadPoolTaskRunner(max_workers=settings.max_workers)
    try:
        from runtime.ray_engine import PlacedRayTaskRunner
    except ImportError as exc:
        raise ConfigError("the ray runner needs the ray extra: pip install 'yivideo-flows[ray]'") from exc
    return PlacedRayTaskRunner(address=settings.address, init_kwargs=ray_init_kwargs(settings))


def ray_init_kwargs(settings: RunnerConfig) -> dict[str, Any]:
    """ray.init() arguments: the block's own, with the Prefect API (and the block's env) for every worker."""
    from prefect.settings import get_current_settings

    api_url = get_current_settings().api.url
    if not api_url:
        raise ConfigError(
            "the ray runner needs a Prefect server its workers can reach: set PREFECT_API_URL "
            "(e.g. `prefect server start` and `prefect config set PREFECT_API_URL=http://<host>:4200/api`)"
        )
    kwargs = dict(settings.init_kwargs)
    runtime_env = dict(kwargs.get("runtime_env") or {})
    runtime_env["env_vars"] = {
        "PREFECT_API_URL": str(api_url),
        **settings.env_vars,
        **runtime_env.get("env_vars", {}),
    }
    kwargs["runtime_env"] = runtime_env
    return kwargs


class StageRunner(TaskRunner):
    """The flows' task runner: chooses local threads or Ray when a run starts, then delegates to it."""

    def __init__(self, settings: RunnerConfig | None = None) -> None:
        self.settings = settings
        self.active_settings: RunnerConfig | None = None
        self.cluster_gpus = 0.0  # GPUs of the Ray cluster this run is connected to
        self._engine: TaskRunner | None = None
        super().__init__()

    @property
    def name(self) -> str:
        return f"stage-{self._engine.name}" if self._engine is not None else "stage"

    def duplicate(self) -> Self:
        return type(self)(self.settings)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StageRunner) and self.settings == other.settings

    def __enter__(self) -> Self:
        limit_malloc_arenas()  # before the run's task threads allocate: memory flat over a long video
        settings = self.settings or _parent_settings() or runner_settings_from_env()
        engine = build_task_runner(settings)
        engine.__enter__()
        self._engine, self.active_settings = engine, settings
        if settings.kind == "ray":
            from runtime.ray_engine import cluster_gpus, require_gpus

            try:
                if settings.gpus == "required":
                    require_gpus(settings.address)  # fail at once, not when a GPU stage waits forever
                self.cluster_gpus = cluster_gpus()
            except BaseException:
                engine.__exit__(None, None, None)
                self._engine = None
                raise
        return super().__enter__()

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        try:
            if self._engine is not None:
                self._engine.__exit__(exc_type, exc_value, traceback)
        finally:
            self._engine = None
            super().__exit__(exc_type, exc_value, traceback)

    def submit(self, task, parameters, wait_for=None, dependencies=None):  # noqa: ANN001 - TaskRunner's
        return self._started_engine().submit(task, parameters, wait_for=wait_for, dependencies=dependencies)

    def map(self, task, parameters, wait_for=None):  # noqa: ANN001 - TaskRunner's signature
        return self._started_engine().map(task, parameters, wait_for=wait_for)

    def cancel_all(self) -> None:
        cancel = getattr(self._engine, "cancel_all", None)
        if callable(cancel):
            cancel()

    @property
    def on_ray(self) -> bool:
        return self.active_settings is not None and self.active_settings.kind == "ray"

    def _started_engine(self) -> TaskRunner:
        if self._engine is None:
            raise RuntimeError("The task runner must be started before submitting work.")
        return self._engine


def _parent_settings() -> RunnerConfig | None:
    """A sub-flow (the pipeline's transcribe, enhance's batches) runs where its parent flow runs."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    runner = context.task_runner if context else None
    return runner.active_settings if isinstance(runner, StageRunner) else None


def with_runner(flow: Flow, settings: RunnerConfig) -> Flow:
    """A copy of `flow` whose stages run where `settings` says (local threads or a Ray cluster)."""
    return flow.with_options(task_runner=StageRunner(settings))


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """--runner/--ray-address/--runner-block for a flow's command line (defaults: the environment's)."""
    group = parser.add_argument_group("where the stages run")
    group.add_argument(
        "--runner", choices=["local", "ray"], default=None, help=f"default: ${RUNNER_ENV} or local"
    )
    group.add_argument(
        "--ray-address", default=None, help="ray://<head>:10001, auto or <head>:6379 (default: a local Ray)"
    )
    group.add_argument("--runner-block", default=None, help="name of a saved YiVideo Runner block")


def runner_from_arguments(flow: Flow, args: argparse.Namespace) -> Flow:
    """`flow` on the runner the command line names; unchanged (environment or local) when it names none."""
    if args.runner_block:
        return with_runner(flow, RunnerConfig.load(args.runner_block, _sync=True))
    if args.runner or args.ray_address:
        return with_runner(flow, RunnerConfig(kind=args.runner or "ray", address=args.ray_address))
    return flow
