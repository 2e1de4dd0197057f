"""The Prefect global concurrency limits of the GPU machinery: created when missing (written once for the
GPU broker, bootstrap and the NVENC session limit) and the per-host NVENC session limit itself.

An existing limit keeps the size set in the UI (the limit is the source of truth); a race with another
host or task creating it at the same moment is harmless.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from core.errors import ConfigError
from gpu.devices import host_name

NVENC_SESSIONS_ENV = "YIVIDEO_NVENC_SESSIONS"  # cap of the per-host "nvenc:<host>" limit when first created
DEFAULT_NVENC_SESSIONS = 3  # GeForce drivers allow 3-8 concurrent sessions; data-centre cards more


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


def nvenc_limit_name(host: str | None = None) -> str:
    """`nvenc:<host>`, with the host part of the GPU limits (`gpu:<host>:<index>`, YIVIDEO_GPU_HOST)."""
    return f"nvenc:{host or host_name()}"


def nvenc_session_cap() -> int:
    """The NVENC session cap a new per-host limit gets (YIVIDEO_NVENC_SESSIONS, default 3)."""
    raw = os.environ.get(NVENC_SESSIONS_ENV, "").strip()
    try:
        cap = int(raw) if raw else DEFAULT_NVENC_SESSIONS
    except ValueError as exc:
        raise ConfigError(f"{NVENC_SESSIONS_ENV}={raw!r} is not a whole number of NVENC sessions") from exc
    if cap < 1:
        raise ConfigError(f"{NVENC_SESSIONS_ENV}={cap} must be at least 1")
    return cap


def ensure_nvenc_limit(name: str) -> int:
    """Create the per-host NVENC limit with the configured cap if it is missing; keep one edited in the UI."""
    return ensure_limit_sync(name, nvenc_session_cap)


@contextlib.contextmanager
def nvenc_session(host: str | None = None, *, timeout: float | None = None) -> Iterator[str]:
    """Hold one unit of the host's "nvenc:<host>" limit: NVENC sessions per host are capped by the driver."""
    from prefect.concurrency.sync import concurrency

    name = nvenc_limit_name(host)
    ensure_nvenc_limit(name)
    with concurrency(name, occupy=1, timeout_seconds=timeout, strict=True):
        yield name
