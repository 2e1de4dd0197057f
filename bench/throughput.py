"""Throughput of many short deployed subtitle runs against the sum of their stage times (issue 23, point 3).

flock /tmp/bench.lock .venv/bin/python bench/throughput.py [--runs 100] [--seconds 5] [--query-seconds S]
    [--job subtitles] [--job transcribe]

Set up as deployed (README, "Run it for real"): a Prefect server on a fresh PostgreSQL database
(tests/pg_server.py), `deployments.bootstrap`, `prefect deploy --name subtitles` from prefect.yaml, one
process worker on the `gpu` pool (deployments/worker.py, its polling as shipped unless --query-seconds
says otherwise). `--solo` runs are first made one at a time on the idle worker: their stage seconds alone
times the runs are the floor the burst is held to (the runs' own stage seconds overlap and slow each other
on a small host), and their due->Pending is the worker's polling delay.
The inputs are `--runs` clips of `--seconds` s cut with ffmpeg from the
real videos at different offsets (each a new file: the stage cache cannot answer). `--job transcribe` runs
the `transcribe` deployment (Whisper through the host's model service; its deployment runs 2 at once, the
others wait for a slot) on real recorded utterances (../shared/realspeech: LibriSpeech test-other, 4-35 s
each, every run a different one); both `--job`s interleave the two (a host holding PP-OCR, the readers and
Whisper). All runs are submitted
at once; the bench waits for every one to end and prints:
  wall        first submission -> last run's terminal state
  runs/min    completed runs per minute of wall
  stage sum   the runs' stage seconds summed (each run's manifest `stage_seconds`, the flow's own timing;
              Prefect's task-run durations beside it)
  ratio       wall / stage sum (issue 23's goal: <= 1.5)
  due->Running  per run, from the moment it was due (its last Scheduled state, or the time that state
              scheduled it for: a run waiting for a deployment slot is due when it is told to retry) to
              Running; median and p90. Pending->Running (process start, imports, flow load) beside it.
  in-run overhead  per run, Running -> end minus its stage seconds (flow set-up, API calls, result writes)
  busy        sum of the runs' Pending -> end over wall: how many runs were in flight on average
  model loads the host's model service's loads, plus the runs that loaded a model themselves (a warning
              line in their log), per run; then each load of the service with its full key and why (first
              load, or a reload and what dropped the model), and the service's RSS and peak RSS
The machine's load (1-min average) is printed before and after: on a shared 2-core host every figure moves
with it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.faults import TERMINAL, dict_count, start_worker, stop_all, wait_all  # noqa: E402
from bench.realvideo import cut_starts  # noqa: E402
from samples.realvideo import cut_realvideo  # noqa: E402
from tests.pg_server import postgres_prefect_server  # noqa: E402

JOBS = {  # --job: its deployment, the flow's parameter for the input, the flow's output folder
    "subtitles": ("extract-subtitles/subtitles", "video", "subtitles"),
    "transcribe": ("transcribe/transcribe", "media", "transcribe"),
}
SERVICE_FALLBACK = ("model service lost", "model service unavailable")  # core.model_service's warnings


def cut_clips(folder: Path, count: int, seconds: float) -> list[Path]:
    """`count` clips of `seconds` s, round-robin over the real videos at offsets 1.7 s apart (wrapping):
    the cuts bench/realvideo.py --cuts scores (`cut_starts`)."""
    folder.mkdir(parents=True, exist_ok=True)
    starts = cut_starts(count, seconds)
    return [
        cut_realvideo(stem, start, seconds, folder / f"clip-{i:03d}.mp4")
        for i, (stem, start) in enumerate(starts)
    ]


def speech_files(count: int) -> list[Path]:
    """`count` real utterances, a different file each (LibriSpeech test-other: 10 speakers, 10 each)."""
    from samples.realvideo import realvideo_dir

    found = sorted((realvideo_dir().parent / "realspeech/speakers/librispeech_test-other").rglob("*.flac"))
    if len(found) < count:
        raise SystemExit(f"{count} runs asked for, {len(found)} real utterances found")
    return found[:count]


def job_inputs(jobs: list[str], count: int, seconds: float, folder: Path) -> list[tuple[str, Path]]:
    """`count` (job, input) pairs, the jobs taking turns."""
    turns = [jobs[i % len(jobs)] for i in range(count)]
    inputs = {
        "transcribe": iter(speech_files(turns.count("transcribe"))),
        "subtitles": iter(cut_clips(folder, turns.count("subtitles"), seconds)),
    }
    return [(job, next(inputs[job])) for job in turns]


def deploy(env: dict[str, str], out: Path, inbox: Path, jobs: list[str]) -> None:
    """Bootstrap and deploy the job's flow as the README's commands do."""
    bin_dir = Path(sys.executable).parent
    for cmd in (
        [sys.executable, "-m", "deployments.bootstrap", "--output-root", str(out), "--inbox", str(inbox)],
        [str(bin_dir / "prefect"), "--no-prompt", "deploy", *(f"--name={job}" for job in jobs)],
    ):
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode:
            raise SystemExit(
                f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
            )


async def submit(inputs: list[tuple[str, Path]]) -> list:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        jobs = {job for job, _ in inputs}
        deployments = {job: await client.read_deployment_by_name(JOBS[job][0]) for job in jobs}
        return [
            (
                await client.create_flow_run_from_deployment(
                    deployments[job].id, parameters={JOBS[job][1]: str(path)}
                )
            ).id
            for job, path in inputs
        ]


async def worker_online(pool: str, deadline: float) -> None:
    """Wait until a worker has said it is there (its first heartbeat, sent just before it first polls):
    the solo runs measure an idle worker, not one still starting (the first run then waited ~2 s more)."""
    from prefect import get_client

    async with get_client() as client:
        while not await client.read_workers_for_work_pool(pool) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)


async def run_records(run_ids: list) -> tuple[dict, dict, dict, int]:
    """Per run: its flow run, its state history, the summed durations of its task runs; and how many runs
    logged that they loaded a model themselves."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    async with get_client() as client:
        runs = {r: await client.read_flow_run(r) for r in run_ids}
        states = {r: await client.read_flow_run_states(r) for r in run_ids}
        task_seconds: dict = dict.fromkeys(run_ids, 0.0)
        offset = 0
        while True:
            page = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids)), limit=200, offset=offset
            )
            for task in page:
                task_seconds[task.flow_run_id] += task.total_run_time.total_seconds()
            if len(page) < 200:
                break
            offset += 200
        loaded_here = 0
        for r in run_ids:
            logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[r])), limit=200)
            loaded_here += any(any(w in log.message for w in SERVICE_FALLBACK) for log in logs)
    return runs, states, task_seconds, loaded_here


