"""Blocks as UI forms: typed rows and choice lists instead of JSON boxes; documents named after what they are.

The UI draws a block's form from its registered schema: a field typed `dict` is a raw JSON box, an `object`
with properties is a form, a `Literal` a drop-down. Older documents (maps, named `default`) still load.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from blocks.loader import load_block
from blocks.policy import AlertRules, RunPolicy
from blocks.presets import SEED_PRESETS, TranscodePresets
from core.block_names import ALERT_RULES, GPU_POLICY, LEGACY, RUN_POLICY, SHIPPED, names_to_try
from gpu.policy import GPU_STAGES, GpuPolicy, load_gpu_policy
from stages.transcode.presets import TranscodePreset

TYPED = {TranscodePresets: ("presets",), GpuPolicy: ("class_units", "stage_classes", "stage_priorities")}
OLD_GPU = {
    "class_units": {"light": 1, "heavy": 3},
    "stage_classes": {"asr": "heavy", "ocr": "light"},
    "stage_priorities": {"asr": 5, "transcode": -1},
    "default_class": "heavy",
}


def _nodes(schema: dict[str, Any], node: Any, seen: frozenset[str] = frozenset()):
    """Every sub-schema under `node`, following `$ref`s into the schema's definitions (once each)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref and ref not in seen:
            yield from _nodes(schema, schema["definitions" if "definitions" in schema else "$defs"][
                ref.rsplit("/", 1)[1]], seen | {ref})  # fmt: skip
        yield node
        for value in node.values():
            yield from _nodes(schema, value, seen)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(schema, value, seen)


def _schemas(cls) -> list[dict[str, Any]]:
    """What the UI reads: the model's JSON schema and the schema Prefect registers for the block type."""
    from uuid import uuid4

    return [cls.model_json_schema(), cls._to_block_schema(block_type_id=uuid4()).fields]


def _settings(block) -> dict[str, Any]:
    """The settings alone (a loaded block also carries its document's id and name)."""
    return block.model_dump(include=set(type(block).model_fields))


def _enum(schema: dict[str, Any], node: dict[str, Any]) -> set[Any]:
    return {v for n in _nodes(schema, node) for v in n.get("enum", [])}


@pytest.mark.parametrize("cls", list(TYPED))
def test_typed_fields_are_forms_without_free_form_objects(cls):
    for schema in _schemas(cls):
        for field in TYPED[cls]:
            prop = schema["properties"][field]
            free = [n for n in _nodes(schema, prop) if n.get("type") == "object" and not n.get("properties")]
            free += [n for n in _nodes(schema, prop) if "additionalProperties" in n and n is not prop]
            assert not free, f"{cls.__name__}.{field} has a JSON box: {free}"
            assert prop.get("type") == "array", f"{cls.__name__}.{field} is not a list of rows"
            described = [n for n in _nodes(schema, prop) if "properties" in n]
            assert described and all(
                p.get("description") for n in described for p in n["properties"].values()
            ), f"{cls.__name__}.{field}: every row field is described"


def test_choices_are_enums():
    for schema in _schemas(GpuPolicy):
        props = schema["properties"]
        assert _enum(schema, props["default_class"]) == {"light", "heavy"}
        assert _enum(schema, props["stage_classes"]) == {*GPU_STAGES, "light", "heavy"}
        assert _enum(schema, props["stage_priorities"]) == set(GPU_STAGES)
        assert _enum(schema, props["class_units"]) == {"light", "heavy"}
    for schema in _schemas(TranscodePresets):
        found = _enum(schema, schema["properties"]["presets"])
        assert {"h264", "h265", "aac", "mp3", "thumbnail", "pad", "veryslow", "p7"} <= found


