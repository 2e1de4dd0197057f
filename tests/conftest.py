"""Shared fixtures: a real (temporary, SQLite) Prefect server for flow tests, and output folders."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import queue
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("YIVIDEO_GPU_GATE", "auto")
# OpenMP threads (ncnn's enhance, torch, CTranslate2) sleep at once when they wait, not spin first: three
# xdist workers share two cores, and a spinning thread takes the core the thread it waits for needs
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("YIVIDEO_LOCAL_SERVER_IDLE_S", "5")  # a CLI test's shared local server stops soon
os.environ.setdefault("YIVIDEO_MODEL_SERVICE_IDLE_S", "20")  # so does a deployed run's model service
# generated media kept across sessions, keyed by the generators' source (samples/media_cache.py); "0": off
os.environ.setdefault("YIVIDEO_MEDIA_CACHE", str(Path.home() / ".cache" / "yivideo-flows" / "test-media"))


@pytest.fixture(scope="session")
def prefect_server(request, tmp_path_factory):
    """A real Prefect API for the whole session (flows record real state), and stage results stored for
    this session only (core/caching.py never reuses an earlier session's).

    The API is the session's server on PostgreSQL (`postgres_api`): on SQLite every writer queues on one
    lock, and a loaded suite's concurrent task runs met "database is locked" there (logged when a transcode
    test took 68 s and failed once). YIVIDEO_TEST_SERVER=sqlite: Prefect's own SQLite test harness instead."""
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    results = {PREFECT_LOCAL_STORAGE_PATH: tmp_path_factory.mktemp("prefect-results")}
    if os.environ.get("YIVIDEO_TEST_SERVER", "postgres") == "sqlite":
        with prefect_test_harness(server_startup_timeout=120), temporary_settings(results):
            yield
        return
    from prefect.context import _temporary_global_settings_context, get_settings_context

    with temporary_settings({**results, PREFECT_API_URL: request.getfixturevalue("postgres_api")}):
        with _temporary_global_settings_context(get_settings_context()):  # plain threads too, as the harness
            yield


# Server loops no test on the session's server needs: no schedules, pauses, cancelled parents or late runs
# there, and no test reads a worker's or deployment's status. Idle, a session server cost 2.55 CPU s a
# minute with them and 1.95 without (load 12-15; three such servers run through a suite). Kept: the
# repossessor (GPU slot leases), triggers (tests/test_crash_rerun.py's automation), the event persister and
# task run recorder (runs and events read back), the cleanup reconciler (workers' cleanup leases). Servers
# that tests start themselves keep every service.
UNUSED_SERVICES = ("LATE_RUNS", "PAUSE_EXPIRATIONS", "SCHEDULER", "CANCELLATION_CLEANUP", "FOREMAN")


@pytest.fixture(scope="session")
def postgres_api() -> Iterator[str]:
    """One Prefect server on a fresh PostgreSQL database for the session's flows (`prefect_server`) and the
    tests that need PostgreSQL but neither kill their server nor bootstrap it (tests/test_gpu_slots.py,
    tests/test_crash_rerun.py): a start with its migrations costs ~10 s idle, 30 s loaded. Its repossessor
    looks for lapsed leases every 5 s (the GPU slot tests' bound). Tests that kill or restart theirs start
    their own (tests/pg_server.py). Its pool is 10 + 10 connections: several test sessions share one
    PostgreSQL (max_connections 100)."""
    from tests.pg_server import drop_stale_databases, prefect_postgres_server

    drop_stale_databases()  # a killed session's (its pid is gone): each session leaves ~15 MB otherwise
    extra = {
        "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "5",
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "10",
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": "10",
    }
    extra |= {f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in UNUSED_SERVICES}
    with prefect_postgres_server(f"yivideo_session_{os.getpid()}", extra) as api_url:
        yield api_url


@pytest.fixture(scope="session")
def deployed_api(tmp_path_factory) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """The README's stack for the browser tests (tests/test_run_form_browser.py, tests/test_web_browser.py),
    made once per session: a Prefect server (UI on) on PostgreSQL, bootstrapped and `prefect deploy --all`
    run; yields its API URL, its folder and the environment its processes run with. Each module starts
    and stops its own workers and web app."""
    import subprocess
    import sys

    from test_web_browser import REPO, deployed_stack

    root = tmp_path_factory.mktemp("deployed")
    # the workers poll every 2 s (Prefect's default is 10): each poll every 1 s cost the server ~1 CPU s a
    # minute more per worker (idle worker on a PostgreSQL-backed server: 2.8-3.1 against 2.1, load 15-19)
    extra = {"PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_LOGGING_LEVEL": "INFO"}
    # one model service for the session's page runs (a run starts it; the next finds its models loaded),
    # not one per pause longer than the suite's 20 s; stopped with the stack
    extra["YIVIDEO_MODEL_SERVICE_IDLE_S"] = "900"
    with deployed_stack(root, f"yivideo_deployed_{os.getpid()}", **extra) as (api, procs):
        try:
            yield api, root, procs.env
        finally:
            stop = [sys.executable, "-m", "core.model_service", "stop"]
            subprocess.run(stop, cwd=REPO, env=procs.env, capture_output=True, timeout=60, check=False)


