"""Fault bench, user side: the cases of issue 29 a user meets at the command line, as rows of exit code,
seconds, stderr lines and what was left on disk, so a checkout can be compared with an earlier one.

flock /tmp/heavy.lock python bench/faults_cli.py [--repo DIR] [--only ROW,ROW]
    rows: corrupt-middle, apng, animated-gif, two-runs-one-folder, resume-after-cleanup, corrupt-audio,
    pipeline-corrupt-middle, kill-9-in-ocr (default: all)
    --repo: the checkout whose CLI runs (default: this one), e.g. an earlier commit's `git archive`

Inputs are real: a short drama from /work/shared/realvideo (the corrupt one is that encode with 60 kB of
its middle overwritten, as dd would), animated images made by ffmpeg. Each row runs the flows' own CLI in
a fresh process, as a user would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from samples.realvideo import realvideo_dir  # noqa: E402

REAL = realvideo_dir()
DRAMA = REAL / "douyin_7625472985927237489_zh.mp4"  # 38 s, 960x720
SHORT = REAL / "douyin_7625253704698556297_zh.mp4"  # 10 s, 540x940, small subtitles
ROWS = ("corrupt-middle", "apng", "animated-gif", "two-runs-one-folder", "resume-after-cleanup",
        "corrupt-audio", "pipeline-corrupt-middle", "kill-9-in-ocr")  # fmt: skip


def cli(
    repo: Path, flow: str, *args: str, timeout: float = 900, env: dict[str, str] | None = None
) -> tuple[int, float, list[str], str]:
    """Exit code, seconds, stderr lines and stdout of `python -m flows.<flow> ARGS` in `repo`."""
    env = {**os.environ, "PYTHONPATH": str(repo), "PREFECT_LOGGING_LEVEL": "WARNING", **(env or {})}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", f"flows.{flow}", *args], cwd=repo, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    return proc.returncode, time.monotonic() - started, proc.stderr.strip().splitlines(), proc.stdout


def left(folder: Path) -> str:
    files = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    return f"{len(files)} files: " + ", ".join(str(f) for f in files[:6]) + (" ..." if len(files) > 6 else "")


def corrupt_copy(source: Path, out: Path) -> Path:
    data = bytearray(source.read_bytes())
    middle = len(data) * 45 // 100
    data[middle : middle + 60000] = os.urandom(60000)
    out.write_bytes(bytes(data))
    return out


def row_corrupt_middle(repo: Path, tmp: Path) -> dict[str, object]:
    video = corrupt_copy(DRAMA, tmp / "damaged.mp4")
    code, took, err, _ = cli(repo, "transcode", "--preset", "thumbnail", "--output-dir", str(tmp / "out"),
                             str(video))  # fmt: skip
    return {"exit": code, "seconds": took, "lines": len(err), "said": _last(err), "left": left(tmp / "out")}


def _animated(repo: Path, tmp: Path, name: str, extra: list[str]) -> dict[str, object]:
    image = tmp / name
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=160x120:r=5", "-t", "1",
                    *extra, str(image)], check=True)  # fmt: skip
    code, took, err, _ = cli(repo, "enhance", "--engine", "opencv-classic", "--output-dir", str(tmp / "out"),
                             str(image))  # fmt: skip
    return {"exit": code, "seconds": took, "lines": len(err), "said": _last(err), "left": left(tmp / "out")}


def row_apng(repo: Path, tmp: Path) -> dict[str, object]:
    return _animated(repo, tmp, "moving.png", ["-plays", "0", "-f", "apng"])


def row_animated_gif(repo: Path, tmp: Path) -> dict[str, object]:
    return _animated(repo, tmp, "moving.gif", [])


def row_two_runs_one_folder(repo: Path, tmp: Path) -> dict[str, object]:
    took = 0.0
    for preset in ("thumbnail", "custom_mute_preview"):
        code, seconds, err, _ = cli(repo, "transcode", "--preset", preset, "--output-dir", str(tmp / "out"),
                                    str(SHORT))  # fmt: skip
        took += seconds
    (manifest,) = (tmp / "out").rglob("manifest.json")
    listed = sorted(json.loads(manifest.read_text(encoding="utf-8"))["outputs"])
    return {"exit": code, "seconds": took, "lines": len(err), "said": f"manifest lists {listed}",
            "left": left(tmp / "out")}  # fmt: skip


def row_resume_after_cleanup(repo: Path, tmp: Path) -> dict[str, object]:
    """Killed once `crop` starts (keyframes finished and cached), its strips deleted, run again."""
    out = tmp / "out"
    kill_subtitles_at(repo, out, "Task run 'crop band", {"PREFECT_LOGGING_LEVEL": "INFO"})
    for strip in out.rglob(".work/**/*.png"):
        strip.unlink()
    code, took, err, _ = cli(repo, "subtitles", str(SHORT), "--output-dir", str(out))
    return {"exit": code, "seconds": took, "lines": len(err), "said": _last(err), "left": left(out)}


def row_corrupt_audio(repo: Path, tmp: Path) -> dict[str, object]:
    """The drama's speech alone (AAC, 12 s), 6 kB of its middle overwritten: transcribe."""
    clean = tmp / "speech.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(DRAMA), "-vn", "-c:a", "copy", "-t", "12",
                    str(clean)], check=True)  # fmt: skip
    data = bytearray(clean.read_bytes())
    middle = len(data) * 45 // 100
    data[middle : middle + 6000] = os.urandom(6000)
    (tmp / "damaged.m4a").write_bytes(bytes(data))
    code, took, err, _ = cli(repo, "transcribe", "--language", "zh", "--output-dir", str(tmp / "out"),
                             str(tmp / "damaged.m4a"))  # fmt: skip
    return {"exit": code, "seconds": took, "lines": len(err), "said": _last(err), "left": left(tmp / "out")}


