"""The whole suite (`make test`, what CI runs) timed, with where its CPU goes (issue 26: <= 8 min of pytest).

    python3 bench/suite.py [--fresh] [--tier test|test-fast] [--workers 3] [--top 20] [--keep DIR]

Runs `make test` (or the fast tier) here (`--fresh`: in a fresh `git clone` of this checkout's HEAD, as
CI does) while a sampler reads /proc twice a second. Prints the result line, pytest's and make's wall
time, the cores the machine kept busy, the CPU seconds of each kind of process (pytest workers, Prefect
servers, flow-run processes, ffmpeg, Ray, PostgreSQL, the machine's own), and the longest tests from the
JUnit report with each module's sum, and the tests that cost the most CPU in their own pytest process
(bench/plugins/cpu_per_test.py) with each module's sum. Why the CPU: on CI's two cores the suite keeps both
busy for most of its run, so its wall time is its CPU time over two, and a test that only waits costs nothing
while others run.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from procfs import HZ, cpu_seconds, stat_fields  # bench/, this script's folder

REPO = Path(__file__).resolve().parents[1]
# the process kinds, first match wins, on the command line (a kernel thread has none)
KINDS = [
    ("pytest and its xdist workers (stages and flows in-process)", r"-u -c import sys;exec|-m pytest"),
    ("Prefect servers", r"prefect server start|-m core\.local_server serve|-m deployments\.server"),
    ("flow-run processes (zygote, CLI, deployed runs)", r"-m (deployments\.zygote|flows\.)"),
    ("Prefect workers", r"-m deployments\.worker|prefect worker"),
    ("model services", r"-m core\.model_service"),
    ("GPU brokers", r"-m gpu\.broker"),
    ("Ray", r"/ray/|raylet|gcs_server|\bray start"),
    ("ffmpeg, ffprobe", r"^\S*ff(mpeg|probe)\b"),
    ("chromium", r"chrom"),
    ("PostgreSQL", r"^postgres"),
    ("the machine's own (kernel threads, agents)", r"^$|process_api|line_io|beam\.smp|redis|nats|mosquitto"),
    ("setup and lint (pip in a fresh clone, ruff)", r"-m pip\b|pip-build-env|\bruff\b"),
    ("other test processes", r""),
]


def kind_of(command: str) -> str:
    return next(name for name, pattern in KINDS if re.search(pattern, command))


class Sampler(threading.Thread):
    """Each process's CPU seconds as last seen (a process's last half second before it ends is lost), and
    the machine's busy and total jiffies at the start and end."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.cpu: dict[tuple[int, str], float] = {}
        self.command: dict[tuple[int, str], str] = {}
        self.stop = threading.Event()
        self._sample_all()
        self.before = dict(self.cpu)  # what the processes running already had spent
        self.first = self.last = _machine_jiffies()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self._sample_all()
            self.last = _machine_jiffies()

    def _sample_all(self) -> None:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if int(pid) != os.getpid():
                self._sample(pid)

    def _sample(self, pid: str) -> None:
        try:
            fields = stat_fields(pid)
            key = (int(pid), fields[19])  # a pid and its start time: one process
            if key not in self.command:
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                self.command[key] = raw.replace(b"\0", b" ").decode(errors="replace").strip()
            self.cpu[key] = cpu_seconds(fields)
        except (OSError, ValueError, IndexError):
            pass  # ended meanwhile

    def write_processes(self, path: Path) -> None:
        """Every process's CPU seconds, kind and command line, most first: what a kind's total is made of."""
        rows = sorted(((s - self.before.get(k, 0.0), k) for k, s in self.cpu.items()), reverse=True)
        rows = [(s, k) for s, k in rows if s > 0]
        lines = [f"{s:.2f}\t{k[0]}\t{kind_of(self.command[k])}\t{self.command[k][:300]}" for s, k in rows]
        path.write_text("cpu_s\tpid\tkind\tcommand\n" + "\n".join(lines) + "\n")

    def by_kind(self) -> collections.Counter:
        totals: collections.Counter = collections.Counter()
        for key, seconds in self.cpu.items():
            totals[kind_of(self.command[key])] += seconds - self.before.get(key, 0.0)
        return totals


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot; idle and iowait are not busy."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(values) - values[3] - values[4], sum(values)


