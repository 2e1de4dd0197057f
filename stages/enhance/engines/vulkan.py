"""The GPUs ncnn can run a network on (through Vulkan), and which of them a CUDA grant names.

GPU slots are counted in CUDA's terms (nvidia-smi numbering); ncnn reaches the same cards through Vulkan.
Software Vulkan (Mesa's llvmpipe, often installed on CPU-only hosts) is no GPU and is never chosen. NVIDIA's
driver lists its GPUs to Vulkan in PCI bus order, the order nvidia-smi numbers them in, so physical GPU k is
the k-th NVIDIA device Vulkan lists.
"""

from __future__ import annotations

import functools

from gpu.devices import cuda_device_count, visible_gpus

NVIDIA_VENDOR = 0x10DE
HARDWARE_TYPES = (0, 1)  # ncnn's GpuInfo.type(): 0 discrete, 1 integrated, 2 virtual, 3 CPU (llvmpipe)


@functools.cache
def nvidia_vulkan_devices() -> tuple[int, ...]:
    """ncnn's indices of the NVIDIA GPUs Vulkan lists; none on a host without CUDA devices (not probed)."""
    if cuda_device_count() == 0:
        return ()
    try:
        import ncnn
    except ImportError:
        return ()
    found = []
    for index in range(ncnn.get_gpu_count()):
        info = ncnn.get_gpu_info(index)
        if info.vendor_id() == NVIDIA_VENDOR and info.type() in HARDWARE_TYPES:
            found.append(index)
    return tuple(found)


def vulkan_device(cuda_device: str) -> int | None:
    """ncnn's Vulkan index of `cuda:K` (this process's CUDA ordinal), None where Vulkan does not list it."""
    ordinal = int(cuda_device.partition(":")[2] or 0)
    visible, devices = visible_gpus(), nvidia_vulkan_devices()
    if ordinal >= len(visible) or visible[ordinal] >= len(devices):
        return None
    return devices[visible[ordinal]]
