"""What the enhance stage is told: one frozen settings type for the stage, its engines and the block."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STAGE = "enhance"
MODEL_DIR_ENV = "YIVIDEO_MODEL_DIR"  # where local weights live by default (models/ in the working directory)


def model_dir() -> Path:
    return Path(os.environ.get(MODEL_DIR_ENV, "models")).expanduser()


@dataclass(frozen=True)
class EnhanceSettings:
    """How images are enhanced; `blocks.enhance.EnhanceConfig` holds the same values as a Prefect block."""

    engine: str = "realesrgan-ncnn"  # realesrgan-ncnn | opencv-classic | gfpgan
    scale: float = 2.0  # output size / input size, 1..4
    # realesrgan-ncnn: waifu2x-photo (photos) | realesr-animevideov3 (drawings) | realesrgan-x4plus |
    # realesrgan-x4plus-anime;
    # None: chosen per image by its content (stages/enhance/content.py)
    model: str | None = None
    faces: str = "faithful"  # faithful: faces keep the input's colours and shapes under learned texture | off
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
