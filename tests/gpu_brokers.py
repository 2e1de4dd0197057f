"""Stopping the per-host GPU brokers a test started (gpu/broker.py), so none outlives its test."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path


def stop_brokers(run_dir: Path, wait_seconds: float = 15.0) -> None:
    """Ask every broker under `run_dir` to shut down; kill the ones still running after `wait_seconds`.
    A pid file left by a broker that is gone (killed with the Ray worker that started it) is not waited on."""
    for pid_file in run_dir.glob("*/broker.pid"):
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(str(pid_file.parent / "broker.sock"))
                sock.sendall(b'{"op": "shutdown"}\n')
                sock.recv(100)
            except OSError:
                pass
    deadline = time.monotonic() + wait_seconds
    for pid_file in run_dir.glob("*/broker.pid"):
        pid = _pid(pid_file)
        while pid is not None and _running(pid) and pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid is not None and _running(pid) and pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _pid(pid_file: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(pid_file.read_text())
    return None


def _running(pid: int) -> bool:
    """Alive and not a zombie (a broker a test process started and has not reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
