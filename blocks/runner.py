"""Where a flow's stages run, as a Prefect block: threads in the flow's process, or tasks on a Ray cluster.

`RunnerConfig.load("<name>")` in code, `--runner-block NAME` on a flow's command line, or
YIVIDEO_RUNNER_BLOCK=<name> in a deployment's environment; `runtime/runner.py` turns it into a task runner.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import BaseModel, ConfigDict, Field

NOSET_CUDA_ENV = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"


class StageResources(BaseModel):
    """What one stage asks of Ray; None keeps the runner-wide value."""

    model_config = ConfigDict(extra="forbid")

    cpus: float | None = Field(None, ge=0, description="num_cpus")
    memory_mb: int | None = Field(None, ge=1, description="memory Ray reserves for the stage (MiB)")
    gpu_fraction: float | None = Field(None, gt=0, description="num_gpus when the stage runs on a GPU")
    resources: dict[str, float] = Field(
        default_factory=dict, description="custom resources, e.g. {'ocr_node': 0.1} to pin it to such nodes"
    )


class RunnerConfig(Block):
    """Local threads (default) or Ray; for Ray, which cluster and what each stage asks of it."""

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
    gpus: Literal["auto", "required", "never"] = Field(
        "auto",
        description="ray: auto: GPU stages ask for a GPU when the cluster has one, else run on CPU nodes; "
        "required: a run fails at once on a cluster without GPUs; never: no stage asks for a GPU",
    )
    stage_cpus: float = Field(1.0, ge=0, description="ray: num_cpus of every stage (stage_resources wins)")
    stage_memory_mb: int | None = Field(None, ge=1, description="ray: memory each stage reserves (MiB)")
    gpu_fraction: float = Field(
        1.0, gt=0, description="ray: num_gpus a GPU stage asks of Ray (0.25 lets four stages share one GPU)"
    )
    gpu_resources: dict[str, float] = Field(
        default_factory=dict,
        description="ray: custom resources GPU stages also ask for, e.g. {'ocr_node': 1}",
    )
    stage_resources: dict[str, StageResources] = Field(
        default_factory=dict,
        description="ray: per stage (task name: ocr, transcribe, transcode, enhance-image, ...) overrides",
    )
    keep_gpu_workers: bool = Field(
        True,
        description="ray: keep a GPU stage's worker alive after the task (max_calls=0) so its models stay "
        "loaded; Ray's default (False) ends it after every GPU task",
    )
    warm_models: bool = Field(
        True,
        description="ray: model stages (OCR, ASR, enhance) run in named detached actors, one per model and "
        "device, that keep the model loaded across flow runs on a long-lived cluster",
    )

    def remote_options(self, stage: str, gpu: bool) -> dict[str, Any]:
        """Options for `prefect_ray.context.remote_options` around one submission of `stage`.

        `gpu`: the stage runs on a GPU here (runtime/placement.py decides from the cluster and `gpus`).
        """
        own = self.stage_resources.get(stage, StageResources())
        options: dict[str, Any] = {"num_cpus": self.stage_cpus if own.cpus is None else own.cpus}
        memory = own.memory_mb or self.stage_memory_mb
        if memory:
            options["memory"] = memory * 1024**2
        resources = {**(self.gpu_resources if gpu else {}), **own.resources}
        if resources:
            options["resources"] = resources
        if not gpu:
            return options
        options["num_gpus"] = own.gpu_fraction or self.gpu_fraction
        if self.keep_gpu_workers:
            options["max_calls"] = 0  # 0 = unlimited: the worker (and every model it loaded) stays
            # A kept worker later runs tasks Ray assigns to other GPUs of its node, but CUDA reads
            # CUDA_VISIBLE_DEVICES once per process: so Ray leaves it alone, the worker sees every GPU of
            # the node, and gpu_slot's per-device limits pick the device (models are keyed by it).
            options["runtime_env"] = {"env_vars": {NOSET_CUDA_ENV: "1"}}
        return options
