"""How GPU slots are sized, shared and ordered, as a Prefect block editable in the UI.

The per-host GPU broker (gpu/broker.py) loads the document named by YIVIDEO_GPU_POLICY (default
"default"; built-in defaults when it does not exist) when it starts and every `reload_seconds` after.
Each device becomes a Prefect global concurrency limit `gpu:<host>:<index>` created with
`units_per_device` slots when missing; an existing limit keeps the size set in the UI (the limit is the
source of truth). Whether a CPU-only host gates at all is the YIVIDEO_GPU_GATE environment variable, so
the ungated CPU path never talks to the server.
"""

from __future__ import annotations

import os

from prefect.blocks.core import Block
from pydantic import Field

GPU_POLICY_ENV = "YIVIDEO_GPU_POLICY"  # the document the brokers load (run policies: blocks/policy.py)


class GpuPolicy(Block):
    """Devices, capacity units, units per stage class, priorities, leases and waits for GPU slots."""

    _block_type_name = "YiVideo GPU Policy"
    _block_type_slug = "yivideo-gpu-policy"

    devices: int | None = Field(
        None, ge=1, description="GPUs per host (None: detect with nvidia-smi; a gated CPU host counts as one)"
    )
    units_per_device: int = Field(
        1, ge=1, le=64, description="capacity units of each device's limit when it is created"
    )
    class_units: dict[str, int] = Field(
        default_factory=lambda: {"light": 1, "heavy": 4},
        description="units a stage class occupies, capped at the device's capacity (heavy: the whole GPU)",
    )
    stage_classes: dict[str, str] = Field(
        default_factory=dict, description="stage name -> class (e.g. {'asr': 'heavy', 'ocr': 'light'})"
    )
    default_class: str = Field("light", description="class of a stage not named in stage_classes")
    stage_priorities: dict[str, int] = Field(
        default_factory=dict, description="stage name -> priority; higher is served first"
    )
    default_priority: int = Field(0, description="priority of a stage not named in stage_priorities")
    ageing_seconds: float = Field(
        30.0, gt=0, description="a waiter gains one priority level per this many seconds waited"
    )
    lease_seconds: float = Field(
        60.0, ge=60, le=3600, description="lease of each held slot, renewed every third (server minimum 60)"
    )
    max_wait_seconds: float | None = Field(
        3600.0, gt=0, description="default wait for a slot before the stage fails (None: wait forever)"
    )
    broker_idle_seconds: float = Field(
        30.0, gt=0, description="the host's broker exits after this long with no clients"
    )
    reload_seconds: float = Field(30.0, gt=0, description="how often the broker re-reads this block")

    def units_for(self, stage: str, occupy: int | None, capacity: int) -> int:
        """Units a stage takes on a device of `capacity` units: explicit `occupy`, else its class's units."""
        if occupy is None:
            occupy = self.class_units.get(self.stage_classes.get(stage, self.default_class), 1)
        return max(1, min(int(occupy), capacity))

    def priority_for(self, stage: str, priority: int | None) -> int:
        return self.stage_priorities.get(stage, self.default_priority) if priority is None else int(priority)


def policy_document_name() -> str:
    """The GPU policy document of this host's broker (and the one bootstrap saves): "default" unless set."""
    return os.environ.get(GPU_POLICY_ENV, "").strip() or "default"


async def load_gpu_policy(name: str | None = None) -> GpuPolicy:
    """The named policy document, or the built-in defaults when none was saved."""
    from prefect.exceptions import ObjectNotFound

    try:
        return await GpuPolicy.aload(name or policy_document_name())
    except (ObjectNotFound, ValueError):
        return GpuPolicy()
