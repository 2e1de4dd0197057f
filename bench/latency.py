"""Time to result of the command lines, each beside the plain library call on the same input, in one run.

    flock /tmp/bench.lock .venv/bin/python bench/latency.py [--video CLIP] [--speech WAV] [--no-fresh]

Rows: `import flows.subtitles`; the subtitles CLI on a short clip with a fresh PREFECT_HOME, with the shared
local server already running (warm), and as before (YIVIDEO_LOCAL_SERVER=off: Prefect's temporary server
per call); beside them a plain rapidocr script reading the same clip (one frame a second). The transcribe
CLI beside a plain faster-whisper script (the packaged model) on the same speech, the transcode thumbnail
CLI beside ffmpeg alone. Columns: seconds to the flow's start (its first stage is submitted then) and to the
result (the process's exit), and the CPU seconds of the command's own processes (the shared local server is
detached: its CPU is not in them; a temporary server, a child, is). The machine's load is printed with the
figures: on a shared host they move with it.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEECH = Path("/work/shared/realspeech/speakers/chinese/BAC009S0764W0121.wav")
START_LINE = "Beginning flow run"

PLAIN_OCR = """
import subprocess, sys, numpy as np
from rapidocr_onnxruntime import RapidOCR
video = sys.argv[1]
w, h = map(int, subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
    "stream=width,height", "-of", "csv=p=0", video], capture_output=True, text=True).stdout.split(","))
raw = subprocess.run(["ffmpeg", "-v", "error", "-i", video, "-vf", "fps=1", "-f", "rawvideo", "-pix_fmt",
    "bgr24", "-"], capture_output=True).stdout
frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
ocr = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
print(sum(len(ocr(f)[0] or []) for f in frames), "lines in", len(frames), "frames")
"""
PLAIN_WHISPER = """
import sys
from faster_whisper import WhisperModel
from core.packaged_models import packaged_model_dir
model = WhisperModel(str(packaged_model_dir()), device="cpu", compute_type="int8", cpu_threads=2)
segments, _ = model.transcribe(sys.argv[1], vad_filter=True)
print(" ".join(s.text.strip() for s in segments))
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float | None, float, float, int, str]:
    """(seconds to the flow's start line, seconds to exit, CPU seconds of the children, status, tail)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    first, tail = None, []
    for line in proc.stdout:
        if first is None and START_LINE in line:
            first = time.monotonic() - started
        tail = (tail + [line.rstrip()])[-3:]
    status = proc.wait()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return first, wall, cpu, status, " | ".join(tail)[-160:]


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return env | {
        "PREFECT_HOME": str(home),
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def make_clip(path: Path) -> Path:
    from samples.video import Cue, make_subtitled_video

    return make_subtitled_video(
        path, [Cue(0.2, 1.4, "你好 世界"), Cue(1.6, 2.8, "Hello there")], duration=3.0
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--video", type=Path, default=None, help="a short clip (default: a generated 3 s one)"
    )
    parser.add_argument("--speech", type=Path, default=SPEECH if SPEECH.exists() else None)
    parser.add_argument("--no-fresh", action="store_true", help="skip the fresh PREFECT_HOME rows")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="latency-"))
    video = args.video or make_clip(work / "clip3.mp4")
    py = sys.executable
    rows: list[tuple[str, tuple]] = []

    def row(name: str, cmd: list[str], env: dict[str, str]) -> None:
        figures = timed(cmd, env)
        rows.append((name, figures))
        first, wall, cpu, status, tail = figures
        shown = f"{first:6.2f}" if first is not None else "     -"
        print(f"{name:44} {shown} {wall:7.2f} {cpu:7.2f}  exit {status}" + (f"  {tail}" if status else ""))

    print(f"load: {os.getloadavg()}  input: {video}  speech: {args.speech}")
    print(f"{'':44} {'start':>6} {'result':>7} {'cpu s':>7}")
    warm_home, before_home = work / "home-warm", work / "home-before"
    row("import flows.subtitles", [py, "-c", "import flows.subtitles"], env_for(warm_home))
    out = lambda name: ["--output-dir", str(work / name)]  # noqa: E731
    subtitles = [py, "-m", "flows.subtitles", str(video)]
    if not args.no_fresh:
        row(
            "subtitles CLI, fresh PREFECT_HOME (local)", [*subtitles, *out("a")], env_for(work / "home-fresh")
        )
        row("subtitles CLI, fresh PREFECT_HOME (before)", [*subtitles, *out("b")],
            env_for(work / "home-fresh-before", YIVIDEO_LOCAL_SERVER="off"))  # fmt: skip
    row("subtitles CLI, first call (starts the server)", [*subtitles, *out("c")], env_for(warm_home))
    row("subtitles CLI, warm local server", [*subtitles, *out("d")], env_for(warm_home))
    row("subtitles CLI, before (temporary server)", [*subtitles, *out("e")],
        env_for(before_home, YIVIDEO_LOCAL_SERVER="off"))  # fmt: skip
    row("subtitles CLI, before, second call", [*subtitles, *out("f")],
        env_for(before_home, YIVIDEO_LOCAL_SERVER="off"))  # fmt: skip
    row("plain rapidocr script, same clip", [py, "-c", PLAIN_OCR, str(video)], env_for(warm_home))
    thumb = [py, "-m", "flows.transcode", "--preset", "thumbnail", str(video)]
    row("transcode thumbnail CLI, warm local server", [*thumb, *out("g")], env_for(warm_home))
    row("ffmpeg alone, same thumbnail", ["ffmpeg", "-v", "error", "-y", "-ss", "1", "-i", str(video),
        "-frames:v", "1", "-vf", "scale=320:-2", str(work / "thumb.jpg")], env_for(warm_home))  # fmt: skip
    if args.speech:
        row("transcribe CLI, warm local server", [py, "-m", "flows.transcribe", str(args.speech), *out("h")],
            env_for(warm_home))  # fmt: skip
        row("plain faster-whisper script, same speech", [py, "-c", PLAIN_WHISPER, str(args.speech)],
            env_for(warm_home))  # fmt: skip
    for home in (warm_home, work / "home-fresh"):  # no server of this bench outlives it
        stop = [py, "-m", "core.local_server", "stop"]
        subprocess.run(stop, cwd=REPO, env=env_for(home), capture_output=True, check=False)
    print(f"load: {os.getloadavg()}  (start: seconds to '{START_LINE}'; result: to the process's exit)")
    return 0 if all(figures[3] == 0 for _, figures in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
