"""Run it for real: a Prefect server on a fresh PostgreSQL database, deployments, workers, the inbox.

Every step is a command of the README's "Run it for real" section, run as a subprocess: the server script,
bootstrap (twice: idempotent), `prefect deploy --all`, a worker per pool, the inbox watcher. Then:
(a) `prefect deployment run` of the subtitle flow completes with its outputs on disk; (b) a video dropped
into the inbox starts the subtitle and transcode runs by itself and both complete; (c) a text file dropped
beside it starts nothing; (d) a run on a missing file fails with that error in its state. The alert
automations are shown to act: the failure-rate one fires on (d), the heartbeat one crashes a silent run;
and a GPU slot held across a server restart is still held, renewable and releasable.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pg_server import free_port

from samples.video import Cue, make_subtitled_video

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CUES = [Cue(0.3, 1.8, "部署测试字幕"), Cue(2.2, 3.8, "Deployed for real")]
SUBTITLES = "extract-subtitles/subtitles"
TRANSCODE_FLOW = "transcode"


def _drop_database(name: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database="postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


class Stack:
    """The processes of the README, each logging to a file the failure messages quote."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.procs: dict[str, subprocess.Popen] = {}
        self.server_cmd: tuple[str, ...] = ()

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def tail(self, name: str, lines: int = 40) -> str:
        text = self.log(name).read_text(encoding="utf-8", errors="replace") if self.log(name).exists() else ""
        return f"--- {name}.log\n" + "\n".join(text.splitlines()[-lines:])

    def start(self, name: str, *cmd: str, env: dict[str, str] | None = None) -> None:
        with open(self.log(name), "wb") as out:
            self.procs[name] = subprocess.Popen(
                cmd, cwd=REPO, env={**self.env, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def run(self, name: str, *cmd: str, timeout: float = 120) -> str:
        proc = subprocess.run(
            cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        self.log(name).write_text(proc.stdout + proc.stderr, encoding="utf-8")
        assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}\n{self.tail(name)}"
        return proc.stdout

    def stop(self, name: str, sig: int = signal.SIGINT) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)  # the process group: a worker's flow-run children go with it
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_until(what: str, check: Callable[[], object], timeout: float, stack: Stack, *logs: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n" + "\n".join(
        stack.tail(n) for n in logs))  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[Stack, dict[str, Path], str]]:
    root = tmp_path_factory.mktemp("deployments-e2e")
    dirs = {"out": root / "output", "inbox": root / "inbox", "home": root / "prefect-home"}
    database = f"yivideo_deployments_e2e_{uuid.uuid4().hex[:8]}"
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(dirs["home"]),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",  # pick runs up fast (default 10 s)
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",  # the minimum: the heartbeat alert's grace can be 60 s
        "YIVIDEO_GPU_GATE": "always",  # the CPU host counts as a GPU: bootstrap makes its limit, OCR uses it
        "YIVIDEO_GPU_RUN_DIR": str(root / "gpu-broker"),  # this stack's own slot broker
    }
    s = Stack(root, env)
    s.server_cmd = (str(BIN / "python"), "-m", "deployments.server", "--database", database,
                    "--home", str(dirs["home"]), "--port", str(port))  # fmt: skip
    try:
        s.start("server", *s.server_cmd)
        wait_until("the server", lambda: _healthy(api), 150, s, "server")
        yield s, dirs, api
    finally:
        for name in ("inbox", "worker-gpu", "worker-cpu"):
            s.stop(name)
        s.stop("server", signal.SIGTERM)
        s.stop("server-restarted", signal.SIGTERM)
        _drop_database(database)


