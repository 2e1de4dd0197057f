"""Model loads per flow-run process and time to its first OCR result, with the host's model service or not.

    .venv/bin/python bench/model_service.py [--runs 3] [--asr] [--flow STEM] [--callers N]

Each run is a fresh process, as a process worker starts one per flow run (PREFECT__FLOW_RUN_ID set: the
service's `auto` mode), that reads a subtitle frame of a real video with PP-OCR (`--asr`: and transcribes the
first 30 s of a real meeting with the packaged Whisper): the models loaded in it, the seconds from its start
to the first OCR result, its RSS. Then the service's own RSS with the models resident. `--flow STEM` runs the
subtitles flow on that real video `--runs` times a mode, each in its own process, stage cache off: OCR loads
in each run's process, wall, and whether the SRTs are identical across modes. `--callers N` measures what
the service does when N runs call one OCR model at once: N threads share one engine (onnxruntime sessions
run concurrent calls), one copy per caller, or one thread for all; wall, calls per second, peak RSS, and
whether every mode read the same text.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.model_service import address, status, stop  # noqa: E402
from samples.realvideo import REALVIDEO_STEMS, realvideo_dir, realvideo_path  # noqa: E402

VIDEO = "douyin_7625472985927237489_zh"  # a short drama; its frame at 5 s has one subtitle line
MEETING = realvideo_dir().parent / "realspeech" / "meetings" / "ami_EN2001a_0-30s.wav"
RUN = """
import json, sys, time, cv2
from core.models import load_count
from stages.subtitles.ocr import OcrSettings, load_ocr_engine
lines = load_ocr_engine(OcrSettings()).read(cv2.imread(sys.argv[1]))
out = {"ocr_at": time.time(), "text": "|".join(line.text for line in lines)}
if len(sys.argv) > 2:
    from stages.speech.audio import iter_audio_windows
    from stages.speech.engines import AsrSettings, load_asr_engine
    settings = AsrSettings(device="cpu")
    _, samples = next(iter_audio_windows(sys.argv[2]))
    window = load_asr_engine(settings).transcribe(samples, None, settings)
    out.update(asr_at=time.time(), asr=" ".join(s.text for s in window.segments)[:60])
