"""The enhance block embeds the stage's settings type: a setting the block cannot reach is one users cannot
set, and a document saved in the earlier flat shape still loads."""

from __future__ import annotations

import types
import typing
from dataclasses import fields

import pytest

from blocks.enhance import RUNTIME_ONLY, EnhanceConfig
from blocks.loader import load_block
from core.cli import allowed_by
from core.errors import ConfigError
from stages.enhance.settings import EnhanceSettings

SETTINGS = [f for f in fields(EnhanceSettings) if f.name not in RUNTIME_ONLY]
HINTS = typing.get_type_hints(EnhanceSettings, include_extras=True)


def _another_value(name: str, default):
    """A valid value other than the default, from the field's own type (choices, bool, number, text)."""
    annotation = typing.get_args(HINTS[name])[0]  # Annotated[type, Field(...)]
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        choices = typing.get_args(inner[0]) if typing.get_origin(inner[0]) is typing.Literal else ()
        return next((c for c in choices if c != default), "/somewhere/else")
    if typing.get_origin(annotation) is typing.Literal:
        return next(c for c in args if c != default)
    if annotation is bool:
        return not default
    return type(default)(default + 1) if name != "jpeg_quality" else default - 1


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda f: f.name)
def test_every_stage_setting_is_reachable_and_survives_save_and_load(setting):
    value = _another_value(setting.name, setting.default)
    assert value != setting.default
    block = load_block(EnhanceConfig, None, **{f"enhance__{setting.name}": value})
    saved = EnhanceConfig.model_validate(block.model_dump(mode="json"))  # what save + load do
    assert type(saved.enhance) is EnhanceSettings
    settings = saved.engine_settings()
    assert getattr(settings, setting.name) == value
    assert settings == EnhanceSettings(**{setting.name: value})


def test_the_device_is_the_tasks_to_set():
    block = EnhanceConfig.model_validate({"enhance": {"device": "cuda:0"}})
    assert block.engine_settings().device == EnhanceSettings().device


def test_a_flat_document_saved_before_the_embedding_still_loads():
    old = {"engine": "opencv-classic", "scale": 3.0, "tile": 128, "max_concurrency": 2, "batch_size": 5}
    block = EnhanceConfig.model_validate(old)
    assert block.engine_settings() == EnhanceSettings(engine="opencv-classic", scale=3.0, tile=128)
    assert (block.max_concurrency, block.batch_size) == (2, 5)
    with pytest.raises(ValueError, match="scale"):
        EnhanceConfig.model_validate({"scale": 9})  # the stage's limits still hold (1-4)


def test_limits_come_from_the_stage_settings():
    with pytest.raises(ConfigError, match="bad YiVideo Enhance Config settings"):
        load_block(EnhanceConfig, None, enhance__model="waifu9000")
    with pytest.raises(ConfigError, match="bad YiVideo Enhance Config settings"):
        load_block(EnhanceConfig, None, enhance__no_such_setting=1)
    scale = allowed_by(EnhanceSettings, "scale")
    assert scale("4") == 4.0
    with pytest.raises(Exception, match="at most 4"):
        scale("100")


def test_the_ui_form_is_the_stage_settings_with_their_choices_and_descriptions():
    from uuid import uuid4

    from stages.enhance.engines import ENGINES
    from stages.enhance.engines.realesrgan import NCNN_MODELS

    for schema in (
        EnhanceConfig.model_json_schema(),
        EnhanceConfig._to_block_schema(block_type_id=uuid4()).fields,
    ):
        defs = schema.get("definitions") or schema["$defs"]
        form = defs[schema["properties"]["enhance"]["$ref"].rsplit("/", 1)[1]]["properties"]
        assert set(form) == {f.name for f in fields(EnhanceSettings)}
        assert all(p.get("description") for p in form.values()), "every setting is described"
        assert set(form["engine"]["enum"]) == set(ENGINES)
        model = {v for option in form["model"].get("anyOf", [form["model"]]) for v in option.get("enum", [])}
        assert model == set(NCNN_MODELS)
        assert (form["scale"]["minimum"], form["scale"]["maximum"]) == (1, 4)
