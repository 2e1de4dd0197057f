"""Subtitle flow speed: video-seconds per wall-second for the flow and each stage, plus accuracy.

    .venv/bin/python bench/subtitles.py [--duration 60] [--size 1280x720]

Generates a 720p video with ~20 subtitles, runs the flow against a temporary Prefect server (started
once, outside the timing), and prints the figures. Goal on a 2-core machine: >= 10x realtime.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samples.scoring import score_subtitles  # noqa: E402
from samples.video import benchmark_script, make_subtitled_video  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--runs", type=int, default=2, help="the first run also loads the models")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    from prefect.testing.utilities import prefect_test_harness

    from flows.subtitles import extract_subtitles

    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        cues = benchmark_script(args.duration, count=int(args.duration / 3))
        video = make_subtitled_video(Path(tmp) / "bench.mp4", cues, duration=args.duration, size=(w, h))
        print(f"video: {args.duration:.0f} s {w}x{h}, {len(cues)} subtitles")
        for run in range(1, args.runs + 1):
            started = time.perf_counter()
            result = extract_subtitles(str(video), str(Path(tmp) / f"out{run}"))
            wall = time.perf_counter() - started
            score = score_subtitles(cues, list(result.events))
            label = "cold (model load)" if run == 1 else "warm"
            print(f"run {run} [{label}]: flow {wall:.2f} s wall = {args.duration / wall:.1f}x realtime")
            stages = result.stage_seconds
            for name, seconds in stages.items():
                speed = f"{args.duration / seconds:.0f}x" if seconds > 0 else "inf"
                print(f"    {name:<14} {seconds:6.2f} s  {speed:>6} realtime")
            overhead = wall - sum(stages.values())
            print(f"    {'orchestration':<14} {overhead:6.2f} s  (flow wall minus stage walls)")
            print(
                f"    accuracy: CER {score.cer:.2%}, recall {score.recall:.0%}, "
                f"precision {score.precision:.0%}, median start/end error "
                f"{score.median_start_error:.3f}/{score.median_end_error:.3f} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
