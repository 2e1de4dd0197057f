"""One contender for the GPU in its own process, for tests/test_gpu_slots.py and bench/gpu_scheduling.py.

python tests/gpu_contender.py --mode slot|plain --stage S --holds N --hold SECONDS [--cpu SECONDS]
    [--priority P] [--occupy U] [--timeout T] [--limit NAME] [--go-file PATH]

Prints READY once imported, waits for --go-file to exist (so process start-up is not measured), then runs
N workflows of `cpu` seconds of CPU work, a GPU stage holding its slot for `hold` seconds (sleeping: the
"GPU" works, this process's CPU does not), and `cpu` seconds of CPU work again. One JSON line per hold:
{"pid", "stage", "requested", "acquired", "released", "units"}; then {"pid", "start", "end"}. --mode plain
takes the slot with Prefect's own `concurrency()` on --limit instead of gpu_slot().
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def burn_cpu(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("slot", "plain"), default="slot")
    parser.add_argument("--stage", default="contender")
    parser.add_argument("--holds", type=int, default=1)
    parser.add_argument("--hold", type=float, default=0.2)
    parser.add_argument("--cpu", type=float, default=0.0)
    parser.add_argument("--priority", type=int, default=None)
    parser.add_argument("--occupy", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--limit", default="bench-plain")
    parser.add_argument("--go-file", type=Path, default=None)
    args = parser.parse_args()

    from prefect.concurrency.sync import concurrency

    from gpu.slot import GpuSlotTimeout, gpu_slot

    def slot():
        if args.mode == "plain":
            return concurrency(args.limit, occupy=args.occupy or 1, timeout_seconds=args.timeout, strict=True)
        return gpu_slot(args.stage, priority=args.priority, occupy=args.occupy, timeout=args.timeout)

    print("READY", flush=True)
    while args.go_file is not None and not args.go_file.exists():
        time.sleep(0.001)
    start = time.time()
    for _ in range(args.holds):
        burn_cpu(args.cpu)
        requested = time.time()
        try:
            with slot() as grant:
                acquired = time.time()
                time.sleep(args.hold)
                released = time.time()
        except (GpuSlotTimeout, TimeoutError) as exc:
            failure = {"pid": os.getpid(), "error": type(exc).__name__, "message": str(exc)}
            print(json.dumps(failure), flush=True)
            return 3
        units = grant.occupy if grant is not None else (args.occupy or 1)
        hold = {"pid": os.getpid(), "stage": args.stage, "requested": requested, "acquired": acquired,
                "released": released, "units": units}  # fmt: skip
        print(json.dumps(hold), flush=True)
        burn_cpu(args.cpu)
    print(json.dumps({"pid": os.getpid(), "start": start, "end": time.time()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