RELEASED_AFTER_LAST_USE = ("deployed_api",)
LAST_USERS = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """The session's browser stack (`deployed_api`) goes after the last test that uses it, not at the end of
    the session: its server (UI on), PostgreSQL database and model service otherwise idle on for the rest
    of the worker's tests (on xdist its group ends about halfway through). A later test that asked for it
    again would get a new one (pytest sets a finished fixture up anew)."""
    result = yield
    if LAST_USERS not in item.session.stash:  # items in the order the session runs them (a group's too)
        names = RELEASED_AFTER_LAST_USE
        users = {n: i for i in item.session.items for n in names if n in getattr(i, "fixturenames", ())}
        item.session.stash[LAST_USERS] = users  # the last user of each
    for name, last in item.session.stash[LAST_USERS].items():
        if item is last:
            for fixturedef in item._fixtureinfo.name2fixturedefs.get(name, ()):
                fixturedef.finish(item._request)
    return result


def deliver_pending_events(where: str, timeout: float = 20.0) -> None:
    """Send this process's queued Prefect events and logs now, so the next ones go to the API current then.

    Prefect 3.8 keeps ONE events worker per process for every self-hosted API, bound to the API URL that was
    current when it started (prefect/events/worker.py, `EventsWorker.instance`). A test that points
    PREFECT_API_URL elsewhere would send its task runs to the previous server (the session's flow tests then
    read "no task runs"), and events queued for a server a test has stopped retry ~8 s each, at interpreter
    exit too: CI once hung past its 90 minutes on 129 of them. What cannot be delivered in `timeout` seconds
    went to a server that is gone: it is dropped, with a warning naming `where`."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        with service._instance_lock, service._instance_cache_lock:
            instances = tuple(service._instances.values())
        if not instances:
            continue
        service.drain_all(timeout=timeout, at_exit=False)
        for instance in instances:
            if instance._done_event is not None and not instance._done_event.is_set():
                dropped = _drop_queued(instance)
                gone = f"dropped {dropped} Prefect {service.__name__} items for an API that is gone"
                warnings.warn(f"{where}: {gone}", stacklevel=1)


def _drop_queued(service) -> int:
    """Empty a stopped queue service that cannot deliver, so it ends after the item in hand."""
    dropped = 0
    with contextlib.suppress(queue.Empty):
        while True:
            item = service._queue.get_nowait()
            service._queue.task_done()
            if item is not None:
                service._on_item_dropped(item)
                dropped += 1
    service._queue.put_nowait(None)
    return dropped


@pytest.fixture(autouse=True)
def events_reach_the_current_api(request):
    """Each test's Prefect events and logs go to the API that test uses (see deliver_pending_events)."""
    deliver_pending_events(f"before {request.node.nodeid}")
    yield
    deliver_pending_events(request.node.nodeid)


# `make test` runs the suite on pytest-xdist workers (`-n 3 --dist loadgroup`). Each worker is a session of
# its own: its own PostgreSQL-backed Prefect server (the database is named by the worker's pid), so its own
# GPU limits and GPU broker (gpu/client.py keys the broker's folder by host and API URL), media_dir and
# basetemp. A module's tests stay on one worker, so its module fixtures (an OCR corpus run, a Ray cluster) are
# built once; the modules below share one worker. The longest modules go first, so none starts last and runs
# alone; the rest follow in file order.
SHARED_WORKER = {
    "test_ray_runner.py": "ray",  # one Ray at a time on two cores. Not for isolation: a plain ray.init() does
    "test_ray_cluster.py": "ray",  # not join ray_nodes.py's cluster (its address is kept in its temp dir)
    "test_web_browser.py": "browser",  # one deployed stack (`deployed_api`) for both
    "test_run_form_browser.py": "browser",
}
LONGEST_FIRST = (  # their groups' times in a full run on 3 workers (load 10-23, 31 min), longest first
    # the four largest by CPU, each group alone, warm (load 5-17): real videos 186.4 CPU s, Ray 163.7,
    # browser 140-146 (148-202 s wall, much of it waiting on its deployed runs), footage 85 (109 with its
    # media rendered): footage, the smallest, goes fourth, to the worker that frees up first. Measured again
    # 2026-12-05, each alone (cgroup, load 3-18): real videos 157.2 CPU s (331 s wall), Ray 131.8 (runner
    # 55.7 + cluster 76.1, the two-workers test moved out), browser 133.7-136.9 (147-172 s)
    "test_ray_runner.py",  # with test_ray_cluster.py: 607 s
    "test_web_browser.py",  # with test_run_form_browser.py: 389 s
    "test_realvideo_subtitles.py",  # 347 s
    "test_subtitle_footage.py",
    "test_cues.py",
    "test_diarization.py",
    "test_ocr_languages.py",
    "test_cli_lifecycle.py",
    "test_fusion.py",
    "test_bad_input.py",
    "test_resume.py",
    "test_deployments_e2e.py",
    "test_subtitles_flow.py",
    "test_enhance_progress.py",
    "test_model_service.py",
    "test_enhance_memory.py",
    "test_transcode_flow.py",  # these two ran last (file order) and set the suite's end
    "test_transcribe_flow.py",
    "test_asr.py",
    "test_gpu_slots.py",
    "test_crash_rerun.py",
    "test_worker_faults.py",
    "test_gpu_pool_workers.py",  # ~40 s, two deployed runs: out of the Ray group, which it held up
    "test_inbox.py",
    "test_enhance_flow.py",
    "test_pipeline_flow.py",
    "test_notebook.py",
    "test_enhance.py",
    "test_enhance_gpu.py",
    "test_bootstrap_compare.py",
    "test_enhance_quality.py",  # 32 s; the rest (under 30 s each) fill the workers' ends in file order
)