def row_pipeline_corrupt_middle(repo: Path, tmp: Path) -> dict[str, object]:
    video = corrupt_copy(SHORT, tmp / "damaged.mp4")
    code, took, err, _ = cli(repo, "pipeline", "--chain", "subtitle_area", "--output-dir", str(tmp / "out"),
                             str(video))  # fmt: skip
    return {"exit": code, "seconds": took, "lines": len(err), "said": _last(err), "left": left(tmp / "out")}


def row_kill_9_in_ocr(repo: Path, tmp: Path) -> dict[str, object]:
    """kill -9 as OCR starts (the runtime's test-only hook says when), then the same command again: its
    seconds against a run from scratch, and what the killed run left that the re-run did not clean."""
    out, results = tmp / "out", {"PREFECT_LOCAL_STORAGE_PATH": str(tmp / "results")}  # no earlier run's
    started = time.monotonic()
    hook = {"YIVIDEO_TEST_INTERRUPT_AT": "ocr:announce"}  # the runtime's test-only hook says when OCR starts
    kill_subtitles_at(repo, out, "stage ocr started", {**results, **hook})
    killed_after = time.monotonic() - started
    code, took, err, _ = cli(repo, "subtitles", str(SHORT), "--output-dir", str(out), env=results)
    _, scratch, _, _ = cli(repo, "subtitles", str(SHORT), "--output-dir", str(tmp / "scratch"),
                           env={"YIVIDEO_STAGE_CACHE": "0"})  # fmt: skip
    said = f"killed after {killed_after:.1f} s; re-run {took:.1f} s vs {scratch:.1f} s from scratch"
    return {"exit": code, "seconds": took, "lines": len(err), "said": said, "left": left(out)}


def kill_subtitles_at(repo: Path, out: Path, marker: str, env: dict[str, str]) -> None:
    """The subtitles CLI on SHORT, killed with -9 (its whole process group) once it prints `marker`."""
    env = {**os.environ, **env, "PYTHONPATH": str(repo), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.subtitles", str(SHORT), "--output-dir", str(out)], cwd=repo, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if marker in line:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _last(lines: list[str]) -> str:
    said = [line for line in lines if line.startswith(("error:", "warning:", "failed:"))] or lines[-1:]
    return said[-1][:160] if said else ""


CASES: dict[str, Callable[[Path, Path], dict[str, object]]] = {
    "corrupt-middle": row_corrupt_middle,
    "apng": row_apng,
    "animated-gif": row_animated_gif,
    "two-runs-one-folder": row_two_runs_one_folder,
    "resume-after-cleanup": row_resume_after_cleanup,
    "corrupt-audio": row_corrupt_audio,
    "pipeline-corrupt-middle": row_pipeline_corrupt_middle,
    "kill-9-in-ocr": row_kill_9_in_ocr,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose CLI runs")
    parser.add_argument("--only", default=",".join(ROWS), help=f"comma-separated rows of {', '.join(ROWS)}")
    args = parser.parse_args()
    wanted = [r for r in args.only.split(",") if r]
    if unknown := set(wanted) - set(ROWS):
        parser.error(f"unknown rows {sorted(unknown)}; choose from {', '.join(ROWS)}")
    if not DRAMA.is_file():
        print(f"skipped: real footage not here ({REAL}, see its README)")
        return 0
    print(f"repo {args.repo}; load {os.getloadavg()[0]:.1f}")
    print(f"{'case':22} {'exit':>4} {'s':>6} {'lines':>5}  said / left")
    for name in wanted:
        tmp = Path(tempfile.mkdtemp(prefix=f"faults-cli-{name}-"))
        try:
            row = CASES[name](args.repo.resolve(), tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"{name:22} {row['exit']:>4} {row['seconds']:6.1f} {row['lines']:>5}  {row['said']}")
        print(f"{'':41}{row['left']}")
    print(f"load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
