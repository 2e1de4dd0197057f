"""One resident model service per host: flow-run processes call it instead of loading their own models.

A process worker starts a fresh process per flow run, so a model kept resident in the process (core.models)
is loaded again every run. Here the first run on a host starts `python -m core.model_service serve`
detached (its own session, as core.local_server starts the Prefect API) and later runs find it at its
socket: `served_model()` hands a run a handle whose method calls (`engine.read(image)`) travel there as
pickles over a Unix socket (numpy arrays included: ~1 ms for a stitched batch), so a run after the first
loads nothing. The service keys its models as the process would (core.models: every setting that shapes the
model), holds them within the memory budget YIVIDEO_RESIDENT_MODELS_MB (a model in a call is never pushed
out by one loaded meanwhile: the language probe's small readers evict idle models, not Whisper under a call),
unloads one unused for YIVIDEO_MODEL_IDLE_S
(default 300) and exits after YIVIDEO_MODEL_SERVICE_IDLE_S (default 600) without a request.

GPU slots stay with the run: a stage takes its slot (gpu_slot) in the flow-run process and calls the
service inside it with the slot's device in its settings; the service only executes (runs calling one model
at once share it: one load per model and host), and holds no slot.

YIVIDEO_MODEL_SERVICE: `auto` (default) uses the service in processes a worker started for one flow run
(PREFECT__FLOW_RUN_ID set), `on` everywhere, `off` never. Where it cannot start, or dies under a call, the run
loads the model itself and carries on with identical results (one warning line in the run's log).
The service of a host is keyed by PREFECT_HOME, this code tree (and its files' stamps), the interpreter and
CUDA_VISIBLE_DEVICES.
`python -m core.model_service status|stop` shows or stops it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from core.errors import YiVideoError
from core.local_server import idle_seconds, log_tail, prefect_home, service_command
from core.models import (
    LOADS,
    ModelKey,
    budget_mb,
    evict,
    holding,
    limit_malloc_arenas,
    load_count,
    release_freed_memory,
    resident_keys,
    resident_mb,
    resident_model,
)

T = TypeVar("T")
S = TypeVar("S")

MODE_ENV = "YIVIDEO_MODEL_SERVICE"  # auto | on | off
IDLE_ENV, IDLE_SECONDS = "YIVIDEO_MODEL_SERVICE_IDLE_S", 600.0  # the service exits after this long unused
MODEL_IDLE_ENV, MODEL_IDLE_SECONDS = "YIVIDEO_MODEL_IDLE_S", 300.0  # a model unused this long is unloaded
CALLS_ENV = "YIVIDEO_MODEL_CALLS"  # calls at once on one CPU model that allows it (default: the cores, <= 4)
STARTUP_SECONDS = 60.0
START_LOCK, LOG_FILE = "yivideo-models.start", "yivideo-models.log"
CODE_ROOT = Path(__file__).resolve().parents[1]
_HEADER = struct.Struct("!Q")
_NOT_SHARED = frozenset({"close", "unload_model", "release"})  # what core.models calls to free a model
_log = logging.getLogger("yivideo.model_service")


class ModelServiceError(YiVideoError):
    """The model service could not be started (its log's last line says why)."""


class RemoteError(YiVideoError):
    """An error of the service that could not travel as itself (its type and message, in one line)."""


def wanted() -> bool:
    mode = os.environ.get(MODE_ENV, "auto").strip().lower()
    if mode in ("off", "0", "false", "no"):
        return False
    if mode in ("on", "1", "true", "yes"):
        return True
    return bool(os.environ.get("PREFECT__FLOW_RUN_ID"))  # a process a worker started for one flow run


def address(home: Path) -> str:
    """The service's abstract Unix socket (Linux: no file to go stale when it is killed)."""
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    what = f"{home.resolve()}|{CODE_ROOT}|{_code_stamp()}|{sys.executable}|{devices}"
    return f"\0yivideo-models-{os.getuid()}-{hashlib.sha256(what.encode()).hexdigest()[:16]}"


@functools.lru_cache(maxsize=1)
def _code_stamp() -> str:
    """Changed engine code (a deploy into the same tree) gets a service of its own; the old one idles out."""
    files = sorted(p for package in ("core", "stages") for p in (CODE_ROOT / package).rglob("*.py"))
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(repr(stats).encode()).hexdigest()[:12]


# ---------------------------------------------------------------- the wire: length-prefixed pickles
def send(sock: socket.socket, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)))
    sock.sendall(data)