def test_old_map_documents_load_to_the_same_settings():
    old = GpuPolicy.model_validate(OLD_GPU)
    again = GpuPolicy.model_validate(old.model_dump(mode="json"))  # save + load, new shape
    assert _settings(again) == _settings(old)
    for stage in (*GPU_STAGES, "unlisted"):
        assert old.units_for(stage, None, 4) == {"asr": 3, "ocr": 1}.get(stage, 3), stage
        assert old.priority_for(stage, None) == {"asr": 5, "transcode": -1}.get(stage, 0), stage
    assert GpuPolicy().units_for("asr", None, 4) == 1 and GpuPolicy().units_for("x", None, 2) == 1
    tiny = TranscodePreset(width=320, height=180, crf=30, audio=False)
    old_presets = TranscodePresets.model_validate({"presets": {"tiny": tiny.model_dump(mode="json")}})
    assert old_presets.known()["tiny"] == tiny
    assert list(TranscodePresets().known()) == list(SEED_PRESETS)
    saved = TranscodePresets.model_validate(old_presets.model_dump(mode="json"))  # save + load, new shape
    assert saved.known() == old_presets.known()
    with pytest.raises(ValueError, match="stage"):
        GpuPolicy.model_validate({"stage_classes": {"no-such-stage": "heavy"}})


def test_shipped_documents_have_their_own_names_and_fall_back_to_default():
    assert len(SHIPPED) == 4 and LEGACY not in SHIPPED and all(n.startswith("yivideo-") for n in SHIPPED)
    assert names_to_try(RUN_POLICY) == (RUN_POLICY, LEGACY)
    assert names_to_try("housekeeping") == ("housekeeping",)


@pytest.mark.slow
def test_old_documents_on_a_server_still_load_and_bootstrap_adopts_them(prefect_server):
    """A server bootstrapped before: documents named `default`, the GPU policy saved as maps."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import BlockDocumentCreate

    from deployments.bootstrap import Report, ensure_blocks

    async def old_server() -> None:
        async with get_client() as client:
            await GpuPolicy.aregister_type_and_schema(client=client)
            block_type = await client.read_block_type_by_slug(GpuPolicy.get_block_type_slug())
            schema = await client.get_most_recent_block_schema_for_block_type(block_type.id)
            await client.create_block_document(
                BlockDocumentCreate(name=LEGACY, data=OLD_GPU, block_type_id=block_type.id,
                                    block_schema_id=schema.id)  # fmt: skip
            )
        await RunPolicy(stage_retries=5).asave(LEGACY)
        await AlertRules(failure_threshold=7).asave(LEGACY)

    asyncio.run(old_server())
    assert load_block(RunPolicy, RUN_POLICY).stage_retries == 5  # before bootstrap ran again
    assert _settings(asyncio.run(load_gpu_policy())) == _settings(GpuPolicy.model_validate(OLD_GPU))

    async def bootstrap_twice() -> tuple[list[str], list[str]]:
        runs = []
        for _ in range(2):
            report = Report([])
            async with get_client() as client:
                await ensure_blocks(client, report, reset=False)
            runs.append(report.lines)
        return runs[0], runs[1]

    first, again = asyncio.run(bootstrap_twice())
    adopted = [line for line in first if "created from 'default'" in line]
    assert len(adopted) == 3, first  # run policy, alert rules, GPU policy (no subtitle `default` was saved)
    documents = [line for line in again if line.startswith("block ") and not line.startswith("block type")]
    assert len(documents) == 5 and all(line.endswith("ok (kept as edited)") for line in documents), again
    assert RunPolicy.load(RUN_POLICY).stage_retries == 5
    assert RunPolicy.load(LEGACY).stage_retries == 5, "the old document stays for workers that name it"
    assert AlertRules.load(ALERT_RULES).failure_threshold == 7
    assert _settings(GpuPolicy.load(GPU_POLICY)) == _settings(GpuPolicy.model_validate(OLD_GPU))


def test_the_stage_list_names_every_gpu_slot_caller():
    """The GPU policy's stage drop-down offers exactly the names stages take slots under."""
    import re
    from pathlib import Path

    stages = Path(__file__).resolve().parents[1] / "stages"
    text = "\n".join(p.read_text(encoding="utf-8") for p in stages.rglob("*.py"))
    called = set(re.findall(r'gpu_slot\(\s*"([a-z_]+)"', text))
    called |= set(re.findall(r'^STAGE = "([a-z_]+)"', text, re.M))
    assert called == set(GPU_STAGES)
