"""What the broker saw: acquisition statistics, the health report, and Prefect's concurrency events."""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from typing import Any

from gpu.devices import gate_mode
from gpu.scheduler import Device, Grant, Scheduler

STATS_KEEP = 24 * 3600.0
log = logging.getLogger("yivideo.gpu_broker")


class Stats:
    """Acquisitions, releases and timeouts of the last STATS_KEEP seconds."""

    def __init__(self) -> None:
        self.items: deque[dict[str, Any]] = deque()

    def record(self, kind: str, limit: str, stage: str | None, **values: Any) -> None:
        now = time.time()
        self.items.append({"t": now, "kind": kind, "limit": limit, "stage": stage, **values})
        while self.items and now - self.items[0]["t"] > STATS_KEEP:
            self.items.popleft()

    def window(self, limit: str, seconds: float, now: float) -> dict[str, Any]:
        mine = [s for s in self.items if now - s["t"] <= seconds and s["limit"] == limit]
        waits = [s["wait"] for s in mine if s["kind"] == "acquired"]
        holds = [s["hold"] for s in mine if s["kind"] == "released"]
        return {
            "seconds": seconds,
            "acquisitions": len(waits),
            "timeouts": sum(1 for s in mine if s["kind"] == "timeout"),
            "abandoned": sum(1 for s in mine if s.get("abandoned")),
            "mean_wait": sum(waits) / len(waits) if waits else None,
            "mean_hold": sum(holds) / len(holds) if holds else None,
        }


def status_report(
    scheduler: Scheduler, stats: Stats, host: str, started: float, window: float
) -> dict[str, Any]:
    """The broker's live state per device, as `python -m gpu.health` prints it."""
    now = time.time()
    ageing = scheduler.policy.ageing_seconds
    devices = []
    for device in sorted(scheduler.devices.values(), key=lambda d: d.index):
        waiters = [w for w in scheduler.order(now) if device.index in {d.index for d in scheduler.allowed(w)}]
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
                {"stage": g.request.stage, "pid": g.request.pid, "task_run": g.request.task_run,
                 "units": g.units, "priority": g.priority, "held": now - g.granted, "leases": g.leases}
                for g in device.grants.values()
            ],
            "waiters": [
                {"stage": w.request.stage, "pid": w.request.pid, "priority": w.priority,
                 "effective_priority": w.effective(now, ageing), "waited": now - w.since,
                 "units": scheduler.units(w, device)}
                for w in waiters
            ],
            "window": stats.window(device.limit, window, now),
        })  # fmt: skip
    return {
        "host": host,
        "pid": os.getpid(),
        "uptime": now - started,
        "gate": gate_mode(),
        "lease_seconds": scheduler.policy.lease_seconds,
        "ageing_seconds": ageing,
        "devices": devices,
    }


def emit(phase: str, device: Device, grant: Grant, payload: dict[str, Any]) -> None:
    """The same events Prefect's own concurrency() emits, naming the holder's task and flow run."""
    try:
        from prefect.events import emit_event

        related = [
            {"prefect.resource.id": f"prefect.{kind}.{run}", "prefect.resource.role": kind}
            for kind, run in (("task-run", grant.request.task_run), ("flow-run", grant.request.flow_run))
            if run
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
            payload={"stage": grant.request.stage, "pid": grant.request.pid, **payload},
        )
    except Exception as exc:  # events are a view; the slot itself is already handed over
        log.warning("emitting the %s event failed: %r", phase, exc)
