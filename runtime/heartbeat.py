"""A flow run ends when its work does, not at the next whole second.

Prefect 3.8's sync flow engine joins its heartbeat thread when a run ends, and that thread checks its stop
event once a second (`time.sleep(1)` in between), so every flow run's end waited up to a second for it: the
60 s 720p subtitles case's warm runs returned 0.6-1.0 s after the flow body, their walls all on x.40 s.
Prefect's async engine already leaves the thread unjoined; ours does the same. The thread still stops by
itself within a second and sends no heartbeat after the stop (it checks the event before each one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def end_runs_without_joining_heartbeats() -> None:
    """Flow runs of this process leave their heartbeat thread unjoined at the end. Idempotent."""
    from prefect import flow_engine

    send = flow_engine._send_heartbeats
    if getattr(send, "unjoined", False):
        return

    @contextlib.contextmanager
    def unjoined(engine: Any, join_on_exit: bool = True) -> Iterator[None]:
        with send(engine, join_on_exit=False):
            yield

    unjoined.unjoined = True  # type: ignore[attr-defined]
    flow_engine._send_heartbeats = unjoined
