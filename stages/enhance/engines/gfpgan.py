"""GFPGAN face restoration on local weights (the gfpgan extra); nothing is ever downloaded."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError, MissingModelFile, StageError
from stages.enhance.engines.base import EngineOutput, EnhanceEngine, Progress
from stages.enhance.settings import STAGE, EnhanceSettings, model_dir

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class GfpganWeights:
    """The local files the gfpgan engine loads; each is checked before any heavy import."""

    gfpgan: Path
    face_dir: Path  # holds detection_Resnet50_Final.pth and parsing_parsenet.pth (facexlib's names)
    bg_upsampler: Path | None


FACE_DETECTOR_FILE = "detection_Resnet50_Final.pth"
FACE_PARSER_FILE = "parsing_parsenet.pth"


def require_weights(path: str | Path, what: str) -> Path:
    """The weight file, or MissingModelFile naming the exact file looked for (nothing is ever downloaded)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise MissingModelFile(what, p.absolute(), " (download it there or set its path)")
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


def gfpgan_clean_network(channel_multiplier: int = 2):
    """GFPGANv1Clean built as GFPGANv1.3/1.4 checkpoints expect (GFPGANer's own arguments)."""
    from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean

    return GFPGANv1Clean(
        out_size=512,
        num_style_feat=512,
        channel_multiplier=channel_multiplier,
        decoder_load_path=None,
        fix_decoder=False,
        num_mlp=8,
        input_is_latent=True,
        different_w=True,
        narrow=1,
        sft_half=True,
    )


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
            net = gfpgan_clean_network(s.channel_multiplier)
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

    def enhance(
        self, image: np.ndarray, settings: EnhanceSettings, progress: Progress | None = None
    ) -> EngineOutput:
        """GFPGANer runs the whole image at once: progress is only told when it is done (by the stage)."""
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
