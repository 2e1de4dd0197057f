"""The per-host GPU broker: owns this host's `gpu:<host>:<index>` leases and hands them to local waiters.

python -m gpu.broker --run-dir DIR      (gpu_slot() starts it on first use; it exits when idle)

Clients (gpu/slot.py) speak JSON lines over a Unix socket, one connection per slot: `acquire` (stage,
units, priority, timeout, devices, since) -> `granted` | `timeout` | `error`; `release`, or the connection
dropping (a killed holder), frees the units; `adopt` re-attaches a grant after a broker restart; `status`
answers the health report. Each unit in use is one 1-slot Prefect lease (renewed at a third of its
duration), so the global concurrency limit counts exactly the units held and caps them even against
other clients. A released unit's lease goes straight to the next waiter that fits (no HTTP on the
handoff); idle leases with nobody waiting go back to Prefect after IDLE_LINGER. Waiters are served by
effective priority (priority + one level per `ageing_seconds` waited), then by arrival; a waiter that
does not fit reserves its devices, so a heavy stage is not starved by a stream of light ones.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import itertools
import json
import logging
import os
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpu.policy import GpuPolicy, load_gpu_policy
from gpu.slot import _nvidia_smi_gpus, gate_mode, host_name, limit_name

ORPHAN_GRACE = 5.0  # seconds a new broker keeps a dead broker's leases for their holders to re-adopt
IDLE_LINGER = 0.1  # an idle lease is kept this long for a waiter that comes right back
FOREIGN_RETRY = 0.25  # the limit is full with holders that are not ours: try again this often
REFRESH_SECONDS = 5.0  # limit sizes are re-read this often (the UI may change them)
STATS_KEEP = 24 * 3600.0

log = logging.getLogger("yivideo.gpu_broker")


@dataclass
class Lease:
    id: str
    device: int
    acquired: float  # wall time
    renewed: float
    holder: str | None = None  # grant id, or "wait:<seq>" while reserved for a waiter
    orphan: bool = False  # left by a dead broker: kept for its holder to re-adopt
    idle_since: float = 0.0


@dataclass
class Waiter:
    seq: int
    request: dict[str, Any]
    writer: asyncio.StreamWriter
    since: float
    priority: int
    deadline: float | None
    timer: asyncio.TimerHandle | None = None
    acquiring: int | None = None  # device whose leases are being fetched for this waiter
    done: bool = False

    def effective(self, now: float, ageing: float) -> int:
        return self.priority + int(max(0.0, now - self.since) // ageing)


@dataclass
class Grant:
    id: str
    device: int
    units: int
    leases: list[str]
    request: dict[str, Any]
    priority: int
    granted: float
    waited: float
    writer: asyncio.StreamWriter | None


@dataclass
class Device:
    index: int
    limit: str
    limit_id: str
    capacity: int
    leases: dict[str, Lease] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    reserved: dict[int, int] = field(default_factory=dict)  # waiter seq -> units being fetched

    def free(self) -> int:
        orphans = sum(1 for lease in self.leases.values() if lease.orphan)
        used = sum(g.units for g in self.grants.values()) + orphans + sum(self.reserved.values())
        return self.capacity - used

    def idle(self) -> list[Lease]:
        return [lease for lease in self.leases.values() if lease.holder is None and not lease.orphan]


class Broker:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.host = host_name()
        self.policy = GpuPolicy()
        self.devices: dict[int, Device] = {}
        self.waiters: dict[asyncio.StreamWriter, Waiter] = {}
        self.grants: dict[asyncio.StreamWriter, Grant] = {}
        self.connections: set[asyncio.StreamWriter] = set()
        self.last_activity = time.monotonic()
        self.seq = itertools.count()
        self.stats: deque[dict[str, Any]] = deque()
        self.started = time.time()
        self.client: Any = None
        self.ready = asyncio.Event()
        self.init_error: str | None = None
        self.stopping = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()
        self.state_dirty = False

    # --- set-up ------------------------------------------------------------------------------------

    def device_indices(self) -> list[int]:
        if self.policy.devices:
            return list(range(self.policy.devices))
        gpus = [index for index, _ in _nvidia_smi_gpus()]
        return gpus or [0]  # a gated CPU host counts as one device

    async def ensure_limit(self, index: int) -> Device:
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
        from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

        name = limit_name(index, self.host)
        try:
            limit = await self.client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):  # another host's bootstrap may race us
                await self.client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(
                        name=name, limit=self.policy.units_per_device, slot_decay_per_second=0.0
                    )
                )
            limit = await self.client.read_global_concurrency_limit_by_name(name)
        if not limit.active:
            log.warning("limit %s is inactive in Prefect: only this broker's own count applies", name)
        device = self.devices.get(index)
        if device is None:
            device = self.devices[index] = Device(index, name, str(limit.id), limit.limit)
        device.limit_id, device.capacity = str(limit.id), limit.limit
        return device

    async def initialise(self) -> None:
        from prefect.client.orchestration import get_client

        try:
            self.client = get_client()
            await self.client.__aenter__()
            self.policy = await load_gpu_policy()
            for index in self.device_indices():
                await self.ensure_limit(index)
            self.recover_orphans()
        except Exception as exc:  # answered to every client, then the broker exits
            self.init_error = f"the GPU broker could not reach Prefect to set up the GPU limits: {exc!r}"
            log.exception("initialisation failed")
        self.ready.set()

    def recover_orphans(self) -> None:
        """Leases of a dead broker (its state file): kept for their live holders, released after a grace."""
        state = self.run_dir / "state.json"
        if not state.exists():
            return
        try:
            leases = json.loads(state.read_text()).get("leases", [])
        except (OSError, ValueError):
            leases = []
        now = time.time()
        for item in leases:
            device = self.devices.get(item["device"])
            if device is not None:
                device.leases[item["id"]] = Lease(item["id"], device.index, now, now, orphan=True)
            else:
                self.spawn(self.server_release(item["id"]))
        if leases:
            log.warning("took over %d lease(s) of a previous broker", len(leases))
            asyncio.get_running_loop().call_later(ORPHAN_GRACE, self.release_orphans)

    def release_orphans(self) -> None:
        for device in self.devices.values():
            for lease in [lease for lease in device.leases.values() if lease.orphan]:
                del device.leases[lease.id]
                self.spawn(self.server_release(lease.id))
        self.state_changed()
        self.schedule()

    # --- Prefect calls (off the handoff path) ------------------------------------------------------

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def server_lease(self, device: Device) -> str:
        response = await self.client.increment_concurrency_slots_with_lease(
            names=[device.limit], slots=1, mode="concurrency", lease_duration=self.policy.lease_seconds
        )
        return str(response.json()["lease_id"])

    async def server_release(self, lease_id: str) -> None:
        try:
            await self.client.release_concurrency_slots_with_lease(uuid.UUID(lease_id))
        except Exception as exc:  # the lease lapses on the server anyway
            log.warning("releasing lease %s failed: %r", lease_id, exc)

    async def renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.policy.lease_seconds / 3)
            leases = [lease for device in self.devices.values() for lease in device.leases.values()]
            results = await asyncio.gather(
                *(
                    self.client.renew_concurrency_lease(uuid.UUID(lease.id), self.policy.lease_seconds)
                    for lease in leases
                ),
                return_exceptions=True,
            )
            now = time.time()
            for lease, result in zip(leases, results, strict=True):
                if not isinstance(result, Exception):
                    lease.renewed = now
                    continue
                device = self.devices.get(lease.device)
                if device is None or device.leases.get(lease.id) is not lease:
                    continue
                log.error("lease %s of %s was lost (%r)", lease.id, device.limit, result)
                del device.leases[lease.id]
                grant = device.grants.get(lease.holder or "")
                if grant is not None:  # its holder still runs: hold a replacement lease if the limit allows
                    grant.leases.remove(lease.id)
                    with contextlib.suppress(Exception):
                        new_id = await self.server_lease(device)
                        device.leases[new_id] = Lease(new_id, device.index, now, now, holder=grant.id)
                        grant.leases.append(new_id)
                self.state_changed()

    async def refresh_forever(self) -> None:
        last_policy = time.monotonic()
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                if time.monotonic() - last_policy > self.policy.reload_seconds:
                    self.policy, last_policy = await load_gpu_policy(), time.monotonic()
                for index in list(self.devices):
                    await self.ensure_limit(index)
            except Exception as exc:
                log.warning("refreshing the GPU limits failed: %r", exc)
            self.schedule()

    # --- scheduling --------------------------------------------------------------------------------

    def units(self, waiter: Waiter, device: Device) -> int:
        return self.policy.units_for(waiter.request["stage"], waiter.request.get("units"), device.capacity)

    def allowed(self, waiter: Waiter) -> list[Device]:
        wanted = waiter.request.get("devices")
        return [d for i, d in sorted(self.devices.items()) if wanted is None or i in wanted]

    def allowed_indices(self, waiter: Waiter) -> set[int]:
        return {d.index for d in self.allowed(waiter)}

    def schedule(self) -> None:
        """Serve waiters in order; one that does not fit reserves its devices against those behind it."""
        now = time.time()
        ageing = self.policy.ageing_seconds
        order = sorted(
            (w for w in self.waiters.values() if not w.done),
            key=lambda w: (-w.effective(now, ageing), w.since, w.seq),
        )
        blocked: set[int] = set()
        for waiter in order:
            allowed = self.allowed(waiter)
            if not allowed:
                self.fail(waiter, "error", f"none of the devices {waiter.request.get('devices')} is managed "
                          f"by this host's GPU broker (it has {sorted(self.devices)})")  # fmt: skip
                continue
            if waiter.acquiring is not None:
                blocked.add(waiter.acquiring)
                continue
            fits = [d for d in allowed if d.index not in blocked and d.free() >= self.units(waiter, d)]
            if not fits:
                blocked.update(d.index for d in allowed)
                continue
            device = max(fits, key=lambda d: (d.free() - self.units(waiter, d), -d.index))
            units = self.units(waiter, device)
            idle = device.idle()
            if len(idle) >= units:
                self.grant(waiter, device, idle[:units])
            else:
                waiter.acquiring = device.index
                device.reserved[waiter.seq] = units
                for lease in idle:
                    lease.holder = f"wait:{waiter.seq}"
                self.spawn(self.fetch_leases(waiter, device, units, idle))
        self.trim_soon()

    async def fetch_leases(self, waiter: Waiter, device: Device, units: int, taken: list[Lease]) -> None:
        """Get the leases a waiter still lacks from Prefect (the limit caps us against other clients)."""
        failures = 0
        error = ""
        while len(taken) < units and not waiter.done:
            results = await asyncio.gather(
                *(self.server_lease(device) for _ in range(units - len(taken))), return_exceptions=True
            )
            now = time.time()
            locked = False
            for result in results:
                if isinstance(result, str):
                    lease = Lease(result, device.index, now, now, holder=f"wait:{waiter.seq}")
                    device.leases[result] = lease
                    taken.append(lease)
                elif getattr(getattr(result, "response", None), "status_code", None) == 423:
                    locked = True
                else:
                    failures += 1
                    error = repr(result)
            self.state_changed()
            if failures >= 3:
                self.fail(waiter, "error", f"could not take a slot of {device.limit} from Prefect: {error}")
                break
            if len(taken) < units:
                if not locked:
                    with contextlib.suppress(Exception):
                        await self.ensure_limit(device.index)  # deleted in the UI? recreate it
                await asyncio.sleep(FOREIGN_RETRY)
        device.reserved.pop(waiter.seq, None)
        waiter.acquiring = None
        if waiter.done:
            for lease in taken:
                lease.holder, lease.idle_since = None, time.time()
        else:
            self.grant(waiter, device, taken)
        self.schedule()

    def grant(self, waiter: Waiter, device: Device, leases: list[Lease]) -> None:
        now = time.time()
        grant = Grant(
            id=uuid.uuid4().hex,
            device=device.index,
            units=len(leases),
            leases=[lease.id for lease in leases],
            request=waiter.request,
            priority=waiter.priority,
            granted=now,
            waited=now - waiter.since,
            writer=waiter.writer,
        )
        for lease in leases:
            lease.holder = grant.id
        device.grants[grant.id] = grant
        self.grants[waiter.writer] = grant
        self.forget(waiter)
        self.send(waiter.writer, {
            "op": "granted", "grant_id": grant.id, "device": device.index, "limit": device.limit,
            "limit_id": device.limit_id, "units": grant.units, "priority": grant.priority,
            "waited": grant.waited, "lease_ids": grant.leases,
        })  # fmt: skip
        self.record("acquired", device, grant, wait=grant.waited)
        asyncio.get_running_loop().call_soon(self.emit, "acquired", device, grant, {"waited": grant.waited})

    def release(self, grant: Grant, abandoned: bool) -> None:
        """Free a grant's units: the next waiter gets its leases before anything else happens."""
        device = self.devices.get(grant.device)
        if device is None or device.grants.pop(grant.id, None) is None:
            return
        now = time.time()
        for lease_id in grant.leases:
            lease = device.leases.get(lease_id)
            if lease is not None:
                lease.holder, lease.idle_since = None, now
        self.schedule()
        held = now - grant.granted
        self.record("released", device, grant, hold=held, abandoned=abandoned)
        asyncio.get_running_loop().call_soon(
            self.emit, "released", device, grant, {"held": held, "abandoned": abandoned}
        )

    def trim_soon(self) -> None:
        asyncio.get_running_loop().call_later(IDLE_LINGER, self.trim)

    def trim(self) -> None:
        """Give idle leases back to Prefect when no waiter could use their device."""
        now = time.time()
        for device in self.devices.values():
            if any(device.index in self.allowed_indices(w) for w in self.waiters.values() if not w.done):
                continue
            for lease in device.idle():
                if now - lease.idle_since >= IDLE_LINGER * 0.9:
                    del device.leases[lease.id]
                    self.spawn(self.server_release(lease.id))
                    self.state_changed()

    # --- waiters -----------------------------------------------------------------------------------

    def enqueue(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        policy = self.policy
        timeout = request.get("timeout")
        timeout = policy.max_wait_seconds if timeout is None else float(timeout)
        since = float(request.get("since") or time.time())
        waiter = Waiter(
            seq=next(self.seq),
            request=request,
            writer=writer,
            since=since,
            priority=policy.priority_for(request["stage"], request.get("priority")),
            deadline=None if timeout is None else since + timeout,
        )
        self.waiters[writer] = waiter
        if waiter.deadline is not None:
            delay = max(0.0, waiter.deadline - time.time())
            waiter.timer = asyncio.get_running_loop().call_later(delay, self.expire, waiter)
        self.schedule()

    def expire(self, waiter: Waiter) -> None:
        if waiter.done:
            return
        ahead = sum(1 for w in self.waiters.values() if not w.done and w is not waiter)
        holders = [
            f"{g.request['stage']} (pid {g.request.get('pid')}, {time.time() - g.granted:.1f} s)"
            for d in self.allowed(waiter)
            for g in d.grants.values()
        ]
        limits = ", ".join(d.limit for d in self.allowed(waiter))
        stage = waiter.request["stage"]
        message = (
            f"GPU slot timeout: stage {stage!r} waited {time.time() - waiter.since:.1f} s for "
            f"{waiter.request.get('units') or 'its'} unit(s) of {limits}; held by {holders or 'nobody'}, "
            f"{ahead} other waiter(s)"
        )
        device = self.allowed(waiter)[0] if self.allowed(waiter) else None
        if device is not None:
            self.record("timeout", device, None, wait=time.time() - waiter.since)
        self.fail(waiter, "timeout", message)
        self.schedule()

    def fail(self, waiter: Waiter, op: str, message: str) -> None:
        self.forget(waiter)
        self.send(waiter.writer, {"op": op, "message": message})

    def forget(self, waiter: Waiter) -> None:
        waiter.done = True
        if waiter.timer is not None:
            waiter.timer.cancel()
        if self.waiters.get(waiter.writer) is waiter:
            del self.waiters[waiter.writer]

    def adopt(self, message: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        """A holder of the dead broker's grant re-attaches it (its leases are our orphans)."""
        old = message["grant"]
        device = self.devices.get(old["device"])
        if device is None:
            self.send(writer, {"op": "error", "message": f"device {old['device']} is not managed here"})
            return
        now = time.time()
        grant = Grant(
            id=old["grant_id"],
            device=device.index,
            units=old["units"],
            leases=list(old["lease_ids"]),
            request={k: v for k, v in message.items() if k not in ("op", "grant")},
            priority=old["priority"],
            granted=now - float(message.get("held", 0.0)),
            waited=old["waited"],
            writer=writer,
        )
        for lease_id in grant.leases:
            lease = device.leases.setdefault(lease_id, Lease(lease_id, device.index, now, now))
            lease.orphan, lease.holder = False, grant.id
        device.grants[grant.id] = grant
        self.grants[writer] = grant
        self.state_changed()
        self.send(writer, {"op": "adopted", "grant_id": grant.id})

    # --- connections -------------------------------------------------------------------------------

    def send(self, writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        if not writer.is_closing():
            writer.write(json.dumps(message).encode() + b"\n")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.add(writer)
        self.last_activity = time.monotonic()
        try:
            while line := await reader.readline():
                message = json.loads(line)
                op = message.get("op")
                if op in ("acquire", "adopt"):
                    await self.ready.wait()
                    if self.init_error:
                        self.send(writer, {"op": "error", "message": self.init_error})
                    elif op == "acquire":
                        self.enqueue(message, writer)
                    else:
                        self.adopt(message, writer)
                elif op == "release":
                    grant = self.grants.pop(writer, None)
                    if grant is not None:
                        self.release(grant, abandoned=False)
                elif op == "status":
                    await self.ready.wait()
                    self.send(writer, {"op": "status", "report": self.status(message.get("window", 3600))})
                elif op == "shutdown":
                    self.send(writer, {"op": "bye"})
                    self.stopping.set()
                await writer.drain()
        except (ConnectionError, ValueError) as exc:
            log.warning("client connection failed: %r", exc)
        finally:
            waiter = self.waiters.get(writer)
            if waiter is not None:  # the waiter went away (cancelled, killed)
                self.forget(waiter)
                self.schedule()
            grant = self.grants.pop(writer, None)
            if grant is not None:  # the holder died without releasing: free its units now
                log.warning("holder %s (pid %s) went away holding %s", grant.request.get("stage"),
                            grant.request.get("pid"), grant.leases)  # fmt: skip
                self.release(grant, abandoned=True)
            writer.close()
            self.connections.discard(writer)
            self.last_activity = time.monotonic()

    # --- bookkeeping -------------------------------------------------------------------------------

    def state_changed(self) -> None:
        if not self.state_dirty:
            self.state_dirty = True
            asyncio.get_running_loop().call_soon(self.write_state)

    def write_state(self) -> None:
        """The leases we hold, so a successor broker can take them over if we die."""
        self.state_dirty = False
        leases = [
            {"id": lease.id, "device": lease.device, "limit": device.limit}
            for device in self.devices.values()
            for lease in device.leases.values()
        ]
        path = self.run_dir / "state.json"
        tmp = path.with_suffix(".json.part")
        tmp.write_text(json.dumps({"pid": os.getpid(), "host": self.host, "leases": leases}))
        os.replace(tmp, path)

    def record(self, kind: str, device: Device, grant: Grant | None, **values: Any) -> None:
        now = time.time()
        stage = grant.request.get("stage") if grant else None
        self.stats.append({"t": now, "kind": kind, "limit": device.limit, "stage": stage, **values})
        while self.stats and now - self.stats[0]["t"] > STATS_KEEP:
            self.stats.popleft()

    def emit(self, phase: str, device: Device, grant: Grant, payload: dict[str, Any]) -> None:
        """The same events Prefect's own concurrency() emits, naming the holder's task and flow run."""
        try:
            from prefect.events import emit_event

            related = [
                {"prefect.resource.id": f"prefect.{kind}.{grant.request[key]}", "prefect.resource.role": kind}
                for kind, key in (("task-run", "task_run"), ("flow-run", "flow_run"))
                if grant.request.get(key)
            ]
            emit_event(
                f"prefect.concurrency-limit.{phase}",
                resource={
                    "prefect.resource.id": f"prefect.concurrency-limit.{device.limit_id}",
                    "prefect.resource.name": device.limit,
                    "slots-acquired": str(grant.units),
                    "limit": str(device.capacity),
                },
                related=related,
                payload={"stage": grant.request.get("stage"), "pid": grant.request.get("pid"), **payload},
            )
        except Exception as exc:  # events are a view; the slot itself is already handed over
            log.warning("emitting the %s event failed: %r", phase, exc)

    def status(self, window: float) -> dict[str, Any]:
        now = time.time()
        ageing = self.policy.ageing_seconds
        recent = [s for s in self.stats if now - s["t"] <= window]
        devices = []
        for device in sorted(self.devices.values(), key=lambda d: d.index):
            mine = [s for s in recent if s["limit"] == device.limit]
            waits = [s["wait"] for s in mine if s["kind"] == "acquired"]
            holds = [s["hold"] for s in mine if s["kind"] == "released"]
            waiters = [
                w for w in self.waiters.values() if not w.done and device.index in self.allowed_indices(w)
            ]
            devices.append({
                "index": device.index,
                "limit": device.limit,
                "capacity": device.capacity,
                "units_in_use": device.capacity - device.free() - sum(device.reserved.values()),
                "leases": [
                    {"id": lease.id, "age": now - lease.acquired, "since_renewal": now - lease.renewed,
                     "holder": lease.holder, "orphan": lease.orphan}
                    for lease in device.leases.values()
                ],
                "holders": [
                    {"stage": g.request.get("stage"), "pid": g.request.get("pid"),
                     "task_run": g.request.get("task_run"), "units": g.units, "priority": g.priority,
                     "held": now - g.granted, "leases": g.leases}
                    for g in device.grants.values()
                ],
                "waiters": [
                    {"stage": w.request["stage"], "pid": w.request.get("pid"), "priority": w.priority,
                     "effective_priority": w.effective(now, ageing), "waited": now - w.since,
                     "units": self.units(w, device)}
                    for w in sorted(waiters, key=lambda w: (-w.effective(now, ageing), w.since, w.seq))
                ],
                "window": {
                    "seconds": window,
                    "acquisitions": len(waits),
                    "timeouts": sum(1 for s in mine if s["kind"] == "timeout"),
                    "abandoned": sum(1 for s in mine if s.get("abandoned")),
                    "mean_wait": sum(waits) / len(waits) if waits else None,
                    "mean_hold": sum(holds) / len(holds) if holds else None,
                },
            })  # fmt: skip
        return {
            "host": self.host,
            "pid": os.getpid(),
            "uptime": now - self.started,
            "gate": gate_mode(),
            "lease_seconds": self.policy.lease_seconds,
            "ageing_seconds": self.policy.ageing_seconds,
            "devices": devices,
        }

    # --- life --------------------------------------------------------------------------------------

    async def idle_watch(self) -> None:
        while not self.stopping.is_set():
            await asyncio.sleep(1.0)
            busy = self.connections or self.waiters or any(d.grants for d in self.devices.values())
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
        background = [asyncio.ensure_future(c) for c in (self.renew_forever(), self.refresh_forever())]
        background.append(asyncio.ensure_future(self.idle_watch()))
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
            leases = [lease.id for d in self.devices.values() for lease in d.leases.values()]
            for device in self.devices.values():
                device.leases.clear()
            if self.client is not None:
                await asyncio.gather(*(self.server_release(lease) for lease in leases))
                await asyncio.gather(*self.tasks, return_exceptions=True)
                await self.client.__aexit__(None, None, None)
            self.write_state()
            with contextlib.suppress(FileNotFoundError):
                (self.run_dir / "broker.pid").unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The GPU broker of this host (started by gpu_slot()).")
    parser.add_argument("--run-dir", type=Path, required=True)
    args = parser.parse_args(argv)
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
