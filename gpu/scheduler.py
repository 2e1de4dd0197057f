"""The GPU broker's decisions as a pure object: state and the time in, actions out (no I/O, no clock).

Rules, each with a unit test in tests/test_gpu_scheduler.py:
- Order: waiters are served by effective priority (priority + one level per `ageing_seconds` waited),
  then by arrival (`since`, kept across broker restarts), then by enqueue order.
- Placement: a waiter goes to the allowed device that leaves the most units free after it (lowest index
  on a tie); it takes `units_for(stage, occupy, capacity)` units.
- Reservation: a waiter that fits nowhere blocks its devices for everyone behind it, so a heavy stage is
  not starved by a stream of light ones; a waiter whose leases are being fetched blocks its device too.
- Handoff: a released unit's lease goes straight to the next waiter that fits (no server call); only
  missing units are fetched from Prefect (Fetch), and the waiter is granted when they arrive. A lease
  freed while a waiter's fetch runs counts toward it (idle, it could fill the slot the fetch waits for).
- Expiry: a waiter past its deadline (timeout, else the policy's max wait) is refused with a message
  naming the limit, the holders and the waiters ahead.
- Idle leases go back to Prefect after IDLE_LINGER when no waiter could use their device; a dead broker's
  leases (orphans) are kept ORPHAN_GRACE seconds for their live holders to re-adopt, then returned.
The broker (gpu/broker.py) executes the actions: it talks to clients and to Prefect.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

from gpu.policy import GpuPolicy
from gpu.protocol import Acquire, Granted, Refused

ORPHAN_GRACE = 5.0  # seconds a new broker keeps a dead broker's leases for their holders to re-adopt
IDLE_LINGER = 0.1  # an idle lease is kept this long for a waiter that comes right back


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
    request: Acquire
    since: float
    priority: int
    deadline: float | None
    acquiring: int | None = None  # device whose leases are being fetched for this waiter
    taken: list[Lease] = field(default_factory=list)  # leases held for it while fetching
    wanted: int = 0  # units it is being fetched
    done: bool = False

    def effective(self, now: float, ageing: float) -> int:
        return self.priority + int(max(0.0, now - self.since) // ageing)


@dataclass
class Grant:
    id: str
    device: int
    units: int
    leases: list[str]
    request: Acquire
    priority: int
    granted: float
    waited: float


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


# --- actions -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Give:
    """Tell waiter `seq` it holds `grant` (the message to send is `granted`)."""

    seq: int
    grant: Grant
    granted: Granted


@dataclass(frozen=True)
class Fetch:
    """Take leases of `device` from Prefect for waiter `seq` until `Scheduler.missing(seq)` is 0."""

    seq: int
    device: int


@dataclass(frozen=True)
class Refuse:
    """Answer waiter `seq` with `refused` (a timeout or an error); `limit` names its first allowed limit."""

    seq: int
    refused: Refused
    limit: str | None = None


@dataclass(frozen=True)
class ReturnLease:
    """Give a lease back to Prefect."""

    lease_id: str


Action = Give | Fetch | Refuse | ReturnLease


class Scheduler:
    """Who gets which units of which device, when: every method takes `now` (wall seconds)."""

    def __init__(self, policy: GpuPolicy | None = None, *, linger: float = IDLE_LINGER) -> None:
        self.policy = policy or GpuPolicy()
        self.linger = linger
        self.devices: dict[int, Device] = {}
        self.waiters: dict[int, Waiter] = {}  # waiting, fetching included
        self.grants: dict[str, Grant] = {}
        self.orphan_deadline: float | None = None
        self._seq = itertools.count()

    # --- state -------------------------------------------------------------------------------------

    def set_device(self, index: int, limit: str, limit_id: str, capacity: int) -> Device:
        """Add a device, or update its limit's id and size (the UI may change it)."""
        device = self.devices.get(index)
        if device is None:
            device = self.devices[index] = Device(index, limit, limit_id, capacity)
        device.limit, device.limit_id, device.capacity = limit, limit_id, capacity
        return device

    def units(self, waiter: Waiter, device: Device) -> int:
        return self.policy.units_for(waiter.request.stage, waiter.request.units, device.capacity)

    def allowed(self, waiter: Waiter) -> list[Device]:
        wanted = waiter.request.devices
        return [d for i, d in sorted(self.devices.items()) if wanted is None or i in wanted]

    def order(self, now: float) -> list[Waiter]:
        ageing = self.policy.ageing_seconds
        live = (w for w in self.waiters.values() if not w.done)
        return sorted(live, key=lambda w: (-w.effective(now, ageing), w.since, w.seq))

    def leases(self) -> list[Lease]:
        return [lease for device in self.devices.values() for lease in device.leases.values()]

    def wanted_devices(self) -> set[int]:
        return {d.index for w in self.waiters.values() if not w.done for d in self.allowed(w)}

    # --- events ------------------------------------------------------------------------------------

    def enqueue(self, request: Acquire, now: float) -> tuple[int, list[Action]]:
        """A new waiter; its deadline counts from `since` (a waiter re-sent after a broker restart)."""
        timeout = self.policy.max_wait_seconds if request.timeout is None else float(request.timeout)
        since = float(request.since or now)
        waiter = Waiter(
            seq=next(self._seq),
            request=request,
            since=since,
            priority=self.policy.priority_for(request.stage, request.priority),
            deadline=None if timeout is None else since + timeout,
        )
        self.waiters[waiter.seq] = waiter
        return waiter.seq, self.schedule(now)

    def cancel(self, seq: int, now: float) -> list[Action]:
        """The waiter went away (cancelled, killed): its place and any fetch for it end."""
        waiter = self.waiters.get(seq)
        if waiter is None or waiter.done:
            return []
        self._forget(waiter)
        return self.schedule(now)

    def schedule(self, now: float) -> list[Action]:
        """Serve waiters in order; one that does not fit reserves its devices against those behind it."""
        actions: list[Action] = []
        blocked: set[int] = set()
        for waiter in self.order(now):
            allowed = self.allowed(waiter)
            if not allowed:
                message = (f"none of the devices {waiter.request.devices} is managed by this host's GPU "
                           f"broker (it has {sorted(self.devices)})")  # fmt: skip
                actions.append(self._refuse(waiter, "error", message))
                continue
            if waiter.acquiring is not None:
                self._top_up(waiter, self.devices[waiter.acquiring])
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
                actions.append(self._give(waiter, device, idle[:units], now))
                continue
            waiter.acquiring, waiter.wanted, waiter.taken = device.index, units, list(idle)
            device.reserved[waiter.seq] = units
            for lease in idle:
                lease.holder = f"wait:{waiter.seq}"
            actions.append(Fetch(waiter.seq, device.index))
        return actions

    def missing(self, seq: int) -> int:
        """Units still to fetch for waiter `seq` (0 once it is served, gone or refused)."""
        waiter = self._fetching(seq)
        return 0 if waiter is None or waiter.done else waiter.wanted - len(waiter.taken)

    def fetched(self, seq: int, lease_ids: list[str], now: float) -> None:
        """Leases taken from Prefect for waiter `seq` (held for it even when it is gone: fetch_finished)."""
        waiter = self._fetching(seq)
        if waiter is None or waiter.acquiring is None:
            return
        device = self.devices[waiter.acquiring]
        for lease_id in lease_ids:
            lease = Lease(lease_id, device.index, now, now, holder=f"wait:{seq}")
            device.leases[lease_id] = lease
            if waiter.done or len(waiter.taken) < waiter.wanted:
                waiter.taken.append(lease)
            else:  # topped up by a release meanwhile: a spare
                lease.holder, lease.idle_since = None, now

    def fetch_failed(self, seq: int, message: str) -> list[Action]:
        waiter = self._fetching(seq)
        return [self._refuse(waiter, "error", message)] if waiter is not None and not waiter.done else []

    def fetch_finished(self, seq: int, now: float) -> list[Action]:
        """The fetch for `seq` ended: grant what it took, or idle the leases if the waiter is gone."""
        waiter = self._fetching(seq)
        if waiter is None or waiter.acquiring is None:
            return []
        device = self.devices[waiter.acquiring]
        device.reserved.pop(seq, None)
        waiter.acquiring = None
        taken, waiter.taken = waiter.taken, []
        actions: list[Action] = []
        if waiter.done or len(taken) < waiter.wanted:
            for lease in taken:
                lease.holder, lease.idle_since = None, now
            waiter.done = True
            self.waiters.pop(seq, None)
        else:
            actions.append(self._give(waiter, device, taken, now))
        return actions + self.schedule(now)

    def release(self, grant_id: str, now: float) -> list[Action]:
        """Free a grant's units: the next waiter gets its leases before anything else happens."""
        grant = self.grants.pop(grant_id, None)
        device = self.devices.get(grant.device) if grant else None
        if grant is None or device is None or device.grants.pop(grant.id, None) is None:
            return []
        for lease_id in grant.leases:
            lease = device.leases.get(lease_id)
            if lease is not None:
                lease.holder, lease.idle_since = None, now
        return self.schedule(now)

    def adopt(self, request: Acquire, old: Granted, held: float, now: float) -> Grant | Refuse:
        """A holder of the dead broker's grant re-attaches it (its leases are our orphans)."""
        device = self.devices.get(old.device)
        if device is None:
            return Refuse(-1, Refused("error", f"device {old.device} is not managed here"))
        grant = Grant(old.grant_id, device.index, old.units, list(old.lease_ids), request, old.priority,
                      granted=now - held, waited=old.waited)  # fmt: skip
        for lease_id in grant.leases:
            lease = device.leases.setdefault(lease_id, Lease(lease_id, device.index, now, now))
            lease.orphan, lease.holder = False, grant.id
        device.grants[grant.id] = self.grants[grant.id] = grant
        return grant

    def take_over(
        self, leases: list[tuple[str, int]], now: float, grace: float = ORPHAN_GRACE
    ) -> list[Action]:
        """A dead broker's leases (id, device): kept `grace` seconds for their holders, else returned."""
        actions: list[Action] = []
        for lease_id, index in leases:
            device = self.devices.get(index)
            if device is None:
                actions.append(ReturnLease(lease_id))
            else:
                device.leases[lease_id] = Lease(lease_id, index, now, now, orphan=True)
        if leases:
            self.orphan_deadline = now + grace
        return actions

    def lease_lost(self, lease_id: str) -> Grant | None:
        """Prefect no longer knows a lease: forget it; the grant it served (if any) needs a replacement."""
        for device in self.devices.values():
            lease = device.leases.pop(lease_id, None)
            if lease is not None:
                grant = device.grants.get(lease.holder or "")
                if grant is not None and lease_id in grant.leases:
                    grant.leases.remove(lease_id)
                    return grant
        return None

    def lease_replaced(self, grant: Grant, lease_id: str, now: float) -> bool:
        """A replacement lease for a live grant; False when the grant ended meanwhile (return the lease)."""
        if self.grants.get(grant.id) is not grant:
            return False
        self.devices[grant.device].leases[lease_id] = Lease(lease_id, grant.device, now, now, holder=grant.id)
        grant.leases.append(lease_id)
        return True

    def tick(self, now: float) -> list[Action]:
        """What time alone decides: expired waiters, the orphans' grace, idle leases nobody can use."""
        actions: list[Action] = []
        for waiter in list(self.waiters.values()):
            if not waiter.done and waiter.deadline is not None and now >= waiter.deadline:
                actions.append(self._refuse(waiter, "timeout", self._timeout_message(waiter, now)))
        if self.orphan_deadline is not None and now >= self.orphan_deadline:
            self.orphan_deadline = None
            for device in self.devices.values():
                for lease in [lease for lease in device.leases.values() if lease.orphan]:
                    del device.leases[lease.id]
                    actions.append(ReturnLease(lease.id))
        if actions:
            actions += self.schedule(now)
        wanted = self.wanted_devices()
        for device in self.devices.values():
            if device.index not in wanted:
                for lease in device.idle():
                    if now >= lease.idle_since + self.linger * 0.9:
                        del device.leases[lease.id]
                        actions.append(ReturnLease(lease.id))
        return actions

    def next_wakeup(self) -> float | None:
        """When `tick` next has something to do (None: only a new event can change anything)."""
        times = [w.deadline for w in self.waiters.values() if not w.done and w.deadline is not None]
        if self.orphan_deadline is not None:
            times.append(self.orphan_deadline)
        wanted = self.wanted_devices()
        times += [
            lease.idle_since + self.linger
            for device in self.devices.values()
            if device.index not in wanted
            for lease in device.idle()
        ]
        return min(times, default=None)

    def drop_all(self) -> list[str]:
        """Forget every lease (the broker is shutting down and returns them)."""
        ids = [lease.id for lease in self.leases()]
        for device in self.devices.values():
            device.leases.clear()
        return ids

    # --- helpers -----------------------------------------------------------------------------------

    def _fetching(self, seq: int) -> Waiter | None:
        return self.waiters.get(seq)

    def _top_up(self, waiter: Waiter, device: Device) -> None:
        """Idle leases of the device a waiter is being fetched for become its own, up to what it wants."""
        for lease in device.idle()[: max(0, waiter.wanted - len(waiter.taken))]:
            lease.holder = f"wait:{waiter.seq}"
            waiter.taken.append(lease)

    def _give(self, waiter: Waiter, device: Device, leases: list[Lease], now: float) -> Give:
        grant = Grant(uuid.uuid4().hex, device.index, len(leases), [lease.id for lease in leases],
                      waiter.request, waiter.priority, granted=now, waited=now - waiter.since)  # fmt: skip
        for lease in leases:
            lease.holder = grant.id
        device.grants[grant.id] = self.grants[grant.id] = grant
        self._forget(waiter)
        granted = Granted(grant.id, device.index, device.limit, device.limit_id, grant.units, grant.priority,
                          grant.waited, list(grant.leases))  # fmt: skip
        return Give(waiter.seq, grant, granted)

    def _refuse(self, waiter: Waiter, op: str, message: str) -> Refuse:
        allowed = self.allowed(waiter)
        self._forget(waiter)
        return Refuse(waiter.seq, Refused(op, message), allowed[0].limit if allowed else None)

    def _forget(self, waiter: Waiter) -> None:
        waiter.done = True
        if waiter.acquiring is None:
            self.waiters.pop(waiter.seq, None)

    def _timeout_message(self, waiter: Waiter, now: float) -> str:
        ahead = sum(1 for w in self.waiters.values() if not w.done and w is not waiter)
        allowed = self.allowed(waiter)
        holders = [f"{g.request.stage} (pid {g.request.pid}, {now - g.granted:.1f} s)"
                   for d in allowed for g in d.grants.values()]  # fmt: skip
        limits = ", ".join(d.limit for d in allowed)
        outside = (
            f"; Prefect's limit {self.devices[waiter.acquiring].limit} stayed full with slots this broker "
            "does not hold (another client's, or a lease of a dead process until it lapses)"
            if waiter.acquiring is not None
            else ""
        )
        return (
            f"GPU slot timeout: stage {waiter.request.stage!r} waited {now - waiter.since:.1f} s for "
            f"{waiter.request.units or 'its'} unit(s) of {limits}; held by {holders or 'nobody'}, "
            f"{ahead} other waiter(s){outside}"
        )
