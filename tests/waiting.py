"""Waiting on a worker's or a flow run's progress in system tests, with its log shown when it never comes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T], timeout: float, log: Path) -> T:
    """`check()`'s first truthy value, polled every 0.5 s; after `timeout` s an AssertionError naming `what`
    with the end of `log` (the worker's output: why it never came)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{log.read_text()[-3000:]}")
