"""Every stage setting is reachable from its block, and the flows' overrides go through one loader."""

from __future__ import annotations

import types
import typing
from dataclasses import fields

import pytest

from blocks.asr import AsrConfig
from blocks.loader import load_block
from blocks.subtitles import RUNTIME_ONLY, SubtitleConfig
from core.errors import ConfigError
from stages.speech.cues import CueSettings
from stages.speech.engines import AsrSettings

SUBTITLE_STAGES = {
    part: type(getattr(SubtitleConfig(), part)) for part in ("area", "keyframes", "ocr", "postprocess")
}


def another(value: object, annotation: object = None) -> object:
    """A valid value other than `value`: another Literal choice, the negation, a bigger number, new text."""
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and options:
        annotation = options[0]
    if typing.get_origin(annotation) is typing.Literal:
        return next(c for c in typing.get_args(annotation) if c != value)
    if value is None and annotation in (int, float):
        return annotation(2)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, dict | tuple):
        return {"xx": "/models/xx"} if isinstance(value, dict) else (("xx", "/models/xx"),)
    return f"{value or ''}-other"


@pytest.mark.parametrize(
    ("part", "name"),
    [
        (part, f.name)
        for part, cls in SUBTITLE_STAGES.items()
        for f in fields(cls)
        if f.name not in RUNTIME_ONLY.get(part, ())
    ],  # fmt: skip
)
def test_every_subtitle_stage_setting_is_reachable_from_the_block(part, name):
    """KeyframeSettings, AreaSettings and OCR's det_max_side/cpu_threads were unreachable before."""
    default = getattr(getattr(SubtitleConfig(), part), name)
    value = "ja" if (part, name) == ("ocr", "lang") else another(default)  # a language code it knows
    block = load_block(SubtitleConfig, None, **{f"{part}__{name}": value})
    assert getattr(getattr(block, part), name) == value
    saved = SubtitleConfig.model_validate(block.model_dump(mode="json"))  # what save + load do
    assert getattr(getattr(saved, part), name) == value
    assert type(getattr(saved, part)) is SUBTITLE_STAGES[part]


ASR_PARTS = {"asr": AsrSettings, "cues": CueSettings}


@pytest.mark.parametrize(
    ("part", "name"), [(part, f.name) for part, cls in ASR_PARTS.items() for f in fields(cls)]
)
def test_every_asr_setting_is_reachable_from_the_block(part, name):
    """The ASR block embeds the engine's and the cue cutter's settings types: nothing copied by hand."""
    default = getattr(getattr(AsrConfig(), part), name)
    hints = typing.get_type_hints(ASR_PARTS[part], include_extras=True)
    value = "cpu" if name == "device" else another(default, typing.get_args(hints[name])[0])
    block = load_block(AsrConfig, None, **{f"{part}__{name}": value})
    assert getattr(getattr(block, part), name) == value
    saved = AsrConfig.model_validate(block.model_dump(mode="json"))  # what save + load do
    assert getattr(getattr(saved, part), name) == value and type(getattr(saved, part)) is ASR_PARTS[part]


def test_a_flat_asr_document_saved_before_the_grouping_still_loads():
    old = {"engine": "whisperx", "beam_size": 5, "max_cue_seconds": 3.0, "align_models": {"de": "/m/de"}}
    block = AsrConfig.model_validate(old)
    assert (block.asr.engine, block.asr.beam_size, block.asr.align_models) == (
        "whisperx",
        5,
        (("de", "/m/de"),),
    )
    assert block.cues.max_seconds == 3.0 and block.cues.max_lines == CueSettings().max_lines
    with pytest.raises(ValueError, match="max_lines"):
        AsrConfig.model_validate({"max_lines": 9})  # the cue limits still hold (1-4)


def test_the_loader_applies_only_given_overrides_and_names_bad_ones():
    block = load_block(SubtitleConfig, None, keyframes__sample_fps=None, band=(0.0, 0.7, 1.0, 1.0))
    assert block.keyframes == SubtitleConfig().keyframes and block.band == (0.0, 0.7, 1.0, 1.0)
    with pytest.raises(ConfigError, match="bad YiVideo ASR Engine settings"):
        load_block(AsrConfig, None, asr__engine="tesseract")
    with pytest.raises(ConfigError, match="bad YiVideo Subtitle Settings settings"):
        load_block(SubtitleConfig, None, keyframes__no_such_setting=1)


@pytest.mark.slow
def test_a_saved_subtitle_block_keeps_its_stage_settings(prefect_server):
    """Registered and saved on a real Prefect server, read back by name with a flow override on top."""
    from stages.subtitles.text_signal import KeyframeSettings

    saved = SubtitleConfig(keyframes=KeyframeSettings(sample_fps=3.0, change_threshold=0.2))
    saved.ocr = type(saved.ocr)(det_max_side=640, cpu_threads=2)
    saved.save("i13-nested", overwrite=True)
    block = load_block(SubtitleConfig, "i13-nested", keyframes__sample_fps=4.0)
    assert block.keyframes == KeyframeSettings(sample_fps=4.0, change_threshold=0.2)
    assert (block.ocr.det_max_side, block.ocr.cpu_threads) == (640, 2)
    with pytest.raises(ConfigError, match="'i13-missing' not found"):
        load_block(SubtitleConfig, "i13-missing")
