"""prefect.yaml, checked cheaply: every entrypoint loads as a Flow, and the deployments fit together."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
import yaml
from prefect import Flow
from prefect.flows import load_flow_from_entrypoint

import flows
from blocks.policy import POLICY_ENV
from deployments.bootstrap import POOLS, policy_names
from deployments.inbox import KIND_LABEL, UPLOADED

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
DEPLOYMENTS = {d["name"]: d for d in CONFIG["deployments"]}


@pytest.fixture(scope="module")
def loaded() -> dict[str, Flow]:
    return {name: load_flow_from_entrypoint(d["entrypoint"]) for name, d in DEPLOYMENTS.items()}


def test_every_entrypoint_imports_and_is_a_flow(loaded):
    for name, flow in loaded.items():
        assert isinstance(flow, Flow), name
        assert (REPO / DEPLOYMENTS[name]["entrypoint"].split(":")[0]).is_file()


CHILD_FLOWS = {"enhance-batch"}  # run by their parent flow only


def test_every_user_facing_flow_has_a_deployment(loaded):
    deployed = {flow.name for flow in loaded.values()}
    for module in pkgutil.iter_modules(flows.__path__):
        for _, obj in inspect.getmembers(importlib.import_module(f"flows.{module.name}")):
            if isinstance(obj, Flow) and obj.fn.__module__ == f"flows.{module.name}":
                if obj.name not in CHILD_FLOWS:
                    assert obj.name in deployed, f"flow {obj.name!r} (flows/{module.name}.py) is not deployed"


def test_pools_policies_and_parameters_fit_the_flows(loaded):
    for name, d in DEPLOYMENTS.items():
        assert d["work_pool"]["name"] in POOLS, name
        assert d.get("enforce_parameter_schema") is True, name
        assert d["work_pool"]["job_variables"]["env"][POLICY_ENV] in policy_names(), name
        accepted = set(inspect.signature(loaded[name].fn).parameters)
        assert set(d.get("parameters") or {}) <= accepted, name
        for trigger in d.get("triggers") or []:
            assert set(trigger["parameters"]) <= accepted, (name, trigger["name"])


def test_uploads_start_the_right_flows_by_kind(loaded):
    by_kind: dict[str, set[str]] = {}
    for name, d in DEPLOYMENTS.items():
        for trigger in d.get("triggers") or []:
            assert trigger["expect"] == [UPLOADED] and trigger["posture"] == "Reactive"
            by_kind.setdefault(trigger["match"][KIND_LABEL], set()).add(loaded[name].name)
            assert set(trigger["parameters"]) == {_path_parameter(loaded[name])}, (name, trigger["name"])
    assert by_kind["video"] == {"extract-subtitles", "transcode"}
    assert by_kind["audio"] == {"transcribe"}
    assert by_kind["image"] == {"enhance-images"}
    assert "other" not in by_kind, "files that are not media start nothing"


def test_the_inbox_is_swept_nightly():
    sweep = DEPLOYMENTS["inbox-sweep"]
    assert [s["cron"] for s in sweep["schedules"]] == ["0 2 * * *"]
    assert sweep["parameters"]["inbox_dir"] == "{{ prefect.variables.yivideo_inbox_dir }}"


def _path_parameter(flow: Flow) -> str:
    return next(iter(inspect.signature(flow.fn).parameters))


def _rendered_trigger_parameters(trigger: dict, path: str) -> dict:
    """What a run gets: prefect.yaml through `prefect deploy`'s templating, then the server's rendering."""
    import os

    from prefect.server.events.actions import RunDeployment
    from prefect.utilities.schema_tools.hydration import HydrationContext, hydrate
    from prefect.utilities.templating import apply_values

    deployed = apply_values(trigger["parameters"], os.environ, remove_notset=False)  # as prefect deploy
    RunDeployment._upgrade_v1_templates(deployed)  # as the server, when the automation acts
    event = {"event": UPLOADED, "payload": {"path": path}}
    context = HydrationContext(raise_on_error=True, render_jinja=True, jinja_context={"event": event})
    return hydrate(deployed, context)


@pytest.mark.parametrize("path", ["/inbox/clip.mp4", '/inbox/引号 "quoted" \\ back.png', "/inbox/a'b.wav"])
def test_trigger_parameters_reach_the_run_as_the_flow_expects(loaded, path):
    """The image trigger once reached its run as `images: []` (prefect deploy drops unresolved list items)."""
    from typing import get_type_hints

    from pydantic import TypeAdapter

    for name, d in DEPLOYMENTS.items():
        for trigger in d.get("triggers") or []:
            rendered = _rendered_trigger_parameters(trigger, path)
            key = _path_parameter(loaded[name])
            annotation = get_type_hints(loaded[name].fn)[key]
            value = TypeAdapter(annotation).validate_python(rendered[key], strict=True)
            assert value in (path, [path]), (name, rendered)


def test_deployed_flows_validate_their_parameters(loaded):
    """The deployed flows are wrapped (crash re-run cap); a worker still builds their parameter model."""
    for name, flow in loaded.items():
        key = _path_parameter(flow)
        value = ["/in/a.png"] if key in ("images", "photos") else "/in/a.mp4"
        assert flow.validate_parameters({key: value})[key] == value, name
