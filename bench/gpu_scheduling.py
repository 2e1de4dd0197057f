"""GPU scheduling: gpu_slot() (per-host broker, direct lease handoff) side by side with Prefect's own
`concurrency()` on one 1-unit GPU limit, on a real Prefect server on the local PostgreSQL.

python bench/gpu_scheduling.py [--contenders 8] [--holds 3] [--hold 1.0] [--api-url URL] [--out DIR]

1. contention: K processes each take the slot `holds` times for `hold` seconds, back to back. Prints the
   GPU busy fraction (time some holder held it / first acquisition to last release) and the handoff gap
   (previous release to next acquisition, counted only when the next one was already waiting).
2. workflows: K processes each run `--workflows` workflows of CPU work, a GPU stage, CPU work again.
   Prints the makespan against its lower bound: max(GPU work / 1 slot, CPU work / cores, longest chain).
Process start-up is not measured (each contender waits for a go file). Draws the GPU timeline, one row
per contender, to DIR/gpu_timeline.png. Figures on a shared, loaded machine are noisy: say so with them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from pg_server import prefect_postgres_server  # noqa: E402


def run_contenders(
    mode: str, count: int, holds: int, hold: float, cpu: float, limit: str, tmp: Path
) -> tuple[list[dict], list[dict]]:
    go = tmp / f"go-{mode}-{time.monotonic_ns()}"
    args = ["--mode", mode, "--holds", str(holds), "--hold", str(hold), "--cpu", str(cpu), "--limit", limit]
    procs = [
        subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "gpu_contender.py"), "--go-file", str(go), "--stage",
             f"c{i}", *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]  # fmt: skip
    for proc in procs:
        line = proc.stdout.readline().strip()
        if line != "READY":
            raise RuntimeError(f"contender failed to start: {line}")
    if mode == "slot":  # the broker starts with the first request: let it start before the clock does
        from gpu.slot import gpu_slot

        with gpu_slot("warm-up"):
            pass
    go.touch()
    holds_out, runs = [], []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"contender failed: {out}")
        for row in map(json.loads, out.splitlines()):
            (holds_out if "acquired" in row else runs).append(row)
    return sorted(holds_out, key=lambda r: r["acquired"]), runs


def busy_and_gaps(holds: list[dict]) -> tuple[float, list[float]]:
    span = holds[-1]["released"] - holds[0]["acquired"]
    busy, end = 0.0, holds[0]["acquired"]
    for row in holds:
        start = max(row["acquired"], end)
        busy += max(0.0, row["released"] - start)
        end = max(end, row["released"])
    gaps = [
        nxt["acquired"] - prev["released"]
        for prev, nxt in zip(holds, holds[1:], strict=False)
        if nxt["requested"] < prev["released"]  # a waiter was there: this is a handoff
    ]
    return busy / span, gaps


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def draw_timeline(panels: list[tuple[str, list[dict]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 2.2 * len(panels)), squeeze=False)
    for ax, (title, holds) in zip(axes[:, 0], panels, strict=True):
        t0 = min(r["acquired"] for r in holds)
        pids = sorted({r["pid"] for r in holds})
        for row in holds:
            y = pids.index(row["pid"])
            ax.broken_barh([(row["acquired"] - t0, row["released"] - row["acquired"])], (y - 0.4, 0.8))
            ax.plot([row["requested"] - t0] * 2, [y - 0.4, y + 0.4], color="grey", lw=0.6)
        ax.set_yticks(range(len(pids)), [f"p{i}" for i in range(len(pids))])
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xlabel("seconds (bars: holding the GPU; grey ticks: asked for it)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


async def _make_plain_limit(name: str) -> None:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(name, 1, slot_decay_per_second=0.0)


def bench(args: argparse.Namespace, tmp: Path) -> None:
    plain_limit = f"bench-plain-{os.getpid()}"
    asyncio.run(_make_plain_limit(plain_limit))
    cores = os.cpu_count() or 1
    labels = {"slot": "gpu_slot (broker handoff)", "plain": "prefect concurrency()"}
    panels = []
    print(f"# GPU scheduling: {args.contenders} processes, one 1-unit slot, {cores} CPU cores "
          f"(shared with other work: figures are noisy)")  # fmt: skip
    print(f"\n## contention: {args.holds} holds x {args.hold:.2f} s each, back to back")
    print(f"{'':28} {'busy':>6} {'gap median':>11} {'gap p95':>9} {'handoffs':>9}")
    for mode in ("slot", "plain"):
        holds, _ = run_contenders(mode, args.contenders, args.holds, args.hold, 0.0, plain_limit, tmp)
        busy, gaps = busy_and_gaps(holds)
        print(f"{labels[mode]:28} {busy:6.3f} {statistics.median(gaps) * 1000:8.1f} ms "
              f"{p95(gaps) * 1000:6.1f} ms {len(gaps):9d}")  # fmt: skip
        panels.append((f"contention, {labels[mode]}: busy {busy:.3f}", holds))

    work = f"{args.workflows} workflows x (CPU {args.cpu:.2f} s, GPU {args.gpu:.2f} s, CPU {args.cpu:.2f} s)"
    gpu_total = args.contenders * args.workflows * args.gpu
    cpu_total = args.contenders * args.workflows * 2 * args.cpu
    chain = args.workflows * (2 * args.cpu + args.gpu)
    bound = max(gpu_total, cpu_total / cores, chain)
    print(f"\n## workflows: each process runs {work}")
    print(f"lower bound {bound:.2f} s = max(GPU {gpu_total:.2f} s / 1 slot, CPU {cpu_total:.2f} s / {cores} "
          f"cores, longest chain {chain:.2f} s)")  # fmt: skip
    print(f"{'':28} {'makespan':>9} {'x bound':>8} {'busy':>6}")
    for mode in ("slot", "plain"):
        holds, runs = run_contenders(
            mode, args.contenders, args.workflows, args.gpu, args.cpu, plain_limit, tmp
        )
        makespan = max(r["end"] for r in runs) - min(r["start"] for r in runs)
        busy, _ = busy_and_gaps(holds)
        print(f"{labels[mode]:28} {makespan:8.2f}s {makespan / bound:8.3f} {busy:6.3f}")
        title = f"workflows, {labels[mode]}: makespan {makespan:.2f} s ({makespan / bound:.3f}x)"
        panels.append((title, holds))
    png = args.out / "gpu_timeline.png"
    draw_timeline(panels, png)
    print(f"\n{png}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contenders", type=int, default=8)
    parser.add_argument("--holds", type=int, default=3, help="contention: holds per process")
    parser.add_argument("--hold", type=float, default=1.0, help="contention: seconds per hold")
    parser.add_argument("--workflows", type=int, default=2, help="workflows per process")
    parser.add_argument("--gpu", type=float, default=0.8, help="workflows: seconds of the GPU stage")
    parser.add_argument("--cpu", type=float, default=0.3, help="workflows: seconds of each CPU stage")
    parser.add_argument("--api-url", help="an existing Prefect server (default: a fresh one on PostgreSQL)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "gpu_scheduling")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        os.environ.update(
            YIVIDEO_GPU_GATE="always", YIVIDEO_GPU_HOST=f"bench-{os.getpid()}", YIVIDEO_GPU_RUN_DIR=tmp
        )
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        server = contextlib.nullcontext(args.api_url) if args.api_url else prefect_postgres_server(
            f"yivideo_gpu_bench_{os.getpid()}", {"PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "5"}
        )  # fmt: skip
        with server as api_url:
            os.environ["PREFECT_API_URL"] = api_url
            try:
                bench(args, Path(tmp))
            finally:
                from gpu.client import GpuSlotError, broker_shutdown

                with contextlib.suppress(GpuSlotError, OSError):
                    broker_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
