"""Where this host's GPU broker lives, how a client starts it (only one does), and one-shot requests.

One broker per host, user and Prefect API: its socket, pid, lock, state file and log are in
`broker_dir()` ($YIVIDEO_GPU_RUN_DIR, default the temp dir). The broker runs as a detached child of the
first client and exits when idle; a killed one is replaced by the next client.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from core.errors import YiVideoError
from gpu.devices import host_name
from gpu.protocol import Line, Message, Shutdown, StatusReport, StatusRequest

RUN_DIR_ENV = "YIVIDEO_GPU_RUN_DIR"  # where brokers keep their socket, pid, state and log
CONNECT_TIMEOUT = 90.0  # a broker starting on a busy host imports Prefect and reads its limits first
REPO_ROOT = Path(__file__).resolve().parents[1]


class GpuSlotError(YiVideoError, RuntimeError):
    """No GPU slot could be held (broker or Prefect API unreachable, bad request): the stage must not run."""

    transient = True  # a broker restarting or the API coming back: asking again may get the slot


class GpuSlotTimeout(GpuSlotError, TimeoutError):
    """The wait for a GPU slot passed its timeout."""


def _api_key() -> str:
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    return str(settings.api.url or f"ephemeral:{settings.home}")


def broker_dir(api: str | None = None) -> Path:
    """One broker per host, user and Prefect API: its socket, pid, state file and log live here."""
    root = Path(os.environ.get(RUN_DIR_ENV) or Path(tempfile.gettempdir()) / f"yivideo-gpu-{os.getuid()}")
    digest = hashlib.sha1(f"{host_name()}|{api or _api_key()}".encode()).hexdigest()[:12]
    path = root / digest
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _broker_env() -> dict[str, str]:
    """The broker sees every GPU and the same Prefect settings as its client (test harness included)."""
    from prefect.settings import get_current_settings

    env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def _broker_alive(run_dir: Path) -> bool:
    """Whether a broker holds its lock (a killed one has dropped it, even while still a zombie)."""
    fd = os.open(run_dir / "broker.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # the broker retries if it meets this brief lock
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _log_tail(run_dir: Path) -> str:
    log = run_dir / "broker.log"
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


def _spawn_broker(run_dir: Path, deadline: float) -> subprocess.Popen:
    """Start a broker and wait until it listens (or exits, or the deadline passes)."""
    with (run_dir / "broker.log").open("ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpu.broker", "--run-dir", str(run_dir)],
            cwd=REPO_ROOT,
            env=_broker_env(),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this client: other clients rely on it
        )
    while time.monotonic() < deadline and proc.poll() is None:
        if (run_dir / "broker.sock").exists() and _broker_alive(run_dir):
            break
        time.sleep(0.02)
    return proc


def connect_broker(run_dir: Path, *, spawn: bool = True, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """A connection to this host's broker; starts one (only one client does) when none is listening."""
    sock_path = run_dir / "broker.sock"
    deadline = time.monotonic() + timeout
    proc: subprocess.Popen | None = None
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(sock_path))
            return sock
        except OSError:
            sock.close()
        if not spawn:
            raise GpuSlotError(f"no GPU broker is listening at {sock_path}")
        if time.monotonic() > deadline:
            tail = _log_tail(run_dir)
            raise GpuSlotError(f"the GPU broker at {sock_path} did not start within {timeout:.0f} s\n{tail}")
        if proc is not None and proc.poll() is not None:
            if proc.returncode != 0:
                raise GpuSlotError(f"the GPU broker exited with {proc.returncode}:\n{_log_tail(run_dir)}")
            proc = None  # it found another broker (or one shutting down): look again
        fd = None if proc is not None else _try_lock(run_dir / "spawn.lock")
        if fd is not None:
            try:
                if not _broker_alive(run_dir):
                    proc = _spawn_broker(run_dir, deadline)
            finally:
                os.close(fd)
        time.sleep(0.02)


def broker_request(message: Message, *, spawn: bool = False, timeout: float = 10.0) -> Message:
    """One request/answer with this host's broker."""
    line = Line(connect_broker(broker_dir(), spawn=spawn, timeout=timeout))
    try:
        line.send(message)
        answer = line.receive(timeout)
    finally:
        line.close()
    if answer is None:
        raise GpuSlotError(f"the GPU broker closed the connection on {message.op}")
    return answer


def broker_status(window: float = 3600.0) -> dict[str, Any]:
    """The running broker's live report (raises GpuSlotError when none runs)."""
    answer = broker_request(StatusRequest(window))
    if not isinstance(answer, StatusReport):
        raise GpuSlotError(f"unexpected answer from the GPU broker: {answer}")
    return answer.report


def broker_shutdown() -> None:
    """Ask the running broker to give its leases back and exit (raises GpuSlotError when none runs)."""
    broker_request(Shutdown())
