"""The worker's template process: Prefect and the deployed flows imported once; each flow run forked from it.

python -m deployments.zygote --socket PATH       (deployments/worker.py starts it; its stdin is the lifeline)

Prefect's process worker starts `python -m prefect.engine` for every flow run, which imports Prefect and the
flow's modules (~2 s of a 2.5 s Pending -> Running at idle) before it can report Running. This process
imports them once (no threads, no event loop, no connection, no model: checked before it serves) and waits
on a Unix socket. The worker's per-run command, deployments/zygote_client.py, hands it the run's argv,
environment, working directory and stdio; a child is forked for the run: a fresh process per run, which
takes the run's environment before anything reads it (Prefect's settings and logging built again from
it), and runs `prefect.engine` as `python -m prefect.engine` does. Towards the worker the client stands in
for the child: signals passed on, exit status passed back, the child killed when the client dies.
The template serves runs of the code it imported: the deployments of this checkout (prefect.yaml), as the
worker does. A run whose environment says YIVIDEO_ZYGOTE=off starts as before.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from deployments.deployed import DEPLOYED

MAX_MESSAGE = 1 << 20
ENGINE = "prefect.engine"
PRELOAD = (
    "prefect",
    ENGINE,
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.deployments.steps",
    "prefect.runner.storage",
    *sorted({module for module, _, _ in DEPLOYED.values()}),
)
# Model runtimes stay out of the template: a model is loaded by the resident model service
# (core/model_service.py) or in a run's own process, never shared through fork.
NOT_BEFORE_FORK = ("onnxruntime", "ctranslate2", "torch", "faster_whisper", "rapidocr_onnxruntime", "ray")


@dataclass
class RunRequest:
    """What a client sent: the engine's arguments, the run's environment and working directory, and the
    fds stdin, stdout, stderr and the client's lifeline."""

    args: list[str]
    env: dict[str, str]
    cwd: str
    fds: list[int]


def preload() -> dict[str, str]:
    """Import what every run imports; return what the imports set in os.environ (a run sets it again)."""
    before = dict(os.environ)
    for module in PRELOAD:
        importlib.import_module(module)
    del sys.modules[ENGINE]  # its imports stay; its code runs as __main__ in each run, as with `python -m`
    return {k: v for k, v in os.environ.items() if before.get(k) != v}


def fork_safety_problems() -> list[str]:
    """Why forking runs from this process would be unsafe (empty: it is safe). Python threads: none but
    this one. Native threads: only OpenBLAS's (numpy's and OpenCV's start theirs at import; OpenBLAS stops
    them around fork and starts them again on its next call)."""
    from threadpoolctl import threadpool_info

    problems = []
    if threading.active_count() != 1:
        problems.append(f"{threading.active_count()} Python threads")
    native = len(os.listdir("/proc/self/task")) - 1
    openblas = sum(
        max(0, pool["num_threads"] - 1) for pool in threadpool_info() if pool["internal_api"] == "openblas"
    )
    if native > openblas:
        problems.append(f"{native} native threads besides this one, {openblas} of them OpenBLAS's")
    problems += [f"{name} imported" for name in NOT_BEFORE_FORK if name in sys.modules]
    return problems


