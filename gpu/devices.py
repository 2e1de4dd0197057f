"""This host's GPUs and the names of their limits: computed here once, for the broker, slots and bootstrap.

Device indices are nvidia-smi's physical numbering; a process's CUDA ordinals follow its
CUDA_VISIBLE_DEVICES. The GPU broker runs without CUDA_VISIBLE_DEVICES (clients with different ones
share it), so there "this host's devices" is every GPU; a bootstrap run inside a restricted shell only
sets up the GPUs it may see.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Sequence

GPU_LIMIT_NAME = "gpu"  # prefix of every GPU limit: gpu:<host>:<index>
GPU_CAPABLE_TAG = "gpu-capable"  # the one declaration that a stage may run on a GPU: `@task(tags=[...])`
GPU_TAG = "gpu"  # only on task runs that really get a GPU (added at submit time by runtime/stage.py), so a
# UI filter or a tag concurrency limit on "gpu" never sees CPU work
GATE_ENV = "YIVIDEO_GPU_GATE"  # auto (default) | always | never
HOST_ENV = "YIVIDEO_GPU_HOST"  # the host part of the limit names (default: the host name)


@functools.cache
def _nvidia_smi_gpus() -> tuple[tuple[int, str], ...]:
    """(index, UUID) of every NVIDIA GPU nvidia-smi lists (no heavy import; cached per process)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return ()
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    found = []
    for line in out.stdout.splitlines():
        match = re.match(r"GPU (\d+):.*\(UUID: ([^)]+)\)", line.strip())
        if match:
            found.append((int(match.group(1)), match.group(2)))
    return tuple(found)


def visible_gpus(
    cuda_visible_devices: str | None = None, gpus: Sequence[tuple[int, str]] | None = None
) -> list[int]:
    """Physical indices of the GPUs this process may use, in its CUDA order (CUDA_VISIBLE_DEVICES applied).

    Like CUDA, the list stops at the first entry that names no device ("-1", an unknown UUID). `gpus`
    (index, UUID) defaults to what nvidia-smi lists.
    """
    gpus = _nvidia_smi_gpus() if gpus is None else gpus
    spec = os.environ.get("CUDA_VISIBLE_DEVICES") if cuda_visible_devices is None else cuda_visible_devices
    if spec is None:
        return [index for index, _ in gpus]
    chosen: list[int] = []
    for item in (part.strip() for part in spec.split(",")):
        if item.isdigit() and any(index == int(item) for index, _ in gpus):
            chosen.append(int(item))
        elif item.startswith(("GPU-", "MIG-")) and any(uuid.startswith(item) for _, uuid in gpus):
            chosen.append(next(index for index, uuid in gpus if uuid.startswith(item)))
        else:
            break
    return chosen


def cuda_device_count() -> int:
    """CUDA devices this process may use."""
    return len(visible_gpus())


def gate_mode() -> str:
    mode = os.environ.get(GATE_ENV, "auto").strip().lower()
    return mode if mode in ("auto", "always", "never") else "auto"


def host_devices(policy_devices: int | None = None, visible: Sequence[int] | None = None) -> list[int]:
    """The device indices whose limits this host owns: the policy's count when it sets one, else the GPUs
    this process may see; a CPU host gated for tests (YIVIDEO_GPU_GATE=always) counts as one device."""
    if policy_devices:
        return list(range(policy_devices))
    found = list(visible_gpus() if visible is None else visible)
    return found or ([0] if gate_mode() == "always" else [])


def host_name() -> str:
    return os.environ.get(HOST_ENV) or socket.gethostname().split(".")[0] or "localhost"


def limit_name(index: int, host: str | None = None) -> str:
    return f"{GPU_LIMIT_NAME}:{host or host_name()}:{index}"