def run_suite(checkout: Path, tier: str, workers: int, keep: Path) -> tuple[int, float, str]:
    """`make <tier>` in `checkout`: its exit status, wall seconds and standard output (pytest's report);
    both outputs and the JUnit report are kept in `keep` (a failure's evidence outlives a fresh clone)."""
    junit, per_test = keep / "junit.xml", keep / "test-cpu"
    per_test.mkdir(exist_ok=True)
    options = f"{os.environ.get('PYTEST_ADDOPTS', '')} --junitxml={junit} -p cpu_per_test"
    plugins = [str(checkout / "bench" / "plugins"), os.environ.get("PYTHONPATH", "")]  # cpu_per_test.py
    plugins = os.pathsep.join(filter(None, plugins))
    env = {**os.environ, "PYTEST_ADDOPTS": options, "PYTHONPATH": plugins, "SUITE_CPU_DIR": str(per_test)}
    started = time.monotonic()
    command = ["make", tier, f"TEST_WORKERS={workers}"]
    done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
    (keep / "make.out").write_text(done.stdout)
    (keep / "make.err").write_text(done.stderr)  # setup's pip and the like
    return done.returncode, time.monotonic() - started, done.stdout


def report_cpu(sampler: Sampler) -> None:
    busy = (sampler.last[0] - sampler.first[0]) / HZ
    cores = os.cpu_count() or 1
    average = busy / max(1e-9, (sampler.last[1] - sampler.first[1]) / HZ / cores)
    print(f"machine: {busy:.0f} CPU s busy, {average:.2f} of {cores} cores on average")
    totals = sampler.by_kind()
    print(f"\nCPU s by process kind ({sum(totals.values()):.0f} s sampled in {len(sampler.cpu)} processes):")
    for name, seconds in totals.most_common():
        print(f"  {seconds:7.1f}  {name}")


def report_tests(junit: Path, top: int) -> None:
    cases = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        cases.append((float(case.get("time", 0)), "", f"{module}::{case.get('name')}"))
    title = "longest {top} tests (s, setup + call + teardown)"
    _report_ranked(cases, top, title, "per module (s, summed over its tests)")


def report_test_cpu(folder: Path, top: int) -> None:
    """The tests that cost the most CPU in their pytest process (bench/plugins/cpu_per_test.py)."""
    cases = []
    for tsv in folder.glob("*.tsv"):
        for line in tsv.read_text().splitlines():
            name, cpu, wall = line.rsplit("\t", 2)
            name = name.removeprefix("tests/").replace(".py::", "::")
            cases.append((float(cpu), f"  {float(wall):7.1f}", name))
    title = "most CPU in their own pytest process, {top} tests (CPU s, wall s; not their child processes)"
    _report_ranked(cases, top, title, "per module (CPU s in the pytest processes, {total:.0f} in all)")


def _report_ranked(cases: list[tuple[float, str, str]], top: int, title: str, per_module: str) -> None:
    """The `top` cases (seconds, more columns, module::test) by seconds, then the 15 modules by their sum."""
    cases.sort(reverse=True)
    print(f"\n{title.format(top=top)}:")
    for seconds, columns, name in cases[:top]:
        print(f"  {seconds:7.1f}{columns}  {name}")
    modules: collections.Counter = collections.Counter()
    for seconds, _, name in cases:
        modules[name.split("::")[0]] += seconds
    print(f"\n{per_module.format(total=sum(modules.values()))}:")
    for name, seconds in modules.most_common(15):
        print(f"  {seconds:7.1f}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="in a fresh clone of HEAD, as CI runs it")
    parser.add_argument("--tier", choices=("test", "test-fast"), default="test", help="the make target")
    parser.add_argument("--workers", type=int, default=3, help="xdist workers (the Makefile's default: 3)")
    parser.add_argument("--top", type=int, default=20, help="how many of the longest tests to list")
    parser.add_argument("--keep", type=Path, help="where make's output and JUnit go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="yivideo-suite-bench-") as tmp:
        checkout = REPO
        if args.fresh:
            checkout = Path(tmp) / "checkout"
            subprocess.run(["git", "clone", "-q", str(REPO), str(checkout)], check=True)
            if (REPO.parent / "shared").is_dir():  # the real videos and speech beside it, as here
                (Path(tmp) / "shared").symlink_to(REPO.parent / "shared")
        sampler = Sampler()
        sampler.start()
        keep = args.keep or Path(tempfile.mkdtemp(prefix="yivideo-suite-run-"))
        keep.mkdir(parents=True, exist_ok=True)
        status, wall, output = run_suite(checkout, args.tier, args.workers, keep)
        sampler.stop.set()
        sampler.join()
        summary = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
        result = summary[-1] if summary else "no summary line"
        print(f"make {args.tier}: exit {status}, {wall:.1f} s wall; pytest: {result}")
        report_cpu(sampler)
        sampler.write_processes(keep / "processes.tsv")
        if (keep / "junit.xml").exists():
            report_tests(keep / "junit.xml", args.top)
        report_test_cpu(keep / "test-cpu", args.top)
        if status != 0:  # pytest's failures and its short summary
            print("\n" + "\n".join(output.splitlines()[-80:]))
        print(f"\nmake's output, the JUnit report and each process's CPU (processes.tsv): {keep}")
    return status  # the clone went with the temporary folder


if __name__ == "__main__":
    sys.exit(main())
