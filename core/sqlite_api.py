"""A fix the local API on SQLite needs, applied in its process before the app is built (core/local_server.py).

Every task run with a tag asks the API for tag concurrency slots before it starts (Prefect's task engine:
`/v2/concurrency_limits/increment-with-lease`); our GPU-capable stages carry one. With no limit on those tags
Prefect 3.8 still runs an UPDATE over no rows, in a transaction that began with a read. On SQLite (WAL) a
commit by another connection in between (the server persisting the run's own events) fails that UPDATE at once
with SQLITE_BUSY_SNAPSHOT: the API answers 503 and the client retries 2 s later. Measured: 1.8-2.4 s before a
stage in most runs of a process. An UPDATE of no rows changes nothing, so it is skipped.
"""

from __future__ import annotations

from typing import Any


def skip_empty_slot_updates() -> None:
    """Slot increments for no limits answer "acquired" without writing (what Prefect's UPDATE of no rows
    returns: `rowcount == len(ids)`). Idempotent."""
    from prefect.server.models import concurrency_limits_v2 as limits

    prefect_increment = limits.bulk_increment_active_slots
    if getattr(prefect_increment, "skips_empty", False):
        return

    async def increment(*args: Any, concurrency_limit_ids: list, **kwargs: Any) -> bool:
        if not concurrency_limit_ids:
            return True
        return await prefect_increment(*args, concurrency_limit_ids=concurrency_limit_ids, **kwargs)

    increment.skips_empty = True  # type: ignore[attr-defined]
    limits.bulk_increment_active_slots = increment
