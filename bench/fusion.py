"""Fused subtitles vs each source alone, and what fusing costs (issue 28).

For each case of samples/fusion_material.py (real footage, libass-burned subtitles, real recorded speech):
CER of the OCR's events, of the speech's segments and of the fused lines against the lines a viewer should
get (shown text, or the spoken words where nothing is shown), and the start error against the voice's
measured onset (median / max over the lines both show and say). Then the cost: the fused flow against the
subtitles flow plus the transcribe flow, stage cache off, models warm, best and median of `--repeat`.

    flock /tmp/bench.lock .venv/bin/python bench/fusion.py [--cache DIR] [--repeat 3] [--cost-case NAME]
        [--no-quality]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["YIVIDEO_STAGE_CACHE"] = "0"  # every run does its work: the cost compares real runs

from samples import fusion_material as material  # noqa: E402
from samples.scoring import score_subtitles  # noqa: E402


def _start_errors(truth, lines) -> list[float]:
    errors = []
    for t in truth:
        if t.shown is None or t.voice_start is None:
            continue
        near = [x for x in lines if min(t.voice_end, x.end) - max(t.voice_start, x.start) > 0]
        if near:
            errors.append(min(abs(x.start - t.voice_start) for x in near))
    return errors


def _timing(errors: list[float]) -> str:
    return f"{statistics.median(errors):.2f} / {max(errors):.2f}" if errors else "-"


def quality(cache: Path, out: Path) -> None:
    from flows.fuse import fuse_subtitles

    print("| case | OCR CER | speech CER | fused CER | start err OCR (med/max s) | speech | fused | lines |")
    print("|---|---|---|---|---|---|---|---|")
    for case in material.FUSION_CASES:
        video, truth = material.render_fusion_case(case, cache)
        run = fuse_subtitles(str(video), str(out))
        sources = {
            "ocr": list(run.subtitles.events),
            "speech": list(run.speech.transcript.segments),
            "fused": list(run.result.lines),
        }
        cer = {k: score_subtitles(truth, v).cer for k, v in sources.items()}
        err = {k: _timing(_start_errors(truth, v)) for k, v in sources.items()}
        print(
            f"| {case.name} | {cer['ocr']:.2%} | {cer['speech']:.2%} | {cer['fused']:.2%} | {err['ocr']} | "
            f"{err['speech']} | {err['fused']} | {len(run.result.lines)} ({len(run.result.disagreements)} "
            "listed) |"
        )
        for line in run.result.disagreements:
            print(f"    disagreement {line.index}: {line.source} {line.timing} shown {line.ocr_text!r} / "
                  f"said {line.speech_text!r} -> {line.text!r}")  # fmt: skip


def cost(cache: Path, out: Path, case_name: str, repeat: int, warm: bool) -> None:
    from flows.fuse import fuse_subtitles
    from flows.subtitles import extract_subtitles
    from flows.transcribe import transcribe

    case = next(c for c in material.FUSION_CASES if c.name == case_name)
    video = str(material.render_fusion_case(case, cache)[0])
    if not warm:
        fuse_subtitles(video, str(out))  # both models loaded once per process, like a worker
    both, fused, own = [], [], []
    for _ in range(repeat):
        t = time.perf_counter()
        extract_subtitles(video, str(out))
        transcribe(video, str(out))
        both.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = fuse_subtitles(video, str(out))
        fused.append(time.perf_counter() - t)
        own.append(_fusion_seconds(result.srt_path.parent / "manifest.json"))
    mid_both, mid_fused = statistics.median(both), statistics.median(fused)
    print(f"cost on {case_name} ({case.duration:.0f} s), {repeat} runs each: subtitles + transcribe "
          f"best {min(both):.1f} s / median {mid_both:.1f} s, fused best {min(fused):.1f} s / median "
          f"{mid_fused:.1f} s: {min(fused) / min(both) - 1:+.1%} best, "
          f"{mid_fused / mid_both - 1:+.1%} median "
          f"(all runs: {[round(x, 1) for x in both]} / {[round(x, 1) for x in fused]})")  # fmt: skip
    share = [o / f for o, f in zip(own, fused, strict=True)]
    print(f"fusion's own stages (probe, speech track, fuse, files) inside the fused runs: "
          f"{[round(x, 2) for x in own]} s, {max(share):.1%} of a run at most: what fusing adds to running "
          "both flows, whatever the load does to the flows' own time")  # fmt: skip


def _fusion_seconds(manifest: Path) -> float:
    """Seconds of the fused run's own stages (those not prefixed by the subtitles or transcribe flow)."""
    import json

    seconds = json.loads(manifest.read_text(encoding="utf-8"))["stage_seconds"]
    return sum(v for k, v in seconds.items() if not k.startswith(("subtitles.", "transcribe.")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=None, help="folder keeping the rendered material between runs")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cost-case", default="street_en_fused", help="case timed; empty: no cost run")
    parser.add_argument("--no-quality", action="store_true", help="only the cost (CER table skipped)")
    args = parser.parse_args()
    from prefect.testing.utilities import prefect_test_harness

    with tempfile.TemporaryDirectory(prefix="fusion-bench-") as tmp:
        cache = Path(args.cache) if args.cache else Path(tmp) / "media"
        print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        with prefect_test_harness(server_startup_timeout=120):
            if not args.no_quality:
                quality(cache, Path(tmp) / "out")
            if args.cost_case:
                cost(cache, Path(tmp) / "out", args.cost_case, args.repeat, warm=not args.no_quality)
        print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
