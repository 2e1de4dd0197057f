"""Photo enhancement on the GPU (ncnn's Vulkan compute) against the same engine on this host's CPU.

    .venv/bin/python bench/enhance_gpu.py [--sizes 512,1024,2048] [--scales 2,4] [--models ...]
        [--tiles 128,256,512] [--budget 60]

Needs an NVIDIA GPU that Vulkan lists (`stages/enhance/engines/vulkan.py`); says so and exits 2 otherwise.
For every model and scale: the engine is loaded on `cuda:0` and on the CPU and warmed up on a 64 px image;
scikit-image's astronaut, resized to SIZE px, is enhanced on the GPU (the best of 3 wall times, and the
megapixels out per second); a size is skipped when the last one's time x 4 would pass `--budget`. `agree` is
the PSNR (dB) of the GPU's picture against the CPU's on a 256 px input: the same network, so the yardstick's
quality gates, measured on the CPU, hold on the GPU where it is high. `tiles` times the largest size with
each GPU tile side. Last, the stage as users get it (`default`: model chosen by content, faces kept faithful)
on the yardstick's photos shrunk x2 and enhanced back on the GPU: PSNR and SSIM against the original, beside
bicubic's. The host's peak RSS and the GPU memory in use (nvidia-smi) are printed at the end.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = ("waifu2x-photo", "realesr-animevideov3", "realesrgan-x4plus-anime", "realesrgan-x4plus")
DEVICE = "cuda:0"


def photo(name: str, size: int | None = None):
    import cv2
    import skimage.data

    image = cv2.cvtColor(getattr(skimage.data, name)()[:, :, :3], cv2.COLOR_RGB2BGR)
    return image if size is None else cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def timed(engine, image, settings, repeats: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        out = engine.enhance(image, settings).image
        best = min(best, time.perf_counter() - started)
    return best, out


def gpu_memory_mb() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        return out.stdout.strip() or "?"
    except OSError:
        return "?"


def model_rows(model: str, scale: int, sizes: list[int], tiles: list[int], budget: float) -> None:
    from stages.enhance.engines.realesrgan import RealEsrganNcnnEngine
    from stages.enhance.quality import psnr
    from stages.enhance.settings import EnhanceSettings

    settings = EnhanceSettings(engine="realesrgan-ncnn", model=model, scale=scale, faces="off")
    started = time.perf_counter()
    gpu = RealEsrganNcnnEngine(replace(settings, device=DEVICE))
    load_s = time.perf_counter() - started
    cpu = RealEsrganNcnnEngine(settings)
    for engine in (gpu, cpu):
        engine.enhance(photo("astronaut", 64), settings)
    small = photo("astronaut", 256)
    cpu_s, cpu_out = timed(cpu, small, settings, repeats=1)
    gpu_small_s, gpu_out = timed(gpu, small, settings)
    agree = psnr(cpu_out, gpu_out)
    print(
        f"{model:24} x{scale} load {load_s:5.2f} s  256 px: GPU {gpu_small_s:7.3f} s, CPU {cpu_s:7.2f} s "
        f"({cpu_s / gpu_small_s:5.0f}x), agree {agree:5.1f} dB",
        flush=True,
    )
    last = gpu_small_s
    for size in sizes:
        if last * 4 > budget:
            print(f"{'':24} x{scale} {size} px: skipped (about {last * 4:.0f} s > budget)", flush=True)
            break
        seconds, out = timed(gpu, photo("astronaut", size), settings)
        mpx = out.shape[0] * out.shape[1] / 1e6
        print(f"{'':24} x{scale} {size:5} px: GPU {seconds:7.3f} s  {mpx / seconds:7.2f} Mpx/s", flush=True)
        last = seconds
    for tile in tiles if sizes else ():
        tiled = replace(settings, tile=tile)
        seconds, _ = timed(gpu, photo("astronaut", sizes[0]), tiled, repeats=2)
        print(f"{'':24} x{scale} {sizes[0]:5} px, GPU tile {tile:4}: {seconds:7.3f} s", flush=True)
    gpu.close()
    cpu.close()


def stage_quality() -> None:
    """The stage as users get it, on the GPU, scored as the yardstick scores it (shrunk x2, enhanced back)."""
    from stages.enhance.enhance import enhance_array
    from stages.enhance.quality import psnr, ssim
    from stages.enhance.settings import EnhanceSettings
    from stages.enhance.yardstick import shrink, upscale

    settings = replace(EnhanceSettings(engine="realesrgan-ncnn", scale=2), device=DEVICE)
    for name in ("astronaut", "chelsea", "coffee"):
        reference, low = shrink(photo(name), 2)
        started = time.perf_counter()
        result, used = enhance_array(low, settings)
        seconds = time.perf_counter() - started
        bicubic, _ = upscale("bicubic", low, 2)
        print(
            f"default on GPU, {name:9} {low.shape[1]}x{low.shape[0]} x2 ({used.model}): {seconds:6.3f} s  "
            f"PSNR {psnr(reference, result.image):5.2f} (bicubic {psnr(reference, bicubic):5.2f})  "
            f"SSIM {ssim(reference, result.image):.4f} (bicubic {ssim(reference, bicubic):.4f})",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="512,1024,2048")
    parser.add_argument("--scales", default="2,4")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--tiles", default="128,256,512")
    parser.add_argument("--budget", type=float, default=60.0)
    args = parser.parse_args()

    from stages.enhance.engines.vulkan import nvidia_vulkan_devices

    devices = nvidia_vulkan_devices()
    if not devices:
        print("no NVIDIA GPU that Vulkan lists on this host: nothing to measure", file=sys.stderr)
        return 2
    print(f"Vulkan GPUs (ncnn indices): {devices}; GPU memory in use {gpu_memory_mb()} MiB", flush=True)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    tiles = [int(t) for t in args.tiles.split(",") if t]
    for model in args.models.split(","):
        for scale in (int(s) for s in args.scales.split(",")):
            model_rows(model, scale, sizes, tiles if model == "realesrgan-x4plus" else [], args.budget)
    stage_quality()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"host peak RSS {peak:.0f} MiB; GPU memory in use {gpu_memory_mb()} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
