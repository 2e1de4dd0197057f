"""Photo enhancement settings as a Prefect block: the stage's settings, plus how a batch is run.

Like the subtitle and ASR blocks, it holds the stage's own settings type (`EnhanceSettings`) rather than
copies of its fields: a field added there is editable here, in the UI and through overrides
(`load_block(EnhanceConfig, name, enhance__scale=4)`) with nothing to copy. Documents saved in the earlier
flat shape (`engine`, `scale`, `tile` at the top) still load.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, model_validator

from stages.enhance.settings import EnhanceSettings

_STAGE_FIELDS = frozenset(f.name for f in fields(EnhanceSettings))
RUNTIME_ONLY = frozenset({"device"})  # set from the GPU grant by the task, not by users


class EnhanceConfig(Block):
    """How a batch of images is enhanced; the flow's own parameters override these."""

    _block_type_name = "YiVideo Enhance Config"
    _block_type_slug = "yivideo-enhance-config"

    enhance: EnhanceSettings = Field(
        default_factory=EnhanceSettings,
        description="engine (realesrgan-ncnn shipped, opencv-classic, gfpgan with local weights), scale, "
        "model, faces, guard rails (max_pixels), tiles and threads",
    )
    max_concurrency: int = Field(3, ge=1, le=64, description="images processed at once (the seed: 3)")
    batch_size: int = Field(20, ge=1, le=1000, description="images per batch, one progress artifact each")

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_document(cls, data: Any) -> Any:
        """A document saved before the settings were embedded: its stage fields move to `enhance`."""
        if not isinstance(data, dict) or not _STAGE_FIELDS & data.keys():
            return data
        data = dict(data)
        nested = data.pop("enhance", None) or {}
        nested = dict(nested) if isinstance(nested, dict) else _as_dict(nested)
        for name in _STAGE_FIELDS & data.keys():
            nested[name] = data.pop(name)
        return {**data, "enhance": nested}

    def engine_settings(self) -> EnhanceSettings:
        """The plain settings the stage functions take (stages/ never import blocks/); the device is the
        task's to set from its GPU grant, whatever a document says."""
        return replace(self.enhance, device=EnhanceSettings.device)


def _as_dict(settings: EnhanceSettings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in fields(settings)}
