"""Photo enhancement settings as a Prefect block: engine, scale, local weights, guard rails, concurrency."""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field

from stages.enhance.settings import EnhanceSettings


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
    model: str | None = Field(
        None,
        description="realesrgan-ncnn: realesr-animevideov3 (default, fast) or realesrgan-x4plus",
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
    aligned: bool = Field(False, description="gfpgan: inputs are already aligned 512x512 face crops")
    max_pixels: int = Field(4096 * 4096, ge=1, description="largest input image (pixels); larger ones fail")
    max_output_pixels: int = Field(8192 * 8192, ge=1, description="largest output image (pixels)")
    tile: int = Field(256, ge=0, description="tile size (px) for large images; 0 processes whole images")
    tile_pad: int = Field(16, ge=0, description="context pixels around each tile")
    max_concurrency: int = Field(3, ge=1, le=64, description="images processed at once (the seed: 3)")
    batch_size: int = Field(20, ge=1, le=1000, description="images per batch, one progress artifact each")

    def engine_settings(self) -> EnhanceSettings:
        """The plain settings the stage functions take (stages/ never import blocks/)."""
        return EnhanceSettings(
            engine=self.engine,
            scale=self.scale,
            model=self.model,
            gfpgan_weights=self.gfpgan_weights,
            face_model_dir=self.face_model_dir,
            bg_upsampler_weights=self.bg_upsampler_weights,
            aligned=self.aligned,
            max_pixels=self.max_pixels,
            max_output_pixels=self.max_output_pixels,
            tile=self.tile,
            tile_pad=self.tile_pad,
        )
