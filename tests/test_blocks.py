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
    [(part, f.name) for part, cls in SUBTITLE_STAGES.items() for f in fields(cls)
     if f.name not in RUNTIME_ONLY.get(part, ())],  # fmt: skip
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


@pytest.mark.parametrize("name", [f.name for f in fields(AsrSettings)])
def test_every_asr_setting_is_reachable_from_the_block(name):
    assert name in AsrConfig.model_fields, f"the ASR block has no {name}"
    default = AsrConfig.model_fields[name].get_default(call_default_factory=True)
    value = "cpu" if name == "device" else another(default, AsrConfig.model_fields[name].annotation)
    settings = AsrConfig.model_validate({name: value}).to_settings()
    assert getattr(settings, name) != getattr(AsrConfig().to_settings(), name)


def test_the_loader_applies_only_given_overrides_and_names_bad_ones():
    block = load_block(SubtitleConfig, None, keyframes__sample_fps=None, band=(0.0, 0.7, 1.0, 1.0))
    assert block.keyframes == SubtitleConfig().keyframes and block.band == (0.0, 0.7, 1.0, 1.0)
    with pytest.raises(ConfigError, match="bad YiVideo ASR Engine settings"):
        load_block(AsrConfig, None, engine="tesseract")
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
