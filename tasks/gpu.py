"""gpu_slot(): the only place that touches the Prefect "gpu" global concurrency limit.

A GPU-capable stage asks for a slot; it gets one (and runs on CUDA) only when the host has a CUDA device,
or when YIVIDEO_GPU_GATE=always (then a CPU host counts as one gated device, for tests and benchmarks).
On a host without CUDA the stage runs on the CPU and takes no slot. Acquisition is strict: if the
limit cannot be reached, the stage fails rather than running ungated.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

GPU_LIMIT_NAME = "gpu"
GATE_ENV = "YIVIDEO_GPU_GATE"  # auto (default) | always | never


@dataclass(frozen=True)
class GpuGrant:
    """What a stage may use inside its slot: `device` is "cuda:N" or "cpu"; `limit` is None when ungated."""

    stage: str
    device: str
    limit: str | None
    occupy: int

    @property
    def uses_cuda(self) -> bool:
        return self.device.startswith("cuda")


@functools.cache
def cuda_device_count() -> int:
    """CUDA devices on this host, asked of nvidia-smi (no heavy import; cached per process)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return 0
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def gate_mode() -> str:
    mode = os.environ.get(GATE_ENV, "auto").strip().lower()
    return mode if mode in ("auto", "always", "never") else "auto"


@contextlib.contextmanager
def gpu_slot(stage: str, *, occupy: int = 1, timeout: float | None = None, prefer_cuda: bool = True
             ) -> Iterator[GpuGrant]:  # fmt: skip
    """Hold a slot of the "gpu" limit while the block runs on CUDA; hold nothing on a CPU-only host."""
    has_cuda = prefer_cuda and cuda_device_count() > 0
    mode = gate_mode()
    gated = mode == "always" or (mode == "auto" and has_cuda)
    device = "cuda:0" if has_cuda else "cpu"
    if not gated:
        yield GpuGrant(stage=stage, device=device, limit=None, occupy=0)
        return
    from prefect.concurrency.sync import concurrency  # imported here: flows import this module cheaply

    with concurrency(GPU_LIMIT_NAME, occupy=occupy, timeout_seconds=timeout, strict=True):
        yield GpuGrant(stage=stage, device=device, limit=GPU_LIMIT_NAME, occupy=occupy)
