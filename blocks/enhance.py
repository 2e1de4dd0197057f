"""Photo enhancement settings as a Prefect block: engine, scale, local weights, guard rails, concurrency."""

from __future__ import annotations

from dataclasses import fields
from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field

from stages.enhance.settings import EnhanceSettings

EnhanceModel = Literal[
    "waifu2x-photo", "realesrgan-x4plus", "realesr-animevideov3", "realesrgan-x4plus-anime"
]
FaceMode = Literal["faithful", "off"]
STAGE_ONLY = frozenset({"device"})  # set by the task, not by users


class EnhanceConfig(Block):
    """How a batch of images is enhanced; the flow's own parameters override these."""

    _block_type_name = "YiVideo Enhance Config"
    _block_type_slug = "yivideo-enhance-config"

    engine: Literal["realesrgan-ncnn", "opencv-classic", "gfpgan"] = Field(
        "realesrgan-ncnn",
        description="realesrgan-ncnn (learned SR shipped with the package, CPU), opencv-classic (denoise + "
        "Lanczos + sharpen, no model) or gfpgan (face restoration, local weights, gfpgan extra)",
    )
    scale: float = Field(2.0, ge=1, le=4, description="output size / input size")
    model: EnhanceModel | None = Field(
        None,
        description="realesrgan-ncnn network; empty: chosen per image (waifu2x-photo for photographs, "
        "realesr-animevideov3 for drawn/animated pictures; realesrgan-x4plus: richer, ~100x slower)",
    )
    faces: FaceMode = Field(
        "faithful",
        description="faithful: faces found keep the input's colours and shapes under the network's texture",
    )
    gfpgan_weights: str | None = Field(
        None,
        description="gfpgan: local GFPGANv1.3/1.4 .pth ($YIVIDEO_MODEL_DIR/gfpgan/GFPGANv1.4.pth)",
    )
    face_model_dir: str | None = Field(
        None,
        description="gfpgan: folder with detection_Resnet50_Final.pth and parsing_parsenet.pth "
        "(default $YIVIDEO_MODEL_DIR/facexlib)",
    )
    bg_upsampler_weights: str | None = Field(
        None, description="gfpgan: local RealESRGAN_x2plus.pth for the background (None: Lanczos)"
    )
    gfpgan_arch: Literal["clean", "RestoreFormer"] = Field(
        "clean", description="gfpgan: network of the weights (clean: GFPGANv1.3/1.4)"
    )
    channel_multiplier: int = Field(2, ge=1, description="gfpgan: channel multiplier of the weights")
    aligned: bool = Field(False, description="gfpgan: inputs are already aligned 512x512 face crops")
    only_center_face: bool = Field(False, description="gfpgan: restore only the face nearest the centre")
    max_pixels: int = Field(4096 * 4096, ge=1, description="largest input image (pixels); larger ones fail")
    max_output_pixels: int = Field(8192 * 8192, ge=1, description="largest output image (pixels)")
    tile: int = Field(256, ge=0, description="tile size (px) for large images; 0 processes whole images")
    tile_pad: int = Field(16, ge=0, description="context pixels around each tile")
    threads: int = Field(0, ge=0, description="realesrgan-ncnn: CPU threads per image (0: all cores)")
    denoise: float = Field(3.0, ge=0, description="opencv-classic: non-local-means strength (0: off)")
    sharpen: float = Field(0.6, ge=0, description="opencv-classic: unsharp-mask amount (0: off)")
    jpeg_quality: int = Field(95, ge=1, le=100, description="quality of JPEG and WebP outputs")
    max_concurrency: int = Field(3, ge=1, le=64, description="images processed at once (the seed: 3)")
    batch_size: int = Field(20, ge=1, le=1000, description="images per batch, one progress artifact each")

    def engine_settings(self) -> EnhanceSettings:
        """The plain settings the stage functions take (stages/ never import blocks/): every stage setting
        but the device, which the task sets from its GPU grant."""
        return EnhanceSettings(
            **{
                f.name: getattr(self, f.name)
                for f in fields(EnhanceSettings)
                if f.init and f.name not in STAGE_ONLY
            }
        )