class Zygote:
    """Accepts run requests on `path` and forks a child per request; `serve()` returns only in a child."""

    def __init__(self, path: str, lifeline: int) -> None:
        self.path, self.lifeline = path, lifeline
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(path)
        self.listener.listen(64)
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.children: dict[int, socket.socket | None] = {}  # pid -> its client's connection
        self.closing = False

    def serve(self) -> RunRequest:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector through the wakeup fd
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.lifeline, selectors.EVENT_READ, "lifeline")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "reap")
        while not (self.closing and not self.children):
            for key, _ in self.selector.select():
                if key.data == "accept":
                    conn, _ = self.listener.accept()
                    self.selector.register(conn, selectors.EVENT_READ, "request")
                elif key.data == "request":
                    request = self._take_request(key.fileobj)
                    if request is not None:
                        return request  # in the child
                elif key.data == "lifeline":
                    self._close()
                elif key.data == "reap":
                    os.read(self.wake_r, 4096)
                    self._reap()
                else:
                    self._from_client(key.fileobj, key.data)
        raise SystemExit(0)

    def _take_request(self, conn: socket.socket) -> RunRequest | None:
        self.selector.unregister(conn)
        fds = array.array("i")
        try:
            message, ancillary, _, _ = conn.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(4 * fds.itemsize))
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            sent = json.loads(message)
            request = RunRequest(list(sent["args"]), dict(sent["env"]), str(sent["cwd"]), list(fds))
            if len(request.fds) != 4 or _peer_uid(conn) != os.getuid():
                raise ValueError("expected stdin, stdout, stderr and a lifeline from a process of this user")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"zygote: refused a request: {exc}", file=sys.stderr, flush=True)
            for fd in fds:
                os.close(fd)
            conn.close()
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._leave(conn)
            return request
        for fd in request.fds:
            os.close(fd)
        self.children[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, pid)
        conn.send(json.dumps({"pid": pid}).encode())
        return None

    def _from_client(self, conn: socket.socket, pid: int) -> None:
        """A signal to pass on to the run's process group, or the client gone: the run goes with it."""
        try:
            message = conn.recv(MAX_MESSAGE)
        except OSError:
            message = b""
        if not message:
            self.selector.unregister(conn)
            conn.close()
            if pid in self.children:
                self.children[pid] = None
                _signal_group(pid, signal.SIGKILL)
            return
        try:
            signum = json.loads(message).get("signal")
        except (ValueError, AttributeError):
            return
        if pid in self.children and signum in (signal.SIGTERM, signal.SIGINT):
            _signal_group(pid, signum)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                self.selector.unregister(conn)
                try:
                    conn.send(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode())
                except OSError:
                    pass
                conn.close()

    def _close(self) -> None:
        """The worker is gone: take no more runs; the runs going on end as they would (then this exits)."""
        self.closing = True
        self.selector.unregister(self.listener)
        self.selector.unregister(self.lifeline)
        self.listener.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            os.rmdir(Path(self.path).parent)  # the worker's private folder for it

    def _leave(self, conn: socket.socket) -> None:
        """In a forked child: drop everything of the server's."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.selector.close()
        self.listener.close()
        conn.close()
        for other in self.children.values():
            if other is not None:
                other.close()
        for fd in (self.wake_r, self.wake_w, self.lifeline):
            os.close(fd)


def _peer_uid(conn: socket.socket) -> int:
    import struct

    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)  # the child leads its own group (setsid): its ffmpeg goes too
    except ProcessLookupError:
        pass


def become_run(request: RunRequest, import_env: dict[str, str]) -> None:
    """In the forked child: the run's own session, stdio, environment, directory and Prefect settings."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    stdin, stdout, stderr, lifeline = request.fds
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.set_inheritable(lifeline, False)  # SCM_RIGHTS fds come inheritable: no ffmpeg may hold it
    threading.Thread(target=_die_with_client, args=(lifeline,), name="zygote-lifeline", daemon=True).start()
    zygote_pythonpath = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    os.environ.clear()
    os.environ.update(request.env)
    for key, value in import_env.items():  # what the preloaded imports set, as they would have now
        os.environ.setdefault(key, value)
    os.chdir(request.cwd)
    run_pythonpath = [p for p in request.env.get("PYTHONPATH", "").split(os.pathsep) if p]
    rest = [p for p in sys.path[1:] if p not in zygote_pythonpath]
    sys.path[:] = [request.cwd, *run_pythonpath, *rest]  # as `python -m` in cwd would have it
    sys.argv[:] = [sys.argv[0], *request.args]
    if "numpy.random" in sys.modules:  # a fresh process's global RNG is seeded from the OS, not shared
        sys.modules["numpy.random"].seed()
    from prefect.context import refresh_global_settings_context
    from prefect.logging.configuration import setup_logging

    refresh_global_settings_context()
    setup_logging(incremental=False)


def _die_with_client(lifeline: int) -> None:
    """The client holds the other end of this pipe: when it dies (SIGKILL from the worker), so does the
    run, with its process group, even where the template is gone."""
    while os.read(lifeline, 1):
        pass
    os.killpg(os.getpid(), signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    args = parser.parse_args(argv)
    import_env = preload()
    if problems := fork_safety_problems():
        print(f"zygote: not serving, forking would be unsafe: {'; '.join(problems)}", file=sys.stderr)
        return 1
    zygote = Zygote(args.socket, lifeline=sys.stdin.fileno())
    print(f"zygote {os.getpid()}: ready on {args.socket} ({len(sys.modules)} modules)", flush=True)
    request = zygote.serve()  # returns in a forked child only
    become_run(request, import_env)
    runpy.run_module(ENGINE, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
