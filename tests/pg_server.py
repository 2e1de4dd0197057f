"""A real `prefect server start` on a fresh PostgreSQL database, for tests and benchmarks.

`with prefect_postgres_server("yivideo_x_test") as api_url:` creates the database on the local PostgreSQL
(127.0.0.1:5432, user postgres, trust auth; PGHOST/PGPORT/PGUSER/PGPASSWORD override), starts the server
on a free port with file-backed concurrency leases (see deployments/server.py), waits for /health, and
on exit stops the server and drops the database. `postgres_prefect_server(...)` yields the PrefectServer
instead (kill -9 and start it again on the same database, port and home; another PostgreSQL by port).
SQLite serialises writers: a limit-guarded acquisition there costs ~2 s under contention against ~0.1 s
on PostgreSQL, so concurrency tests need this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from core.outputs import process_alive
from deployments.server import database_url, ensure_database, index_orphan_leases, server_env

PG_HOST = os.environ.get("PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("PGPORT", "5432"))
PG_USER = os.environ.get("PGUSER", "postgres")
PG_PASSWORD = os.environ.get("PGPASSWORD")
SERVER_PIDS: dict[str, int] = {}  # API URL -> the server's process (group) id, for tests that kill the server


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports free now: every socket stays bound until all are chosen, since a port closed
    before the next bind can be handed out again (a Ray head got one port for its GCS and its client
    server in a suite run, and refused to start)."""
    with contextlib.ExitStack() as bound:
        socks = [bound.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in socks]


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


