"""GPU-lock health: per GPU limit the holders, lease ages, waiters, and over a window the acquisitions,
timeouts, mean wait and mean hold (the seeds' monitoring API), printed and published as an artifact.

python -m gpu.health [--window 3600] [--json] [--no-artifact]
python -m gpu.health free gpu:<host>:<index> [--reset]

Every `gpu:*` limit of the Prefect server is listed with its slots in use; this host's broker adds the
live detail of its own devices (the other hosts' detail is on those hosts). `free` gives back, by hand,
slots whose holder is gone: it releases the leases a dead broker of this host left in its state file;
with --reset it also sets the limit's active slots to 0 (`prefect gcl update NAME --active-slots 0`),
which is only safe when nothing holds that limit any more.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from typing import Any

from gpu.client import GpuSlotError, broker_dir, broker_status
from gpu.devices import GPU_LIMIT_NAME
from gpu.leases import read_state

ARTIFACT_KEY = "gpu-health"


async def _server_limits() -> list[dict[str, Any]]:
    from prefect.client.orchestration import get_client

    rows: list[dict[str, Any]] = []
    async with get_client() as client:
        offset = 0
        while True:
            page = await client.read_global_concurrency_limits(limit=200, offset=offset)
            rows += [
                {"limit": g.name, "capacity": g.limit, "active_slots": g.active_slots, "active": g.active}
                for g in page
                if g.name.startswith(f"{GPU_LIMIT_NAME}:")
            ]
            if len(page) < 200:
                return rows
            offset += 200


def collect_health(window: float = 3600.0) -> dict[str, Any]:
    """The server's GPU limits, merged with the live state of this host's broker (when one runs)."""
    limits = {row["limit"]: row for row in asyncio.run(_server_limits())}
    try:
        local = broker_status(window)
    except (GpuSlotError, OSError):
        local = None
    for device in (local or {}).get("devices", []):
        limits.setdefault(device["limit"], {"limit": device["limit"], "active_slots": None})
        limits[device["limit"]].update(device)
    return {"window": window, "broker": local and {k: v for k, v in local.items() if k != "devices"},
            "limits": [limits[name] for name in sorted(limits)]}  # fmt: skip


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def render_markdown(report: dict[str, Any]) -> str:
    broker = report["broker"]
    lines = [
        "# GPU slots",
        "",
        (
            f"Broker on `{broker['host']}` (pid {broker['pid']}, up {broker['uptime']:.0f} s, gate "
            f"{broker['gate']}, leases {broker['lease_seconds']:.0f} s)."
            if broker
            else "No GPU broker runs on this host (idle): only the server's counts are shown."
        ),
        "",
        "| limit | in use / capacity | holders | waiters | acquired | timeouts | abandoned | mean wait "
        "| mean hold |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["limits"]:
        window = row.get("window") or {}
        holders = "<br>".join(
            f"{h['stage']} pid {h['pid']} {h['units']}u {h['held']:.1f} s" for h in row.get("holders", [])
        )
        waiters = "<br>".join(
            f"{w['stage']} p{w['effective_priority']} {w['waited']:.1f} s" for w in row.get("waiters", [])
        )
        lines.append(
            f"| {row['limit']} | {row.get('active_slots', '-')} / {row.get('capacity', '-')} "
            f"| {holders or '-'} | {waiters or '-'} | {window.get('acquisitions', '-')} "
            f"| {window.get('timeouts', '-')} | {window.get('abandoned', '-')} "
            f"| {_seconds(window.get('mean_wait'))} | {_seconds(window.get('mean_hold'))} |"
        )
    leases = [(row["limit"], lease) for row in report["limits"] for lease in row.get("leases", [])]
    if leases:
        lines += ["", "| limit | lease | age | since renewal | holder |", "|---|---|---|---|---|"]
        lines += [
            f"| {limit} | `{lease['id']}` | {lease['age']:.1f} s | {lease['since_renewal']:.1f} s "
            f"| {'orphan' if lease['orphan'] else lease['holder'] or 'idle'} |"
            for limit, lease in leases
        ]
    lines += ["", f"Window: the last {report['window']:.0f} s of this host's broker."]
    return "\n".join(lines)


def publish_artifact(report: dict[str, Any]) -> uuid.UUID:
    """The report as the markdown artifact `gpu-health` of a short `gpu-health` flow run (Prefect ties
    artifacts to runs; the flow can also be deployed on a schedule to keep the artifact fresh)."""
    from prefect import flow
    from prefect.artifacts import create_markdown_artifact

    @flow(name="gpu-health", log_prints=False)
    def gpu_health(markdown: str) -> uuid.UUID:
        return create_markdown_artifact(
            markdown, key=ARTIFACT_KEY, description="GPU slots: holders, waiters, waits and holds"
        )

    return gpu_health(render_markdown(report))


async def _free(limit: str, reset: bool) -> list[str]:
    """Release the leases a dead broker of this host left for `limit`; optionally zero its active slots."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    done: list[str] = []
    leases = read_state(broker_dir()).leases
    async with get_client() as client:
        for lease in leases:
            if lease.get("limit") == limit:
                await client.release_concurrency_slots_with_lease(uuid.UUID(lease["id"]))
                done.append(f"released lease {lease['id']}")
        if reset:
            await client.update_global_concurrency_limit(limit, GlobalConcurrencyLimitUpdate(active_slots=0))
            done.append(f"set the active slots of {limit} to 0")
    return done


def free_slots(limit: str, reset: bool = False) -> list[str]:
    try:
        status = broker_status()
    except (GpuSlotError, OSError):
        status = None
    for device in (status or {}).get("devices", []):
        if device["limit"] == limit and device["holders"]:
            holders = ", ".join(f"{h['stage']} (pid {h['pid']})" for h in device["holders"])
            raise GpuSlotError(
                f"{limit} is held by live processes of this host's broker: {holders}; end the stuck one "
                f"(its slot is freed the moment it exits) instead of freeing the limit under it"
            )
    return asyncio.run(_free(limit, reset))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Health of the GPU slots (Prefect GPU limits).")
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--window", type=float, default=3600.0, help="seconds of history to summarise")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-artifact", action="store_true", help="do not publish the Prefect artifact")
    free = sub.add_parser("free", help="give back the slots of a limit whose holders are gone")
    free.add_argument("limit", help="e.g. gpu:myhost:0")
    free.add_argument("--reset", action="store_true", help="also set its active slots to 0")
    args = parser.parse_args(argv)
    if args.command == "free":
        print("\n".join(free_slots(args.limit, args.reset)) or "nothing to release")
        return 0
    report = collect_health(args.window)
    print(json.dumps(report, indent=2) if args.json else render_markdown(report))
    if not args.no_artifact:
        print(f"artifact {ARTIFACT_KEY}: {publish_artifact(report)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
