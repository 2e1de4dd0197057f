"""Stopping the per-host GPU brokers a test started (gpu/broker.py), so none outlives its test."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


def stop_brokers(run_dir: Path, wait_seconds: float = 15.0) -> None:
    """Ask every broker under `run_dir` to shut down; kill the ones still running after `wait_seconds`."""
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
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
