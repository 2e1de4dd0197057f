"""gpu_slot(): the only code that touches the GPU limits `gpu:<host>:<index>` (Prefect global concurrency).

    with gpu_slot("ocr", priority=5) as grant:          # or: async with gpu_slot(...) as grant:
        model = load(device=grant.device)                # "cuda:N", or "cpu" on a gated CPU host

Gating: on a host without CUDA a stage runs on the CPU and takes no slot, unless YIVIDEO_GPU_GATE=always
(then the host counts as one device: tests and benchmarks use this); YIVIDEO_GPU_GATE=never never gates.
A gated slot is strict: if no limit can be held the stage fails, it never runs ungated.

Design: a per-host broker (gpu/broker.py, deciding through the pure gpu/scheduler.py) owns the Prefect
leases of this host's devices and hands them to local waiters over a Unix socket. Why not
release-then-acquire, or waking waiters on the `prefect.concurrency-limit.released` event? Because each HTTP
call costs 15-50 ms on PostgreSQL here (increment-with-lease 16-50 ms, decrement 18-54 ms), so even a
perfectly woken waiter leaves the GPU idle for both calls plus the event delivery, and every waiter races
for the slot (no priority order). A device limit belongs to one host, so all its contenders are local: the
broker keeps a held lease across the handoff and passes it to the next waiter (priority, then arrival;
ageing lifts a waiter one level per `ageing_seconds`), which costs one socket message (well under a
millisecond). The Prefect limit still caps every holder (the broker holds one 1-slot lease per unit in use
and releases idle ones at once), the UI shows the slots in use, and
`prefect.concurrency-limit.acquired/released` events name the task runs.
Crash recovery: a holder killed with kill -9 closes its socket and the broker frees its units at once;
a killed broker is replaced by the next client, which takes over the leases listed in its state file
(holders that are still alive re-adopt theirs; the rest are released after a few seconds); if the whole
host dies, the server's repossessor frees the leases when they lapse (the server's minimum lease is 60 s).
Measured by bench/gpu_scheduling.py (8 processes, 1 s holds, 2 shared cores at load 15-19): busy 0.981,
handoff gap median 5.3 ms (p95 85 ms: process wake-ups on the overloaded host) against 0.669 / 603 ms for
Prefect's concurrency(); 8 CPU+GPU workflows finished in 1.09x their lower bound against 2.30x.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from gpu.client import GpuSlotError, GpuSlotTimeout, broker_dir, connect_broker
from gpu.devices import GATE_ENV, gate_mode, visible_gpus
from gpu.protocol import Acquire, Adopt, Granted, Line, Refused, Release

__all__ = ["GpuGrant", "GpuSlot", "GpuSlotError", "GpuSlotTimeout", "gpu_slot"]


@dataclass(frozen=True)
class GpuGrant:
    """What a stage may use inside its slot: `device` is "cuda:N" or "cpu"; `limit` is None when ungated."""

    stage: str
    device: str
    limit: str | None
    occupy: int
    priority: int = 0
    device_index: int | None = None  # physical GPU index (nvidia-smi numbering), None on the CPU
    waited: float = 0.0  # seconds spent waiting for the slot

    @property
    def uses_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def env(self) -> dict[str, str]:
        """Environment for a child process (an engine run as a subprocess) that must use only this GPU."""
        return {"CUDA_VISIBLE_DEVICES": str(self.device_index)} if self.uses_cuda else {}


# --- the slot ------------------------------------------------------------------------------------------


@dataclass
class _Hold:
    """A held grant and the connection that keeps it (the broker frees it when the connection drops)."""

    line: Line
    grant: Granted
    request: Acquire
    run_dir: Path
    releasing: bool = False
    acquired: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def watch(self) -> None:
        """Re-adopt the grant with a new broker if this one dies while we hold the slot."""
        while True:
            try:
                message = self.line.receive(None)
            except OSError:
                message = None
            if message is not None:
                continue
            with self.lock:
                if self.releasing:
                    return
            try:
                line = Line(connect_broker(self.run_dir))
                line.send(Adopt(self.request, self.grant, time.time() - self.acquired))
            except (OSError, GpuSlotError):
                time.sleep(0.5)
                continue
            with self.lock:
                if self.releasing:
                    line.close()
                    return
                self.line = line

    def release(self) -> None:
        with self.lock:
            self.releasing = True
            with contextlib.suppress(OSError):
                self.line.send(Release())
            self.line.close()


class GpuSlot:
    """`gpu_slot(...)`: hold GPU units while the block runs (`with` or `async with`); hold nothing on an
    ungated CPU host.

    `priority` (higher first) and `occupy` (units) default to the GPU policy's values for the stage;
    `timeout` (seconds) to its max wait, after which GpuSlotTimeout is raised. `devices` pins the stage to
    some of this process's CUDA devices (ordinals). The grant names the device to run on.
    """

    def __init__(
        self,
        stage: str,
        *,
        priority: int | None = None,
        occupy: int | None = None,
        timeout: float | None = None,
        devices: Sequence[int] | None = None,
        prefer_cuda: bool = True,
    ) -> None:
        if occupy is not None and occupy < 1:
            raise ValueError(f"gpu_slot({stage!r}): occupy must be at least 1, got {occupy}")
        self.stage = stage
        self.priority = priority
        self.occupy = occupy
        self.timeout = timeout
        self.devices = list(devices) if devices is not None else None
        self.prefer_cuda = prefer_cuda
        self._hold: _Hold | None = None
        self._aborted = threading.Event()
        self._line: Line | None = None
        self._taken: tuple[str | None, float] | None = None  # (limit, monotonic time) of the held slot

    # sync form

    def __enter__(self) -> GpuGrant:
        visible = visible_gpus() if self.prefer_cuda else []
        mode = gate_mode()
        log = _run_log()  # its import (~0.35 s in a fresh process) before the wait, never inside the slot
        if not (mode == "always" or (mode == "auto" and visible)):
            grant = GpuGrant(stage=self.stage, device="cuda:0" if visible else "cpu", limit=None, occupy=0)
            log("running on %s: %s (no slot)", grant.device, _ungated_reason(self.prefer_cuda, visible))
            return grant
        grant = self._acquire(visible)
        units = f"{grant.occupy} unit{'s' if grant.occupy != 1 else ''}"
        log("gpu slot %s (%s) taken after %.2f s wait, on %s", grant.limit, units, grant.waited,
            grant.device)  # fmt: skip
        self._taken = (grant.limit, time.monotonic())
        return grant

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.release()
        taken, self._taken = self._taken, None
        if taken is not None:
            _run_log()("gpu slot %s released after %.1f s", taken[0], time.monotonic() - taken[1])

    # async form: the blocking wait runs in a thread; cancelling the task drops the request

    async def __aenter__(self) -> GpuGrant:
        waiting = asyncio.ensure_future(asyncio.to_thread(self.__enter__))
        try:
            return await asyncio.shield(waiting)
        except asyncio.CancelledError:
            self._abort()
            with contextlib.suppress(BaseException):
                await waiting
            self.__exit__(None, None, None)
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def _abort(self) -> None:
        self._aborted.set()
        if self._line is not None:
            self._line.close()

    def _request(self, visible: list[int], since: float) -> Acquire:
        from prefect.context import FlowRunContext, TaskRunContext

        task_run = TaskRunContext.get()
        flow_run = FlowRunContext.get()
        if self.devices is not None:
            wanted = [visible[i] for i in self.devices] if visible else list(self.devices)
        else:
            wanted = visible or None
        return Acquire(
            stage=self.stage,
            units=self.occupy,
            priority=self.priority,
            timeout=self.timeout,
            devices=wanted,
            pid=os.getpid(),
            since=since,
            task_run=str(task_run.task_run.id) if task_run else None,
            flow_run=str(flow_run.flow_run.id) if flow_run and flow_run.flow_run else None,
        )

    def _acquire(self, visible: list[int]) -> GpuGrant:
        since = time.time()
        run_dir = broker_dir()
        request = self._request(visible, since)
        while True:
            if self._aborted.is_set():
                raise GpuSlotError(f"gpu_slot({self.stage!r}) was cancelled while waiting")
            line = Line(connect_broker(run_dir))
            self._line = line
            try:
                line.send(request)
                answer = line.receive(None)
            except OSError:
                answer = None
            if answer is None:  # the broker died while we waited: the next one keeps our place (since)
                line.close()
                continue
            if isinstance(answer, Granted):
                break
            line.close()
            if isinstance(answer, Refused) and answer.op == "timeout":
                raise GpuSlotTimeout(answer.message)
            if isinstance(answer, Refused):
                raise GpuSlotError(answer.message)
            raise GpuSlotError(f"unexpected answer from the GPU broker: {answer}")
        hold = _Hold(line=line, grant=answer, request=request, run_dir=run_dir)
        self._hold = hold
        watch = contextvars.copy_context().run  # a respawned broker must see this run's Prefect settings
        threading.Thread(target=watch, args=(hold.watch,), name=f"gpu-slot-{self.stage}", daemon=True).start()
        index = answer.device
        device = f"cuda:{visible.index(index)}" if index in visible else "cpu"
        return GpuGrant(
            stage=self.stage,
            device=device,
            limit=answer.limit,
            occupy=answer.units,
            priority=answer.priority,
            device_index=index if device != "cpu" else None,
            waited=answer.waited,
        )


def _ungated_reason(prefer_cuda: bool, visible: list[int]) -> str:
    if not prefer_cuda:
        return "the stage does not use CUDA with these settings"
    return f"{GATE_ENV}=never" if visible else "no GPU on this host"


def _run_log() -> Callable[..., None]:
    """Logs one line to the Prefect run's log (the UI shows it on the task run); nothing outside a run.
    Taken before a slot is asked for: nothing slow runs between the grant and the stage's first GPU call."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger().info
    except MissingContextError:
        return lambda *_: None


gpu_slot = GpuSlot  # `with gpu_slot("ocr") as grant:` reads as the action it is
