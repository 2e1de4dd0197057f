"""The private parts of Prefect (and prefect-ray) the product relies on, one test each (README, "Prefect
internals we rely on"): a Prefect upgrade that changes one fails here, not in production. In-process, no
server; the guard at the end fails when product code uses a private Prefect part the README does not list.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import hashlib
import inspect
import json
import re
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("core", "gpu", "stages", "samples", "blocks", "runtime", "flows", "deployments")


def _readme_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text.split("## Prefect internals we rely on", 1)[1].split("\n## ", 1)[0]


# ---------------------------------------------------------------- leases on disk (deployments/server)
def test_filesystem_leases_live_where_the_server_start_repairs_them(tmp_path):
    """Lease files and their index are where `index_orphan_leases` looks, and the expiry scan reads the
    index only: a lease the index lacks is never repossessed until the server start indexes it."""
    from prefect.server.concurrency.lease_storage import filesystem

    from deployments.server import FILESYSTEM_LEASES, index_orphan_leases

    assert filesystem.__name__ == FILESYSTEM_LEASES
    storage = filesystem.ConcurrencyLeaseStorage(tmp_path / "concurrency_leases")

    async def expired_after_a_crash() -> tuple[uuid.UUID, list[uuid.UUID], list[uuid.UUID]]:
        lease = await storage.create_lease([uuid.uuid4()], timedelta(seconds=-1))
        stored = json.loads((tmp_path / "concurrency_leases" / f"{lease.id}.json").read_text())
        assert "expiration" in stored
        (tmp_path / "concurrency_leases" / "expirations.json").write_text("{}")  # killed before the index
        unseen = await storage.read_expired_lease_ids()
        assert index_orphan_leases(tmp_path) == [str(lease.id)]
        return lease.id, unseen, await storage.read_expired_lease_ids()

    lease_id, unseen, seen = asyncio.run(expired_after_a_crash())
    assert lease_id not in unseen, "Prefect now finds unindexed leases itself: index_orphan_leases can go"
    assert seen == [lease_id]


# ---------------------------------------------------------------- the process worker (deployments/worker)
def test_the_worker_reports_crashes_through_the_method_we_override():
    from prefect.workers.base import BaseWorker
    from prefect.workers.process import ProcessWorker

    from deployments.worker import SingleCrashReportWorker

    assert list(inspect.signature(ProcessWorker._propose_crashed_state).parameters) == [
        "self", "flow_run", "message", "client",
    ]  # fmt: skip
    assert "self._propose_crashed_state(" in inspect.getsource(BaseWorker), "crashes reported elsewhere now"
    assert SingleCrashReportWorker._propose_crashed_state is not ProcessWorker._propose_crashed_state


def test_our_worker_type_does_not_replace_prefects_process_type():
    from prefect.utilities.dispatch import lookup_type
    from prefect.workers.base import BaseWorker
    from prefect.workers.process import ProcessWorker

    from deployments.worker import SingleCrashReportWorker

    assert lookup_type(BaseWorker, "process") is ProcessWorker
    assert lookup_type(BaseWorker, "yivideo-process") is SingleCrashReportWorker


def test_a_command_set_before_prepare_for_flow_run_is_started_as_the_run_s_process():
    """Our job configuration puts the template's client in `command` before Prefect's
    `prepare_for_flow_run`; Prefect then starts that command directly (`EngineCommandStarter`, one
    process whose pid it signals and whose exit status it reads), not its workspace supervisor."""
    import uuid as _uuid

    from prefect.client.schemas.objects import FlowRun
    from prefect.workers.process import ProcessWorker

    from deployments.worker import ForkedRunJobConfiguration

    run = FlowRun(id=_uuid.uuid4(), flow_id=_uuid.uuid4(), name="internals")
    previous, ForkedRunJobConfiguration.zygote_command = ForkedRunJobConfiguration.zygote_command, "client x"
    try:
        config = ForkedRunJobConfiguration()
        config.prepare_for_flow_run(run)
        assert config.command == "client x" and config._command_configured is True
        mine = ForkedRunJobConfiguration(command="theirs")
        mine.prepare_for_flow_run(run)
        assert mine.command == "theirs", "a pool's or deployment's command stays theirs"
    finally:
        ForkedRunJobConfiguration.zygote_command = previous
    source = inspect.getsource(ProcessWorker.run)
    assert "if configuration._command_configured:" in source
    assert "EngineCommandStarter(\n                        command=configuration.command," in source
    assert "isolate_process_group" not in source, "the command's own pid is what Prefect signals and kills"


def test_the_engine_runs_as_main_from_the_environment_and_settings_rebuild_from_it(monkeypatch):
    """deployments/zygote.py runs `prefect.engine` as `__main__` in a forked child (the run id from the
    environment, as `python -m prefect.engine` gets it) after `refresh_global_settings_context()` built
    Prefect's settings from the run's environment."""
    import prefect.context
    import prefect.engine

    source = inspect.getsource(prefect.engine)
    assert 'if __name__ == "__main__":' in source
    assert 'os.environ.get("PREFECT__FLOW_RUN_ID")' in source
    monkeypatch.setattr(prefect.context, "GLOBAL_SETTINGS_CONTEXT", prefect.context.GLOBAL_SETTINGS_CONTEXT)
    before = prefect.context.GLOBAL_SETTINGS_CONTEXT.settings.client.max_retries
    monkeypatch.setenv("PREFECT_CLIENT_MAX_RETRIES", str(before + 3))
    prefect.context.refresh_global_settings_context()
    assert prefect.context.GLOBAL_SETTINGS_CONTEXT.settings.client.max_retries == before + 3
    # a forked run has no settings context entered: Prefect's settings are the global one's
    assert "or GLOBAL_SETTINGS_CONTEXT" in inspect.getsource(prefect.context.SettingsContext.get)


# ---------------------------------------------------------------- prefect-ray (runtime/ray_engine)
RAY_SUBMIT_DIGEST = "369467172d18db73"  # prefect-ray 0.6.0's RayTaskRunner.submit, which ours copies


def test_the_ray_runner_parts_we_copy_and_call_are_unchanged():
    task_runners = pytest.importorskip("prefect_ray.task_runners", reason="the ray extra is not installed")
    runner = task_runners.RayTaskRunner
    assert isinstance(inspect.getattr_static(runner, "_run_prefect_task"), staticmethod)
    run_params = inspect.signature(runner._run_prefect_task).parameters
    assert {"task", "task_run_id", "context", "parameters", "wait_for", "dependencies"} <= set(run_params)
    assert callable(runner._exchange_prefect_for_ray_futures)
    assert "self._started" in inspect.getsource(runner)
    source = textwrap.dedent(inspect.getsource(runner.submit))
    digest = hashlib.sha256(ast.dump(ast.parse(source)).encode()).hexdigest()[:16]
    assert digest == RAY_SUBMIT_DIGEST, (
        "prefect-ray's RayTaskRunner.submit changed: bring PlacedRayTaskRunner.submit "
        f"(runtime/ray_engine.py) in line with it, then record {digest}"
    )
    from prefect.context import serialize_context

    assert "asset_ctx_kwargs" in inspect.signature(serialize_context).parameters


# ---------------------------------------------------------------- sync calls (blocks/loader, gpu/limits)
def test_sync_runs_an_async_dispatch_method_synchronously_inside_an_event_loop():
    from prefect._internal.compatibility.async_dispatch import async_dispatch
    from prefect.blocks.core import Block

    async def aload() -> str:
        return "async"

    @async_dispatch(aload)
    def load() -> str:
        return "sync"

    async def inside_a_loop() -> str:
        return load(_sync=True)

    assert asyncio.run(inside_a_loop()) == "sync"
    assert "aload" in inspect.getsource(Block.load) or hasattr(Block, "aload"), "Block.load's async twin"


def test_run_coro_as_sync_runs_a_coroutine_from_sync_code_inside_or_outside_a_loop():
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert run_coro_as_sync(answer()) == 42

    async def from_a_loop() -> int:
        return await asyncio.to_thread(lambda: run_coro_as_sync(answer()))

    assert asyncio.run(from_a_loop()) == 42


# ---------------------------------------------------------------- the CLI's exit and server (core/)
def test_queued_events_and_logs_drain_with_a_bound_and_not_at_exit():
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (EventsWorker, APILogWorker):
        assert {"timeout", "at_exit"} <= set(inspect.signature(service.drain_all).parameters)
        service.drain_all(timeout=0.5, at_exit=False)  # nothing queued: returns at once


def _increment_slots(database: Path, limit_ids: list, commit_elsewhere: bool) -> object:
    """The slot increment of `/v2/concurrency_limits/increment-with-lease`, in a transaction that read first
    (as the route does); `commit_elsewhere`: another connection commits in between, as the server's event
    writes do. Its result, or the exception it raised."""
    import sqlite3

    from prefect.server.database import provide_database_interface
    from prefect.server.models import concurrency_limits_v2 as limits

    async def increment() -> object:
        async with provide_database_interface().session_context(begin_transaction=True) as session:
            await limits.bulk_read_concurrency_limits(session=session, names=["tag:x"])
            if commit_elsewhere:
                with contextlib.closing(sqlite3.connect(database)) as other:
                    other.execute("CREATE TABLE IF NOT EXISTS elsewhere (a)")
                    other.execute("INSERT INTO elsewhere VALUES (1)")
                    other.commit()
            try:
                return await limits.bulk_increment_active_slots(
                    session=session, concurrency_limit_ids=limit_ids, slots=1
                )
            except Exception as exc:  # noqa: BLE001 - the outcome is what the test reads
                return exc

    return asyncio.run(increment())


def test_a_slot_request_for_tags_without_limits_writes_nothing_on_sqlite(tmp_path, monkeypatch):
    """core/sqlite_api.py: Prefect still UPDATEs no rows for tags without limits, and on SQLite a commit
    elsewhere fails it (SQLITE_BUSY_SNAPSHOT: a 503, and the client waits 2 s). Ours answers without writing,
    and a tag with a limit still takes a slot."""
    import shutil

    from prefect.server.api import concurrency_limits_v2 as route
    from prefect.server.database import provide_database_interface
    from prefect.server.models import concurrency_limits_v2 as limits
    from prefect.server.schemas.core import ConcurrencyLimitV2
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, temporary_settings

    from core.local_server import build_template
    from core.sqlite_api import skip_empty_slot_updates

    assert "models.concurrency_limits_v2.bulk_increment_active_slots(" in inspect.getsource(
        route._acquire_concurrency_slots
    ), "the route no longer looks the increment up at call time: the fix would not reach it"
    database = tmp_path / "prefect.db"
    shutil.copyfile(build_template(), database)
    monkeypatch.setattr(limits, "bulk_increment_active_slots", limits.bulk_increment_active_slots)

    async def a_limit() -> uuid.UUID:
        async with provide_database_interface().session_context(begin_transaction=True) as session:
            made = await limits.create_concurrency_limit(session, ConcurrencyLimitV2(name="tag:x", limit=2))
            return made.id

    async def slots_taken(limit_id: uuid.UUID) -> int:
        async with provide_database_interface().session_context() as session:
            return (await limits.read_concurrency_limit(session, concurrency_limit_id=limit_id)).active_slots

    with temporary_settings({PREFECT_API_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{database}"}):
        failed = _increment_slots(database, [], commit_elsewhere=True)
        assert getattr(getattr(failed, "orig", None), "sqlite_errorname", None) == "SQLITE_BUSY_SNAPSHOT", (
            f"Prefect's increment without limits no longer fails so on SQLite ({failed!r}): the fix can go"
        )
        skip_empty_slot_updates()
        assert _increment_slots(database, [], commit_elsewhere=True) is True
        limit_id = asyncio.run(a_limit())
        assert _increment_slots(database, [limit_id], commit_elsewhere=False) is True
        assert asyncio.run(slots_taken(limit_id)) == 1


def test_a_flow_run_leaves_its_heartbeat_thread_unjoined(monkeypatch):
    """runtime/heartbeat.py: the sync flow engine enters `_send_heartbeats(self)` (looked up at call time)
    and would join the thread, which sleeps in whole seconds: each run's end waited up to 1 s. Ours exits at
    once, and the thread still sends its first heartbeat only and stops by itself."""
    import threading
    import time

    from prefect import flow_engine

    from runtime.heartbeat import end_runs_without_joining_heartbeats

    assert "with _send_heartbeats(self):" in inspect.getsource(flow_engine.FlowRunEngine.run_context)
    assert "join_on_exit" in inspect.signature(flow_engine._send_heartbeats).parameters
    monkeypatch.setattr(flow_engine, "_send_heartbeats", flow_engine._send_heartbeats)
    end_runs_without_joining_heartbeats()
    beats: list[float] = []

    class Engine:  # what _send_heartbeats reads of a flow run engine
        heartbeat_seconds, flow_run, logger = 30, None, flow_engine.get_logger("test")

        def _build_heartbeat_event_template(self) -> tuple[dict, list]:
            return {}, []

        def _emit_flow_run_heartbeat(self, resource: dict, related: list) -> None:
            beats.append(time.monotonic())

    before = set(threading.enumerate())
    with flow_engine._send_heartbeats(Engine()):
        (thread,) = set(threading.enumerate()) - before
        while not beats:
            time.sleep(0.01)
    assert thread.is_alive(), "the run's end waited for the heartbeat thread"
    thread.join(timeout=5)
    assert not thread.is_alive() and len(beats) == 1


# ------------------------------------------------------- the tests' session server (tests/conftest.py)
def test_a_global_settings_context_reaches_plain_threads():
    """conftest's `prefect_server` points the whole process at the session's server as Prefect's own test
    harness does: plain threads (no copied context) must see its API URL, not start an ephemeral server."""
    import threading

    from prefect.context import _temporary_global_settings_context, get_settings_context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    seen: list[str | None] = []
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        with _temporary_global_settings_context(get_settings_context()):
            thread = threading.Thread(target=lambda: seen.append(PREFECT_API_URL.value()))
            thread.start()
            thread.join()
    assert seen == ["http://127.0.0.1:9/api"]


def test_the_api_app_is_built_final():
    """Read from the source: importing Prefect's server takes seconds (core/local_server imports it late)."""
    from importlib.util import find_spec

    tree = ast.parse(Path(find_spec("prefect.server.api.server").origin).read_text(encoding="utf-8"))
    (create_app,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "create_app"]
    assert "final" in [a.arg for a in create_app.args.args + create_app.args.kwonlyargs]