def receive_bytes(sock: socket.socket) -> bytearray:
    size = _HEADER.unpack(_read_exact(sock, _HEADER.size))[0]
    return _read_exact(sock, size)


def _read_exact(sock: socket.socket, size: int) -> bytearray:
    buf = bytearray(size)
    view, got = memoryview(buf), 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise ConnectionResetError("the model service closed the connection")
        got += n
    return buf


def exchange(addr: str, message: tuple, timeout: float | None = None, restart: bool = False) -> tuple:
    """(ok, value) for one request; OSError when the service is not there or went away meanwhile. With
    `restart`, a service gone before the request reached it (exited idle, killed between calls) is started
    again first."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(addr)
        except OSError:
            if not restart:
                raise
            sock.connect(ensure_started(prefect_home()))
        send(sock, message)
        return pickle.loads(receive_bytes(sock))


def status(addr: str, timeout: float = 2.0) -> dict | None:
    """The service's own figures (pid, rss, models, loads), or None when none answers."""
    try:
        ok, value = exchange(addr, ("status",), timeout)
    except (OSError, EOFError, pickle.UnpicklingError):
        return None
    return value if ok else None


# ---------------------------------------------------------------- the flow-run side
class ServedModel:
    """A model the service holds: its public methods run there. When the service is lost under a call,
    the model is loaded in this process (once) and the call, and every later one, runs here."""

    def __init__(self, addr: str, key: ModelKey, build: Callable[[Any], Any], settings: Any) -> None:
        self.name = getattr(build, "name", key.engine)
        self._addr, self._key, self._build, self._settings = addr, key, build, settings
        self._local: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in _NOT_SHARED:  # the service's model is shared and unloads itself when idle
            return lambda *args, **kwargs: None
        if callable(getattr(self._build, name, None)):
            return lambda *args, **kwargs: self._call(name, args, kwargs)
        value = self._call("__getattribute__", (name,), {})  # the loaded model's (engine.model_name)
        self.__dict__[name] = value
        return value

    def _call(self, method: str, args: tuple, kwargs: dict) -> Any:
        if self._local is None:
            message = ("call", self._key, self._build, self._settings, method, args, kwargs)
            try:
                ok, value = exchange(self._addr, message, restart=True)
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                _warn(f"model service lost ({type(exc).__name__}: {exc}): {self._key.engine} loaded here")
                self._local = resident_model(self._key, lambda: self._build(self._settings))
            else:
                if ok:
                    return value
                raise value
        return getattr(self._local, method)(*args, **kwargs)


_handles: dict[ModelKey, ServedModel] = {}
_address: list[str | None] = []  # this process's answer: the service's address, or None (not available)
_handles_lock = threading.Lock()


def served_model(key: ModelKey, build: Callable[[S], T], settings: S) -> T:
    """The model for `key`: a handle on the host's service where wanted (started if none runs), else the
    model resident in this process. `build(settings)` loads it; it must be a module-level class or function
    (it travels by name)."""
    if wanted():
        with _handles_lock:
            if key not in _handles and (addr := _service_address()):
                _handles[key] = ServedModel(addr, key, build, settings)
            handle = _handles.get(key)
        if handle is not None:
            return handle  # type: ignore[return-value]
    return resident_model(key, lambda: build(settings))


