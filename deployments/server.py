"""Start `prefect server start` on PostgreSQL (asyncpg), with concurrency leases that survive a restart.

python -m deployments.server --database yivideo --home ~/.yivideo-prefect [--port 4200]
python -m deployments.server --database yivideo --print-env      # the settings, as shell exports

The database is created on the local PostgreSQL if missing (Prefect migrates it on start). Leases (GPU
slots and deployment concurrency slots) go to the filesystem lease storage under PREFECT_HOME instead of
the default in-memory one, so a server restart neither frees slots that are still held nor strands them.
SQLite stays the zero-set-up default for the demo and tests: this is for running it for real.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

from core.local_server import TASK_RUN_BATCHING

FILESYSTEM_LEASES = "prefect.server.concurrency.lease_storage.filesystem"


def database_url(database: str, host: str, port: int, user: str, password: str | None) -> str:
    auth = f"{user}:{password}" if password else user
    return f"postgresql+asyncpg://{auth}@{host}:{port}/{database}"


async def ensure_database(database: str, host: str, port: int, user: str, password: str | None) -> bool:
    """Create the database if it does not exist; True if it was created."""
    import asyncpg

    conn = await asyncpg.connect(host=host, port=port, user=user, password=password, database="postgres")
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            return False
        await conn.execute(f'CREATE DATABASE "{database}"')
        return True
    finally:
        await conn.close()


def server_env(url: str, home: Path, host: str, port: int) -> dict[str, str]:
    """The settings `prefect server start` (and its clients) need; see prefect/settings/models/server."""
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": url,
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": FILESYSTEM_LEASES,
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://{host}:{port}/api",
        # a burst of flow-run processes queued on 5 + 10 connections ("QueuePool limit ... reached", HTTP
        # 500s, crashed runs); 20 + 20 stays well under PostgreSQL's default max_connections of 100
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": os.environ.get("YIVIDEO_DB_POOL_SIZE", "20"),
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": os.environ.get("YIVIDEO_DB_MAX_OVERFLOW", "20"),
        "PREFECT_SERVER_DATABASE_TIMEOUT": "30",
        **TASK_RUN_BATCHING,
    }


def index_orphan_leases(home: Path) -> list[str]:
    """Put back into the lease expiration index the leases a killed server wrote but never indexed.

    Prefect's filesystem lease storage writes the lease file, then the index (expirations.json); the
    repossessor only looks in the index. A server killed between the two leaves a slot held for good (the
    fault bench's server kill: a GPU slot still in use 15 min later). Run before the server starts (no
    writer races it); returns the lease ids it indexed, which then lapse and are repossessed as usual."""
    folder = home / "concurrency_leases"
    index_path = folder / "expirations.json"
    try:
        index = json.loads(index_path.read_text()) if index_path.exists() else {}
    except ValueError:
        index = {}
    added = []
    for lease in folder.glob("*.json") if folder.is_dir() else []:
        if lease.name == index_path.name or lease.stem in index:
            continue
        try:
            index[lease.stem] = json.loads(lease.read_text())["expiration"]
        except (OSError, ValueError, KeyError):
            continue
        added.append(lease.stem)
    if added:
        tmp = index_path.with_suffix(".json.part")
        tmp.write_text(json.dumps(index))
        os.replace(tmp, index_path)
    return added


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Prefect server on PostgreSQL with persistent leases.")
    parser.add_argument("--database", default="yivideo", help="PostgreSQL database (created if missing)")
    parser.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("PGPORT", 5432)))
    parser.add_argument("--pg-user", default=os.environ.get("PGUSER", "postgres"))
    parser.add_argument("--pg-password", default=os.environ.get("PGPASSWORD"))
    parser.add_argument("--home", type=Path, default=Path.home() / ".yivideo-prefect", help="PREFECT_HOME")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument("--print-env", action="store_true", help="print the settings as exports and exit")
    args = parser.parse_args(argv)

    url = database_url(args.database, args.pg_host, args.pg_port, args.pg_user, args.pg_password)
    env = server_env(url, args.home.resolve(), args.host, args.port)
    if args.print_env:
        print("\n".join(f"export {k}={v!r}" for k, v in env.items()))
        return 0
    created = asyncio.run(
        ensure_database(args.database, args.pg_host, args.pg_port, args.pg_user, args.pg_password)
    )
    args.home.mkdir(parents=True, exist_ok=True)
    if orphans := index_orphan_leases(args.home.resolve()):
        print(f"indexed {len(orphans)} lease(s) a killed server left out of its index", flush=True)
    print(f"database {args.database} {'created' if created else 'exists'}; leases in {args.home}", flush=True)
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
    os.execvpe(prefect, [prefect, "server", "start", "--host", args.host, "--port", str(args.port)],
               {**os.environ, **env})  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