def timeline(history: list) -> dict[str, float]:
    """Seconds (epoch) of the states that matter, from a run's state history."""
    ordered = sorted(history, key=lambda s: s.timestamp)
    first_running = next((s for s in ordered if s.type.value == "RUNNING"), None)
    if first_running is None:
        return {}
    before = [s for s in ordered if s.timestamp <= first_running.timestamp]
    scheduled = [s for s in before if s.type.value == "SCHEDULED"]
    pending = [s for s in before if s.type.value == "PENDING"]
    due = scheduled[-1].timestamp.timestamp() if scheduled else ordered[0].timestamp.timestamp()
    if scheduled and scheduled[-1].state_details.scheduled_time:  # told to come back at that time
        due = max(due, scheduled[-1].state_details.scheduled_time.timestamp())
    end = next(
        (s for s in reversed(ordered) if s.type.value in ("COMPLETED", "FAILED", "CRASHED")), ordered[-1]
    )
    return {
        "due": due,
        "pending": pending[-1].timestamp.timestamp() if pending else first_running.timestamp.timestamp(),
        "running": first_running.timestamp.timestamp(),
        "end": end.timestamp.timestamp(),
    }


def manifest_seconds(out: Path, clip: Path) -> float | None:
    import json

    found = [p for job in JOBS.values() for p in out.glob(f"{job[2]}/{clip.stem}-*/manifest.json")]
    if not found:
        return None
    return sum(json.loads(found[0].read_text())["stage_seconds"].values())


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each clip")
    parser.add_argument(
        "--query-seconds", type=float, help="PREFECT_WORKER_QUERY_SECONDS (default: as shipped)"
    )
    parser.add_argument("--solo", type=int, default=3, help="runs submitted one at a time first (the floor)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--job", choices=sorted(JOBS), action="append", help="repeat to interleave")
    args = parser.parse_args()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from core.model_service import address, status, stop

    root = Path(tempfile.mkdtemp(prefix="yivideo-throughput-"))
    jobs = args.job or ["subtitles"]
    inputs = job_inputs(jobs, args.solo + args.runs, args.seconds, root / "clips")
    solo_inputs, inputs = inputs[: args.solo], inputs[args.solo :]
    solo_clips = [p for _, p in solo_inputs]
    home, out = root / "home", root / "output"
    home.mkdir()
    with postgres_prefect_server("yivideo_throughput_bench") as server:
        env = {
            **os.environ,
            "PREFECT_API_URL": server.api_url,
            "PREFECT_HOME": str(home),
            "PYTHONPATH": str(REPO),
        }
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        if args.query_seconds is not None:
            env["PREFECT_WORKER_QUERY_SECONDS"] = str(args.query_seconds)
        deploy(env, out, root / "inbox", jobs)
        worker = start_worker(env, root / "worker.log", pool="gpu")
        try:
            with temporary_settings({PREFECT_API_URL: server.api_url}):
                asyncio.run(worker_online("gpu", time.monotonic() + 120))
                solo = []
                for one in solo_inputs:  # one at a time on an idle worker: each run's stage time alone
                    solo += asyncio.run(submit([one]))
                    wait_all(solo[-1:], time.monotonic() + 600)
                solo_records = asyncio.run(run_records(solo))
                load_before = os.getloadavg()[0]
                now = time.strftime("%H:%M:%S")
                what = ", ".join(f"{job} {sum(j == job for j, _ in inputs)}" for job in jobs)
                print(f"[{now}] {args.runs} runs ({what}; clips of {args.seconds:g} s) at once")
                print(f"load {load_before:.1f}")
                started = time.time()
                ids = asyncio.run(submit(inputs))
                states = wait_all(ids, time.monotonic() + args.timeout)
                load_after = os.getloadavg()[0]
                runs, histories, task_seconds, loaded_here = asyncio.run(run_records(ids))
        finally:
            stop_all(worker, root / "gpu")
        served = status(address(home)) or {}
        stop(home)
    solo_stage = solo_report(out, solo_clips, solo, solo_records[1]) if solo else None
    if ids:
        report(inputs, out, ids, states, histories, task_seconds, started, served, loaded_here, solo_stage)
    print(f"load: {load_before:.1f} before, {load_after:.1f} after; worker log {root / 'worker.log'}")
    return 0