rss = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({**out, "loads": load_count(), "peak_rss_mb": int(rss) // 1024}))
"""
SHARING = """
import hashlib, json, sys, time, cv2
from concurrent.futures import ThreadPoolExecutor
from stages.subtitles.ocr import OcrSettings, RapidOcrEngine
mode, callers, images = sys.argv[1], int(sys.argv[2]), [cv2.imread(p) for p in sys.argv[3:]]
engines = [RapidOcrEngine(OcrSettings()) for _ in range(callers if mode == "copies" else 1)]
pools = [ThreadPoolExecutor(1) for _ in range(1 if mode == "serial" else callers)]
def read(i):
    return "|".join(line.text for line in engines[i % len(engines)].read(images[i]))
start = time.perf_counter()
futures = [pools[i % len(pools)].submit(read, i) for i in range(len(images))]
texts = [f.result() for f in futures]
wall = time.perf_counter() - start
rss = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
digest = hashlib.sha256("\\n".join(texts).encode()).hexdigest()[:12]
print(json.dumps({"wall": wall, "peak_rss_mb": int(rss) // 1024, "texts": digest}))
"""
SIZE = """
import json, sys, cv2, numpy as np
from core.models import release_freed_memory
kind, what, frame, meeting = sys.argv[1:5]
def rss():
    release_freed_memory()
    return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]) / 1024
if kind == "ocr":
    from stages.subtitles.ocr import OcrSettings, RapidOcrEngine
    image = cv2.imread(frame)
    build, use = lambda: RapidOcrEngine(OcrSettings(lang=what)), lambda m: m.read(image)
elif kind == "asr":
    from stages.speech.audio import iter_audio_windows
    from stages.speech.engines import ENGINES, AsrSettings
    settings = AsrSettings(model=what, device="cpu")
    _, samples = next(iter_audio_windows(meeting))
    build = lambda: ENGINES[settings.engine](settings)
    use = lambda m: m.transcribe(samples, None, settings)
elif kind == "diarize":
    from pathlib import Path
    from stages.speech.engines import DIARIZERS, AsrSettings
    settings = AsrSettings(device="cpu", diarize=True, diarize_engine=what)
    build, use = lambda: DIARIZERS[what](settings), lambda m: m.embed(Path(meeting), settings)
else:
    from stages.enhance.engines.realesrgan import NcnnNetworks
    from stages.enhance.settings import EnhanceSettings
    settings = EnhanceSettings(engine="realesrgan-ncnn", model=what, scale=2.0)
    tile = cv2.imread(frame)[:96, :96]
    build = lambda: NcnnNetworks(settings)
    use = lambda m: [m.run(i, tile) for i in range(len(m.passes))]
figures, held, base = {}, [], rss()
for n in (1, 2):  # the first load also imports the engine's libraries; the second is the model alone
    before = rss()
    held.append(build())
    loaded = rss()
    use(held[-1])
    figures[f"load{n}"], figures[f"used{n}"] = round(loaded - before), round(rss() - before)
print(json.dumps({**figures, "base": round(base)}))
"""
FLOW = """
import hashlib, json, sys, time
from core.local_server import use_local_api
use_local_api()
from core.models import load_count
from flows.subtitles import extract_subtitles
result = extract_subtitles(sys.argv[1], sys.argv[2])
digest = hashlib.sha256(result.srt_path.read_bytes()).hexdigest()[:12]
print(json.dumps({"loads": load_count("ocr"), "srt": digest, "done_at": time.time()}))
"""


def child(script: str, args: list[str], home: Path, mode: str) -> tuple[float, dict]:
    env = {**os.environ, "PREFECT_HOME": str(home), "PYTHONPATH": str(REPO), "YIVIDEO_MODEL_SERVICE": mode}
    env.update(PREFECT__FLOW_RUN_ID=str(uuid.uuid4()), YIVIDEO_STAGE_CACHE="0")
    start = time.time()
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return start, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--asr", action="store_true")
    parser.add_argument("--flow", metavar="STEM")
    parser.add_argument("--callers", type=int, help="only the calls-at-once comparison, with N callers")
    parser.add_argument("--sizes", action="store_true", help="only each model kind's resident MB")
    args = parser.parse_args()
    if args.sizes:
        sizes()
        return
    if args.callers:
        sharing(args.callers, args.runs)
        return
    work = Path(tempfile.mkdtemp(prefix="model-service-"))
    home = work / "home"
    home.mkdir()
    frame = work / "frame.png"
    cmd = ["ffmpeg", "-loglevel", "error", "-ss", "5", "-i", str(realvideo_path(VIDEO)), "-frames:v", "1"]
    subprocess.run([*cmd, str(frame)], check=True)
    extra = [str(MEETING)] if args.asr else []
    print(f"load: {os.getloadavg()[0]:.1f}")
    print("| run | mode | loads in the run | start -> first OCR result (s) | start -> ASR result (s) | "
          "run peak RSS (MB) | load | text |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    texts: dict[str, set[str]] = {}
    later: dict[str, list[float]] = {"off": [], "auto": []}  # runs after the first: the service is up
    for run in range(1, args.runs + 1):
        for mode in ("off", "auto"):  # interleaved: the others' load falls on both alike
            start, out = child(RUN, [str(frame), *extra], home, mode)
            asr = f"{out['asr_at'] - start:.2f}" if "asr_at" in out else "-"
            texts.setdefault(mode, set()).add(out["text"] + out.get("asr", ""))
            first, label = out["ocr_at"] - start, "service" if mode == "auto" else "off"
            later[mode] += [first] if run > 1 else []
            rss, text, load = out["peak_rss_mb"], out["text"], os.getloadavg()[0]
            print(f"| {run} | {label} | {out['loads']} | {first:.2f} | {asr} | {rss} | {load:.1f} | {text} |")
    if args.runs > 1:  # the first run with the service starts it
        off, served = (statistics.median(later[m]) for m in ("off", "auto"))
        runs = f"runs 2-{args.runs}"
        print(f"\nmedian start -> first OCR result, {runs}: off {off:.2f} s, service {served:.2f} s")
    found = status(address(home)) or {}
    print(f"\nservice: RSS {found.get('rss_mb')} MB, loads {found.get('loads')}, {found.get('models')}")
    print(f"identical results with and without the service: {texts['off'] == texts['auto']}")
    if args.flow:
        flow(args.flow, args.runs, work, home)
    stop(home)


def sharing(callers: int, rounds: int, count: int = 24) -> None:
    """`count` real frames (each read once: no detection is remembered) read by `callers` at once, each mode
    in a fresh process `rounds` times, interleaved (the others' load falls on every mode alike)."""
    work = Path(tempfile.mkdtemp(prefix="model-sharing-"))
    frames = []
    for i in range(count):
        stem = REALVIDEO_STEMS[i % len(REALVIDEO_STEMS)]
        frames.append(work / f"frame-{i:02d}.png")
        at = f"{1 + 0.7 * (i // len(REALVIDEO_STEMS)):.1f}"
        cmd = ["ffmpeg", "-loglevel", "error", "-ss", at, "-i", str(realvideo_path(stem))]
        subprocess.run([*cmd, "-frames:v", "1", str(frames[-1])], check=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    print(f"{count} real frames, {callers} callers at once; load {os.getloadavg()[0]:.1f}")
    print("| mode | round | wall (s) | calls/s | peak RSS (MB) | load | texts |")
    print("|---|---|---|---|---|---|---|")
    for round_ in range(1, rounds + 1):
        for mode in ("shared", "copies", "serial"):
            cmd = [sys.executable, "-c", SHARING, mode, str(callers), *map(str, frames)]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(done.stderr[-3000:])
            out = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"| {mode} | {round_} | {out['wall']:.2f} | {count / out['wall']:.2f} | {out['peak_rss_mb']} "
                f"| {os.getloadavg()[0]:.1f} | {out['texts']} |"
            )


SIZED = [("ocr", "ch"), ("ocr", "ko"), ("ocr", "ru"), ("ocr", "ar"), ("asr", "base")] + [
    ("enhance", m)
    for m in ("waifu2x-photo", "realesr-animevideov3", "realesrgan-x4plus", "realesrgan-x4plus-anime")
]


def sizes() -> None:
    """Each model kind's resident memory, as core.models.RESIDENT_MB writes it down: RSS growth (after
    malloc_trim) when a model loads and after its first call, in a fresh process; each model is loaded twice,
    the second figure is the model without its libraries' import."""
    work = Path(tempfile.mkdtemp(prefix="model-sizes-"))
    frame = work / "frame.png"
    cmd = ["ffmpeg", "-loglevel", "error", "-ss", "5", "-i", str(realvideo_path(VIDEO)), "-frames:v", "1"]
    subprocess.run([*cmd, str(frame)], check=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    print(
        "| kind | model | MB at 1st load (imports too) | after its call | 2nd load | after its call | load |"
    )
    print("|---|---|---|---|---|---|---|")
    for kind, what in SIZED:
        cmd = [sys.executable, "-c", SIZE, kind, what, str(frame), str(MEETING)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode:
            print(f"| {kind} | {what} | failed: {done.stderr.strip().splitlines()[-1][:120]} |")
            continue
        out = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"| {kind} | {what} | {out['load1']} | {out['used1']} | {out['load2']} | {out['used2']} "
            f"| {os.getloadavg()[0]:.1f} |"
        )


def flow(stem: str, runs: int, work: Path, home: Path) -> None:
    from core.local_server import ensure_started

    ensure_started(home)  # the shared local Prefect API, up before the first run as on a worker's host
    print("\n| mode | run | OCR loads in the run | wall (s) | SRT sha256 |\n|---|---|---|---|---|")
    digests: dict[str, set[str]] = {}
    for mode in ("off", "auto"):
        for run in range(1, runs + 1):
            out_dir = work / f"out-{mode}-{run}"
            start, out = child(FLOW, [str(realvideo_path(stem)), str(out_dir)], home, mode)
            digests.setdefault(mode, set()).add(out["srt"])
            label = "service" if mode == "auto" else "off"
            print(f"| {label} | {run} | {out['loads']} | {out['done_at'] - start:.1f} | {out['srt']} |")
    same = len(digests["off"] | digests["auto"]) == 1
    print(f"SRTs identical across all runs and modes: {same}; service: {status(address(home))}")


if __name__ == "__main__":
    main()
