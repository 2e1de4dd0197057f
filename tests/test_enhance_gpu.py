"""The ncnn engine's GPU path: which Vulkan device a CUDA grant names, and the network run through Vulkan.

No CI machine has a GPU. Vulkan's compute path itself is real here: Mesa's software Vulkan (llvmpipe), which
the path never chooses on its own (not an NVIDIA GPU), is handed to it as the device, so the same ncnn Vulkan
pipelines run and must give the CPU's picture. The speed on a real GPU: bench/enhance_gpu.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

import stages.enhance.engines.realesrgan as realesrgan
import stages.enhance.engines.vulkan as vulkan
from core.errors import ConfigError
from gpu.devices import cuda_device_count
from samples.images import real_photo
from stages.enhance.engines import engine_class
from stages.enhance.quality import psnr
from stages.enhance.settings import EnhanceSettings

SETTINGS = EnhanceSettings(engine="realesrgan-ncnn", model="waifu2x-photo", scale=2, faces="off")


def _software_vulkan() -> int | None:
    import ncnn

    kinds = [ncnn.get_gpu_info(i).type() for i in range(ncnn.get_gpu_count())]
    return next((i for i, kind in enumerate(kinds) if kind == 3), None)  # 3: a CPU's Vulkan (llvmpipe)


def test_cuda_ordinal_maps_to_its_physical_gpus_vulkan_device(monkeypatch):
    """CUDA_VISIBLE_DEVICES=1 makes cuda:0 physical GPU 1: the second NVIDIA device Vulkan lists."""
    monkeypatch.setattr(vulkan, "visible_gpus", lambda: [1])
    monkeypatch.setattr(vulkan, "nvidia_vulkan_devices", lambda: (0, 2))  # Vulkan device 1: not NVIDIA
    assert vulkan.vulkan_device("cuda:0") == 2
    assert vulkan.vulkan_device("cuda:1") is None  # not visible to this process
    monkeypatch.setattr(vulkan, "nvidia_vulkan_devices", lambda: (0,))
    assert vulkan.vulkan_device("cuda:0") is None  # Vulkan does not list physical GPU 1


def test_no_gpu_slot_without_an_nvidia_vulkan_device():
    """Without a CUDA device (llvmpipe may be there): the engine takes no GPU slot, Vulkan is not probed."""
    if cuda_device_count():
        pytest.skip("this host has a CUDA device")
    vulkan.nvidia_vulkan_devices.cache_clear()
    assert vulkan.nvidia_vulkan_devices() == ()
    assert not engine_class("realesrgan-ncnn").runs_on_gpu()


def test_a_gpu_vulkan_does_not_list_fails_with_one_line(monkeypatch):
    monkeypatch.setattr(realesrgan, "vulkan_device", lambda device: None)
    with pytest.raises(ConfigError, match="cuda:0 is not one Vulkan lists"):
        realesrgan.NcnnNetworks(replace(SETTINGS, device="cuda:0"))


def test_vulkan_compute_gives_the_cpus_picture(monkeypatch):
    device = _software_vulkan()
    if device is None:
        pytest.skip("no software Vulkan (Mesa llvmpipe) on this host to run ncnn's Vulkan path on")
    photo = real_photo("astronaut")[120:168, 180:228]  # 48 px: shader compilation dominates on llvmpipe
    cpu = realesrgan.RealEsrganNcnnEngine(SETTINGS)
    monkeypatch.setattr(realesrgan, "vulkan_device", lambda _: device)
    gpu = realesrgan.RealEsrganNcnnEngine(replace(SETTINGS, device="cuda:0"))
    networks = gpu.networks
    assert networks.gpu == device and all(net.opt.use_vulkan_compute for net in networks.nets)
    on_cpu, on_gpu = cpu.enhance(photo, SETTINGS).image, gpu.enhance(photo, SETTINGS).image
    assert on_gpu.shape == on_cpu.shape == (96, 96, 3)
    assert psnr(on_cpu, on_gpu) > 40  # fp16 storage on Vulkan: the same picture to within rounding