def _healthy(api: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _client(api: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class _Scoped:
        def __enter__(self):
            self.settings = temporary_settings({PREFECT_API_URL: api})
            self.settings.__enter__()
            self.client = get_client(sync_client=True)
            return self.client.__enter__()

        def __exit__(self, *exc):
            self.client.__exit__(*exc)
            self.settings.__exit__(*exc)

    return _Scoped()


def _runs(api: str) -> list:
    with _client(api) as client:
        return client.read_flow_runs(limit=50)


def _run_id(stdout: str) -> uuid.UUID:
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", stdout)
    assert match, stdout
    return uuid.UUID(match.group(1))


def test_deployed_flows_run_by_command_by_upload_and_fail_clearly(stack, media_dir):
    s, dirs, api = stack
    from prefect.client.schemas.objects import StateType

    from blocks.policy import AlertRules
    from core.block_names import ALERT_RULES

    # Test-sized alert thresholds, saved as a user would in the UI; bootstrap keeps them and builds on them.
    with _client(api):
        AlertRules(failure_threshold=1, heartbeat_grace_seconds=60).save(ALERT_RULES)

    py = str(BIN / "python")
    first = s.run("bootstrap", py, "-m", "deployments.bootstrap", "--output-root", str(dirs["out"]),
                  "--inbox", str(dirs["inbox"]))  # fmt: skip
    assert "created" in first and "automation" in first, first
    assert re.search(r"gpu limit +gpu:\S+:0 +created", first), first
    again = s.run("bootstrap-again", py, "-m", "deployments.bootstrap", "--output-root", str(dirs["out"]),
                  "--inbox", str(dirs["inbox"]))  # fmt: skip
    assert "created" not in again and "updated" not in again, f"bootstrap is idempotent:\n{again}"
    s.start("worker-cpu", str(BIN / "python"), "-m", "deployments.worker", "--pool", "cpu")
    s.start("worker-gpu", str(BIN / "python"), "-m", "deployments.worker", "--pool", "gpu")
    s.start("inbox", py, "-m", "deployments.inbox", "--dir", str(dirs["inbox"]), "--settle-seconds", "1")
    s.run("deploy", str(BIN / "prefect"), "--no-prompt", "deploy", "--all", timeout=180)
    silent = _silent_run(api)  # checked at the end: the heartbeat automation's grace runs meanwhile

    video = make_subtitled_video(media_dir / "e2e-clip.mp4", CUES, duration=4.5, size=(480, 270))
    manual_out = dirs["out"].parent / "manual-output"
    # (a) by command, with parameters
    run_a = _run_id(s.run("run-a", str(BIN / "prefect"), "deployment", "run", SUBTITLES,
                          "--param", f"video={video}", "--param", f"output_dir={manual_out}"))  # fmt: skip
    # (d) a run that fails: the input does not exist
    missing = dirs["out"].parent / "no-such-video.mp4"
    run_d = _run_id(s.run("run-d", str(BIN / "prefect"), "deployment", "run", SUBTITLES,
                          "--param", f"video={missing}"))  # fmt: skip
    # (b) and (c): an upload and a non-media file
    wait_until("the inbox watcher", lambda: "watching" in s.log("inbox").read_text(), 60, s, "inbox")
    dropped = dirs["inbox"] / "upload.mp4"
    shutil.copy(video, dirs["inbox"] / ".upload.mp4.part")
    (dirs["inbox"] / ".upload.mp4.part").rename(dropped)
    notes = dirs["inbox"] / "notes.txt"
    notes.write_text("meeting notes, not a video\n", encoding="utf-8")

    def finished(run_id: uuid.UUID):
        with _client(api) as client:
            run = client.read_flow_run(run_id)
        return run if run.state and run.state.is_final() else None

    logs = ("worker-gpu", "worker-cpu", "server")
    a = wait_until("run (a)", lambda: finished(run_a), 180, s, *logs)
    assert a.state.is_completed(), f"(a) {a.state}\n" + "\n".join(s.tail(n) for n in logs)
    srt = next(manual_out.glob("subtitles/e2e-clip-*/e2e-clip.srt"))
    assert "部署测试字幕" in srt.read_text(encoding="utf-8") and "Deployed" in srt.read_text(encoding="utf-8")

    _assert_gpu_slots_were_taken_and_given_back(api, s)

    d = wait_until("run (d)", lambda: finished(run_d), 120, s, *logs)
    assert d.state.is_failed() and f"'{missing}': file does not exist" in d.state.message, d.state

    def uploaded_runs():
        runs = [r for r in _runs(api) if r.parameters.get("video") == str(dropped)
                or r.parameters.get("media") == str(dropped)]  # fmt: skip
        return runs if len(runs) >= 2 and all(r.state.is_final() for r in runs) else None

    b = wait_until("the runs started by the upload", uploaded_runs, 240, s, "inbox", *logs)
    names = {}
    with _client(api) as client:
        for run in b:
            assert run.state.is_completed(), f"(b) {run.name}: {run.state}"
            names[client.read_deployment(run.deployment_id).name] = run
    assert {"subtitles", TRANSCODE_FLOW} <= set(names), names
    assert list(dirs["out"].glob("subtitles/upload-*/upload.srt")), "the uploaded video's subtitles"
    assert list(dirs["out"].glob(f"{TRANSCODE_FLOW}/upload-*/*")), "the uploaded video's renditions"

    # the nightly sweep is on the scheduler's books
    with _client(api) as client:
        sweep = client.read_deployment_by_name("sweep-inbox/inbox-sweep")
    nightly = [r for r in _runs(api) if r.deployment_id == sweep.id and r.state.type == StateType.SCHEDULED]
    assert nightly and all(r.expected_start_time.hour == 2 for r in nightly), nightly

    # (c) the text file was seen, logged as skipped, and started nothing
    assert f"skipped {notes}" in s.log("inbox").read_text(), s.tail("inbox")
    deployed = [
        r for r in _runs(api) if r.deployment_id and r.state.type != StateType.SCHEDULED and r.id != silent
    ]
    assert not [r for r in deployed if str(notes) in json.dumps(r.parameters)], "no run for a text file"
    assert len(deployed) == 2 + len(b), [(r.name, r.parameters) for r in deployed]

    _assert_alerts_act(api, s, silent)
    _assert_leases_survive_a_server_restart(api, s)


def _assert_gpu_slots_were_taken_and_given_back(api: str, s: Stack) -> None:
    """The OCR stages held this host's GPU limit; the events name the task run (what the alert keys on)."""
    from prefect.events.filters import EventFilter, EventNameFilter

    def slot_events():
        with _client(api) as client:
            named = EventNameFilter(name=[f"prefect.concurrency-limit.{p}" for p in ("acquired", "released")])
            page = client.read_events(EventFilter(event=named), limit=50)
        gpu = [e for e in page.events if (e.resource.get("prefect.resource.name") or "").startswith("gpu:")]
        phases = {e.event.rsplit(".", 1)[1] for e in gpu}
        return gpu if {"acquired", "released"} <= phases else None

    events = wait_until("GPU slot events", slot_events, 60, s, "worker-gpu")
    described = [(e.event, e.payload.get("stage"), sorted(r.role for r in e.related)) for e in events]
    assert all("task-run" in roles for _, _, roles in described), described

    def all_given_back():  # the inbox's runs (b) may still hold the slot while (a) is checked: wait for them
        with _client(api) as client:
            limits = [lim for lim in client.read_global_concurrency_limits() if lim.name.startswith("gpu:")]
        return limits if limits and all(lim.active_slots == 0 for lim in limits) else None

    wait_until("every GPU slot given back", all_given_back, 180, s, "worker-gpu")


def _silent_run(api: str) -> uuid.UUID:
    """A run whose worker "died": Running, one heartbeat (what the engine sends first), then nothing."""
    from prefect.states import Running

    from deployments.inbox import send_events

    with _client(api) as client:
        run = client.create_flow_run_from_deployment(
            client.read_deployment_by_name("run-pipeline/pipeline").id,
            parameters={"video": "/nowhere/never-ran.mp4"},
            state=Running(),
        )
        send_events([{"event": "prefect.flow-run.heartbeat",
                      "resource": {"prefect.resource.id": f"prefect.flow-run.{run.id}"}}])  # fmt: skip
    return run.id


def _assert_alerts_act(api: str, s: Stack, silent: uuid.UUID) -> None:
    """The failure-rate automation fired on (d); the heartbeat one marked the silent run Crashed."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    from deployments.bootstrap import ALERT_PREFIX

    with _client(api) as client:
        failure = client.read_automations_by_name(f"{ALERT_PREFIX}failure rate above threshold")[0]

    def fired():
        with _client(api) as client:
            page = client.read_events(
                EventFilter(
                    event=EventNameFilter(name=["prefect.automation.triggered"]),
                    resource=EventResourceFilter(id=[f"prefect.automation.{failure.id}"]),
                ),
                limit=10,
            )
        return page.events

    wait_until("the failure-rate automation", fired, 60, s, "server")

    def crashed():  # from the history: the crash re-run automation schedules it again at once
        with _client(api) as client:
            states = client.read_flow_run_states(silent)
        return next((st for st in states if st.type == StateType.CRASHED), None)

    state = wait_until("the heartbeat automation to crash the silent run", crashed, 120, s, "server")
    assert "no heartbeat" in state.message


def _assert_leases_survive_a_server_restart(api: str, s: Stack) -> None:
    """A slot held across a restart is still held, renewable and releasable (the filesystem lease storage)."""
    with _client(api) as client:
        (limit,) = [lim for lim in client.read_global_concurrency_limits() if lim.name.startswith("gpu:")]
        held = client.increment_concurrency_slots_with_lease([limit.name], 1, "concurrency", 600).json()
    lease = uuid.UUID(held["lease_id"])
    s.stop("server", signal.SIGTERM)
    s.start("server-restarted", *s.server_cmd)
    wait_until("the restarted server", lambda: _healthy(api), 150, s, "server-restarted")
    with _client(api) as client:
        assert client.read_global_concurrency_limit_by_name(limit.name).active_slots == 1
        client.renew_concurrency_lease(lease, 600)  # a server that forgot the lease answers 404 here
        client.release_concurrency_slots_with_lease(lease)
        assert client.read_global_concurrency_limit_by_name(limit.name).active_slots == 0
