"""Subtitle extraction settings as a Prefect block, editable in the UI and loadable by name.

The block holds each stage's own settings type (area, keyframes, ocr, postprocess) rather than copies of
their fields, so a field added to a stage's settings is editable here, in the UI and through overrides
(`load_block(SubtitleConfig, name, keyframes__change_threshold=0.2)`) with no code to copy.
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field

from stages.subtitles.area import AreaSettings
from stages.subtitles.ocr import OcrSettings
from stages.subtitles.postprocess import PostprocessSettings
from stages.subtitles.text_signal import KeyframeSettings

RUNTIME_ONLY = {"ocr": frozenset({"device"})}  # set from the GPU slot by the stage, not by users


class SubtitleConfig(Block):
    """How burned-in subtitles are found and read; the flow's own parameters override these."""

    _block_type_name = "YiVideo Subtitle Settings"
    _block_type_slug = "yivideo-subtitle-settings"

    band: tuple[float, float, float, float] | None = Field(
        None, description="subtitle band as fractions (x0, y0, x1, y1) of the frame; None detects it"
    )
    area: AreaSettings = Field(
        default_factory=AreaSettings, description="finding the band: detection samples, overlay masking"
    )
    keyframes: KeyframeSettings = Field(
        default_factory=KeyframeSettings,
        description="sampling the band (sample_fps) and keeping the samples where its text changed",
    )
    ocr: OcrSettings = Field(
        default_factory=OcrSettings,
        description="engine: rapidocr (offline default) or paddleocr (with local det/rec/cls model dirs); "
        "the device comes from the GPU slot",
    )
    postprocess: PostprocessSettings = Field(
        default_factory=PostprocessSettings,
        description="merging readings into events: min_confidence drops noise, min_duration short events",
    )

    # The names of the flow parameters and of the settings before they were grouped by stage.
    @property
    def sample_fps(self) -> float:
        return self.keyframes.sample_fps

    @property
    def ocr_engine(self) -> str:
        return self.ocr.engine

    @property
    def det_model_dir(self) -> str | None:
        return self.ocr.det_model_dir

    @property
    def rec_model_dir(self) -> str | None:
        return self.ocr.rec_model_dir

    @property
    def cls_model_dir(self) -> str | None:
        return self.ocr.cls_model_dir

    @property
    def min_confidence(self) -> float:
        return self.postprocess.min_confidence

    @property
    def min_duration(self) -> float:
        return self.postprocess.min_duration
