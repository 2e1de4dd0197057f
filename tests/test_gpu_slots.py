"""GPU slots against a real Prefect server on the local PostgreSQL, gated on this CPU host
(YIVIDEO_GPU_GATE=always): exclusion across processes, units, priority and ageing, crash recovery,
timeouts, the health report. Each test names its own host (YIVIDEO_GPU_HOST), so it has its own limits
`gpu:<host>:0` and its own broker."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import read_back_run, run_logs_at_info
from gpu_brokers import stop_brokers

from gpu.client import GpuSlotError, GpuSlotTimeout, _log_tail, broker_dir, broker_status
from gpu.devices import limit_name, visible_gpus
from gpu.health import collect_health, free_slots, publish_artifact, render_markdown
from gpu.leases import read_state
from gpu.policy import GpuPolicy
from gpu.slot import gpu_slot
from tests.waiting import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TESTS = Path(__file__).resolve().parent
LEASE_BOUND = 30.0  # a dead holder's slot must come back within this (the bound)


@pytest.fixture(scope="module")
def pg_api(postgres_api, tmp_path_factory):
    """The session's Prefect server on PostgreSQL (conftest); brokers keep their files in a temporary
    folder."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    run_dir = tmp_path_factory.mktemp("gpu-run")
    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "YIVIDEO_GPU_RUN_DIR", "YIVIDEO_GPU_GATE")}
    os.environ.update(PREFECT_API_URL=postgres_api, YIVIDEO_GPU_RUN_DIR=str(run_dir))
    os.environ["YIVIDEO_GPU_GATE"] = "always"
    try:
        with temporary_settings(updates={PREFECT_API_URL: postgres_api}):
            yield postgres_api
            stop_brokers(run_dir)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def host(pg_api, monkeypatch, request):
    """A host name of the test's own, and a policy document for it when the test is parametrised with one."""
    name = request.node.name.replace("_", "-").replace("[", "-").strip("]-")[:40]
    monkeypatch.setenv("YIVIDEO_GPU_HOST", name)
    policy = getattr(request, "param", None)
    if policy is not None:
        policy.save(name, overwrite=True)
        monkeypatch.setenv("YIVIDEO_GPU_POLICY", name)
    return name


def _thread(target, *args) -> threading.Thread:
    """A started thread that sees this test's Prefect settings (plain threads start with a blank context)."""
    thread = threading.Thread(target=contextvars.copy_context().run, args=(target, *args))
    thread.start()
    return thread


def _limit(name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name)


