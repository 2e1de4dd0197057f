"""What the Prefect UI shows users: every block type registered with described fields; parameter schemas.

The UI builds its block catalog from registered types and its Run forms from each flow's parameter
schema, so these are checked on the objects the UI reads (no server needed).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import blocks
from deployments.bootstrap import BLOCK_TYPES

REPO = Path(__file__).resolve().parents[1]


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

    names = (
        "extract_subtitles", "transcode", "transcribe", "enhance_images", "enhance_yardstick", "run_pipeline",
        "fuse_subtitles", "sweep_inbox",
    )  # fmt: skip
    return [getattr(entrypoints, name) for name in names]


def _form_schema(flow) -> dict:
    """The parameter schema `prefect deploy` stores for `flow`, from which the UI draws its Run form."""
    from prefect.utilities.callables import parameter_schema

    return parameter_schema(flow).model_dump()


def _enum(prop: dict) -> list | None:
    for option in [prop, *prop.get("anyOf", [])]:
        values = option.get("enum") or option.get("items", {}).get("enum")
        if values:
            return values
    return None


def test_every_deployed_parameter_is_described():
    for flow in _deployed_flows():
        properties = _form_schema(flow)["properties"]
        undescribed = [name for name, prop in properties.items() if not prop.get("description")]
        assert not undescribed, f"{flow.name}: parameters without a description: {undescribed}"


def test_every_choice_is_a_list_the_run_form_shows_at_once():
    """Each choice comes from its registry; none hides behind an "| None" toggle (an `anyOf` with null,
    drawn as tabs with None picked) and none has a null default (the form fills it in, then refuses it)."""
    from blocks.presets import SEED_PRESETS
    from flows.pipeline import SEED_CHAIN, STAGES
    from stages.enhance.engines import ENGINES as ENHANCE_ENGINES
    from stages.enhance.engines.realesrgan import NCNN_MODELS
    from stages.enhance.enhance import FACE_MODES
    from stages.enhance.yardstick import METHODS
    from stages.speech.engines import ENGINES as ASR_ENGINES
    from stages.speech.languages import WHISPER_LANGUAGES
    from stages.subtitles.languages import LANGUAGE_CHOICES
    from stages.subtitles.ocr import ENGINES as OCR_ENGINES

    expected = {  # "" first: not chosen, the settings block decides
        ("extract-subtitles", "ocr_engine"): ["", *OCR_ENGINES],
        ("extract-subtitles", "lang"): ["", *LANGUAGE_CHOICES],
        ("transcode", "presets"): list(SEED_PRESETS),
        ("transcribe", "language"): ["", *WHISPER_LANGUAGES],
        ("transcribe", "engine"): ["", *ASR_ENGINES],
        ("enhance-images", "engine"): ["", *ENHANCE_ENGINES],
        ("enhance-images", "model"): ["", *NCNN_MODELS],
        ("enhance-images", "faces"): ["", *FACE_MODES],
        ("enhance-yardstick", "methods"): list(METHODS),
        ("run-pipeline", "workflow_chain"): list(STAGES),
        ("fuse-subtitles", "language"): ["", *WHISPER_LANGUAGES],
        ("fuse-subtitles", "lang"): ["", *LANGUAGE_CHOICES],
    }
    found = {}
    for flow in _deployed_flows():
        for name, prop in _form_schema(flow)["properties"].items():
            if (values := _enum(prop)) is not None:
                found[(flow.name, name)] = values
                assert "anyOf" not in prop, f"{flow.name}.{name}: its choices hide behind a toggle: {prop}"
                assert prop.get("default") is not None, f"{flow.name}.{name}: a null default: {prop}"
                assert prop["default"] in ("", [], list(SEED_CHAIN)), (flow.name, name, prop["default"])
    assert found == expected


def test_not_chosen_reaches_the_flow_as_none_and_a_typo_is_refused():
    """What the form sends, checked as the server checks it (the deployment's schema), then as the flow's
    own parameter validation takes it: "" (not chosen) arrives as None, so the settings block decides."""
    from prefect.exceptions import ParameterTypeError
    from prefect.utilities.schema_tools.validation import ValidationError, validate

    from deployments.entrypoints import enhance_images, transcode, transcribe

    form = {"media": "talk.wav", "engine": "", "language": "", "output_dir": "out"}
    validate(form, _form_schema(transcribe), raise_on_error=True)
    validated = transcribe.validate_parameters(form)
    assert (validated["engine"], validated["language"], validated["media"]) == (None, None, "talk.wav")
    validate({"video": "clip.mp4", "presets": []}, _form_schema(transcode), raise_on_error=True)
    chosen = {"images": ["a.jpg"], "engine": "opencv-classic", "model": "", "faces": "off"}
    validate(chosen, _form_schema(enhance_images), raise_on_error=True)
    assert enhance_images.validate_parameters(chosen)["model"] is None
    for flow, typo in [
        (transcribe, {"media": "talk.wav", "language": "english"}),
        (transcode, {"video": "clip.mp4", "presets": ["mp4_standrad"]}),
        (enhance_images, {"images": ["a.jpg"], "engine": "waifu9000"}),
    ]:
        with pytest.raises(ValidationError):
            validate(typo, _form_schema(flow), raise_on_error=True)
    with pytest.raises(ParameterTypeError, match="engine: Input should be 'realesrgan-ncnn'"):  # Python too
        enhance_images.validate_parameters({"images": ["a.jpg"], "engine": "waifu9000"})


def test_the_blocks_and_the_page_offer_what_the_registries_hold():
    """The blocks' and the upload page's own lists of engines, models and languages cannot drift away from
    the registries the Run form reads."""
    from typing import get_args, get_type_hints

    from faster_whisper.tokenizer import _LANGUAGE_CODES

    from deployments.web import choices
    from stages.enhance.engines import ENGINES as ENHANCE_ENGINES
    from stages.enhance.engines.realesrgan import NCNN_MODELS
    from stages.enhance.enhance import FACE_MODES
    from stages.enhance.settings import EngineName, EnhanceModel, FaceMode
    from stages.speech.engines import ENGINES as ASR_ENGINES
    from stages.speech.engines import AsrSettings
    from stages.speech.languages import WHISPER_LANGUAGES

    assert WHISPER_LANGUAGES == _LANGUAGE_CODES  # the copy of Whisper's tokenizer's list
    asr_engine = get_args(get_type_hints(AsrSettings, include_extras=True)["engine"])[0]  # Annotated[Literal]
    assert set(get_args(asr_engine)) == set(ASR_ENGINES)
    assert set(get_args(EngineName)) == set(ENHANCE_ENGINES)
    assert set(get_args(EnhanceModel)) == set(NCNN_MODELS)
    assert set(get_args(FaceMode)) == set(FACE_MODES)
    assert set(choices.ENGINES) == set(ENHANCE_ENGINES)
    assert set(choices.LANGUAGES) <= set(WHISPER_LANGUAGES)


def test_every_deployed_flow_names_its_runs():
    unnamed = [flow.name for flow in _deployed_flows() if not flow.flow_run_name]
    assert not unnamed, f"runs of {unnamed} would keep Prefect's random words"


def test_a_run_from_the_run_form_is_renamed_after_its_input(prefect_server, tmp_path):
    """The Run form pre-fills Prefect's random words as the run's name; the run takes its readable name when
    it starts, as a worker's flow process starts it (`run_flow` on the flow run the deployment created)."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow

    from deployments.entrypoints import sweep_inbox

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with get_client(sync_client=True) as client:
        deployment_id = client.create_deployment(
            flow_id=client.create_flow(sweep_inbox), name="run-names", enforce_parameter_schema=True,
            parameter_openapi_schema=_form_schema(sweep_inbox),
        )  # fmt: skip
        given = {"inbox_dir": str(inbox), "settle_seconds": 0}
        run = client.create_flow_run_from_deployment(deployment_id, parameters=given, name="arboreal-dragon")
        assert run.name == "arboreal-dragon"
        counts = run_flow(sweep_inbox, flow_run=run, parameters=run.parameters)
        assert counts == {"emitted": 0, "skipped": 0, "seen": 0}
        assert client.read_flow_run(run.id).name == "sweep · inbox"


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


def test_a_deployed_run_imports_only_its_own_flow() -> None:
    """A worker's flow-run process loads `deployments/entrypoints.py:<flow>`: it imports that flow's modules
    only (0.4 s of every deployed run went to importing the other six), with the run policy applied."""
    code = (
        "import sys, deployments.entrypoints as e; f = e.extract_subtitles; "
        "print(f.name, sorted(m for m in sys.modules if m.startswith(('flows.', 'deployments.inbox'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout == "extract-subtitles ['flows.subtitles']\n", out.stdout + out.stderr
