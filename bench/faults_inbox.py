"""The fault bench's inbox row (bench/faults.py runs it): the watcher killed -9 mid-burst of uploads.

The upload deployments of prefect.yaml (those with a `yivideo.media.uploaded` trigger) are deployed with
`prefect deploy` on the bench's server, their pools paused (the triggered runs are created, and counted, but
not executed: running them is the other benches' business). `python -m deployments.inbox` watches a fresh
inbox; a mix of video, audio and image files (distinct contents) is copied in one by one; half-way through,
the watcher is killed with -9; the rest arrive while it is down; then it is started again. Per file: the
`yivideo.media.uploaded` events the server stored and the flow runs its triggers created, against what
prefect.yaml's triggers expect for its kind. "recover" = restart of the watcher -> last file announced.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
KINDS = ("video", "audio", "image")


def upload_deployments() -> dict[str, dict[str, int]]:
    """{deployment name: {kind: triggers}} for prefect.yaml's deployments started by uploads."""
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    found: dict[str, dict[str, int]] = {}
    for deployment in spec["deployments"]:
        for trigger in deployment.get("triggers") or []:
            kind = (trigger.get("match") or {}).get("yivideo.media.kind")
            if kind:
                counts = found.setdefault(deployment["name"], {})
                counts[kind] = counts.get(kind, 0) + 1
    return found


def make_media(folder: Path, per_kind: int) -> list[Path]:
    """`per_kind` small files of each kind, each with its own content (its own digest and resource)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(per_kind):
        hz = 220 + 40 * i
        specs = {
            f"clip-{i}.mp4": ["-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration=1.{i}",
                              "-f", "lavfi", "-i", f"sine=frequency={hz}:duration=1.{i}", "-shortest",
                              "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                              "-c:a", "aac"],
            f"tone-{i}.wav": ["-f", "lavfi", "-i", f"sine=frequency={hz}:sample_rate=16000:duration=1.{i}"],
            f"still-{i}.png": ["-f", "lavfi", "-i", f"testsrc2=size={160 + 8 * i}x120", "-frames:v", "1"],
        }  # fmt: skip
        for name, args in specs.items():
            out = folder / name
            subprocess.run(["ffmpeg", "-y", "-v", "error", *args, str(out)], check=True, timeout=120)
            made.append(out)
    return made


def start_watcher(inbox: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    out = log.open("ab")
    cmd = [sys.executable, "-m", "deployments.inbox", "--dir", str(inbox), "--settle-seconds", "1"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip


async def prepare(root: Path, paused: bool) -> None:
    """Pools, the variables the deployments template, and the upload deployments (`prefect deploy`)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate

    from deployments.bootstrap import (
        CPU_POOL_CONCURRENCY,
        INBOX_VARIABLE,
        OUTPUT_VARIABLE,
        Report,
        ensure_pools,
        ensure_variables,
    )

    async with get_client() as client:
        report = Report([])
        await ensure_pools(client, report, None, CPU_POOL_CONCURRENCY)
        variables = {OUTPUT_VARIABLE: str(root / "out"), INBOX_VARIABLE: str(root / "inbox")}
        await ensure_variables(client, report, variables)
        for pool in ("cpu", "gpu"):
            await client.update_work_pool(pool, WorkPoolUpdate(is_paused=paused))


def deploy(env: dict[str, str], log: Path) -> None:
    prefect = str(Path(sys.executable).parent / "prefect")
    names = [arg for name in upload_deployments() for arg in ("--name", name)]
    with log.open("ab") as out:
        subprocess.run([prefect, "--no-prompt", "deploy", *names], cwd=REPO, env=env, stdout=out,
                       stderr=subprocess.STDOUT, check=True, timeout=600)  # fmt: skip


def _ours():
    """The flow-run filter for the runs of the upload deployments."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    return DeploymentFilter(name=DeploymentFilterName(any_=list(upload_deployments())))


async def delete_triggered_runs() -> None:
    """The runs the uploads started were only counted: delete them, or a worker would run them later."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        for run in await client.read_flow_runs(deployment_filter=_ours(), limit=200):
            await client.delete_flow_run(run.id)