async def _drop_database(database: str, host: str = PG_HOST, port: int = PG_PORT) -> None:
    import asyncpg

    conn = await asyncpg.connect(
        host=host, port=port, user=PG_USER, password=PG_PASSWORD, database="postgres"
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await conn.close()


PID_NAMED = ("yivideo_session_", "yivideo_deployed_", "yivideo_gpu_outage_", "yivideo_template_build_")
# + "<pid><suffix>"


async def _database_names(host: str = PG_HOST, port: int = PG_PORT) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(
        host=host, port=port, user=PG_USER, password=PG_PASSWORD, database="postgres"
    )
    try:
        return [row[0] for row in await conn.fetch("SELECT datname FROM pg_database")]
    finally:
        await conn.close()


def drop_stale_databases() -> list[str]:
    """Drop the databases that killed test sessions of this checkout left (named by a pid that is gone):
    a session drops its own at its end, which a kill -9 or a CI timeout never reaches. Only names with
    this checkout's YIVIDEO_TEST_DB_SUFFIX, so a session never drops another checkout's live database."""
    import asyncpg

    suffix = re.escape(os.environ.get("YIVIDEO_TEST_DB_SUFFIX", ""))
    named = re.compile(rf"({'|'.join(PID_NAMED)})(\d+){suffix}")
    stale = [
        name
        for name in asyncio.run(_database_names())
        if (m := named.fullmatch(name)) and not process_alive(int(m.group(2)))
    ]
    for name in stale:
        with contextlib.suppress(asyncpg.PostgresError):  # another worker of the session dropped it first
            asyncio.run(_drop_database(name))
    return stale


def template_name() -> str:
    """The migrated empty database new ones are copied from: one per Prefect version and migration set."""
    import prefect

    versions = Path(prefect.__file__).parent / "server" / "database" / "_migrations" / "versions"
    names = "\n".join(sorted(p.name for p in (versions / "postgresql").glob("*.py")))
    digest = hashlib.sha256(names.encode()).hexdigest()[:10]
    return f"yivideo_template_{prefect.__version__.replace('.', '_')}_{digest}"


async def _copy_template(database: str, template: str, host: str, port: int) -> bool:
    """CREATE DATABASE from the template; False where there is no template yet."""
    import asyncpg

    conn = await asyncpg.connect(
        host=host, port=port, user=PG_USER, password=PG_PASSWORD, database="postgres"
    )
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", template):
            return False
        await conn.execute(f'CREATE DATABASE "{database}" TEMPLATE "{template}"')
        return True
    finally:
        await conn.close()


async def _build_template(template: str, host: str, port: int) -> None:
    """Migrate a database once (`prefect server database upgrade`), then rename it the template. One
    builder at a time (an advisory lock): xdist workers and other checkouts start their sessions together."""
    import asyncpg

    conn = await asyncpg.connect(
        host=host, port=port, user=PG_USER, password=PG_PASSWORD, database="postgres"
    )
    lock = int(hashlib.sha256(template.encode()).hexdigest()[:15], 16)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", lock)
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", template):
            return  # built by the holder before us
        build = f"yivideo_template_build_{os.getpid()}{os.environ.get('YIVIDEO_TEST_DB_SUFFIX', '')}"
        await conn.execute(f'DROP DATABASE IF EXISTS "{build}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{build}"')
        with tempfile.TemporaryDirectory(prefix="yivideo-template-home-") as home:
            env = {**os.environ, "PREFECT_HOME": home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url(
                build, host, port, PG_USER, PG_PASSWORD
            )
            prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
            upgrade = [prefect, "server", "database", "upgrade", "-y"]
            done = await asyncio.to_thread(subprocess.run, upgrade, env=env, capture_output=True, timeout=300)
        if done.returncode != 0:
            await conn.execute(f'DROP DATABASE IF EXISTS "{build}" WITH (FORCE)')
            return  # the server migrates its own database, as before
        await conn.execute(f'ALTER DATABASE "{build}" RENAME TO "{template}"')
    finally:
        await conn.close()  # the session's end releases the lock


def create_migrated_database(database: str, host: str = PG_HOST, port: int = PG_PORT) -> None:
    """`database`, new, as a copy of the migrated template (built here the first time on this PostgreSQL for
    this Prefect version): the server's start then finds its schema at head instead of running its ~120
    migrations (server 5.2-5.5 -> 4.1 CPU s and PostgreSQL 0.9 -> 0.4, 12 -> 7.5 s, measured in turn)."""
    template = template_name()
    if asyncio.run(_copy_template(database, template, host, port)):
        return
    asyncio.run(_build_template(template, host, port))
    if not asyncio.run(_copy_template(database, template, host, port)):
        asyncio.run(ensure_database(database, host, port, PG_USER, PG_PASSWORD))


def _wait_healthy(api_url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"prefect server not healthy after {timeout:.0f} s:\n{log.read_text()[-4000:]}")


class PrefectServer:
    """One `prefect server start` process on a fixed port, database and PREFECT_HOME: the fault bench kills
    it (-9) and starts it again on the same three, as an operator's restart would."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.api_url = env["PREFECT_API_URL"]
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
        index_orphan_leases(Path(self.env["PREFECT_HOME"]))  # as deployments/server.py does
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_healthy(self.api_url, self.proc, self.log, timeout)

    def kill(self) -> None:
        """kill -9 of the server and its children (one process group)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


@contextlib.contextmanager
def postgres_prefect_server(
    db_name: str,
    env_extra: dict[str, str] | None = None,
    startup_timeout: float = 120,
    pg_host: str = PG_HOST,
    pg_port: int = PG_PORT,
) -> Iterator[PrefectServer]:
    """A started PrefectServer on a new database `db_name` (dropped first if left over, and on exit).

    `env_extra` adds server settings (e.g. PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS); `pg_host` and
    `pg_port` pick another PostgreSQL (the fault bench's private cluster). The caller decides whether to
    export the URL (os.environ["PREFECT_API_URL"]) for its clients.
    """
    db_name += os.environ.get("YIVIDEO_TEST_DB_SUFFIX", "")  # lets parallel checkouts share one PostgreSQL
    asyncio.run(_drop_database(db_name, pg_host, pg_port))
    create_migrated_database(db_name, pg_host, pg_port)
    home = Path(tempfile.mkdtemp(prefix=f"{db_name}-home-"))
    port = free_port()
    url = database_url(db_name, pg_host, pg_port, PG_USER, PG_PASSWORD)
    env = {
        **os.environ,
        **server_env(url, home, "127.0.0.1", port),
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        **(env_extra or {}),
    }
    server = PrefectServer(env, port, home / "server.log")
    try:
        server.start(startup_timeout)
        yield server
    finally:
        server.stop()
        asyncio.run(_drop_database(db_name, pg_host, pg_port))
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def prefect_postgres_server(
    db_name: str, env_extra: dict[str, str] | None = None, startup_timeout: float = 120
) -> Iterator[str]:
    """Run a Prefect server on a new database `db_name` (dropped first if left over); yields its API URL."""
    with postgres_prefect_server(db_name, env_extra, startup_timeout) as server:
        assert server.proc is not None
        SERVER_PIDS[server.api_url] = server.proc.pid
        try:
            yield server.api_url
        finally:
            SERVER_PIDS.pop(server.api_url, None)
