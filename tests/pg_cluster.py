"""A private, throw-away PostgreSQL cluster: a bench can restart it without touching the shared one.

`with private_cluster() as pg:` runs initdb in a new folder under /tmp, starts `postgres` on a free port
(127.0.0.1, trust auth, superuser `postgres`), yields it; `pg.restart()` is `pg_ctl restart -m immediate`
(the crash-like restart: no checkpoint, every connection cut); on exit the cluster is stopped and its
folder removed. PostgreSQL refuses to run as root, so as root every pg command runs as the unprivileged
user `pgbench` (created with `useradd` if missing).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.pg_server import free_port

PG_BIN = Path(os.environ.get("YIVIDEO_PG_BIN", "/usr/local/bin"))
CLUSTER_USER = "pgbench"


def _as_user(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    if os.getuid() != 0:
        return subprocess.run(args, check=True, capture_output=True, text=True, timeout=timeout)
    cmd = ["su", CLUSTER_USER, "-s", "/bin/sh", "-c", shlex.join(args)]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout)


def _ensure_user(root: Path) -> None:
    if os.getuid() != 0:
        return
    try:
        entry = pwd.getpwnam(CLUSTER_USER)
    except KeyError:
        subprocess.run(["useradd", "-m", CLUSTER_USER], check=True, timeout=30)
        entry = pwd.getpwnam(CLUSTER_USER)
    os.chown(root, entry.pw_uid, entry.pw_gid)


@dataclass
class PrivateCluster:
    root: Path
    port: int
    host: str = "127.0.0.1"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _ctl(self, *args: str, timeout: float = 120) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses={self.host} -c max_connections=200"
        _as_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "pg.log"),
                  "-w", "-t", str(int(timeout)), *args], timeout + 10)  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        """`pg_ctl restart -m immediate`: the server stops without a checkpoint and recovers on start."""
        self._ctl("restart", "-m", "immediate")

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A fresh cluster on a free port; stopped and deleted on exit."""
    root = Path(tempfile.mkdtemp(prefix="yivideo-pg-"))
    _ensure_user(root)
    cluster = PrivateCluster(root, free_port())
    try:
        _as_user([str(PG_BIN / "initdb"), "-D", str(cluster.data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8"], 300)  # fmt: skip
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
