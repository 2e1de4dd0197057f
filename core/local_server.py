"""One local Prefect API for every command line: started on first use, found again, stopped when idle.

Without PREFECT_API_URL, Prefect starts a temporary server (SQLite under PREFECT_HOME) in each process and
stops it at exit: 10-30 s of every CLI call went to starting and stopping it, Ctrl-C killed it with the flow
(every later API call then retried for minutes), and a SIGTERM left it running for good. Now the first CLI
call starts `python -m core.local_server serve` detached (its own session: the terminal's Ctrl-C does not
reach it) on the same database, with the same services as Prefect's temporary server, so the runs recorded
are the same. Its address is in PREFECT_HOME/yivideo-server.json and later calls find it there (health-
checked). Each CLI holds a shared lock on PREFECT_HOME/yivideo-server.lock while it runs; the server stops
itself after YIVIDEO_LOCAL_SERVER_IDLE_S seconds (default 600) without one, or when its state file is gone.
A fresh PREFECT_HOME gets a copy of an already migrated empty database (built once per Prefect version in
~/.cache/yivideo-flows, by `make setup`'s `python -m core.local_server template` or else by the first call)
instead of running Prefect's migrations (~15 CPU seconds).

PREFECT_API_URL (environment or Prefect profile) always wins; YIVIDEO_LOCAL_SERVER=off keeps Prefect's
temporary server per call. A notebook calls `use_local_api()` once to do the same.
`python -m core.local_server status|stop` shows or stops the server.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from core.errors import YiVideoError
from core.outputs import process_alive

MODE_ENV = "YIVIDEO_LOCAL_SERVER"  # "off": Prefect's temporary server per call, as before
IDLE_ENV = "YIVIDEO_LOCAL_SERVER_IDLE_S"
IDLE_SECONDS = 600.0
STARTUP_SECONDS = 180.0  # a first start on a busy machine (migrations, block registration) took over 60 s
STATE_FILE, LOCK_FILE, START_LOCK, LOG_FILE = (
    "yivideo-server.json", "yivideo-server.lock", "yivideo-server.start", "yivideo-server.log"
)  # fmt: skip
# A server records task runs from their events; Prefect's default writes each event in a transaction of its
# own: ~20 ms of server CPU per task run, its largest cost on OCR runs (a 60 s video is ~100 task runs).
# Batched and flushed every second (this server and deployments/server.py's): 200 stage runs on PostgreSQL
# 4.0-4.6 -> 1.3-1.4 server CPU s; the six real dramas 9.3 -> 4.2 s; the 60 s drama from the command line
# on SQLite 5.5 -> 2.6 s. Task runs reach the API and the UI up to a second later.
TASK_RUN_FLUSH_S = 1
TASK_RUN_BATCHING = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": str(TASK_RUN_FLUSH_S),
}
# What Prefect's own temporary server runs with (prefect.server.api.server.SubprocessASGIServer), minus its
# telemetry job (no internet here) and its log noise.
SERVER_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    **TASK_RUN_BATCHING,
}


class LocalServerError(YiVideoError):
    """The local Prefect API could not be started (its log's last line says why): exit 3."""


class ApiUnreachable(YiVideoError):
    """The Prefect API the user named (PREFECT_API_URL) does not answer: exit 3, one line."""


def start_temporary_server() -> None:
    """Prefect's temporary server (the shared one switched off, no API named), started now as its client
    would on first use: the same one per process (`SubprocessASGIServer()`), and one that does not answer in
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS fails here as LocalServerError, not a RuntimeError."""
    from prefect.server.api.server import SubprocessASGIServer

    try:
        SubprocessASGIServer().start()
    except RuntimeError as exc:
        raise LocalServerError(
            "the local Prefect API did not start in time (a loaded machine?): start one with `prefect server "
            "start` and set PREFECT_API_URL, or raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
        ) from exc


def wanted() -> bool:
    """Use the shared local server: not switched off, and no Prefect API named by the user."""
    if os.environ.get(MODE_ENV, "").strip().lower() in ("off", "0", "false", "no"):
        return False
    from prefect.settings import get_current_settings

    return not get_current_settings().api.url


def idle_seconds(env: str = IDLE_ENV, default: float = IDLE_SECONDS) -> float:
    """Seconds from the environment variable `env` (the model service reads its own the same way)."""
    text = os.environ.get(env, "").strip()
    try:
        return float(text) if text else default
    except ValueError:
        from core.errors import ConfigError

        raise ConfigError(f"{env}: {text!r} is not a number of seconds") from None


def prefect_home() -> Path:
    from prefect.settings import get_current_settings

    home = Path(get_current_settings().home).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


class LocalApi:
    """While entered, this process's Prefect calls go to the shared local server where one runs; `ready()`
    starts one if none does (a CLI calls it once its values are checked). Does nothing where the user named
    a Prefect API or switched this off."""

    def __init__(self) -> None:
        self.url: str | None = None
        self._stack = contextlib.ExitStack()
        self._home: Path | None = None
        self._named: str | None = None  # the API the user named

    def __enter__(self) -> LocalApi:
        if not wanted():
            from prefect.settings import get_current_settings

            self._named = get_current_settings().api.url
            return self
        self._home = prefect_home()
        self._stack.enter_context(client_lock(self._home))
        if url := find(self._home):
            self._use(url)
        return self

    def ready(self) -> str | None:
        """The URL of the running shared server (started now if needed); None when not in use."""
        if self._named and not reachable(self._named):
            raise ApiUnreachable(f"PREFECT_API_URL {self._named}: no Prefect API answers there")
        if self._home is not None and self.url is None:
            self._use(ensure_started(self._home))
        if self._home is None and not self._named:
            start_temporary_server()
        return self.url

    def _use(self, url: str) -> None:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        self._stack.enter_context(temporary_settings({PREFECT_API_URL: url}))
        previous = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = url  # sub-processes (Ray workers, a spawned stage) use it too
        self._stack.callback(_restore_env, "PREFECT_API_URL", previous)
        self.url = url

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self.url, self._home = None, None


_SESSION: list[LocalApi] = []  # the notebook's (or script's) session, kept until the process ends


def use_local_api() -> str | None:
    """For a notebook or a script calling flows directly: their runs go to the shared local server (started
    if none runs) for the rest of the process, instead of a temporary server per kernel. Returns its URL;
    None where the user named a Prefect API (or YIVIDEO_LOCAL_SERVER=off)."""
    if not _SESSION:
        _SESSION.append(LocalApi().__enter__())
    return _SESSION[0].ready()


def _restore_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


@contextlib.contextmanager
def client_lock(home: Path) -> Iterator[None]:
    """A shared lock the server sees as "in use" (released by the kernel even when the CLI is killed)."""
    fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits while a server that found itself idle shuts down
        yield
    finally:
        os.close(fd)


def find(home: Path) -> str | None:
    """The URL of a live server on this PREFECT_HOME, or None."""
    state = read_state(home)
    if not state or not process_alive(int(state.get("pid", 0))):
        return None
    return state["url"] if healthy(state["url"]) else None


def read_state(home: Path) -> dict | None:
    try:
        return json.loads((home / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def reachable(url: str, timeout: float = 5.0) -> bool:
    """Something answers HTTP at `url` (any status: a Prefect Cloud workspace may answer 401 or 404)."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def ensure_started(home: Path) -> str:
    """Start the server unless another call just did (one starter at a time), and wait until it answers."""
    fd = os.open(home / START_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        url = find(home)
        if url:
            return url
        (home / STATE_FILE).unlink(missing_ok=True)
        env = {**os.environ, **SERVER_ENV, "PREFECT_HOME": str(home)}
        if seed_database(home):  # its block types are registered already (~4.5 s saved at load 13)
            env["PREFECT_API_BLOCKS_REGISTER_ON_START"] = "false"
        with open(home / LOG_FILE, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "core.local_server", "serve"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=env,
            )  # fmt: skip
        return _wait_until_up(home, proc)
    finally:
        os.close(fd)


def _wait_until_up(home: Path, proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        state = read_state(home)
        if state and state.get("pid") == proc.pid and healthy(state["url"], timeout=1.0):
            return state["url"]
        if proc.poll() is not None:
            raise LocalServerError(
                f"the local Prefect API exited at start ({proc.returncode}): {log_tail(home)}"
            )
        time.sleep(0.05)
    proc.terminate()
    raise LocalServerError(
        f"the local Prefect API did not answer in {STARTUP_SECONDS:.0f} s: {log_tail(home)}"
    )


def log_tail(home: Path, name: str = LOG_FILE) -> str:
    with contextlib.suppress(OSError):
        lines = (home / name).read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no log)"
    return "(no log)"


# ---------------------------------------------------------------- a migrated empty database, copied once
def _default_database(home: Path) -> Path | None:
    """The server's SQLite file (Prefect's default: PREFECT_HOME/prefect.db); None for another database."""
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url
    text = url.get_secret_value() if url is not None else ""
    if not text:
        return home / "prefect.db"
    prefix = "sqlite+aiosqlite:///"
    return Path(text[len(prefix) :]) if text.startswith(prefix) and ":memory:" not in text else None


def template_path() -> Path:
    import prefect

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "yivideo-flows"
    return cache / f"prefect-{prefect.__version__}-empty.db"


def seed_database(home: Path) -> bool:
    """A fresh PREFECT_HOME starts from the migrated template (no migrations); the first one builds it.
    True when it was seeded so."""
    database = _default_database(home)
    if database is None or database.exists():
        return False
    template = template_path()
    if not template.exists():
        return False  # this first server migrates; it copies its still-empty database as the template
    part = database.with_suffix(".db.part")
    shutil.copyfile(template, part)
    os.replace(part, database)
    return True


def _save_template(home: Path) -> None:
    """Right after a first start (migrated, nothing run yet): a consistent copy of the database."""
    import sqlite3

    database, template = _default_database(home), template_path()
    if database is None or template.exists():
        return
    template.parent.mkdir(parents=True, exist_ok=True)
    part = template.with_suffix(f".{os.getpid()}.part")
    with (
        contextlib.closing(sqlite3.connect(database)) as source,
        contextlib.closing(sqlite3.connect(part)) as copy,
    ):
        source.backup(copy)
    os.replace(part, template)


def build_template() -> Path:
    """The migrated template, built now if missing (by a server started and stopped in a throwaway home), so
    that even the first call on a machine copies it (make setup runs this)."""
    import tempfile

    template = template_path()
    if not template.exists():
        with tempfile.TemporaryDirectory(prefix="yivideo-template-") as folder:
            home = Path(folder)
            ensure_started(home)  # a fresh home: the server saves the template before it answers
            pid = int((read_state(home) or {}).get("pid", 0))
            stop(home)
            deadline = time.monotonic() + 10
            while pid and process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
    return template


# ---------------------------------------------------------------- the server process
def serve() -> None:
    """Run the API on a free port of 127.0.0.1 until idle long enough (no CLI holding the lock)."""
    import uvicorn
    from prefect.server.api.server import create_app

    from core.sqlite_api import skip_empty_slot_updates

    skip_empty_slot_updates()  # a tagged stage waited 2 s on SQLite before it started
    home, idle = prefect_home(), idle_seconds()
    fresh = (database := _default_database(home)) is not None and not database.exists()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
    server = uvicorn.Server(uvicorn.Config(create_app(final=True), log_level="error", lifespan="on"))
    state = {"pid": os.getpid(), "url": url, "started": time.time()}
    watch = threading.Thread(target=_stop_when_idle, args=(server, home, state, idle, fresh), daemon=True)
    watch.start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the idle watch, `stop` or SIGTERM end it
    try:
        server.run(sockets=[sock])
    finally:
        if read_state(home) == state:
            (home / STATE_FILE).unlink(missing_ok=True)


def _write_state(home: Path, state: dict) -> None:
    part = home / f"{STATE_FILE}.{os.getpid()}.part"
    part.write_text(json.dumps(state))
    os.replace(part, home / STATE_FILE)


def _stop_when_idle(server, home: Path, state: dict, idle: float, fresh: bool) -> None:  # noqa: ANN001
    while not server.started:
        time.sleep(0.05)
    if fresh:  # before any CLI can find it: the template holds no run
        with contextlib.suppress(Exception):
            _save_template(home)
    _write_state(home, state)
    fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    last_used = time.monotonic()
    while not server.should_exit:
        time.sleep(0.5)
        if read_state(home) != state:  # `stop`, another server took over, or PREFECT_HOME removed
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            last_used = time.monotonic()  # a CLI holds it
            continue
        if time.monotonic() - last_used >= idle:
            (home / STATE_FILE).unlink(missing_ok=True)  # under the lock: no CLI can have found us meanwhile
            break
        fcntl.flock(fd, fcntl.LOCK_UN)
    server.should_exit = True  # the exclusive lock (if held) goes with the process


def stop(home: Path) -> bool:
    """Stop the server of this PREFECT_HOME (SIGTERM); False when none runs."""
    state = read_state(home)
    (home / STATE_FILE).unlink(missing_ok=True)
    if not state or not process_alive(int(state.get("pid", 0))):
        return False
    os.kill(int(state["pid"]), signal.SIGTERM)
    return True


def service_command(
    argv: list[str], module: str, what: str, serve: Callable[[], None], stop: Callable[[Path], bool],
    find: Callable[[Path], object],
) -> int:  # fmt: skip
    """`python -m <module> status|stop|serve` of a background service of this PREFECT_HOME (this server, the
    model service): status prints what `find` says (exit 1 when none runs)."""
    command = argv[0] if argv else "status"
    if command == "serve":
        serve()
        return 0
    home = prefect_home()
    if command == "stop":
        print("stopped" if stop(home) else f"no {what} running")
        return 0
    if command == "status":
        found = find(home)
        print(found or f"no {what} running")
        return 0 if found else 1
    print(f"usage: python -m {module} [status|stop|serve]", file=sys.stderr)
    return 2


def _command(argv: list[str]) -> int:
    if argv[:1] == ["template"]:
        print(build_template())
        return 0
    return service_command(argv, "core.local_server", "local Prefect API", serve, stop, find)


if __name__ == "__main__":
    sys.exit(_command(sys.argv[1:]))