def pytest_collection_modifyitems(items):
    """Marker `server`: tests on the session's Prefect server (`make test-fast` leaves them out). On an xdist
    worker, the longest modules first (the order the workers take them in)."""
    for item in items:
        if "prefect_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.server)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order otherwise


def pytest_collection_finish(session):
    """What the test modules imported (Prefect, the stages, their libraries: ~140k objects) is frozen out of
    the garbage collector's full passes: each cost ~0.2 CPU s, and a worker makes dozens (every model
    eviction collects). test_ocr_languages.py alone: its full passes 7.5 -> 4.6 CPU s."""
    gc.collect()
    gc.freeze()


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup`: one group per module, or the module's SHARED_WORKER group, taken in collection
    order. xdist's own loadgroup (`xdist_group` marks) groups nothing on pytest 9.2: it renames the nodeid
    through `item._nodeid`, which pytest no longer reads (pytest-dev/pytest-xdist#1386)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return SHARED_WORKER.get(Path(path).name, path)

        def _reschedule(self, node) -> None:
            """The next group goes to a worker once it runs its last test (xdist: its last two). A worker
            with two long tests left (the browser group's end) took a group that then waited behind them
            while the other workers, the queue empty, stopped: a tail of one worker on two cores."""
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
            elif self._pending_of(self.assigned_work[node]) <= 1:
                self._assign_work_unit(node)

    config.option.loadscopereorder = False  # xdist would put the modules with most tests first
    return ModuleGroups(config, log)


def pytest_unconfigure(config):
    """Nothing left to retry against stopped servers at interpreter exit (Prefect drains without a limit)."""
    deliver_pending_events("end of session", timeout=10.0)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """Generated media shared by the whole session: the samples generators copy it from the cross-session
    cache (samples/media_cache.py), rendering only what this version of them has not rendered before."""
    from samples.media_cache import CACHE_ENV, prune

    if os.environ.get(CACHE_ENV, "0") != "0":
        prune(os.environ[CACHE_ENV])
    return tmp_path_factory.mktemp("media")


def assert_no_partial_outputs(root: Path) -> None:
    """Nothing half-written (temp files of atomic writes) is left anywhere under `root`."""
    leftovers = [p for p in root.rglob("*") if ".part" in p.name]
    assert not leftovers, f"partial outputs left behind: {leftovers}"


@contextlib.contextmanager
def run_logs_at_info() -> Iterator[None]:
    """Stage INFO lines reach the API inside (the session logs at WARNING: the test output stays short)."""
    logger = logging.getLogger("prefect.task_runs")
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(level)


def recorded(
    read: Callable[[], list],
    key: Callable[[Any], Any],
    done: Callable[[list], bool] = bool,
    timeout: float = 60.0,
) -> list:
    """What `read` returns once the server has recorded the task runs it was sent: it writes them from their
    events in batches a second apart (core/local_server.py), late in a busy session too, so the read is
    repeated until two reads a flush apart agree (`key`: a record's id and state) on records that are `done`
    (default: any)."""
    from core.local_server import TASK_RUN_FLUSH_S

    deadline, seen = time.monotonic() + timeout, None
    while True:
        records = read()
        now = {key(record) for record in records}
        if (records and done(records) and now == seen) or time.monotonic() > deadline:
            return records
        seen = now
        time.sleep(TASK_RUN_FLUSH_S + 0.5)


def recorded_task_runs(client, flow_run_ids: list, final: bool = False) -> list:
    """The task runs of these flow runs, as the server recorded them (`recorded`); `final`: each in a final
    state (a run that has ended, not one a kill left running)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    of_these = FlowRunFilter(id=FlowRunFilterId(any_=list(flow_run_ids)))

    def ended(runs: list) -> bool:
        return not final or all(run.state is not None and run.state.is_final() for run in runs)

    return recorded(
        lambda: client.read_task_runs(flow_run_filter=of_these), lambda run: (run.id, run.state_name), ended
    )


def read_back_run(flow_run_id) -> tuple[list, list[str]]:
    """A flow run's task runs and log messages, as the Prefect UI reads them from the API."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # the run's last lines are still batched in this process
    with get_client(sync_client=True) as client:
        runs = recorded_task_runs(client, [flow_run_id])
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)
    return runs, [log.message for log in logs]
