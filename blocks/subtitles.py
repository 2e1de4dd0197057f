"""Subtitle extraction settings as a Prefect block, editable in the UI and loadable by name."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field


class SubtitleSettings(Block):
    """How burned-in subtitles are found and read; the flow's own parameters override these."""

    _block_type_name = "YiVideo Subtitle Settings"
    _block_type_slug = "yivideo-subtitle-settings"

    sample_fps: float = Field(5.0, gt=0, le=30, description="frames sampled per second of video")
    band: tuple[float, float, float, float] | None = Field(
        None, description="subtitle band as fractions (x0, y0, x1, y1) of the frame; None detects it"
    )
    ocr_engine: str = Field("rapidocr", description="rapidocr (offline default) or paddleocr")
    det_model_dir: str | None = Field(None, description="paddleocr: local detection model folder")
    rec_model_dir: str | None = Field(None, description="paddleocr: local recognition model folder")
    cls_model_dir: str | None = Field(None, description="paddleocr: local angle classifier folder")
    min_confidence: float = Field(0.75, ge=0, le=1, description="OCR lines below this are dropped as noise")
    min_duration: float = Field(0.15, ge=0, description="events shorter than this (s) are dropped")