def test_the_client_starts_the_one_temporary_server_we_start_first():
    """`start_temporary_server` starts `SubprocessASGIServer()` so that its failure is ours to word: the
    client must take that same instance (one per port key, None) and start it only when not running."""
    from importlib.util import find_spec

    from prefect.server.api.server import SubprocessASGIServer

    assert SubprocessASGIServer() is SubprocessASGIServer()
    client = Path(find_spec("prefect.client.orchestration").origin).read_text(encoding="utf-8")
    assert "server = SubprocessASGIServer()\n        server.start()" in client
    start = inspect.getsource(SubprocessASGIServer.start)
    assert "if not self.running:" in start and "raise RuntimeError(error_message)" in start


def test_a_released_slot_is_announced_by_its_event_name():
    from prefect.concurrency import _events

    assert 'f"prefect.concurrency-limit.{phase}"' in inspect.getsource(_events._emit_concurrency_event)
    assert "released" in str(inspect.signature(_events._emit_concurrency_event).parameters["phase"])


# ---------------------------------------------------------------- the guard
PRIVATE_MODULES = re.compile(r"^prefect\.(server|_internal|utilities|events\.worker|logging\.handlers)\b")
BLOCK_OPTIONS = re.compile(r"^_(block_type_name|block_type_slug|logo_url|description|documentation_url)$")


