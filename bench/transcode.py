"""Transcode flow overhead: the flow vs the same ffmpeg command run directly, same input, same run.

    .venv/bin/python bench/transcode.py [--duration 90] [--size 1280x720] [--preset NAME] [--repeats 3]

Generates a clip, starts a temporary Prefect server and warms the flow up on a tiny clip (both outside the
timing), then alternates: the exact argv the flow's task runs (built by
stages.transcode.command.build_command),
run by subprocess; and the whole flow (input probe, task submission, ffmpeg, ffprobe checks, rename,
manifest, artifacts, progress updates). Prints both medians and their ratio (goal: flow <= 1.05x), plus
CPU seconds of each side (ffmpeg and ffprobe, the flow's own process, the Prefect server): on a shared,
busy machine wall times swing by 2x from run to run, CPU time much less.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # before Prefect is imported

from procfs import cpu_seconds, stat_fields  # noqa: E402 (bench/, this script's folder)

from blocks.presets import SEED_PRESETS  # noqa: E402
from samples.clips import make_clip  # noqa: E402
from stages.transcode.command import build_command  # noqa: E402
from stages.transcode.nvenc import nvenc_usable  # noqa: E402
from stages.transcode.probe import probe_streams  # noqa: E402


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # waited-for children: ffmpeg, ffprobe
    return usage.ru_utime + usage.ru_stime


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _server_cpu(pids: list[int]) -> float:
    """CPU seconds of the temporary Prefect server (a child process still running), from /proc."""
    return sum(cpu_seconds(stat_fields(pid)) for pid in pids)


def _running_children() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(stat_fields(entry)[1]) == os.getpid():
                    found.append(int(entry))
            except (OSError, ValueError):
                continue
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=90.0)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--preset", default="mp4_standard", choices=list(SEED_PRESETS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    preset = SEED_PRESETS[args.preset]
    from prefect.testing.utilities import prefect_test_harness

    from flows.transcode import transcode

    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        root = Path(tmp)
        server = _running_children()
        video = make_clip(root / "bench.mp4", size=(w, h), duration=args.duration, preset="veryfast")
        warmup = make_clip(root / "warmup.mp4", size=(320, 180), duration=1.0)
        transcode(str(warmup), [args.preset], str(root / "warmup-out"))
        hardware = nvenc_usable(preset)
        cmd = build_command(video, root / "direct.mp4", preset, probe_streams(video), hardware=hardware)
        encoder, load = cmd[cmd.index("-vcodec") + 1], os.getloadavg()[0]
        print(
            f"input: {args.duration:.0f} s {w}x{h} with audio; preset {args.preset}; encoder {encoder}; "
            f"{os.cpu_count()} CPUs; load average {load:.1f}"
        )
        print("command:", " ".join(cmd))
        idle_started, idle_cpu = time.perf_counter(), _server_cpu(server)
        time.sleep(5)
        idle_rate = (_server_cpu(server) - idle_cpu) / (time.perf_counter() - idle_started)
        direct, flow, direct_cpu, flow_cpu = [], [], [], []
        for run in range(1, args.repeats + 1):
            for which in ("direct", "flow") if run % 2 else ("flow", "direct"):  # alternate who goes first
                kids, own, srv = _children_cpu(), _own_cpu(), _server_cpu(server)
                started = time.perf_counter()
                if which == "direct":
                    subprocess.run(cmd, check=True, capture_output=True)
                    direct.append(time.perf_counter() - started)
                    direct_cpu.append(_children_cpu() - kids)
                else:
                    result = transcode(str(video), [args.preset], str(root / f"out{run}"))
                    assert result.renditions, "the flow published its rendition"
                    flow.append(time.perf_counter() - started)
                    server_busy = _server_cpu(server) - srv - idle_rate * flow[-1]  # above its idle load
                    parts = (_children_cpu() - kids, _own_cpu() - own, server_busy)
                    flow_cpu.append(sum(parts))
                    print(
                        f"    flow CPU: ffmpeg+ffprobe {parts[0]:.2f} s, flow process {parts[1]:.2f} s, "
                        f"Prefect server {parts[2]:.2f} s above idle"
                    )
            wall_ratio, cpu_ratio = flow[-1] / direct[-1], flow_cpu[-1] / direct_cpu[-1]
            print(
                f"run {run}: wall direct {direct[-1]:.2f} s, flow {flow[-1]:.2f} s (x{wall_ratio:.3f}); "
                f"CPU direct {direct_cpu[-1]:.2f} s, flow {flow_cpu[-1]:.2f} s (x{cpu_ratio:.3f})"
            )
        d, f = statistics.median(direct), statistics.median(flow)
        dc, fc = statistics.median(direct_cpu), statistics.median(flow_cpu)
        verdict = "meets" if f / d <= 1.05 else "misses"
        print(
            f"median wall: direct ffmpeg {d:.2f} s, flow {f:.2f} s, ratio {f / d:.3f} "
            f"({verdict} the 1.05x goal); {args.duration / f:.1f}x realtime"
        )
        print(
            f"median CPU:  direct ffmpeg {dc:.2f} s, flow {fc:.2f} s, ratio {fc / dc:.3f} "
            f"(Prefect server idles at {idle_rate:.3f} CPU s/s, not counted)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
