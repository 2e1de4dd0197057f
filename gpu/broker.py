"""The per-host GPU broker: owns this host's `gpu:<host>:<index>` leases and hands them to local waiters.

python -m gpu.broker --run-dir DIR      (gpu_slot() starts it on first use; it exits when idle)

Clients (gpu/slot.py) speak the messages of gpu/protocol.py over a Unix socket, one connection per slot;
the connection dropping (a killed holder) frees its units. Every decision (who is served, on which
device, when a wait expires, when idle leases go back) is made by the pure gpu/scheduler.py; this module
executes its actions: it answers clients, takes and returns Prefect leases (gpu/leases.py), renews them,
re-reads the limits and the policy, keeps the state file a successor broker recovers from, and records
statistics and events (gpu/stats.py).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import fcntl
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from core.client_tls import share_client_tls_contexts
from gpu.devices import host_devices, host_name, limit_name
from gpu.leases import (
    OUTAGE_RETRY,
    OUTAGE_SECONDS,
    PrefectLeases,
    is_locked,
    is_transient,
    read_state,
    write_state,
)
from gpu.limits import ensure_limit
from gpu.policy import GpuPolicy, load_gpu_policy
from gpu.protocol import (
    Acquire,
    Adopt,
    Adopted,
    Bye,
    Message,
    Refused,
    Release,
    Shutdown,
    StatusReport,
    StatusRequest,
    decode,
    encode,
)
from gpu.scheduler import Action, Fetch, Give, Grant, Refuse, ReturnLease, Scheduler
from gpu.stats import Stats, emit, status_report

FOREIGN_RETRY = 0.25  # the limit is full with holders that are not ours: try again this often
REFRESH_SECONDS = 5.0  # limit sizes are re-read this often (the UI may change them)

log = logging.getLogger("yivideo.gpu_broker")


class Broker:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.host = host_name()
        self.scheduler = Scheduler(GpuPolicy())
        self.stats = Stats()
        self.leases: PrefectLeases | None = None
        self.client: Any = None
        self.waiting: dict[int, asyncio.StreamWriter] = {}  # waiter seq -> its connection
        self.seq_of: dict[asyncio.StreamWriter, int] = {}
        self.grant_of: dict[asyncio.StreamWriter, Grant] = {}
        self.connections: set[asyncio.StreamWriter] = set()
        self.last_activity = time.monotonic()
        self.started = time.time()
        self.ready = asyncio.Event()
        self.init_error: str | None = None
        self.stopping = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()
        self.state_dirty = False
        self.listed: dict[str, dict[str, Any]] = {}  # the state file's entries, by lease id
        self.returning: dict[str, dict[str, Any]] = {}  # being given back: listed until Prefect answers
        self.taking: collections.Counter[str] = collections.Counter()  # takes on their way, by limit
        self.timer: asyncio.TimerHandle | None = None

    @property
    def policy(self) -> GpuPolicy:
        return self.scheduler.policy

    # --- executing the scheduler's actions ---------------------------------------------------------

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Give):
                self.give(action)
            elif isinstance(action, Fetch):
                self.spawn(self.fetch(action.seq, action.device))
            elif isinstance(action, Refuse):
                writer = self.waiting.pop(action.seq, None)
                if writer is not None:
                    self.seq_of.pop(writer, None)
                    self.send(writer, action.refused)
                if action.refused.op == "timeout" and action.limit:
                    self.stats.record("timeout", action.limit, None)
            elif isinstance(action, ReturnLease):
                if (entry := self.listed.get(action.lease_id)) is not None:
                    self.returning[action.lease_id] = entry
                self.spawn(self.return_lease(action.lease_id))
        self.state_changed()
        self.rearm()

    def give(self, action: Give) -> None:
        grant = action.grant
        writer = self.waiting.pop(action.seq, None)
        if writer is None:  # cannot happen (a gone waiter is cancelled first); never strand the units
            self.apply(self.scheduler.release(grant.id, time.time()))
            return
        self.seq_of.pop(writer, None)
        self.grant_of[writer] = grant
        self.send(writer, action.granted)
        device = self.scheduler.devices[grant.device]
        self.stats.record("acquired", device.limit, grant.request.stage, wait=grant.waited)
        asyncio.get_running_loop().call_soon(emit, "acquired", device, grant, {"waited": grant.waited})

    def release(self, grant: Grant, abandoned: bool) -> None:
        """Free a grant's units: the next waiter gets its leases before anything else happens."""
        device = self.scheduler.devices.get(grant.device)
        now = time.time()
        self.apply(self.scheduler.release(grant.id, now))
        if device is not None:
            held = now - grant.granted
            self.stats.record("released", device.limit, grant.request.stage, hold=held, abandoned=abandoned)
            payload = {"held": held, "abandoned": abandoned}
            asyncio.get_running_loop().call_soon(emit, "released", device, grant, payload)

    def rearm(self) -> None:
        """One timer for whatever the scheduler next decides by time alone (expiry, grace, idle leases)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        at = self.scheduler.next_wakeup()
        if at is not None:
            self.timer = asyncio.get_running_loop().call_later(max(0.0, at - time.time()), self.tick)

    def tick(self) -> None:
        self.timer = None
        self.apply(self.scheduler.tick(time.time()))

    # --- Prefect calls (off the handoff path) ------------------------------------------------------

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def return_lease(self, lease_id: str) -> None:
        """Give a lease back; the state file lists it until Prefect has answered, so a broker killed while
        the call is on its way leaves it to its successor (which returns it again: a no-op if it arrived),
        not held in Prefect until it lapses (60 s at least) with nobody knowing."""
        try:
            if self.leases is not None:
                await self.leases.give_back(lease_id)
        finally:
            if self.returning.pop(lease_id, None) is not None:
                self.state_changed()

    async def ensure_device(self, index: int) -> None:
        name = limit_name(index, self.host)
        limit, _ = await ensure_limit(self.client, name, self.policy.units_per_device)
        if not limit.active:
            log.warning("limit %s is inactive in Prefect: only this broker's own count applies", name)
        self.scheduler.set_device(index, name, str(limit.id), limit.limit)

    async def initialise(self) -> None:
        """Set up the limits; while Prefect is unreachable (a server restart) the clients wait, up to
        OUTAGE_SECONDS, instead of their stages failing at once (found by bench/faults.py, server kill)."""
        deadline = time.monotonic() + OUTAGE_SECONDS
        while True:
            try:
                await self._set_up()
                break
            except Exception as exc:  # answered to every client, then the broker exits
                if is_transient(exc) and time.monotonic() < deadline:
                    log.warning("Prefect unreachable while setting up the GPU limits (%r): retrying", exc)
                    await asyncio.sleep(OUTAGE_RETRY)
                    continue
                self.init_error = f"the GPU broker could not reach Prefect to set up the GPU limits: {exc!r}"
                log.exception("initialisation failed")
                break
        self.ready.set()

    async def _set_up(self) -> None:
        from prefect.client.orchestration import get_client

        if self.client is None:
            client = get_client()
            await client.__aenter__()
            self.client = client
        self.scheduler.policy = await load_gpu_policy()
        self.leases = PrefectLeases(self.client, self.policy.lease_seconds)
        for index in host_devices(self.policy.devices):
            await self.ensure_device(index)
        previous = read_state(self.run_dir)
        entries = previous.leases
        for limit, count in previous.taking.items():
            log.warning(
                "a previous broker died while taking %d slot(s) of %s: Prefect may count them, with leases "
                "nobody knows, until those lapse (their lease time, %.0f s; `python -m gpu.health free %s "
                "--reset` frees them now)", count, limit, self.policy.lease_seconds, limit,
            )  # fmt: skip
        self.listed = {str(item["id"]): item for item in entries}
        orphans = [(str(item["id"]), int(item["device"])) for item in entries]
        if orphans:
            log.warning("took over %d lease(s) of a previous broker: %s", len(orphans), sorted(self.listed))
        self.apply(self.scheduler.take_over(orphans, time.time()))

    async def fetch(self, seq: int, index: int) -> None:
        """Take the leases a waiter still lacks from Prefect (the limit caps us against other clients)."""
        assert self.leases is not None
        limit = self.scheduler.devices[index].limit
        failures, error, outage_until = 0, "", time.monotonic() + OUTAGE_SECONDS
        while (missing := self.scheduler.missing(seq)) > 0:
            self.taking[limit] += missing
            self.write_state()  # before the requests leave: a successor learns of takes we die within
            try:
                results = await asyncio.gather(*(self.leases.take(limit) for _ in range(missing)),
                                               return_exceptions=True)  # fmt: skip
            finally:
                self.taking[limit] -= missing
            self.scheduler.fetched(seq, [r for r in results if isinstance(r, str)], time.time())
            locked = any(is_locked(r) for r in results)
            outage = any(is_transient(r) for r in results) and time.monotonic() < outage_until
            for result in results:
                if isinstance(result, BaseException) and not is_locked(result):
                    log.warning("taking a slot of %s failed: %r", limit, result)
                    if not outage:
                        failures, error = failures + 1, repr(result)
            self.state_changed()
            if failures >= 3:
                message = f"could not take a slot of {limit} from Prefect: {error}"
                self.apply(self.scheduler.fetch_failed(seq, message))
                break
            if self.scheduler.missing(seq) > 0:
                if not locked and not outage:
                    with contextlib.suppress(Exception):
                        await self.ensure_device(index)  # deleted in the UI? recreate it
                await asyncio.sleep(OUTAGE_RETRY if outage else FOREIGN_RETRY)
        self.apply(self.scheduler.fetch_finished(seq, time.time()))

    async def renew_forever(self) -> None:
        assert self.leases is not None
        while True:
            await asyncio.sleep(self.policy.lease_seconds / 3)
            leases = self.scheduler.leases()
            results = await self.leases.renew([lease.id for lease in leases])
            now = time.time()
            for lease, result in zip(leases, results, strict=True):
                if not isinstance(result, BaseException):
                    lease.renewed = now
                    continue
                device = self.scheduler.devices.get(lease.device)
                if device is None or device.leases.get(lease.id) is not lease:
                    continue
                if is_transient(result):  # Prefect restarting: the lease holds until it lapses, renew later
                    log.warning("renewing lease %s of %s failed for now (%r)", lease.id, device.limit, result)
                    continue
                log.error("lease %s of %s was lost (%r)", lease.id, device.limit, result)
                grant = self.scheduler.lease_lost(lease.id)
                if grant is not None:  # its holder still runs: hold a replacement lease if the limit allows
                    with contextlib.suppress(Exception):
                        new_id = await self.leases.take(device.limit)
                        if not self.scheduler.lease_replaced(grant, new_id, time.time()):
                            self.spawn(self.leases.give_back(new_id))
                self.state_changed()

    async def refresh_forever(self) -> None:
        last_policy = time.monotonic()
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                if time.monotonic() - last_policy > self.policy.reload_seconds:
                    self.scheduler.policy, last_policy = await load_gpu_policy(), time.monotonic()
                for index in list(self.scheduler.devices):
                    await self.ensure_device(index)
            except Exception as exc:
                log.warning("refreshing the GPU limits failed: %r", exc)
            self.apply(self.scheduler.schedule(time.time()))

    # --- connections -------------------------------------------------------------------------------

    def send(self, writer: asyncio.StreamWriter, message: Message) -> None:
        if not writer.is_closing():
            writer.write(encode(message))

    async def answer(self, message: Message, writer: asyncio.StreamWriter) -> None:
        if isinstance(message, Acquire | Adopt):
            await self.ready.wait()
            if self.init_error:
                self.send(writer, Refused("error", self.init_error))
            elif isinstance(message, Acquire):
                seq, actions = self.scheduler.enqueue(message, time.time())
                self.waiting[seq], self.seq_of[writer] = writer, seq
                self.apply(actions)
            else:
                result = self.scheduler.adopt(message.request, message.grant, message.held, time.time())
                if isinstance(result, Refuse):
                    self.send(writer, result.refused)
                else:
                    self.grant_of[writer] = result
                    self.state_changed()
                    self.send(writer, Adopted(result.id))
        elif isinstance(message, Release):
            grant = self.grant_of.pop(writer, None)
            if grant is not None:
                self.release(grant, abandoned=False)
        elif isinstance(message, StatusRequest):
            await self.ready.wait()
            report = status_report(self.scheduler, self.stats, self.host, self.started, message.window)
            self.send(writer, StatusReport(report))
        elif isinstance(message, Shutdown):
            self.send(writer, Bye())
            self.stopping.set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.add(writer)
        self.last_activity = time.monotonic()
        try:
            while line := await reader.readline():
                await self.answer(decode(line), writer)
                await writer.drain()
        except (ConnectionError, ValueError) as exc:
            log.warning("client connection failed: %r", exc)
        finally:
            seq = self.seq_of.pop(writer, None)
            if seq is not None:  # the waiter went away (cancelled, killed)
                self.waiting.pop(seq, None)
                self.apply(self.scheduler.cancel(seq, time.time()))
            grant = self.grant_of.pop(writer, None)
            if grant is not None:  # the holder died without releasing: free its units now
                log.warning("holder %s (pid %s) went away holding %s", grant.request.stage,
                            grant.request.pid, grant.leases)  # fmt: skip
                self.release(grant, abandoned=True)
            writer.close()
            self.connections.discard(writer)
            self.last_activity = time.monotonic()

    # --- bookkeeping and life ----------------------------------------------------------------------

    def state_changed(self) -> None:
        if not self.state_dirty:
            self.state_dirty = True
            asyncio.get_running_loop().call_soon(self.write_state)

    def write_state(self) -> None:
        """The leases we hold, so a successor broker can take them over if we die."""
        self.state_dirty = False
        devices = self.scheduler.devices
        leases = [{"id": lease.id, "device": lease.device, "limit": devices[lease.device].limit}
                  for lease in self.scheduler.leases()]  # fmt: skip
        held = {entry["id"] for entry in leases}
        leases += [entry for lease_id, entry in self.returning.items() if lease_id not in held]
        before, self.listed = set(self.listed), {entry["id"]: entry for entry in leases}
        write_state(self.run_dir, self.host, leases, {limit: n for limit, n in self.taking.items() if n > 0})
        if set(self.listed) != before:  # what a successor would take over (a survivor once found nothing)
            log.info("state file lists %s", sorted(self.listed) or "no lease")

    async def idle_watch(self) -> None:
        while not self.stopping.is_set():
            await asyncio.sleep(1.0)
            busy = self.connections or self.waiting or self.scheduler.grants
            if busy:
                self.last_activity = time.monotonic()
            idle_for = time.monotonic() - self.last_activity
            if idle_for > (2.0 if self.init_error else self.policy.broker_idle_seconds):
                self.stopping.set()

    async def serve(self) -> None:
        sock_path = self.run_dir / "broker.sock"
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()
        server = await asyncio.start_unix_server(self.handle, path=str(sock_path))
        (self.run_dir / "broker.pid").write_text(str(os.getpid()))
        await self.initialise()
        loops = [self.idle_watch(), self.refresh_forever()] + ([self.renew_forever()] if self.leases else [])
        background = [asyncio.ensure_future(c) for c in loops]
        try:
            await self.stopping.wait()
        finally:
            server.close()
            for writer in list(self.connections):
                writer.close()
            await asyncio.sleep(0.05)  # let the handlers see their connections end
            with contextlib.suppress(FileNotFoundError):
                sock_path.unlink()
            for task in background:
                task.cancel()
            if self.timer is not None:
                self.timer.cancel()
            leases = self.scheduler.drop_all()
            if self.client is not None:
                await asyncio.gather(*(self.return_lease(lease) for lease in leases))
                await asyncio.gather(*self.tasks, return_exceptions=True)
                await self.client.__aexit__(None, None, None)
            self.write_state()
            with contextlib.suppress(FileNotFoundError):
                (self.run_dir / "broker.pid").unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The GPU broker of this host (started by gpu_slot()).")
    parser.add_argument("--run-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    share_client_tls_contexts()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s broker[{os.getpid()}] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    lock_fd = os.open(args.run_dir / "broker.lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + 10.0  # a predecessor shutting down, or a client's liveness probe
    while True:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                return 0  # another broker serves this host and API
            time.sleep(0.02)
    asyncio.run(Broker(args.run_dir).serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
