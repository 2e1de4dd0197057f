"""The flows on a real two-node Ray cluster without GPUs: `ray start --head` (1 CPU, resource `head_node`)
plus `ray start --address ...` (1 CPU, resource `node_b`, and a folder hidden from it), one per module;
a real Prefect server; real OCR on generated video. Every flow run connects to the cluster and leaves it,
as runs of a deployment do."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ray_nodes import QUIET_RAYLET, REPO, can_hide_folders, start_cluster

from blocks.runner import RunnerConfig, StageResources
from core.errors import ConfigError, MediaInputError
from flows.subtitles import extract_subtitles
from runtime.runner import with_runner
from samples.scoring import squash
from samples.video import busy_script, make_subtitled_video

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="the ray extra is not installed")

ON_B = StageResources(resources={"node_b": 0.01})  # fractions: a warm actor keeps what it asks for
ON_HEAD = StageResources(resources={"head_node": 0.01})


@pytest.fixture(scope="module")
def hidden(tmp_path_factory) -> Path:
    """A folder node B does not see (its own empty tmpfs there)."""
    return tmp_path_factory.mktemp("not-on-node-b")


@pytest.fixture(scope="module")
def cluster(prefect_server, hidden):
    """(address, {node id: name}) of a two-node CPU-only cluster whose workers report to the test server."""
    from prefect.settings import PREFECT_API_URL

    env = {
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "YIVIDEO_GPU_GATE": "auto",
        **QUIET_RAYLET,
    }
    nodes = start_cluster(cpus=1, resources={"head_node": 1}, env=env)
    try:
        nodes.add_node(1, {"node_b": 1}, env, hide=hidden if can_hide_folders() else None)
        nodes.wait_for(2)
        ray.init(address=nodes.address, logging_level="ERROR")
        names = {
            n["NodeID"]: "head" if n["Resources"].get("head_node") else "b" for n in ray.nodes() if n["Alive"]
        }
        ray.shutdown()
        yield nodes.address, names
    finally:
        nodes.stop()


@pytest.fixture(scope="module")
def video(media_dir) -> Path:
    return make_subtitled_video(media_dir / "two-nodes.mp4", busy_script()[:3], duration=6.0, size=(640, 360))


def _node_tags(flow_run_id) -> dict[str, set[str]]:
    """Task name -> the Ray node tags on its task runs (runtime/ray_engine.py tags each run)."""
    from prefect.client.orchestration import get_client

    from tests.conftest import recorded_task_runs

    with get_client(sync_client=True) as client:
        runs = recorded_task_runs(client, [flow_run_id])
    tags: dict[str, set[str]] = {}
    for run in runs:  # task_key: "<function>-<hash>", e.g. ocr_task-1a2b3c4d (run names are for people)
        name = run.task_key.rsplit("-", 1)[0].removesuffix("_task")
        tags.setdefault(name, set()).update(t.removeprefix("ray-node:") for t in run.tags if "ray-node:" in t)
    return tags


def _node(names: dict[str, str], short: str) -> str:
    return next(name for node_id, name in names.items() if node_id.startswith(short))


def test_cli_runs_gpu_stages_on_a_cluster_without_gpus(cluster, video, tmp_path):
    """The issue's reproduction: `--runner ray` on a CPU-only cluster used to wait forever for a GPU. Also
    the CLI as a process (`python -m flows.subtitles`) pointed at an existing cluster by `--ray-address`."""
    from prefect.settings import PREFECT_API_URL

    address, _ = cluster
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    command = [sys.executable, "-m", "flows.subtitles", str(video), "--output-dir", str(tmp_path)]
    proc = subprocess.run(
        command + ["--runner", "ray", "--ray-address", address],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    srt = Path(proc.stdout.strip().splitlines()[-1])
    assert "Movingbackgroundtest" in squash(srt.read_text(encoding="utf-8"))
    assert f"Connecting to existing Ray cluster at address: {address}" in proc.stderr, proc.stderr[-3000:]


def test_gpus_required_on_a_cluster_without_gpus_fails_at_once(cluster, video, tmp_path):
    address, _ = cluster
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"requires GPUs .* has none \(2 node\(s\), 0 GPUs\).*gpus='auto'"):
        with_runner(extract_subtitles, RunnerConfig(kind="ray", address=address, gpus="required"))(
            str(video), str(tmp_path)
        )
    assert time.monotonic() - started < 60, "failed at once, not after a wait for a GPU"


def test_stages_land_on_both_nodes_with_the_local_runners_outputs(cluster, video, tmp_path):
    address, names = cluster
    local = with_runner(extract_subtitles, RunnerConfig())(str(video), str(tmp_path / "local"))
    settings = RunnerConfig(
        kind="ray",
        address=address,
        stage_resources={"ocr": ON_B, "subtitle_area": ON_B, "crop": ON_HEAD, "stitch": ON_HEAD},
    )
    state = with_runner(extract_subtitles, settings)(str(video), str(tmp_path / "ray"), return_state=True)
    on_ray = state.result()
    assert on_ray.srt_path.read_text(encoding="utf-8") == local.srt_path.read_text(encoding="utf-8")
    assert len(local.events) == 3
    placed = {
        stage: {_node(names, t) for t in tags}
        for stage, tags in _node_tags(state.state_details.flow_run_id).items()
    }
    assert placed["ocr"] == placed["subtitle_area"] == {"b"}, placed
    assert placed["crop"] == placed["stitch"] == {"head"}, placed
    assert set().union(*placed.values()) == {"head", "b"}, placed
    # probe, band, language, keyframes (the decode check too), crop, stitch, OCR, postprocess: all on Ray
    assert "language" in placed and "decode_check" not in placed and len(placed) == 8, placed


@pytest.mark.skipif(not can_hide_folders(), reason="needs unshare + mount (root)")
def test_media_a_node_cannot_read_fails_before_any_stage(cluster, hidden, tmp_path):
    address, names = cluster
    video = make_subtitled_video(hidden / "local-only.mp4", busy_script()[:1], duration=2.0, size=(320, 180))
    (b_id,) = [node_id for node_id, name in names.items() if name == "b"]
    with pytest.raises(MediaInputError, match=rf"local-only\.mp4'.*missing on Ray node {b_id[:12]}"):
        with_runner(extract_subtitles, RunnerConfig(kind="ray", address=address))(str(video), str(tmp_path))
    out = hidden / "out"  # the output folder too: node B would write into a folder nobody else sees
    with pytest.raises(MediaInputError, match=rf"'{out}'.*no shared storage.*node {b_id[:12]}"):
        with_runner(extract_subtitles, RunnerConfig(kind="ray", address=address))(
            str(tmp_path / "nothing-read-yet.mp4"), str(out)
        )


def test_warm_model_actors_serve_later_flow_runs_with_one_load(cluster, video, tmp_path):
    from runtime.ray_engine import model_servers

    address, names = cluster
    routes = {"ocr": ON_B, "subtitle_area": ON_B}
    settings = RunnerConfig(kind="ray", address=address, stage_resources=routes)
    seconds = []
    for i in range(2):  # each run connects (a new Ray job) and disconnects, as deployment runs do
        started = time.perf_counter()
        out = str(tmp_path / str(i))
        state = with_runner(extract_subtitles, settings)(str(video), out, return_state=True)
        seconds.append(time.perf_counter() - started)
        assert "Movingbackgroundtest" in squash(state.result().srt_path.read_text(encoding="utf-8"))
        placed = _node_tags(state.state_details.flow_run_id)
        assert {_node(names, t) for t in placed["ocr"] | placed["subtitle_area"]} == {"b"}, placed
    ray.init(address=address, logging_level="ERROR")
    try:
        servers = model_servers()  # this test's routed OCR actor, and the CLI test's unrouted one
        assert servers and all(name.startswith("ocrsettings-") for name in servers), servers
        where = {name: names[ray.get(actor.where.remote())[0]] for name, actor in servers.items()}
        assert "b" in where.values(), where
        # each model loaded once per actor, for every run so far on this cluster (this test's two
        # included): the reader, plus the language probe where the language is told from the pixels
        loads = {name: ray.get(actor.model_loads.remote()) for name, actor in servers.items()}
        assert max(loads.values()) <= 2, loads
    finally:
        ray.shutdown()
    print(f"runs against one cluster, warm OCR actor on node B: {[round(s, 1) for s in seconds]} s")
