"""Speech recognition settings as a Prefect block, editable in the UI and loadable by name.

Like the subtitle block, it holds the stages' own settings types (the engine's `AsrSettings`, the cue
cutter's `CueSettings`) rather than copies of their fields: a field added there is editable here, in the UI
and through overrides (`load_block(AsrConfig, name, asr__beam_size=5)`) with nothing to copy. Documents
saved in the earlier flat shape (`beam_size`, `max_cue_seconds` at the top) still load.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, model_validator

from stages.speech.cues import CueSettings
from stages.speech.engines import AsrSettings

_ASR_FIELDS = frozenset(f.name for f in fields(AsrSettings))
_FLAT_CUE_FIELDS = {  # the flat document's names of the cue settings
    "max_lines": "max_lines",
    "max_line_width": "max_line_width",
    "max_cue_seconds": "max_seconds",
    "max_chars_per_second": "max_cps",
}


class AsrConfig(Block):
    """Which ASR engine and model a transcription uses, and how its cues are cut; the flow's own
    parameters override these."""

    _block_type_name = "YiVideo ASR Engine"
    _block_type_slug = "yivideo-asr-engine"

    asr: AsrSettings = Field(
        default_factory=AsrSettings,
        description="engine (faster-whisper offline, whisperx with local models), model, device, decoding, "
        "VAD and speaker labels (diarize)",
    )
    cues: CueSettings = Field(
        default_factory=CueSettings, description="how SRT/VTT cues are cut (the JSON keeps full segments)"
    )

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_document(cls, data: Any) -> Any:
        """A document saved before the settings were grouped: its top-level fields move to `asr`/`cues`."""
        if not isinstance(data, dict) or not (_ASR_FIELDS | _FLAT_CUE_FIELDS.keys()) & data.keys():
            return data
        data = dict(data)
        asr, cues = dict(data.pop("asr", None) or {}), dict(data.pop("cues", None) or {})
        for name in list(data):
            if name in _ASR_FIELDS:
                value = data.pop(name)
                asr[name] = (
                    tuple(sorted(value.items()))
                    if name == "align_models" and isinstance(value, dict)
                    else value
                )
            elif name in _FLAT_CUE_FIELDS:
                cues[_FLAT_CUE_FIELDS[name]] = data.pop(name)
        return {**data, "asr": asr, "cues": cues}
