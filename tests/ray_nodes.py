"""A real multi-node Ray cluster on this machine: `ray start --head` plus `ray start --address ...` nodes.

Each node is a `ray start --block` process in its own session, so stopping it ends exactly the processes
it started (never `ray stop`, which ends every Ray on the machine). A node may get a folder of its own
(`hide`): started under `unshare -m` with an empty tmpfs over that folder, it cannot see what the other
nodes see there, as a node without the shared storage would not (root only; None elsewhere).
Used by tests/test_ray_cluster.py and bench/ray_runner.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pg_server import free_port, free_ports

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
# For a raylet's environment in the tests: Ray starts idle workers of the default runtime environment when the
# first driver connects, which no flow run here uses (each runs with env_vars of its own), ~2.5 CPU s each;
# and no metrics are collected or exported (no test reads them)
QUIET_RAYLET = {"RAY_prestart_worker_first_driver": "0", "RAY_enable_metrics_collection": "0"}


def can_hide_folders() -> bool:
    """unshare + mount work here (root with CAP_SYS_ADMIN)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@dataclass
class RayNodes:
    """Nodes started by `start_cluster`; `address` is the GCS address (`ray.init(address)`, --ray-address).

    Ray 2.60's `ray start` turns token authentication on (every node and driver then needs the token,
    read once when ray is imported); these throwaway local clusters turn it off (`client_env`).
    """

    address: str
    temp_dir: Path
    client_env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def add_node(
        self, cpus: int, resources: dict[str, float], env: dict[str, str], hide: Path | None = None
    ) -> None:
        self.procs.append(_start(self, ["--address", self.address], cpus, resources, env, hide, free_port()))

    def wait_for(self, nodes: int, timeout: float = 120.0) -> None:
        """Until `nodes` nodes are alive, asked by one driver process that polls them (a new driver each
        second imported Ray every time: ~1.5 CPU s a poll while the nodes start)."""
        code = (
            "import time, ray\n"
            "while True:\n"
            "    try:\n"
            f"        ray.init(address={self.address!r}, logging_level='ERROR')\n"
            "        break\n"
            "    except Exception:\n"  # the head's GCS is not up yet
            "        ray.shutdown()\n"
            "        time.sleep(0.5)\n"
            f"while sum(1 for n in ray.nodes() if n['Alive']) < {nodes}:\n"
            "    time.sleep(0.25)\n"
        )
        log = self.temp_dir / "wait_for.log"  # a file, not a pipe: nobody drains a pipe meanwhile
        with log.open("w") as out:
            poll = subprocess.Popen(
                [sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, **self.client_env},
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while poll.poll() is None:
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                poll.kill()
                break
            time.sleep(0.25)
        if poll.wait() != 0:
            said = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"Ray nodes did not come up: {said}\n{self.log_tail()}")

    def log_tail(self) -> str:
        return "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-1500:]}" for log in self.logs)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _end_session(proc)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_cluster(cpus: int, resources: dict[str, float], env: dict[str, str], gpus: int = 0) -> RayNodes:
    """A head node (`cpus` CPUs, `gpus` fake GPUs, custom `resources`); add workers with `add_node`."""
    from ray.util import get_node_ip_address

    temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths are limited
    gcs_port, client_port, agent_port = free_ports(3)
    nodes = RayNodes(f"{get_node_ip_address()}:{gcs_port}", temp_dir, {"RAY_AUTH_MODE": "disabled"})
    head = ["--head", "--port", str(gcs_port), "--num-gpus", str(gpus)]
    head += ["--ray-client-server-port", str(client_port), "--include-dashboard", "false"]
    head += ["--temp-dir", str(temp_dir), "--no-monitor"]  # no autoscaler: the tests' nodes are fixed
    nodes.procs.append(_start(nodes, head, cpus, resources, env, None, agent_port))
    return nodes


def _start(
    nodes: RayNodes, args: list[str], cpus: int, resources: dict[str, float], env: dict[str, str],
    hide: Path | None, agent_port: int,
) -> subprocess.Popen:  # fmt: skip
    command = [RAY, "start", "--block", "--disable-usage-stats", "--num-cpus", str(cpus)]
    command += ["--resources", json.dumps(resources), "--dashboard-agent-listen-port", str(agent_port)]
    command += ["--include-log-monitor", "false"]  # worker logs stay in files: no driver here prints them
    command += args
    if hide is not None:  # a private mount namespace with an empty folder where the others see files
        script = f'mount -t tmpfs tmpfs {hide} && exec "$@"'
        command = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *command]
    log = nodes.temp_dir / f"node{len(nodes.procs)}.log"
    nodes.logs.append(log)
    with log.open("w") as out:  # a file, not a pipe: nobody drains a pipe
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
            env={**os.environ, **env, **nodes.client_env},
        )  # fmt: skip


def _end_session(proc: subprocess.Popen) -> None:
    """End every process of the node's session (its GCS, raylet, agents, workers and actors: Ray gives
    workers process groups of their own, never sessions), gently, then for good. The head's `ray start`,
    GCS, raylet and runtime-env agent often outlive a SIGTERM (2 of 3 stops): they get 3 s, not 10."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        for pid in _session(proc.pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _session(proc.pid):
                return
            time.sleep(0.2)


def _session(sid: int) -> list[int]:
    """Live (not zombie) processes of session `sid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry))
    return found
