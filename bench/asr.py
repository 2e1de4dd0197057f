"""Speech flow speed: the transcribe flow vs a direct faster-whisper call on the same file and model.

    .venv/bin/python bench/asr.py [--minutes 5] [--runs 2] [--beam-size 5]

Generates English speech with espeak-ng (known text), starts a temporary Prefect server (outside the
timing), loads the model for both sides first, then times each side `--runs` times, alternating, and prints
wall and CPU seconds (best run of each), realtime factors, the flow's overhead and the WER of both. Goals on
2 cores with the packaged base model, int8: flow overhead <= 10%, >= 10x realtime. CPU seconds are printed
as well because wall time on a shared machine depends on whoever else is running.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")  # before Prefect is imported: figures only
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from blocks.asr import AsrConfig  # noqa: E402
from core.packaged_models import packaged_model_dir  # noqa: E402
from samples.audio import make_speech, varied_sentences, word_error_rate  # noqa: E402
from stages.speech.engines import AsrSettings, cpu_threads_of, load_asr_engine  # noqa: E402


def _cpu_seconds() -> float:
    """CPU of this process and of its finished children (ffmpeg's audio extraction is the flow's work too)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _timed(fn):
    wall, cpu = time.perf_counter(), _cpu_seconds()
    result = fn()
    return result, time.perf_counter() - wall, _cpu_seconds() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the generated speech")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--beam-size", type=int, default=5)
    args = parser.parse_args()
    from faster_whisper import WhisperModel
    from prefect.testing.utilities import prefect_test_harness

    from flows.transcribe import transcribe

    settings = AsrSettings(device="cpu", beam_size=args.beam_size)
    threads = cpu_threads_of(settings)
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        # distinct sentences: a looped script trips Whisper's repetition guard (re-decodes, hotter)
        sentences = varied_sentences(max(1, math.ceil(args.minutes * 60 / 4.0)))  # ~4 s each with the pause
        sample = make_speech(Path(tmp) / "speech.m4a", "en", sentences)
        print(
            f"audio: {sample.duration:.0f} s of espeak-ng English ({len(sample.lines)} sentences), "
            f"model: packaged whisper base, int8, {threads} CPU threads, beam {args.beam_size}, VAD, words"
        )
        _, load_s, _ = _timed(lambda: load_asr_engine(settings))  # the flow's resident engine, warm
        direct_model = WhisperModel(
            str(packaged_model_dir()), device="cpu", compute_type="int8", cpu_threads=threads
        )
        print(f"model load: {load_s:.2f} s (once per worker process; not in the timings below)")

        def run_direct() -> str:
            segments, _ = direct_model.transcribe(
                str(sample.path),
                beam_size=args.beam_size,
                word_timestamps=True,
                vad_filter=True,
                vad_parameters={"min_silence_duration_ms": settings.vad_min_silence_ms},
            )
            return " ".join(s.text.strip() for s in segments)

        block = AsrConfig(device="cpu", beam_size=args.beam_size)
        block.save("bench-asr", overwrite=True)

        def run_flow(i: int) -> str:
            result = transcribe(str(sample.path), str(Path(tmp) / f"out{i}"), settings_block="bench-asr")
            return " ".join(s.text for s in result.transcript.segments)

        flow_walls, flow_cpus, direct_walls, direct_cpus = [], [], [], []
        texts = {}
        for i in range(args.runs):
            texts["direct"], wall, cpu = _timed(run_direct)
            direct_walls.append(wall)
            direct_cpus.append(cpu)
            texts["flow"], wall, cpu = _timed(lambda i=i: run_flow(i))
            flow_walls.append(wall)
            flow_cpus.append(cpu)
            print(
                f"run {i + 1}: direct {direct_walls[-1]:6.2f} s wall {direct_cpus[-1]:6.2f} s CPU | "
                f"flow {flow_walls[-1]:6.2f} s wall {flow_cpus[-1]:6.2f} s CPU"
            )
        # the fastest run of each side: the one least disturbed by whatever else shares the machine
        d_wall, f_wall, d_cpu, f_cpu = map(min, (direct_walls, flow_walls, direct_cpus, flow_cpus))
        for name, wall, cpu in (("direct faster-whisper", d_wall, d_cpu), ("transcribe flow", f_wall, f_cpu)):
            wer = word_error_rate(sample.text, texts["direct" if name.startswith("direct") else "flow"])
            print(
                f"{name:<22} {sample.duration / wall:5.1f}x realtime (wall); "
                f"{sample.duration / (cpu / threads):5.1f}x if its {threads} threads had the cores "
                f"(CPU seconds); WER {wer:.3f}"
            )
        print(
            f"flow overhead (best runs): {100 * (f_wall / d_wall - 1):+.1f}% wall, "
            f"{100 * (f_cpu / d_cpu - 1):+.1f}% CPU (goal <= 10%); median runs: "
            f"{100 * (statistics.median(flow_walls) / statistics.median(direct_walls) - 1):+.1f}% wall"
        )
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work shares them)")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of this process: {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
