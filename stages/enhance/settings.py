"""What the enhance stage is told: one frozen settings type for the stage, its engines and the block."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

STAGE = "enhance"
MODEL_DIR_ENV = "YIVIDEO_MODEL_DIR"  # where local weights live by default (models/ in the working directory)

# The choices as types, for the block's form (tests/test_ui_surface.py holds them to the registries:
# engines.ENGINES, engines.realesrgan.NCNN_MODELS, enhance.FACE_MODES)
EngineName = Literal["realesrgan-ncnn", "opencv-classic", "gfpgan"]
EnhanceModel = Literal[
    "waifu2x-photo", "realesrgan-x4plus", "realesr-animevideov3", "realesrgan-x4plus-anime"
]
FaceMode = Literal["faithful", "off"]


def model_dir() -> Path:
    return Path(os.environ.get(MODEL_DIR_ENV, "models")).expanduser()


@dataclass(frozen=True)
class EnhanceSettings:
    """How images are enhanced.

    The limits and descriptions are read by pydantic where the settings sit in a Prefect block
    (blocks/enhance.py embeds this type: the UI form, validation and overrides come from here, once)."""

    engine: Annotated[
        EngineName,
        Field(
            description="realesrgan-ncnn (learned SR shipped with the package, CPU), opencv-classic (denoise "
            "+ Lanczos + sharpen, no model) or gfpgan (face restoration, local weights, gfpgan extra)"
        ),
    ] = "realesrgan-ncnn"
    scale: Annotated[float, Field(ge=1, le=4, description="output size / input size")] = 2.0
    # None: chosen per image by its content (stages/enhance/content.py)
    model: Annotated[
        EnhanceModel | None,
        Field(
            description="realesrgan-ncnn network; empty: chosen per image (waifu2x-photo for photographs, "
            "realesr-animevideov3 for drawn/animated pictures; realesrgan-x4plus: richer, ~60x slower)"
        ),
    ] = None
    faces: Annotated[
        FaceMode,
        Field(
            description="faithful: faces found keep the input's colours and shapes under the network's "
            "texture"
        ),
    ] = "faithful"
    gfpgan_weights: Annotated[
        str | None,
        Field(description="gfpgan: local GFPGANv1.3/1.4 .pth ($YIVIDEO_MODEL_DIR/gfpgan/GFPGANv1.4.pth)"),
    ] = None
    face_model_dir: Annotated[
        str | None,
        Field(
            description="gfpgan: folder with detection_Resnet50_Final.pth and parsing_parsenet.pth "
            "(default $YIVIDEO_MODEL_DIR/facexlib)"
        ),
    ] = None
    bg_upsampler_weights: Annotated[
        str | None,
        Field(description="gfpgan: local RealESRGAN_x2plus.pth for the background (None: Lanczos)"),
    ] = None
    gfpgan_arch: Annotated[
        Literal["clean", "RestoreFormer"],
        Field(description="gfpgan: network of the weights (clean: GFPGANv1.3/1.4)"),
    ] = "clean"
    channel_multiplier: Annotated[
        int, Field(ge=1, description="gfpgan: channel multiplier of the weights")
    ] = 2
    aligned: Annotated[bool, Field(description="gfpgan: inputs are already aligned 512x512 face crops")] = (
        False
    )
    only_center_face: Annotated[
        bool, Field(description="gfpgan: restore only the face nearest the centre")
    ] = False
    max_pixels: Annotated[
        int, Field(ge=1, description="largest input image (pixels); larger ones fail alone")
    ] = 4096 * 4096
    # input pixels x scale^2
    max_output_pixels: Annotated[int, Field(ge=1, description="largest output image (pixels)")] = 8192 * 8192
    tile: Annotated[
        int,
        Field(
            ge=0,
            description="tile size (px) for large images; 0 processes whole images (realesrgan-ncnn: at "
            "most the network's own bound, which holds its memory)",
        ),
    ] = 256
    tile_pad: Annotated[
        int, Field(ge=0, description="context pixels around each tile, cropped away again")
    ] = 16
    threads: Annotated[
        int, Field(ge=0, description="realesrgan-ncnn: CPU threads per image (0: all cores)")
    ] = 0
    denoise: Annotated[
        float, Field(ge=0, description="opencv-classic: non-local-means strength (0: off)")
    ] = 3.0
    sharpen: Annotated[float, Field(ge=0, description="opencv-classic: unsharp-mask amount (0: off)")] = 0.6
    jpeg_quality: Annotated[int, Field(ge=1, le=100, description="quality of JPEG and WebP outputs")] = 95
    device: Annotated[str, Field(description="set by the task from its GPU grant")] = "cpu"