async def counts(files: list[Path]) -> tuple[dict[Path, int], dict[Path, int]]:
    """Per file: uploaded events stored by the server, and flow runs whose parameters name it."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    from deployments.inbox import UPLOADED

    events = {f: 0 for f in files}
    runs = {f: 0 for f in files}
    by_path = {str(f.resolve()): f for f in files}
    async with get_client() as client:
        page = await client.read_events(EventFilter(event=EventNameFilter(name=[UPLOADED])), limit=50)
        seen = list(page.events)
        while page.next_page:
            page = await client.read_events_page(page.next_page)
            seen += page.events
        for event in seen:
            path = by_path.get(str(event.payload.get("path")))
            if path is not None:
                events[path] += 1
        for run in await client.read_flow_runs(deployment_filter=_ours(), limit=200):
            text = json.dumps(run.parameters)
            for key, path in by_path.items():
                if json.dumps(key)[1:-1] in text:
                    runs[path] += 1
    return events, runs


def expected_runs(path: Path) -> int:
    kind = {".mp4": "video", ".wav": "audio", ".png": "image"}[path.suffix]
    return sum(kinds.get(kind, 0) for kinds in upload_deployments().values())


def ledger_rows(inbox: Path) -> dict[str, tuple[str, float]]:
    """{path: (status, when it was last claimed or finished)} from the watcher's ledger."""
    from deployments.inbox import Ledger

    ledger = Ledger.for_inbox(inbox)
    try:
        return {
            path: (status, at)
            for path, status, at in ledger._db.execute("SELECT path, status, at FROM files")
        }
    finally:
        ledger.close()


def wait_log(log: Path, text: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while log.read_text(errors="replace").count(text) < count and time.monotonic() < deadline:
        time.sleep(0.2)


def inbox_row(root: Path, env: dict[str, str], per_kind: int, timeout: float) -> tuple:
    """The row: (name, files, ok, lost, duplicated, recover s, notes)."""
    inbox, staging, log = root / "inbox", root / "inbox-staging", root / "inbox.log"
    inbox.mkdir(parents=True)
    files = make_media(staging, per_kind)
    order = [f for i in range(per_kind) for f in files[3 * i : 3 * i + 3]]  # kinds interleaved
    asyncio.run(prepare(root, paused=True))
    deploy(env, root / "deploy.log")
    watcher = start_watcher(inbox, env, log)
    try:
        wait_log(log, "watching", 1, 120.0)
        dropped = []
        for n, src in enumerate(order):
            if n == len(order) // 2:
                os.killpg(watcher.pid, signal.SIGKILL)
                watcher.wait()
            dest = inbox / src.name
            dest.write_bytes(src.read_bytes())
            dropped.append(dest)
            time.sleep(0.4)
        claimed = [p for p, (status, _) in ledger_rows(inbox).items() if status == "pending"]
        restarted_wall, restarted = time.time(), time.monotonic()
        watcher = start_watcher(inbox, env, log)
        rows: dict[str, tuple[str, float]] = {}
        while time.monotonic() - restarted < timeout:
            time.sleep(0.5)
            rows = ledger_rows(inbox)
            if len(rows) >= len(dropped) and all(status != "pending" for status, _ in rows.values()):
                break
        want = {f: expected_runs(f) for f in dropped}
        deadline = time.monotonic() + 120
        while True:  # the triggers act a little after the events
            events, runs = asyncio.run(counts(dropped))
            if all(runs[f] >= want[f] for f in dropped) or time.monotonic() > deadline:
                break
            time.sleep(2.0)
    finally:
        os.killpg(watcher.pid, signal.SIGTERM)
        watcher.wait(timeout=30)
        asyncio.run(delete_triggered_runs())
        asyncio.run(prepare(root, paused=False))
    ok = sum(events[f] == 1 and runs[f] == want[f] for f in dropped)
    lost = sum(events[f] == 0 or runs[f] < want[f] for f in dropped)
    dup = sum(events[f] > 1 or runs[f] > want[f] for f in dropped)
    done = [at for status, at in rows.values() if status != "pending"]
    recover = max(done) - restarted_wall if len(done) >= len(dropped) else float("nan")
    claims = [rows[p][1] - restarted_wall for p in claimed if p in rows and rows[p][0] != "pending"]
    ready = _first_watching_after(log, restarted_wall)
    kinds = {
        k: sum(f.suffix == s for f in dropped) for k, s in zip(KINDS, (".mp4", ".wav", ".png"), strict=True)
    }
    notes = (
        f"{kinds}; events {sum(events.values())}, runs {sum(runs.values())}"
        f" of {sum(want.values())} expected; "
        f"{len(claimed)} claim(s) left pending by the killed watcher, announced "
        f"{', '.join(f'{c:.1f}' for c in claims) or '-'} s after the restart (watcher up at {ready:.1f} s)"
    )
    return "inbox watcher -9", len(dropped), ok, lost, dup, round(recover, 1), notes


def _first_watching_after(log: Path, since: float) -> float:
    """Seconds from `since` to the restarted watcher's "watching" line (its start-up: imports, observer)."""
    import datetime as dt

    for line in log.read_text(errors="replace").splitlines():
        if " INFO watching " in line:
            at = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if at >= since:
                return at - since
    return float("nan")
