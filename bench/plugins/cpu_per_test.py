"""A pytest plugin for bench/suite.py: each test's CPU seconds in its own pytest process (setup, call and
teardown; the threads it leaves running count where they run), one line per test in
$SUITE_CPU_DIR/<xdist worker>.tsv. The suite keeps both cores busy, so its wall time is its CPU time over
two: this ranks the tests by what they cost the others, which their wall time does not (a test that waits
costs nothing while others run). The processes a test starts are not counted here (suite.py's processes.tsv
has them by kind)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):  # noqa: ARG001 (pytest's hook)
    started, cpu = time.monotonic(), time.process_time()
    yield
    cpu, wall = time.process_time() - cpu, time.monotonic() - started
    folder = Path(os.environ["SUITE_CPU_DIR"])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(folder / f"{worker}.tsv", "a") as lines:
        lines.write(f"{item.nodeid}\t{cpu:.2f}\t{wall:.2f}\n")
