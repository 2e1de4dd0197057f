"""Prefect task runs on Ray: placed with the runner block's resources, tagged with the node that ran them,
and, for model stages, served by warm actors. Imported only when a run uses the Ray runner (the `ray` extra).

Warm models: a stage given a `model` (its engine settings) runs in a named, detached actor
`<settings type>-<digest of the settings>-<cpu|gpu>` in namespace "yivideo": one per model and device kind.
The actor runs the stage's Prefect task run itself (logs, artifacts, retries, `gpu_slot()` and its Prefect
GPU limit, exactly as in a Ray task), in a process that outlives the flow run, so the model it loaded
(core/models.py keeps it resident) serves every later run on the cluster. Actors run one task at a time.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import uuid4

import ray
from prefect.context import serialize_context
from prefect.utilities.engine import collect_task_run_inputs_sync
from prefect_ray.task_runners import PrefectRayFuture, RayTaskRunner

from core.errors import ConfigError, MediaInputError

ACTOR_NAMESPACE = "yivideo"
NODE_TAG = "ray-node:"  # + the first 12 hex digits of the Ray node id, on every task run Ray ran

_serving: contextvars.ContextVar[tuple[str, dict[str, Any]] | None] = contextvars.ContextVar(
    "yivideo_serving", default=None
)


def node_tag(node_id: str | None = None) -> str:
    """The tag that names a Ray node on a Prefect task run (this process's node when `node_id` is None)."""
    return NODE_TAG + (node_id or ray.get_runtime_context().get_node_id())[:12]


def _run_tagged(*upstream: Any, task: Any, **kwargs: Any) -> Any:
    """prefect-ray's remote function, with the node's tag added to the task run (the UI shows placement)."""
    task = task.with_options(tags={*task.tags, node_tag()})
    return RayTaskRunner._run_prefect_task(*upstream, task=task, **kwargs)


class ModelServer:
    """A long-lived actor that runs a model stage's task runs in one process, so its model stays loaded."""

    def run(self, *upstream: Any, **kwargs: Any) -> Any:
        return _run_tagged(*upstream, **kwargs)

    def model_loads(self) -> int:
        """Models loaded by this process so far (one per model, however many runs it served)."""
        from core.models import load_count

        return load_count()

    def where(self) -> tuple[str, int]:
        return ray.get_runtime_context().get_node_id(), os.getpid()


def server_name(model: object, options: dict[str, Any]) -> str:
    """One actor per model (the settings that shape it) and device kind; the custom resources it asks for
    are part of the name too, so routing a stage elsewhere in the runner block starts an actor there."""
    gpu = "num_gpus" in options
    shaped_by = repr((model, sorted(options.get("resources", {}).items())))
    digest = hashlib.sha1(shaped_by.encode()).hexdigest()[:10]
    return f"{type(model).__name__.lower()}-{digest}-{'gpu' if gpu else 'cpu'}"


def model_server(name: str, options: dict[str, Any]) -> Any:
    """The named detached actor, started on first use with the stage's GPU share and custom resources.

    It asks for no CPU: it lives as long as the cluster, and a held CPU would starve small clusters; the
    stage's GPU share and custom resources (give fractions: it keeps them) decide where it lives.
    """
    placement = {k: options[k] for k in ("num_gpus", "resources", "memory") if k in options}
    return (
        ray.remote(ModelServer)
        .options(
            name=name,
            namespace=ACTOR_NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_concurrency=1,
            num_cpus=0,
            **placement,
        )
        .remote()
    )


@contextlib.contextmanager
def serving(model: object, options: dict[str, Any]) -> Iterator[None]:
    """Submissions inside run in the warm actor of `model` (see PlacedRayTaskRunner.submit)."""
    token = _serving.set((server_name(model, options), options))
    try:
        yield
    finally:
        _serving.reset(token)


def model_servers() -> dict[str, Any]:
    """The warm actors alive on the connected cluster, by name."""
    names = ray.util.list_named_actors(all_namespaces=True)
    return {
        a["name"]: ray.get_actor(a["name"], namespace=ACTOR_NAMESPACE)
        for a in names
        if a["namespace"] == ACTOR_NAMESPACE
    }


def stop_model_servers() -> list[str]:
    """End every warm actor (after a code or model change); the next run starts fresh ones."""
    servers = model_servers()
    for actor in servers.values():
        ray.kill(actor)
    return sorted(servers)


class PlacedRayTaskRunner(RayTaskRunner):
    """prefect-ray's runner; task runs carry their node's tag, and model stages go to their warm actor."""

    _run_prefect_task = staticmethod(_run_tagged)

    def submit(self, task, parameters, wait_for=None, dependencies=None):  # noqa: ANN001 - TaskRunner's
        served = _serving.get()
        if served is None:
            return super().submit(task, parameters, wait_for=wait_for, dependencies=dependencies)
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        # as prefect-ray 0.6.0's submit, with an actor method in place of a remote function
        task_run_id = uuid4()
        task_inputs = {
            k: collect_task_run_inputs_sync(v, future_cls=PrefectRayFuture) for k, v in parameters.items()
        }
        context = serialize_context(
            asset_ctx_kwargs={
                "task": task,
                "task_run_id": task_run_id,
                "task_inputs": task_inputs,
                "copy_to_child_ctx": True,
            }
        )
        parameters, upstream = self._exchange_prefect_for_ray_futures(parameters)
        ref = model_server(*served).run.remote(
            *upstream,
            task=task,
            task_run_id=task_run_id,
            parameters=parameters,
            wait_for=wait_for,
            dependencies=dependencies,
            context=context,
        )
        return PrefectRayFuture(task_run_id=task_run_id, wrapped_future=ref)


def cluster_gpus() -> float:
    """GPUs of the connected cluster (all nodes, busy or not)."""
    return float(ray.cluster_resources().get("GPU", 0.0))


def require_gpus(address: str | None) -> None:
    """Fail at once, saying what to change, when the user's settings require GPUs the cluster lacks."""
    if cluster_gpus() > 0:
        return
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    raise ConfigError(
        f"the runner requires GPUs (gpus='required') but the Ray cluster at {address or 'a local Ray'} "
        f"has none ({nodes} node(s), 0 GPUs): add a GPU node, or set gpus='auto' in the runner block "
        "(GPU stages then run on CPU nodes)"
    )


def _path_problems(inputs: Sequence[tuple[str, int]], output_dir: str, marker: str) -> list[tuple[str, str]]:
    """What this node cannot see: inputs (path, size) missing, unreadable or of another size; the output
    folder without the marker file the flow just wrote there (another disk at the same path), or read-only."""
    problems = []
    for path, size in inputs:
        if not os.access(path, os.R_OK):
            problems.append((path, "unreadable" if os.path.exists(path) else "missing"))
        elif os.path.isfile(path) and os.path.getsize(path) != size:
            problems.append((path, f"a different file ({os.path.getsize(path)} bytes, not {size})"))
    if not os.path.exists(os.path.join(output_dir, marker)):
        problems.append((output_dir, "not the flow's output folder (no shared storage there)"))
    elif not os.access(output_dir, os.W_OK):
        problems.append((output_dir, "not writable"))
    return problems


def check_shared_paths(inputs: Sequence[Path], output_dir: Path) -> None:
    """Every live node sees `inputs` (same size) and `output_dir` (the same folder, writable); else raise
    MediaInputError naming the path and the node. Runs one tiny task pinned to each node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    marker = f".yivideo-shared-{uuid4().hex}"
    (output_dir / marker).touch()
    try:
        probe = ray.remote(num_cpus=0)(_path_problems)
        sized = [(str(p), p.stat().st_size if p.is_file() else 0) for p in inputs]
        checks = [
            (node, probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(sized, str(output_dir), marker))
            for node in ray.nodes() if node.get("Alive")
        ]  # fmt: skip
        for node, ref in checks:
            for path, cause in ray.get(ref, timeout=120):
                raise MediaInputError(
                    path,
                    f"{cause} on Ray node {node['NodeID'][:12]} ({node['NodeManagerAddress']}): every node "
                    "must see the media and the output folder at the same path (shared storage: see the "
                    "README, 'Scale out on Ray')",
                )
    finally:
        (output_dir / marker).unlink(missing_ok=True)