def _service_address() -> str | None:
    if not _address:
        try:
            _address.append(ensure_started(prefect_home()))
        except (ModelServiceError, OSError) as exc:
            _warn(f"model service unavailable ({exc}): models load in this run")
            _address.append(None)
    return _address[0]


def _warn(line: str) -> None:
    """One line in the run's log (the UI, the CLI's stderr); the Python log outside a run."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        get_run_logger().warning(line)
    except MissingContextError:
        _log.warning(line)


def ensure_started(home: Path) -> str:
    """The address of this host's service, started now unless one answers (one starter at a time)."""
    addr = address(home)
    if status(addr) is not None:
        return addr
    fd = os.open(home / START_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if status(addr) is not None:
            return addr
        env = {**os.environ, MODE_ENV: "off"}  # the service loads in itself
        env.pop("PREFECT__FLOW_RUN_ID", None)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CODE_ROOT), env.get("PYTHONPATH")) if p)
        with open(home / LOG_FILE, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "core.model_service", "serve"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=env,
            )  # fmt: skip
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if status(addr, timeout=1.0) is not None:
                return addr
            if proc.poll() is not None:
                raise ModelServiceError(f"exited at start ({proc.returncode}): {log_tail(home, LOG_FILE)}")
            time.sleep(0.02)
        proc.terminate()
        raise ModelServiceError(f"did not answer in {STARTUP_SECONDS:.0f} s: {log_tail(home, LOG_FILE)}")
    finally:
        os.close(fd)


# ---------------------------------------------------------------- the service process
class Resident:
    """One model of the service, loaded once, and the threads that load and call it (OpenMP pools, CUDA
    contexts and per-call state are per thread: calls from a new thread each time made faster-whisper 2-3x
    slower). Runs calling it at once share it: a CPU model whose engine allows calls at once (`shared_calls`)
    takes up to YIVIDEO_MODEL_CALLS of them, each on a thread of its own; any other one call at a time.
    A copy per caller was a second load and filled the resident slots (a burst evicted and reloaded it); 24
    real frames read by 2 callers at once on 2 cores took 10.3-12.5 s sharing one model, 12.7-14.6 s with
    a copy each and 8.3-11.9 s one at a time (bench/model_service.py --callers 2, load 5-6), but a burst of
    30 deployed runs made 4.2-4.3 runs/min one call at a time against 4.7-4.8 with two copies (load 11-18).
    Above the cores it gains nothing and costs memory (each OCR call holds its tensors): 4 callers sharing one
    engine on 2 cores read the same text in 19.97 s against 19.16 s one at a time, peak RSS 1.49 GB against
    0.77 GB (--callers 4, load 14)."""

    def __init__(self, key: ModelKey, threads: int) -> None:
        self.key, self.calls, self.used = key, 0, time.monotonic()
        self.thread = ThreadPoolExecutor(threads, thread_name_prefix=f"{key.capability}-{key.engine}")

    def call(self, build: Callable[[Any], Any], settings: Any, method: str, args: tuple, kwargs: dict) -> Any:
        try:
            with holding(self.key, lambda: build(settings)) as model:
                return getattr(model, method)(*args, **kwargs)
        finally:
            release_freed_memory()  # a call's tensors (an OCR batch: ~0.5 GB) go back to the system


