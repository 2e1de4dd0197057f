"""What Ray costs and what warm GPU workers save: the subtitle flow local vs on Ray, and GPU tasks on Ray
with workers kept (max_calls=0) vs Ray's default for GPU tasks (a fresh worker, and model load, per task).

python bench/ray_runner.py [--tasks 6]      # a local Ray (2 CPUs, 1 fake GPU) and a temporary Prefect server
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # before Prefect configures its logging
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NONE  # noqa: E402

from blocks.runner import RunnerSettings  # noqa: E402
from core.models import load_count  # noqa: E402
from runtime.runner import GPU_TAG, run_stage, with_runner  # noqa: E402
from stages.subtitles.ocr import OcrSettings, ocr_task  # noqa: E402


@task(name="ocr-and-report", tags=[GPU_TAG], cache_policy=NONE)
def ocr_and_report(batches, keyframes, settings: OcrSettings) -> tuple[int, int, float]:
    started = time.perf_counter()
    ocr_task.fn(batches, keyframes, settings)
    return os.getpid(), load_count("ocr"), time.perf_counter() - started


@flow
def repeat_ocr(batches, keyframes, settings: OcrSettings, times: int) -> list[tuple[int, int, float, float]]:
    reports = []
    for _ in range(times):
        submitted = time.perf_counter()
        pid, loads, inside = run_stage(ocr_and_report, batches, keyframes, settings)
        reports.append((pid, loads, inside, time.perf_counter() - submitted))
    return reports


def ocr_input(video: Path, work: Path):
    from core.media import probe_media
    from stages.subtitles.band import band_from_fractions
    from stages.subtitles.crop import crop_keyframes
    from stages.subtitles.keyframes import KeyframeSettings, extract_keyframes
    from stages.subtitles.stitch import stitch_keyframes

    info = probe_media(video)
    band = band_from_fractions((0.0, 0.6, 1.0, 1.0), info.width, info.height)
    crops = crop_keyframes(extract_keyframes(info, band, work, KeyframeSettings()), work)
    return stitch_keyframes(crops, work), crops


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=6, help="GPU tasks per mode")
    args = parser.parse_args()
    os.environ["YIVIDEO_GPU_GATE"] = "never"  # this bench measures Ray placement, not slot scheduling
    import ray
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from flows.subtitles import extract_subtitles
    from samples.video import busy_script, make_subtitled_video

    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        root = Path(tmp)
        video = make_subtitled_video(
            root / "busy.mp4", busy_script(), duration=11.0, size=(960, 540), background="busy"
        )
        started = time.perf_counter()
        ray.init(
            num_cpus=2,
            num_gpus=1,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": str(HERE), "PREFECT_API_URL": PREFECT_API_URL.value()}},
        )
        print(f"local Ray instance started in {time.perf_counter() - started:.1f} s")
        on_ray = RunnerSettings(kind="ray")
        print("subtitle flow, busy 960x540 11 s video (wall seconds):")
        for label, settings in [
            ("local threads", RunnerSettings()),
            ("ray, 1st run", on_ray),
            ("ray, 2nd run", on_ray),
        ]:
            started = time.perf_counter()
            result = with_runner(extract_subtitles, settings)(str(video), str(root / "out"))
            wall = time.perf_counter() - started
            stages = ", ".join(f"{k} {v:.2f}" for k, v in result.stage_seconds.items())
            print(f"  {label:<14} {wall:6.2f} s ({len(result.events)} events; {stages})")

        batches, crops = ocr_input(video, root / "work")
        print(f"{args.tasks} OCR tasks on Ray, one after another (seconds per task):")
        for label, keep in [("kept workers", True), ("Ray default", False)]:
            settings = on_ray.model_copy(update={"keep_gpu_workers": keep})
            reports = with_runner(repeat_ocr, settings)(batches, crops, OcrSettings(), args.tasks)
            pids = {pid for pid, *_ in reports}
            loads = sum({pid: n for pid, n, *_ in reports}.values())
            print(
                f"  {label:<13} round trip median {statistics.median(r[3] for r in reports):5.2f} "
                f"(first {reports[0][3]:5.2f}), OCR inside the task median "
                f"{statistics.median(r[2] for r in reports):5.2f}; {len(pids)} worker process(es), "
                f"{loads} model load(s)"
            )
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
