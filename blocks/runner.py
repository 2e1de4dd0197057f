"""Where a flow's stages run, as a Prefect block: threads in the flow's process, or tasks on a Ray cluster.

`RunnerSettings.load("<name>")` in code, `--runner-block NAME` on a flow's command line, or
YIVIDEO_RUNNER_BLOCK=<name> in a deployment's environment; `runtime/runner.py` turns it into a task runner.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import Field

NOSET_CUDA_ENV = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"


class RunnerSettings(Block):
    """Local threads (default) or Ray; for Ray, which cluster and how GPU stages are placed on it."""

    _block_type_name = "YiVideo Runner"
    _block_type_slug = "yivideo-runner"

    kind: Literal["local", "ray"] = Field("local", description="local: threads in the flow's process; ray")
    max_workers: int | None = Field(
        None, ge=1, description="local: thread pool size (None: Prefect's default)"
    )
    address: str | None = Field(
        None,
        description="ray: 'ray://<head>:10001' (Ray Client), 'auto' or '<head>:6379' (on a cluster node); "
        "None starts a local Ray instance for the run",
    )
    init_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="ray: more ray.init() arguments (runtime_env, num_cpus, resources, ...)",
    )
    env_vars: dict[str, str] = Field(
        default_factory=dict,
        description="ray: environment of the Ray workers (PREFECT_API_URL is always passed)",
    )
    gpu_fraction: float = Field(
        1.0, gt=0, description="ray: num_gpus a GPU stage asks of Ray (0.25 lets four stages share one GPU)"
    )
    gpu_resources: dict[str, float] = Field(
        default_factory=dict,
        description="ray: custom resources GPU stages also ask for, e.g. {'ocr_node': 1}",
    )
    keep_gpu_workers: bool = Field(
        True,
        description="ray: keep a GPU stage's worker alive after the task (max_calls=0) so its models stay "
        "loaded; Ray's default (False) ends it after every GPU task",
    )

    def gpu_remote_options(self) -> dict[str, Any]:
        """Options for `prefect_ray.context.remote_options` around the submission of a GPU stage."""
        options: dict[str, Any] = {"num_gpus": self.gpu_fraction}
        if self.gpu_resources:
            options["resources"] = dict(self.gpu_resources)
        if self.keep_gpu_workers:
            options["max_calls"] = 0  # 0 = unlimited: the worker (and every model it loaded) stays
            # A kept worker later runs tasks Ray assigns to other GPUs of its node, but CUDA reads
            # CUDA_VISIBLE_DEVICES once per process: so Ray leaves it alone, the worker sees every GPU of
            # the node, and gpu_slot's per-device limits pick the device (models are keyed by it).
            options["runtime_env"] = {"env_vars": {NOSET_CUDA_ENV: "1"}}
        return options