class Service:
    """Answers one request a connection, each in its own thread; each model is loaded once and called on its
    own threads (`Resident`), whatever the number of runs calling it."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.shared_calls = max(1, int(os.environ.get(CALLS_ENV, "") or min(4, os.cpu_count() or 1)))
        self.idle = idle_seconds(IDLE_ENV, IDLE_SECONDS)
        self.model_idle = idle_seconds(MODEL_IDLE_ENV, MODEL_IDLE_SECONDS)
        self.lock = threading.Lock()
        self.residents: dict[ModelKey, Resident] = {}
        self.active, self.requests, self.last = 0, 0, time.monotonic()
        self.started, self.stopping = time.time(), False

    def take(self, key: ModelKey, build: Callable[[Any], Any]) -> Resident:
        with self.lock:
            resident = self.residents.get(key)
            if resident is None:
                shared = key.device == "cpu" and getattr(build, "shared_calls", False)
                resident = self.residents[key] = Resident(key, self.shared_calls if shared else 1)
            resident.calls += 1
            return resident

    def give_back(self, resident: Resident) -> None:
        with self.lock:
            resident.calls, resident.used = resident.calls - 1, time.monotonic()

    def answer(self, message: tuple) -> tuple[bool, Any]:
        if message[0] == "status":
            return True, self.status()
        if message[0] == "stop":
            self.stopping = True
            return True, None
        _, key, build, settings, method, args, kwargs = message
        resident = self.take(key, build)
        try:
            return True, resident.thread.submit(resident.call, build, settings, method, args, kwargs).result()
        finally:
            self.give_back(resident)

    def handle(self, conn: socket.socket) -> None:
        try:
            with conn:
                try:
                    reply = self.answer(pickle.loads(receive_bytes(conn)))
                except OSError:
                    return  # the caller went away (its run crashed): nothing to answer
                except Exception as exc:  # noqa: BLE001 - the caller raises it
                    reply = (False, exc)
                with contextlib.suppress(OSError):
                    try:
                        send(conn, reply)
                    except (pickle.PicklingError, TypeError, AttributeError) as exc:
                        send(conn, (False, RemoteError(f"{type(reply[1]).__name__}: {reply[1]} ({exc})")))
        finally:
            with self.lock:
                self.active -= 1
                self.requests += 1
                self.last = time.monotonic()

    def status(self) -> dict:
        return {
            "pid": os.getpid(),
            "rss_mb": _rss_mb(),
            "peak_rss_mb": _rss_mb("VmHWM"),
            "models": [str(k) for k in resident_keys()],
            "models_mb": sum(map(resident_mb, resident_keys())),  # by measured size, against the budget
            "budget_mb": budget_mb(),
            "loads": load_count(),
            "load_log": list(LOADS),  # each load: key, why (first load, copy, reload and its cause), seconds
            "requests": self.requests,
            "uptime_s": round(time.time() - self.started, 1),
        }

    def unload_idle(self) -> None:
        """Unload each model unused for YIVIDEO_MODEL_IDLE_S (its thread goes with it)."""
        with self.lock:
            now = time.monotonic()
            idle = [r for r in self.residents.values() if not r.calls and now - r.used >= self.model_idle]
            for resident in idle:
                del self.residents[resident.key]
        for resident in idle:
            evict(resident.key, f"unloaded after {self.model_idle:g} s idle")
            resident.thread.shutdown(wait=False)

    def idle_now(self) -> bool:
        with self.lock:
            return self.stopping or (self.active == 0 and time.monotonic() - self.last >= self.idle)

    def serve(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(self.addr)
            except OSError:
                return  # another service took this address first: it serves
            sock.listen(64)
            sock.settimeout(0.5)
            while True:
                try:
                    conn, _ = sock.accept()
                except TimeoutError:
                    self.unload_idle()
                    if self.idle_now():
                        return
                    continue
                conn.settimeout(None)
                with self.lock:
                    self.active += 1
                threading.Thread(target=self.handle, args=(conn,), daemon=True).start()


def _rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory now (VmHWM: its peak) in MB."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def stop(home: Path) -> bool:
    with contextlib.suppress(OSError, EOFError):
        return exchange(address(home), ("stop",), timeout=5.0)[0]
    return False


def serve() -> None:
    os.environ[MODE_ENV] = "off"  # what it loads, it loads in itself
    limit_malloc_arenas()  # its call threads' heaps keep what they freed otherwise
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")  # its log file
    Service(address(prefect_home())).serve()


def _command(argv: list[str]) -> int:
    find = lambda home: status(address(home))  # noqa: E731
    return service_command(argv, "core.model_service", "model service", serve, stop, find)


if __name__ == "__main__":
    sys.exit(_command(sys.argv[1:]))
