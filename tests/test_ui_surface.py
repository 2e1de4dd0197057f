"""What the Prefect UI shows users: every block type registered with described fields; parameter schemas.

The UI builds its block catalog from registered types and its Run forms from each flow's parameter
schema, so these are checked on the objects the UI reads (no server needed).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import blocks
from deployments.bootstrap import BLOCK_TYPES


def _project_block_types() -> set[type]:
    from prefect.blocks.core import Block

    modules = [importlib.import_module(f"blocks.{m.name}") for m in pkgutil.iter_modules(blocks.__path__)]
    modules.append(importlib.import_module("gpu.policy"))
    return {
        cls
        for module in modules
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, Block) and cls.__module__ == module.__name__
    }


def test_bootstrap_registers_every_block_type():
    found = _project_block_types()
    assert len(found) >= 8
    assert found == set(BLOCK_TYPES), {c.__name__ for c in found ^ set(BLOCK_TYPES)}


def test_every_block_field_is_described():
    undescribed = {
        cls.__name__: [name for name, field in cls.model_fields.items() if not field.description]
        for cls in BLOCK_TYPES
    }
    assert not {k: v for k, v in undescribed.items() if v}, undescribed
