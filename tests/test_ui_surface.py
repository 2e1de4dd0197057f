"""What the Prefect UI shows users: every block type registered with described fields; parameter schemas.

The UI builds its block catalog from registered types and its Run forms from each flow's parameter
schema, so these are checked on the objects the UI reads (no server needed).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

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


def _deployed_flows():
    from deployments import entrypoints

    names = ("extract_subtitles", "transcode", "transcribe", "enhance_images", "run_pipeline", "sweep_inbox")
    return [getattr(entrypoints, name) for name in names]


def test_every_deployed_parameter_is_described_and_choices_are_enums():
    from prefect.utilities.callables import parameter_schema

    from blocks.presets import SEED_PRESETS
    from flows.pipeline import STAGES
    from stages.subtitles.languages import LANGUAGE_CHOICES

    enums = {
        ("transcode", "presets"): set(SEED_PRESETS),
        ("extract-subtitles", "ocr_engine"): {"rapidocr", "paddleocr"},
        ("extract-subtitles", "lang"): set(LANGUAGE_CHOICES),  # auto and every language code
        ("transcribe", "engine"): {"faster-whisper", "whisperx"},
        ("enhance-images", "engine"): {"realesrgan-ncnn", "opencv-classic", "gfpgan"},
        ("enhance-images", "model"): {
            "waifu2x-photo", "realesrgan-x4plus", "realesr-animevideov3", "realesrgan-x4plus-anime"
        },
        ("enhance-images", "faces"): {"faithful", "off"},
        ("run-pipeline", "workflow_chain"): set(STAGES),
    }
    found = {}
    for flow in _deployed_flows():
        properties = parameter_schema(flow.fn).model_dump()["properties"]
        undescribed = [name for name, prop in properties.items() if not prop.get("description")]
        assert not undescribed, f"{flow.name}: parameters without a description: {undescribed}"
        for name, prop in properties.items():
            options = [prop, *prop.get("anyOf", [])]
            for option in options:
                values = option.get("enum") or option.get("items", {}).get("enum")
                if values:
                    found[(flow.name, name)] = set(values)
    assert found == enums


def test_runs_are_named_after_their_input(prefect_server):
    from prefect import flow
    from prefect.runtime import flow_run

    from runtime.naming import input_label, run_named_after

    @flow(flow_run_name=run_named_after("demo", "video"))
    def named(video: str) -> str:
        return flow_run.name

    @flow(flow_run_name=run_named_after("enhance", "images"))
    def batch(images: list[str]) -> str:
        return flow_run.name

    assert named("/data/in/clip one.mp4") == "demo · clip one.mp4"
    assert batch(["/a/x.jpg", "/a/y.png", "/a/z.png"]) == "enhance · x.jpg +2"
    assert input_label("transcode", []) == "transcode"


def test_progress_says_how_fast_and_how_long_is_left():
    from core.progress import describe_progress

    assert describe_progress("mp4_smooth of clip.mp4", 0.4, 6.0, 12.0) == (
        "mp4_smooth of clip.mp4: 40% · 0.8x realtime · 9 s left"
    )
    assert describe_progress("OCR of clip.mp4", 0.5, 4.0) == "OCR of clip.mp4: 50% · 4 s left"
    assert describe_progress("x", 0.0, 0.0) == "x: 0%"
    assert describe_progress("OCR of clip.mp4", 0.5, 4.0, items=40, unit="keyframes") == (
        "OCR of clip.mp4: 50% · 5.0 keyframes/s · 4 s left"
    )


def _progress_text(artifact_id) -> tuple[float, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

    with get_client(sync_client=True) as client:
        only = ArtifactFilter(id=ArtifactFilterId(any_=[artifact_id]))
        (artifact,) = client.read_artifacts(artifact_filter=only)
    return float(artifact.data), artifact.description


@pytest.mark.parametrize(
    ("kwargs", "speed"),
    [({"media_seconds": 60.0}, "x realtime"), ({"items": 30, "unit": "keyframes"}, "keyframes/s")],
)
def test_stage_progress_artifacts_show_speed_and_time_left(prefect_server, kwargs, speed):
    """What media stages (x realtime) and item-counting stages (items/s) write, read back from the API."""
    import time

    from core.progress import StageProgress

    report = StageProgress("stage of clip.mp4", every=0.0, **kwargs)
    time.sleep(0.05)
    report(0.5)
    value, text = _progress_text(report.artifact_id)
    assert value == 50.0 and speed in text and " s left" in text, text
    report.done()
    value, text = _progress_text(report.artifact_id)
    assert value == 100.0 and "done in" in text and speed in text, text


def test_artifact_keys_are_per_input_and_valid():
    import re

    from runtime.naming import artifact_key

    keys = [artifact_key("subtitles", n) for n in ("/a/demo.mp4", "/b/Clip One.MOV", "字幕.mp4", "字幕2.mp4")]
    assert keys[:2] == ["subtitles-demo-mp4", "subtitles-clip-one-mov"]
    assert len(set(keys)) == 4 and all(re.fullmatch(r"[a-z0-9-]+", k) for k in keys), keys
