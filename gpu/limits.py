"""Create a Prefect global concurrency limit when it is missing, written once for the GPU broker, the
transcode NVENC session limit and bootstrap. An existing limit keeps the size set in the UI (the limit is
the source of truth); a race with another host or task creating it at the same moment is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


async def ensure_limit(client: Any, name: str, size: int | Callable[[], int]) -> tuple[Any, bool]:
    """(the limit, whether this call created it); `size` (or its callable, only called when creating)
    is the new limit's slots."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    try:
        return await client.read_global_concurrency_limit_by_name(name), False
    except ObjectNotFound:
        pass
    slots = size() if callable(size) else size
    created = True
    try:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=slots, slot_decay_per_second=0.0)
        )
    except ObjectAlreadyExists:  # another host's broker, bootstrap or task made it first
        created = False
    return await client.read_global_concurrency_limit_by_name(name), created


def ensure_limit_sync(name: str, size: int | Callable[[], int]) -> int:
    """`ensure_limit` from synchronous code (a stage in a worker thread): the limit's size."""
    from prefect.client.orchestration import get_client
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def run() -> int:
        async with get_client() as client:
            limit, _ = await ensure_limit(client, name, size)
            return int(limit.limit)

    return run_coro_as_sync(run())
