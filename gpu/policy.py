"""How GPU slots are sized, shared and ordered, as a Prefect block editable in the UI.

The per-host GPU broker (gpu/broker.py) loads the document named by YIVIDEO_GPU_POLICY (default
`yivideo-gpu-policy`, or a server's pre-rename `default`; built-in defaults when neither exists) when it
starts and every `reload_seconds` after.
Each device becomes a Prefect global concurrency limit `gpu:<host>:<index>` created with
`units_per_device` slots when missing; an existing limit keeps the size set in the UI (the limit is the
source of truth). Whether a CPU-only host gates at all is the YIVIDEO_GPU_GATE environment variable, so
the ungated CPU path never talks to the server.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.block_names import GPU_POLICY, names_to_try

GPU_POLICY_ENV = "YIVIDEO_GPU_POLICY"  # the document the brokers load (run policies: blocks/policy.py)


GpuClass = Literal["light", "heavy"]
GPU_STAGES = ("subtitle_area", "ocr", "asr", "diarize", "enhance", "transcode")  # every gpu_slot() caller
GpuStage = Literal[GPU_STAGES]  # type: ignore[valid-type]


class ClassUnits(BaseModel):
    """How many capacity units a stage of one class holds while it runs."""

    model_config = ConfigDict(extra="forbid")

    gpu_class: GpuClass = Field(description="the class: light (shares a device) or heavy")
    units: int = Field(ge=1, le=64, description="units held (capped at the device's capacity)")


class StageClass(BaseModel):
    """The class one stage belongs to."""

    model_config = ConfigDict(extra="forbid")

    stage: GpuStage = Field(description="the stage (its gpu_slot name)")
    gpu_class: GpuClass = Field(description="its class: light or heavy")


class StagePriority(BaseModel):
    """The priority one stage's waiters start with."""

    model_config = ConfigDict(extra="forbid")

    stage: GpuStage = Field(description="the stage (its gpu_slot name)")
    priority: int = Field(description="higher is served first")


def _rows(value: Any, key: str, field: str) -> Any:
    """An older document's map (`{"asr": "heavy"}`) as the rows the form edits (`[{stage, class}]`)."""
    if isinstance(value, dict):
        return [{key: name, field: item} for name, item in value.items()]
    return value


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
    class_units: list[ClassUnits] = Field(
        default_factory=lambda: [
            ClassUnits(gpu_class="light", units=1),
            ClassUnits(gpu_class="heavy", units=4),
        ],
        description="units a stage class occupies, capped at the device's capacity (heavy: the whole GPU)",
    )
    stage_classes: list[StageClass] = Field(
        default_factory=list, description="the class of each listed stage (e.g. asr heavy, ocr light)"
    )
    default_class: GpuClass = Field("light", description="class of a stage not listed in stage_classes")
    stage_priorities: list[StagePriority] = Field(
        default_factory=list, description="the priority of each listed stage; higher is served first"
    )
    default_priority: int = Field(0, description="priority of a stage not listed in stage_priorities")
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

    # Documents saved before these were typed rows held maps; they load to the same settings.
    @field_validator("class_units", mode="before")
    @classmethod
    def _class_units_map(cls, value: Any) -> Any:
        return _rows(value, "gpu_class", "units")

    @field_validator("stage_classes", mode="before")
    @classmethod
    def _stage_classes_map(cls, value: Any) -> Any:
        return _rows(value, "stage", "gpu_class")

    @field_validator("stage_priorities", mode="before")
    @classmethod
    def _stage_priorities_map(cls, value: Any) -> Any:
        return _rows(value, "stage", "priority")

    def units_for(self, stage: str, occupy: int | None, capacity: int) -> int:
        """Units a stage takes on a device of `capacity` units: explicit `occupy`, else its class's units."""
        if occupy is None:
            classes = {row.stage: row.gpu_class for row in self.stage_classes}
            units = {row.gpu_class: row.units for row in self.class_units}
            occupy = units.get(classes.get(stage, self.default_class), 1)
        return max(1, min(int(occupy), capacity))

    def priority_for(self, stage: str, priority: int | None) -> int:
        if priority is not None:
            return int(priority)
        return {row.stage: row.priority for row in self.stage_priorities}.get(stage, self.default_priority)


def policy_document_name() -> str:
    """The GPU policy document of this host's broker (and the one bootstrap saves), unless set."""
    return os.environ.get(GPU_POLICY_ENV, "").strip() or GPU_POLICY


async def load_gpu_policy(name: str | None = None) -> GpuPolicy:
    """The named policy document, or the built-in defaults when none was saved."""
    from prefect.exceptions import ObjectNotFound

    for candidate in names_to_try(name or policy_document_name()):
        try:
            return await GpuPolicy.aload(candidate)
        except (ObjectNotFound, ValueError):
            continue
    return GpuPolicy()
