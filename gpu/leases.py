"""The broker's Prefect lease calls and its state file (the leases it holds, for a successor broker).

Each unit in use is one 1-slot lease of the device's global concurrency limit, so the limit counts
exactly the units held and caps them even against other clients. These calls stay off the handoff path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("yivideo.gpu_broker")
LOCKED = 423  # the server's answer when the limit is full
OUTAGE_SECONDS = 180.0  # Prefect unreachable (its server or database restarting) is waited out this long
OUTAGE_RETRY = 2.0  # and asked again this often meanwhile


class PrefectLeases:
    """Take, renew and give back 1-slot leases of GPU limits through one Prefect client."""

    def __init__(self, client: Any, lease_seconds: float) -> None:
        self.client = client
        self.lease_seconds = lease_seconds

    async def take(self, limit: str) -> str:
        response = await self.client.increment_concurrency_slots_with_lease(
            names=[limit], slots=1, mode="concurrency", lease_duration=self.lease_seconds
        )
        lease_id = str(response.json()["lease_id"])
        log.info("took lease %s of %s", lease_id, limit)  # the log a stuck limit is diagnosed from
        return lease_id

    async def give_back(self, lease_id: str) -> None:
        try:
            await self.client.release_concurrency_slots_with_lease(uuid.UUID(lease_id))
            log.info("returned lease %s", lease_id)
        except Exception as exc:  # the lease lapses on the server anyway
            log.warning("releasing lease %s failed: %r", lease_id, exc)

    async def renew(self, lease_ids: list[str]) -> list[Any]:
        """None or the exception, per lease."""
        return await asyncio.gather(
            *(self.client.renew_concurrency_lease(uuid.UUID(i), self.lease_seconds) for i in lease_ids),
            return_exceptions=True,
        )


def is_locked(result: object) -> bool:
    """Whether a failed take means "the limit is full" (try again) rather than a fault."""
    return getattr(getattr(result, "response", None), "status_code", None) == LOCKED


def is_transient(result: object) -> bool:
    """Whether a failed call means "Prefect is unreachable for now" (a server or database restart: no
    connection, or a 5xx answer) rather than a refusal that asking again would not change."""
    import httpx

    if isinstance(result, httpx.TransportError | OSError):
        return True
    status = getattr(getattr(result, "response", None), "status_code", None)
    return isinstance(status, int) and status >= 500


def write_state(run_dir: Path, host: str, leases: list[dict[str, Any]], taking: dict[str, int]) -> None:
    """The leases we hold ({id, device, limit}) and the takes on their way to Prefect (limit -> count: a
    broker killed before a take's answer leaves a lease nobody knows), written atomically."""
    path = run_dir / "state.json"
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps({"pid": os.getpid(), "host": host, "leases": leases, "taking": taking}))
    os.replace(tmp, path)


@dataclass(frozen=True)
class BrokerState:
    """What a broker's state file said, read once: its leases ({id, device, limit}) and the takes it had on
    their way to Prefect (limit -> count). Both empty when no readable file is there."""

    leases: list[dict[str, Any]]
    taking: dict[str, int]


def read_state(run_dir: Path) -> BrokerState:
    try:
        state = dict(json.loads((run_dir / "state.json").read_text()))
    except (OSError, ValueError):
        state = {}
    taking = {str(limit): int(count) for limit, count in state.get("taking", {}).items()}
    return BrokerState(list(state.get("leases", [])), taking)