def _contenders(count: int, go: Path, *args: str) -> list[subprocess.Popen]:
    procs = [
        subprocess.Popen(
            [sys.executable, str(TESTS / "gpu_contender.py"), "--go-file", str(go), *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for proc in procs:  # every process imported and connected: only the contention is measured
        assert proc.stdout.readline().strip() == "READY"
    return procs


def _holds(procs: list[subprocess.Popen], timeout: float = 120) -> list[dict]:
    rows = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, out
        rows += [json.loads(line) for line in out.splitlines() if '"acquired"' in line]
    return sorted(rows, key=lambda r: r["acquired"])


def _wait_for_waiters(count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        devices = broker_status()["devices"]
        if sum(len(d["waiters"]) for d in devices) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{count} waiters never queued")


def test_visible_gpus_follows_cuda_visible_devices():
    gpus = [(0, "GPU-aaaa"), (1, "GPU-bbbb"), (2, "GPU-cccc")]
    assert visible_gpus(None, gpus) in ([0, 1, 2], [])  # None: this process's own CUDA_VISIBLE_DEVICES
    assert visible_gpus("2,0", gpus) == [2, 0]
    assert visible_gpus("GPU-bb,5,0", gpus) == [1]  # CUDA stops at the first device it cannot find
    assert visible_gpus("", gpus) == []


def test_cpu_host_takes_no_slot_unless_gated(monkeypatch):
    monkeypatch.setenv("YIVIDEO_GPU_GATE", "auto")
    with gpu_slot("ocr") as grant:  # no CUDA here: runs on the CPU, no server, no broker
        assert (grant.device, grant.limit, grant.occupy, grant.uses_cuda) == ("cpu", None, 0, False)


def test_gated_cpu_host_counts_as_one_device_and_creates_its_limit(host):
    with gpu_slot("ocr") as grant:
        assert (grant.device, grant.limit, grant.occupy) == ("cpu", limit_name(0, host), 1)
        limit = _limit(grant.limit)
        assert (limit.limit, limit.active_slots) == (1, 1)  # created by gpu_slot, the held unit counted

    async def async_form():
        async with gpu_slot("ocr") as grant:
            return grant

    assert asyncio.run(async_form()).limit == limit_name(0, host)
    time.sleep(0.5)
    assert _limit(limit_name(0, host)).active_slots == 0  # idle leases go back to Prefect


def test_a_gpu_stage_logs_its_slot_its_wait_and_its_hold_to_its_run(host):
    """The task run's log (UI, API) says which slot the stage took, after how long a wait, and when it gave
    it back; the concurrency page shows only a count of slots in use."""
    from prefect import flow, task

    @task
    def stage() -> None:
        with gpu_slot("ocr"):
            time.sleep(0.3)

    @flow
    def one_gpu_stage() -> None:
        stage()

    with run_logs_at_info():
        state = one_gpu_stage(return_state=True)
    _, logs = read_back_run(state.state_details.flow_run_id)
    limit = limit_name(0, host)
    pattern = rf"gpu slot {limit} \(1 unit\) taken after \d+\.\d\d s wait, on cpu"
    taken = [m for m in logs if re.fullmatch(pattern, m)]
    released = [float(m.split()[-2]) for m in logs if m.startswith(f"gpu slot {limit} released after ")]
    assert len(taken) == 1 and len(released) == 1 and released[0] >= 0.3, logs


def test_four_processes_never_overlap_on_a_one_unit_device(host, tmp_path):
    """16 holds of 4 processes (each one imports Prefect: 8 processes of 2 holds cost twice the start-up)."""
    go = tmp_path / "go"
    procs = _contenders(4, go, "--holds", "4", "--hold", "0.15", "--stage", "exclusive")
    go.touch()
    holds = _holds(procs)
    assert len(holds) == 16 and {h["units"] for h in holds} == {1}
    for before, after in zip(holds, holds[1:], strict=False):
        assert after["acquired"] >= before["released"], f"holds overlap: {before} {after}"
    gaps = [b["acquired"] - a["released"] for a, b in zip(holds, holds[1:], strict=False)]
    # the slot goes straight to the next waiter: no polled Retry-After between holds
    assert statistics.median(gaps) < 0.25, gaps
    assert _limit(limit_name(0, host)).limit == 1


@pytest.mark.parametrize(
    "host", [GpuPolicy(units_per_device=4, stage_classes={"asr": "heavy"})], indirect=True
)
def test_units_are_respected_heavy_takes_the_whole_device(host):
    spans: list[tuple[float, float, str, int]] = []
    lock = threading.Lock()

    def stage(name: str) -> None:
        with gpu_slot(name) as grant:
            start = time.time()
            time.sleep(0.3)
            with lock:
                spans.append((start, time.time(), name, grant.occupy))

    threads = []
    for name in ["asr", "ocr", "ocr", "ocr", "ocr", "asr"]:
        threads.append(_thread(stage, name))
        time.sleep(0.02)
    for thread in threads:
        thread.join(60)
    assert sorted({(name, units) for _, _, name, units in spans}) == [("asr", 4), ("ocr", 1)]
    moments = sorted({t for s, e, _, _ in spans for t in (s, e)})
    peak_infer = 0
    for a, b in zip(moments, moments[1:], strict=False):
        mid = (a + b) / 2
        active = [(name, units) for s, e, name, units in spans if s < mid < e]
        assert sum(units for _, units in active) <= 4, active
        assert ("asr", 4) not in active or len(active) == 1, active
        peak_infer = max(peak_infer, sum(1 for name, _ in active if name == "ocr"))
    assert peak_infer >= 2, "light stages never shared the device"


@pytest.mark.parametrize("host", [GpuPolicy(ageing_seconds=600)], indirect=True)
def test_waiters_are_served_by_priority_then_arrival(host):
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with gpu_slot("holder"):
            holding.set()
            release.wait(60)

    def waiter(name: str, priority: int) -> None:
        with gpu_slot(name, priority=priority):
            order.append(name)

    threads = [_thread(holder)]
    assert holding.wait(60)
    waiters = [("p0-first", 0), ("p5", 5), ("p1", 1), ("p9", 9), ("p5-later", 5), ("p0-last", 0)]
    for i, (name, priority) in enumerate(waiters):
        threads.append(_thread(waiter, name, priority))
        _wait_for_waiters(i + 1)
    release.set()
    for thread in threads:
        thread.join(60)
    assert order == ["p9", "p5", "p5-later", "p1", "p0-first", "p0-last"]


@pytest.mark.parametrize("host", [GpuPolicy(ageing_seconds=1.0)], indirect=True)
def test_ageing_lets_a_long_waiting_low_priority_stage_go_first(host):
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def run(name: str, priority: int, hold_until: threading.Event | None = None) -> None:
        with gpu_slot(name, priority=priority):
            order.append(name)
            if hold_until is not None:
                holding.set()
                hold_until.wait(60)

    first = _thread(run, "holder", 0, release)
    assert holding.wait(60)
    patient = _thread(run, "patient", 0)
    _wait_for_waiters(1)
    time.sleep(3.2)  # the patient waiter has aged three levels
    urgent = _thread(run, "urgent", 2)
    _wait_for_waiters(2)
    release.set()
    for thread in (first, patient, urgent):
        thread.join(60)
    assert order == ["holder", "patient", "urgent"]


def test_timeout_gives_a_clear_error(host):
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with gpu_slot("long-stage"):
            holding.set()
            release.wait(60)

    thread = _thread(holder)
    assert holding.wait(60)
    started = time.monotonic()
    try:
        with pytest.raises(GpuSlotTimeout) as failure, gpu_slot("short-stage", timeout=0.5):
            pass
    finally:
        release.set()
        thread.join(30)
    assert 0.4 < time.monotonic() - started < 5
    message = str(failure.value)
    assert "short-stage" in message and limit_name(0, host) in message and "long-stage" in message
    report = collect_health(60)
    (row,) = [r for r in report["limits"] if r["limit"] == limit_name(0, host)]
    assert row["window"]["timeouts"] == 1 and row["window"]["acquisitions"] == 1
    assert limit_name(0, host) in render_markdown(report)
    assert publish_artifact(report)


@contextlib.contextmanager
def _slot_or_evidence(stage: str, host: str, timeout: float):
    """gpu_slot(); a timeout fails with what Prefect and the broker knew then (CI failed once with the
    survivor of a killed broker waiting 30 s while the broker held nothing and none of this was seen)."""
    try:
        with gpu_slot(stage, timeout=timeout) as grant:
            yield grant
    except GpuSlotTimeout as exc:
        active = _limit(limit_name(0, host)).active_slots
        evidence = f"Prefect counts {active} slot(s) in use; the broker log:\n{_log_tail(broker_dir())}"
        raise AssertionError(f"{exc}\n{evidence}") from exc


def test_a_killed_holder_frees_its_slot_at_once(host, tmp_path):
    go = tmp_path / "go"
    (victim,) = _contenders(1, go, "--hold", "120", "--stage", "victim")
    go.touch()
    _wait_for_holder(victim.pid)
    victim.kill()
    killed = time.monotonic()
    with _slot_or_evidence("survivor", host, LEASE_BOUND) as grant:
        freed_after = time.monotonic() - killed
        assert grant.limit == limit_name(0, host)
    victim.wait(10)
    assert freed_after < LEASE_BOUND
    print(f"slot of a kill -9'd holder returned after {freed_after * 1000:.0f} ms")
    report = collect_health(60)
    (row,) = [r for r in report["limits"] if r["limit"] == limit_name(0, host)]
    assert row["window"]["abandoned"] == 1


def _holders() -> list[dict]:
    return [h for d in broker_status()["devices"] for h in d["holders"]]


def _wait_for_holder(pid: int, timeout: float = 60) -> None:
    """Until this host's broker (perhaps still starting) reports process `pid` holding a slot: any holder
    would do while an earlier holder's release is still unread, and killing the broker then may land in
    the middle of `pid`'s take (a lease Prefect holds that no broker ever knew)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(GpuSlotError, OSError):
            if any(holder["pid"] == pid for holder in _holders()):
                return
        assert time.monotonic() < deadline, "nobody took the slot"
        time.sleep(0.05)


def _kill_broker() -> int:
    pid = int((broker_dir() / "broker.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_killed_broker_keeps_exclusion_and_its_successor_recovers(host, tmp_path):
    holding, release = threading.Event(), threading.Event()
    spans: list[tuple[str, float, float]] = []

    def run(name: str, hold_until: threading.Event | None = None) -> None:
        with gpu_slot(name, timeout=120):
            start = time.time()
            if hold_until is not None:
                holding.set()
                hold_until.wait(60)
            spans.append((name, start, time.time()))

    holder = _thread(run, "holder", release)
    assert holding.wait(60)
    old = _kill_broker()  # the holder keeps running on the GPU: its grant must survive the broker
    waiter = _thread(run, "waiter")  # starts a new broker, which must not hand the held unit to this waiter
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if int((broker_dir() / "broker.pid").read_text()) != old and _holders():
                break
        except (OSError, ValueError, GpuSlotError):
            pass
        time.sleep(0.1)
    time.sleep(1.0)
    assert [name for name, *_ in spans] == [], "the waiter got a unit that the holder still uses"
    release.set()
    holder.join(30)
    waiter.join(60)
    (held, waited) = sorted(spans, key=lambda s: s[1])
    assert held[0] == "holder" and waited[1] >= held[2]

    # the holder and its broker die together: the next broker frees the orphaned lease after a grace
    holding.clear()
    victim_go = tmp_path / "go"
    (victim,) = _contenders(1, victim_go, "--hold", "120", "--stage", "victim")
    victim_go.touch()
    _wait_for_holder(victim.pid)
    victim.kill()
    _kill_broker()
    killed = time.monotonic()
    with _slot_or_evidence("survivor", host, LEASE_BOUND):
        recovered = time.monotonic() - killed
    victim.wait(10)
    print(f"slot of a dead holder and broker returned after {recovered:.1f} s")
    assert recovered < LEASE_BOUND
    time.sleep(0.5)
    assert _limit(limit_name(0, host)).active_slots == 0


def _listed_leases() -> set[str]:
    return {entry["id"] for entry in read_state(broker_dir()).leases}


def test_a_lease_on_its_way_back_stays_in_the_state_file_until_prefect_has_it(host, pg_api):
    """A broker killed while a lease's return is on its way to Prefect must leave it to its successor: the
    state file used to drop it when the return began, and a kill then left the slot held for the lease's 60 s
    with no broker knowing it (the killed-broker test's survivor once timed out, "held by nobody"). The
    server is stopped (SIGSTOP) so the return waits; the state file must still list the lease meanwhile."""
    from tests.pg_server import SERVER_PIDS

    server = SERVER_PIDS[pg_api]
    with gpu_slot("brief"):
        deadline = time.monotonic() + 10
        while not (held := _listed_leases()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(held) == 1, held
        os.killpg(server, signal.SIGSTOP)
    try:
        time.sleep(1.0)  # the lease went idle and its return began 0.1 s after the release
        assert _listed_leases() == held, "a lease not yet given back is missing from the state file"
    finally:
        os.killpg(server, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while _listed_leases() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _listed_leases(), "given back, it leaves the state file"
    assert _limit(limit_name(0, host)).active_slots == 0


def test_free_refuses_a_live_holder(host):
    with gpu_slot("stuck") as grant, pytest.raises(Exception, match="held by live processes"):
        free_slots(grant.limit)


def test_a_broker_killed_during_a_take_leaves_its_successor_word_of_it(host, pg_api):
    """A broker killed while a take is on its way to Prefect leaves a lease whose id nobody learns, held
    until it lapses (the survivor test's 30 s waits may have been one): the state file lists the take
    before it leaves, and the successor logs the limit and how to free it. The server is stopped (SIGSTOP)
    so the take waits."""
    from gpu.client import broker_request
    from gpu.protocol import StatusRequest
    from tests.pg_server import SERVER_PIDS

    server, limit, log = SERVER_PIDS[pg_api], limit_name(0, host), broker_dir() / "broker.log"
    with gpu_slot("warm"):  # the broker is up and the limit exists before the server stops
        pass
    # the warm-up's lease back in Prefect, not only gone from the state file: the file is written after the
    # grant is sent, so it could still lack the lease, and the cut would get it while it idles (no take)
    wait_for("the warm-up's lease back in Prefect", lambda: _limit(limit).active_slots == 0, 10, log)

    def cut() -> None:
        with contextlib.suppress(GpuSlotError):
            with gpu_slot("cut", timeout=5):
                pass

    os.killpg(server, signal.SIGSTOP)
    try:
        thread = _thread(cut)
        wait_for(
            "the take on its way in the state file",
            lambda: read_state(log.parent).taking == {limit: 1},
            10,
            log,
        )
        _kill_broker()
    finally:
        os.killpg(server, signal.SIGCONT)
    thread.join(60)
    broker_request(StatusRequest(60.0), spawn=True, timeout=60)  # a successor, if the waiter started none
    word = f"died while taking 1 slot(s) of {limit}"
    wait_for(f"the successor's {word!r}", lambda: word in _log_tail(log.parent), 30, log)
    print(f"after the kill Prefect counts {_limit(limit).active_slots} slot(s) of {limit}")
