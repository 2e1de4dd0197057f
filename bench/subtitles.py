"""Subtitle flow figures: accuracy and speed over the real-footage corpus, the 720p speed case, one hour.

    .venv/bin/python bench/subtitles.py                  # corpus: CER, WER, recall, precision, timing,
                                                         # realtime factor per case and stage by stage
    .venv/bin/python bench/subtitles.py --cases A B      # those corpus cases only (samples/footage.py)
    .venv/bin/python bench/subtitles.py --speed          # 60 s 720p, ~20 lines (goal: >= 10x realtime)
    .venv/bin/python bench/subtitles.py --hour           # one hour, a line every 3 s (2.2 s shown):
                                                         # time, peak memory, peak temporary disk
    .venv/bin/python bench/subtitles.py --hour --size 1280x720 --duration 600 --repeat 6
                                                         # an hour of 720p: 10 rendered minutes x 6

The flow runs against the local Prefect server a CLI or notebook call uses (core/local_server.py, on a
PREFECT_HOME of its own, started once, outside the timing). The first run in a process also loads the OCR
models; `--speed` runs twice (each run on a video not seen before: no stage result from the cache) and
reports both.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samples.scoring import SubtitleScore, pooled, score_subtitles  # noqa: E402


def _stages_line(stages: dict[str, float], video_seconds: float) -> str:
    return "  ".join(
        f"{name} {s:.2f}s ({video_seconds / s:.0f}x)" if s > 0 else f"{name} 0s" for name, s in stages.items()
    )


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) of this process (the flow and its threads) and of its finished children
    (ffmpeg): on a shared machine wall time says little, CPU time still compares runs."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def _cpu_line(before: tuple[float, float], video_seconds: float) -> str:
    own, kids = (after - start for after, start in zip(_cpu_seconds(), before, strict=True))
    return (
        f"CPU {own + kids:.1f} s = flow process {own:.1f} s + ffmpeg {kids:.1f} s "
        f"({video_seconds / (own + kids):.1f}x realtime per core; load {os.getloadavg()[0]:.1f})"
    )


def run_corpus(tmp: Path, cache: Path, names: list[str] | None = None) -> None:
    from flows.subtitles import extract_subtitles
    from samples.footage import FOOTAGE_CASES, render_case

    known = {case.name for case in FOOTAGE_CASES}
    if names and not set(names) <= known:
        raise SystemExit(
            f"unknown corpus case(s) {sorted(set(names) - known)}; known: {', '.join(sorted(known))}"
        )
    scores: list[SubtitleScore] = []
    totals: dict[str, float] = {}
    video_total = wall_total = 0.0
    own_total = kids_total = 0.0
    print(f"{'case':<26} {'metrics':<118} realtime")
    for case in (c for c in FOOTAGE_CASES if not names or c.name in names):
        video = render_case(case, cache)
        started, cpu = time.perf_counter(), _cpu_seconds()
        result = extract_subtitles(str(video), str(tmp / "corpus"))
        wall = time.perf_counter() - started
        own, kids = (after - start for after, start in zip(_cpu_seconds(), cpu, strict=True))
        own_total, kids_total = own_total + own, kids_total + kids
        score = score_subtitles(case.truth(), list(result.events))
        scores.append(score)
        video_total += case.duration
        wall_total += wall
        for name, seconds in result.stage_seconds.items():
            totals[name] = totals.get(name, 0.0) + seconds
        print(f"{case.name:<26} {score.line():<118} {case.duration / wall:.1f}x ({wall:.1f} s)")
        print(f"{'':<26} stages: {_stages_line(result.stage_seconds, case.duration)}")
        print(f"{'':<26} {_cpu_line(cpu, case.duration)}")
    print(f"{'ALL':<26} {pooled(scores).line():<118} {video_total / wall_total:.1f}x ({wall_total:.1f} s)")
    print(f"{'':<26} stages: {_stages_line(totals, video_total)}")
    print(
        f"{'':<26} CPU {own_total + kids_total:.1f} s = flow process {own_total:.1f} s + ffmpeg "
        f"{kids_total:.1f} s (the first case also loads the models; load {os.getloadavg()[0]:.1f})"
    )


def run_speed(tmp: Path, duration: float, size: str, runs: int) -> None:
    from flows.subtitles import extract_subtitles
    from samples.video import benchmark_script, make_subtitled_video

    w, h = (int(v) for v in size.split("x"))
    script = benchmark_script(duration, count=int(duration / 3))
    print(f"video: {duration:.0f} s {w}x{h}, {len(script)} subtitles; each run a video not seen before")
    for run in range(1, runs + 1):
        # the lines rotated by the run's number: new pixels, so no stage result comes from the cache
        cues = [replace(cue, text=script[(i + run) % len(script)].text) for i, cue in enumerate(script)]
        video = make_subtitled_video(tmp / f"bench{run}.mp4", cues, duration=duration, size=(w, h))
        started, cpu = time.perf_counter(), _cpu_seconds()
        result = extract_subtitles(str(video), str(tmp / f"out{run}"))
        wall = time.perf_counter() - started
        score = score_subtitles(cues, list(result.events))
        label = "cold (model load)" if run == 1 else "warm models, fresh video"
        print(f"run {run} [{label}]: flow {wall:.2f} s wall = {duration / wall:.1f}x realtime")
        print(f"    stages: {_stages_line(result.stage_seconds, duration)}")
        in_line = {name: s for name, s in result.stage_seconds.items() if name != "decode-check"}
        overhead = wall - sum(in_line.values())
        print(f"    orchestration {overhead:.2f} s (flow wall - stage walls)")
        print(f"    {_cpu_line(cpu, duration)}; peak RSS so far {_peak_rss_mb():.0f} MB")
        print(f"    accuracy: {score.line()}")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _DiskWatch:
    """Peak bytes under a folder, polled every 0.2 s while the flow runs, and this process's resident memory
    (a sample a second): whether memory grows with the video's length shows in its tenths."""

    def __init__(self, root: Path) -> None:
        self.root, self.peak, self._stop = root, 0, threading.Event()
        self.rss: list[int] = []  # bytes, one a second
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        polls = 0
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, _bytes_under(str(self.root)))
            polls += 1
            if polls % 5 == 0:
                self.rss.append(_rss_bytes())

    def rss_by_tenth(self) -> str:
        """Peak RSS in each tenth of the run, MiB."""
        n = len(self.rss)
        if n < 10:
            return "(run too short)"
        tenths = [max(self.rss[i * n // 10 : (i + 1) * n // 10]) for i in range(10)]
        return " ".join(f"{b / 2**20:.0f}" for b in tenths)

    def __enter__(self) -> _DiskWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _bytes_under(folder: str) -> int:
    """Bytes of the files under `folder`, by os.scandir: the watcher runs in the flow's process (its CPU
    counts as the flow's, it holds the GIL), and pathlib's rglob and stat 5 times a second over a window's
    images were ~14% of that process's stacks in a py-spy profile of the 10-minute case (2.9 -> 0.8 ms a
    poll of 270 files)."""
    size = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        size += _bytes_under(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        size += entry.stat(follow_symlinks=False).st_size
                except OSError:  # removed while listed (a window's folder): the next poll counts
                    continue
    except OSError:
        return size
    return size


def hour_video(out: Path, duration: float, size: tuple[int, int]) -> tuple[Path, list]:
    """Film footage looped for `duration`, a line every 3 s shown for 2.2 s (the aliasing pattern)."""
    from samples.footage import AssEvent, AssStyle, FootageCase, render_case

    lines = ["The meadow is quiet today", "兔子醒来了", "He stretches in the sun", "是的", "Breakfast time"]
    count = int(duration / 3)
    events = tuple(AssEvent(3 * i + 0.4, 3 * i + 2.6, f"{lines[i % len(lines)]} {i}") for i in range(count))
    case = FootageCase(
        "hour",
        "bigbuckbunny.mp4",
        size,
        duration,
        (AssStyle("Default", max(18, size[1] // 16), outline=2, shadow=1, margin_v=size[1] // 20),),
        events,
        "one hour, a line every 3 s",
    )
    return render_case(case, out), case.truth()


def repeated(video: Path, truth: list, part: float, times: int) -> tuple[Path, list]:
    """`video` `times` times in a row (samples.video.repeat_video), its lines shifted to each copy."""
    from dataclasses import replace

    from samples.video import repeat_video

    shifted = [
        replace(c, start=c.start + k * part, end=c.end + k * part) for k in range(times) for c in truth
    ]
    return repeat_video(video, times), shifted


def run_hour(tmp: Path, cache: Path, duration: float, size: str, repeat: int = 1) -> None:
    from flows.subtitles import extract_subtitles

    w, h = (int(v) for v in size.split("x"))
    started = time.perf_counter()
    video, truth = hour_video(cache, duration, (w, h))
    if repeat > 1:
        video, truth = repeated(video, truth, duration, repeat)
        duration *= repeat
    made = time.perf_counter() - started
    print(f"video: {duration / 60:.0f} min {w}x{h}, {len(truth)} lines (made in {made:.0f} s: {video.name})")
    out = tmp / "hour"
    out.mkdir(parents=True, exist_ok=True)
    with _DiskWatch(out) as disk:
        started, cpu = time.perf_counter(), _cpu_seconds()
        result = extract_subtitles(str(video), str(out))
        wall = time.perf_counter() - started
    score = score_subtitles(truth, list(result.events))
    cpu_line = _cpu_line(cpu, duration)
    rss = _peak_rss_mb()  # no children's figure: a child forked from here reports our RSS as its own
    print(f"flow {wall:.0f} s wall = {duration / wall:.1f}x realtime")
    print(f"    stages: {_stages_line(result.stage_seconds, duration)}")
    print(f"    {cpu_line}")
    print(f"    peak memory: flow process {rss:.0f} MiB ({rss * 2**20 / 1e6:.0f} MB)")
    print(f"    peak RSS by tenth of the run, MiB: {disk.rss_by_tenth()}")
    print(f"    peak disk under the output folder (temporary files): {disk.peak / 1e6:.1f} MB")
    print(f"    accuracy: {score.line()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", action="store_true", help="the 720p synthetic speed case")
    parser.add_argument("--hour", action="store_true", help="the one-hour case (slow: tens of minutes)")
    parser.add_argument("--duration", type=float, default=None, help="seconds (speed: 60, hour: 3600)")
    parser.add_argument("--size", default=None, help="WxH (speed: 1280x720, hour: 640x360)")
    parser.add_argument("--runs", type=int, default=2, help="speed runs; the first also loads the models")
    parser.add_argument("--cache", default=None, help="folder keeping rendered videos between runs")
    parser.add_argument("--repeat", type=int, default=1, help="hour: the rendered video this many times")
    parser.add_argument("--cases", nargs="+", default=None, help="corpus mode: only these cases (names)")
    args = parser.parse_args()
    from prefect.settings import PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from core.interrupt import send_queued_records
    from core.local_server import LocalApi, stop

    with (
        tempfile.TemporaryDirectory() as tmp,
        # the server a CLI or notebook call uses (core/local_server.py), on a PREFECT_HOME of its own;
        # stage results stored for this invocation only: an earlier bench's stored band or events were
        # reused (its cache keys still matched) and its CPU seconds left out of the figures
        temporary_settings({PREFECT_HOME: Path(tmp) / "home", PREFECT_LOCAL_STORAGE_PATH: Path(tmp) / "out"}),
        LocalApi() as api,
    ):
        api.ready()
        cache = Path(args.cache) if args.cache else Path(tmp) / "media"
        if args.speed:
            run_speed(Path(tmp), args.duration or 60.0, args.size or "1280x720", args.runs)
        elif args.hour:
            run_hour(Path(tmp), cache, args.duration or 3600.0, args.size or "640x360", args.repeat)
        else:
            run_corpus(Path(tmp), cache, args.cases)
        send_queued_records(10.0)
        stop(Path(tmp) / "home")
    return 0


if __name__ == "__main__":
    sys.exit(main())