def _prefect_object(module: str, name: str) -> object:
    from importlib import import_module

    return getattr(import_module(module), name, None)


def _private_uses() -> set[tuple[str, str]]:
    """(file, what) for each private Prefect part product code uses: a private module imported (or named
    in a string), `_sync=`, a `_name` of a Prefect class called (`super()._x`, `Class._x`) or overridden."""
    found = set()
    for package in PRODUCT:
        for path in (REPO / package).rglob("*.py"):
            where = str(path.relative_to(REPO))
            tree = ast.parse(path.read_text(encoding="utf-8"))
            imported: dict[str, tuple[str, str]] = {}  # local name -> (prefect module, name)
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prefect"):
                    imported.update({a.asname or a.name: (node.module, a.name) for a in node.names})
                    if PRIVATE_MODULES.match(node.module):
                        found.add((where, node.module))
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    if PRIVATE_MODULES.match(node.value) and " " not in node.value:
                        found.add((where, node.value))
                elif isinstance(node, ast.keyword) and node.arg == "_sync":
                    found.add((where, "_sync"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and re.match(r"^_[a-z]", node.attr):
                    base = node.value
                    on_prefect = isinstance(base, ast.Name) and base.id in imported
                    on_super = isinstance(base, ast.Call) and getattr(base.func, "id", "") == "super"
                    if on_prefect or on_super:
                        found.add((where, node.attr))
                if isinstance(node, ast.ClassDef):
                    named = [b.id for b in node.bases if isinstance(b, ast.Name) and b.id in imported]
                    bases = [_prefect_object(*imported[name]) for name in named]
                    for item in node.body:
                        targets = [t.id for t in getattr(item, "targets", []) if isinstance(t, ast.Name)]
                        for name in [getattr(item, "name", "")] + targets:
                            private = re.match(r"^_[a-z]", name) and not BLOCK_OPTIONS.match(name)
                            if private and any(hasattr(base, name) for base in bases):
                                found.add((where, name))  # overrides a private part of a Prefect class
    return found


def test_every_private_prefect_part_the_product_uses_is_listed_in_the_readme():
    listed = _readme_section()
    missing = sorted(
        f"{where}: {what}" for where, what in _private_uses()
        if where not in listed or what not in listed
    )  # fmt: skip
    assert not missing, f"private Prefect parts in use but not listed in the README section: {missing}"


def test_a_flow_runs_sigterm_bridge_is_the_handler_we_stand_in():
    """`capture_sigterm` (every flow run enters it) installs `engine._prefect_sigterm_handler`, looked
    up when it installs: inside `stop_on_signals` that is ours, so a CLI's SIGTERM silences the console,
    ends ffmpeg and is not retried; outside, Prefect's own again."""
    import signal

    import prefect.utilities.engine as engine

    from core.interrupt import _on_signal, stop_on_signals

    prefects = engine._prefect_sigterm_handler
    with stop_on_signals(), engine.capture_sigterm():
        assert signal.getsignal(signal.SIGTERM) is _on_signal
    assert engine._prefect_sigterm_handler is prefects
    with engine.capture_sigterm():
        assert signal.getsignal(signal.SIGTERM) is prefects


# ------------------------------------------------------------- clients' TLS contexts (core/client_tls.py)
def test_prefect_clients_build_their_verified_context_where_we_share_it(monkeypatch):
    """Prefect builds each client's context with `ssl.create_default_context(cafile=...)` in the modules
    core/client_tls.py names, looking `ssl` up at call time: shared, four clients of both kinds are one
    context, still verifying; an insecure client (the setting Prefect reads) gets its own, and the shared
    one keeps verifying after it."""
    import importlib
    import ssl

    import certifi
    from prefect.client.orchestration import PrefectClient, SyncPrefectClient
    from prefect.settings import PREFECT_API_TLS_INSECURE_SKIP_VERIFY, temporary_settings

    from core import client_tls

    for name in client_tls.CLIENT_TLS_MODULES:
        module = importlib.import_module(name)
        monkeypatch.setattr(module, "ssl", ssl)  # as Prefect has it; put back as it was after the test
        assert "ssl.create_default_context(cafile=cert_file)" in inspect.getsource(module), name
    client_tls.share_client_tls_contexts()
    client_tls._verified_context.cache_clear()
    for client in (PrefectClient, SyncPrefectClient) * 2:
        client("http://127.0.0.1:9/api")
    shared = client_tls._verified_context.cache_info()
    assert (shared.misses, shared.hits) == (1, 3), shared
    with temporary_settings({PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}):
        PrefectClient("http://127.0.0.1:9/api")
    assert client_tls._verified_context.cache_info() == shared
    context = client_tls.SharedVerifiedContexts.create_default_context(cafile=certifi.where())
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