def solo_report(out: Path, clips: list[Path], ids: list, histories: dict) -> float:
    """The runs made one at a time: the idle worker's latency, and each run's stage seconds alone."""
    lines = [timeline(histories[r]) for r in ids]
    stage = [manifest_seconds(out, clip) or float("nan") for clip in clips]

    def figures(values) -> str:
        return ", ".join(f"{v:.1f}" for v in values)

    print(f"\nalone ({len(ids)} runs, one at a time on an idle worker):")
    print(f"  stage seconds {figures(stage)}")
    print(f"  due->Running {figures(x['running'] - x['due'] for x in lines if x)} s")
    print(f"  due->Pending {figures(x['pending'] - x['due'] for x in lines if x)} s (the worker's polling)")
    print(f"  Pending->Running {figures(x['running'] - x['pending'] for x in lines if x)} s")
    print(f"  due->end {figures(x['end'] - x['due'] for x in lines if x)} s")
    return statistics.median(stage)


def report(
    inputs, out, ids, states, histories, task_seconds, started, served, loaded_here, solo_stage
) -> None:
    clips = [path for _, path in inputs]
    lines = {r: timeline(histories[r]) for r in ids}
    done = [r for r in ids if states[r] == "Completed"]
    ends = [lines[r]["end"] for r in ids if lines[r]]
    wall = max(ends) - started if ends else float("nan")
    stage = {r: manifest_seconds(out, clip) for r, clip in zip(ids, clips, strict=True)}
    stage_sum = sum(v for v in stage.values() if v)
    tasks_sum = sum(task_seconds[r] for r in done)
    due = [lines[r]["running"] - lines[r]["due"] for r in done]
    polled = [lines[r]["pending"] - lines[r]["due"] for r in done]
    spawn = [lines[r]["running"] - lines[r]["pending"] for r in done]
    overhead = [lines[r]["end"] - lines[r]["running"] - (stage[r] or 0.0) for r in done]
    busy = sum(lines[r]["end"] - lines[r]["pending"] for r in done) / wall
    loads = served.get("loads", 0) + loaded_here
    print(f"\nstates: {dict_count(states)}; not ended: {sum(s not in TERMINAL for s in states.values())}")
    print(
        "| runs | wall s | runs/min | stage sum s | task-run sum s | wall / stage sum "
        "| due->Running median / p90 s | due->Pending median s | Pending->Running median s "
        "| in-run overhead median s | busy (runs in flight) | model loads (per run) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {len(done)} | {wall:.0f} | {60 * len(done) / wall:.2f} | {stage_sum:.0f} | {tasks_sum:.0f} "
        f"| {wall / stage_sum:.2f} | {statistics.median(due):.1f} / {p90(due):.1f} "
        f"| {statistics.median(polled):.1f} | {statistics.median(spawn):.1f} "
        f"| {statistics.median(overhead):.1f} | {busy:.2f} | {loads} ({loads / max(1, len(done)):.2f}) |"
    )
    if solo_stage:
        floor = solo_stage * len(done)
        print(
            f"floor from the runs alone: {len(done)} x {solo_stage:.1f} s = {floor:.0f} s; "
            f"wall / floor {wall / floor:.2f}"
        )
    print(f"median stage seconds per run {statistics.median(v for v in stage.values() if v):.2f}")
    for job in dict.fromkeys(j for j, _ in inputs):  # a model taking one call at a time: its queue shows here
        mine = [r for r, (j, _) in zip(ids, inputs, strict=True) if j == job and r in done]
        if mine:
            seconds = [stage[r] for r in mine if stage[r]]
            ran = [lines[r]["end"] - lines[r]["running"] for r in mine]
            print(
                f"  {job}: {len(mine)} runs, stage seconds median {statistics.median(seconds):.1f} "
                f"(p90 {p90(seconds):.1f}), Running->end median {statistics.median(ran):.1f} s"
            )
    print(
        f"service: {served.get('models')} rss {served.get('rss_mb')} MB "
        f"(peak {served.get('peak_rss_mb')} MB); "
        f"runs that loaded a model themselves: {loaded_here}"
    )
    for key, why, seconds in served.get("load_log", []):  # each load of the service and why
        print(f"  service load: {key} ({seconds:.1f} s): {why}")


if __name__ == "__main__":
    sys.exit(main())
