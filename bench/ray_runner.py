"""The subtitle flow on several videos: local threads vs a Ray cluster of 1 node vs 2 nodes (all on this
machine, started with `ray start`), one flow run per video, each connecting to the cluster as a deployment
run would. Prints wall time, where the stages ran (task-run node tags) and model loads, as a table.

python bench/ray_runner.py [--videos 3] [--seconds 8]      # a temporary Prefect server; no GPUs needed
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # before Prefect configures its logging
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ["YIVIDEO_GPU_GATE"] = "never"  # this bench measures placement, not GPU slot scheduling

from ray_nodes import start_cluster  # noqa: E402

from blocks.runner import RunnerConfig, StageResources  # noqa: E402
from core.models import load_count  # noqa: E402

NOTE = """\
What a 2-core machine can show: the cost of Ray (connecting, worker start, moving results), that stages
land where the runner block says (task-run node tags), and warm model actors (one OCR load for all runs).
What it cannot: speed-up from more nodes. Both "nodes" share the same 2 cores (and other work on them),
so a second node adds processes, not CPU; no GPUs, so GPU placement is untested; one disk, so shared
storage costs nothing here (NFS would); no network between nodes (and no ray:// client)."""


def videos(root: Path, count: int, seconds: float) -> list[Path]:
    from samples.video import busy_script, make_subtitled_video

    script = busy_script()
    return [
        make_subtitled_video(
            root / f"video{i}.mp4", script[i % 2 : i % 2 + 3], duration=seconds, size=(640, 360),
            background=("dark", "busy", "gradient")[i % 3],
        )
        for i in range(count)
    ]  # fmt: skip


def node_tags(flow_run_id) -> Counter[str]:
    """Node tag -> how many of the run's task runs ran there."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return Counter(t.removeprefix("ray-node:") for r in runs for t in r.tags if t.startswith("ray-node:"))


def cluster_facts(address: str) -> tuple[dict[str, str], int]:
    """({node id prefix: name}, model loads in the warm actors) of the cluster at `address`."""
    import ray

    from runtime.ray_engine import model_servers

    ray.init(address=address, logging_level="ERROR")
    try:
        alive = [n for n in ray.nodes() if n["Alive"]]
        names = {n["NodeID"][:12]: "B" if n["Resources"].get("node_b") else "head" for n in alive}
        loads = sum(ray.get(s.model_loads.remote()) for s in model_servers().values())
        return names, loads
    finally:
        ray.shutdown()


def run_mode(label: str, settings: RunnerConfig, clips: list[Path], out: Path, rows: list[list[str]]) -> str:
    """Each clip through the flow on `settings`; a table row per run; the SRTs, to compare modes."""
    from flows.subtitles import extract_subtitles
    from runtime.runner import with_runner

    srts = []
    started_all = time.perf_counter()
    for clip in clips:
        started = time.perf_counter()
        state = with_runner(extract_subtitles, settings)(str(clip), str(out / label), return_state=True)
        wall = time.perf_counter() - started
        result = state.result()
        srts.append(result.srt_path.read_text(encoding="utf-8"))
        if settings.kind == "local":
            where, loads = "all in the flow process", str(load_count("ocr"))
        else:
            names, total = cluster_facts(settings.address or "")
            tags = node_tags(state.state_details.flow_run_id)
            where = ", ".join(f"{n} on {names.get(tag, tag)}" for tag, n in sorted(tags.items()))
            loads = f"{total} (actors)"
        rows.append([label, clip.name, f"{wall:6.1f}", f"{len(result.events)}", where, loads])
    rows.append([label, "all", f"{time.perf_counter() - started_all:6.1f}", "", "", ""])
    return "\n".join(srts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each generated video")
    args = parser.parse_args()
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        root = Path(tmp)
        clips = videos(root, args.videos, args.seconds)
        env = {"PYTHONPATH": str(REPO), "PREFECT_API_URL": PREFECT_API_URL.value()}
        env["YIVIDEO_GPU_GATE"] = "never"
        reference = run_mode("local", RunnerConfig(), clips, root, rows)
        for label, layout in [("ray 1 node", [2]), ("ray 2 nodes", [1, 1])]:
            started = time.perf_counter()
            nodes = start_cluster(layout[0], {"head_node": 1}, env)
            try:
                for cpus in layout[1:]:
                    nodes.add_node(cpus, {"node_b": 1}, env)
                nodes.wait_for(len(layout))
                print(f"{label}: cluster up in {time.perf_counter() - started:.1f} s", flush=True)
                on_b = StageResources(resources={"node_b": 0.01})
                routes = {"ocr": on_b, "subtitle_area": on_b} if len(layout) > 1 else {}
                settings = RunnerConfig(kind="ray", address=nodes.address, stage_resources=routes)
                same = run_mode(label, settings, clips, root, rows) == reference
                rows.append([label, "SRTs", "", "same as local" if same else "DIFFER from local", "", ""])
            finally:
                nodes.stop()
    head = ["runner", "video", "wall s", "events", "task runs by node", "model loads"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    print(NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
