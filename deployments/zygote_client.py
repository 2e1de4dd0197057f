"""The per-run command of our process worker: a flow run forked from the worker's template process.

python -I -S deployments/zygote_client.py SOCKET [ENGINE ARGS...]     (the worker's job command; not by hand)

Prefect's process worker starts this instead of `python -m prefect.engine` when its template process
(deployments/zygote.py) runs. Standard library only, no site: it starts in ~20 ms. It hands the template its
environment, working directory and stdio over the Unix socket SOCKET and gets a fresh process forked for
the run. Towards the worker it stands in for that process: SIGTERM and SIGINT are passed on to the run's
process group, it exits with the run's exit status (killed by a signal: killed by the same signal), and
when it dies (SIGKILL) the run's processes die too (the template sees the socket close; the run sees a
pipe only this process holds close). Without the template (not started, gone, or YIVIDEO_ZYGOTE=off in
the run's environment) it becomes `python -m prefect.engine` itself (exec: same pid).
"""

import array
import json
import os
import signal
import socket
import sys
import time

OFF_ENV = "YIVIDEO_ZYGOTE"
MAX_MESSAGE = 1 << 20


def plain_engine(args: list[str]) -> None:
    """Become what Prefect would have started: `python -m prefect.engine`, with this environment."""
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *args])


def hand_over(path: str, args: list[str]) -> tuple[socket.socket, int] | None:
    """Ask the template for a run process; (connection, its pid), or None where there is no template."""
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conn.connect(path)
    except OSError:
        return None
    lifeline, held = os.pipe()  # the run holds the read end: it ends when this process does
    request = {"args": args, "cwd": os.getcwd(), "env": dict(os.environ)}
    fds = array.array("i", [0, 1, 2, lifeline])
    try:
        conn.sendmsg([json.dumps(request).encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        reply = json.loads(conn.recv(MAX_MESSAGE) or b"{}")
    except OSError:
        reply = {}
    finally:
        os.close(lifeline)
    if "pid" not in reply:
        os.close(held)
        conn.close()
        return None
    os.set_inheritable(held, False)  # nothing this process starts holds the run up
    return conn, reply["pid"]


def relay(conn: socket.socket) -> None:
    """Pass SIGTERM and SIGINT on to the run (the template signals its process group)."""

    def send(signum: int, _frame: object) -> None:
        try:
            conn.send(json.dumps({"signal": signum}).encode())
        except OSError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, send)


def exit_like(code: int) -> None:
    """Exit as the run did: its status, or killed by its signal."""
    sys.stdout.flush()
    if code < 0:
        if -code not in (signal.SIGKILL, signal.SIGSTOP):  # the only two whose handling cannot be set
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code
    os._exit(code)


def main() -> None:
    path, args = sys.argv[1], sys.argv[2:]
    os.setsid()  # as Prefect's own per-run process: the worker's process-group signals are not the run's
    if os.environ.get(OFF_ENV, "").strip().lower() in ("0", "off", "false", "no"):
        plain_engine(args)
    handed = hand_over(path, args)
    if handed is None:
        plain_engine(args)
    conn, pid = handed
    relay(conn)
    while True:
        message = conn.recv(MAX_MESSAGE)
        if not message:  # the template died; the run goes on without it: wait for it, status unknown
            print(f"zygote: template gone; flow-run process {pid} exit status unknown", file=sys.stderr)
            while _alive(pid):
                time.sleep(0.5)
            exit_like(1)
        reply = json.loads(message)
        if "exit" in reply:
            exit_like(reply["exit"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


if __name__ == "__main__":
    main()
