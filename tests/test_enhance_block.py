"""The enhance block carries every stage setting: a setting the block cannot reach is one users cannot set."""

from __future__ import annotations

import types
import typing
from dataclasses import fields

import pytest

from blocks.enhance import STAGE_ONLY, EnhanceConfig
from stages.enhance.settings import EnhanceSettings

SETTINGS = [f for f in fields(EnhanceSettings) if f.name not in STAGE_ONLY]


def _another_value(name: str, default):
    """A valid value other than the default, from the block field's own type (choices, bool, number, text)."""
    annotation = EnhanceConfig.model_fields[name].annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        choices = typing.get_args(inner[0]) if typing.get_origin(inner[0]) is typing.Literal else ()
        return next((c for c in choices if c != default), "/somewhere/else")
    if typing.get_origin(annotation) is typing.Literal:
        return next(c for c in args if c != default)
    if annotation is bool:
        return not default
    return type(default)(default + 1)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda f: f.name)
def test_every_stage_setting_is_reachable_from_the_block(setting):
    assert setting.name in EnhanceConfig.model_fields, f"the block has no {setting.name}"
    assert EnhanceConfig.model_fields[setting.name].default == setting.default, "defaults differ"
    value = _another_value(setting.name, setting.default)
    assert value != setting.default
    settings = EnhanceConfig(**{setting.name: value}).engine_settings()
    assert getattr(settings, setting.name) == value
    assert settings == EnhanceSettings(**{setting.name: value})
