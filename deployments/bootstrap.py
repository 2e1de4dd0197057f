"""Set up a Prefect server for YiVideo, idempotently: work pools, GPU limits, blocks, variables, automations.

python -m deployments.bootstrap --output-root DIR --inbox DIR [--gpu-units N]

Run it before `prefect deploy --all` (prefect.yaml reads the variables and names the blocks). Running it
again changes only what differs: pools follow the given options; this host's GPU limits are created when
missing (their sizes, like blocks edited in the UI, are kept unless --gpu-units / --reset-blocks say
otherwise); variables follow the arguments given; the alert automations are rebuilt from the `AlertRules`
block, so editing the block and re-running applies it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import yaml
from pydantic_core import to_jsonable_python

from blocks.asr import AsrConfig
from blocks.enhance import EnhanceConfig
from blocks.policy import POLICY_ENV, AlertRules, RunPolicy
from blocks.presets import TranscodePresets
from blocks.runner import RunnerConfig
from blocks.subtitles import SubtitleConfig
from core.block_names import ALERT_RULES, LEGACY, RUN_POLICY, SHIPPED, SUBTITLE_SETTINGS
from deployments.crash_reruns import crash_rerun_automation
from gpu.devices import GPU_LIMIT_NAME, host_devices, host_name, limit_name
from gpu.limits import ensure_limit
from gpu.policy import GpuPolicy, load_gpu_policy, policy_document_name

REPO = Path(__file__).resolve().parents[1]
POOLS = {
    "cpu": "CPU work: transcoding, the inbox sweep",
    "gpu": "GPU-capable flows (OCR, speech, enhancement); their stages take slots of the GPU limits",
}
OUTPUT_VARIABLE = "yivideo_output_root"
INBOX_VARIABLE = "yivideo_inbox_dir"
ALERT_PREFIX = "yivideo: "
CPU_POOL_CONCURRENCY = 8  # flow-run processes at once on the cpu pool (each holds API connections)
CRASH_RERUN_AUTOMATION = f"{ALERT_PREFIX}re-run crashed runs"
NO_HEARTBEAT = "no heartbeat"  # how the heartbeat automation's Crashed states start; its alert matches on it
# A run that is no longer running, or not running now (waiting to retry, paused), sends no heartbeats and
# must not be crashed for it: each of these states' events closes the silence window the heartbeat opened.
NOT_RUNNING_EVENTS = (
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
    "prefect.flow-run.AwaitingRetry",
    "prefect.flow-run.Paused",
    "prefect.flow-run.Suspended",
)


@dataclass
class Report:
    lines: list[str]

    def __call__(self, what: str, name: str, action: str) -> None:
        self.lines.append(f"{what:11} {name:44} {action}")


def policy_names(prefect_yaml: Path = REPO / "prefect.yaml") -> set[str]:
    """Every run policy document a deployment names in prefect.yaml (so each one exists)."""
    names = {RUN_POLICY}
    if prefect_yaml.exists():
        config = yaml.safe_load(prefect_yaml.read_text(encoding="utf-8")) or {}
        for deployment in config.get("deployments", []):
            env = ((deployment.get("work_pool") or {}).get("job_variables") or {}).get("env") or {}
            if env.get(POLICY_ENV):
                names.add(str(env[POLICY_ENV]))
    return names


async def ensure_pools(
    client, report: Report, gpu_pool_concurrency: int | None, cpu_pool_concurrency: int | None = None
) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    for name, description in POOLS.items():
        limit = gpu_pool_concurrency if name == "gpu" else cpu_pool_concurrency
        try:
            pool = await client.read_work_pool(name)
        except ObjectNotFound:
            await client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type="process",
                    description=description,
                    base_job_template=template,
                    concurrency_limit=limit,
                )  # fmt: skip
            )
            report("work pool", name, "created (process)")
            continue
        if pool.type != "process":
            raise SystemExit(f"work pool {name!r} exists with type {pool.type!r}; delete it or rename ours")
        if pool.concurrency_limit != limit or pool.description != description:
            await client.update_work_pool(
                name, WorkPoolUpdate(concurrency_limit=limit, description=description)
            )
            report("work pool", name, "updated")
        else:
            report("work pool", name, "ok")


async def ensure_gpu_limits(client, report: Report, units: int | None) -> None:
    """One limit per device of this host (`gpu:<host>:<index>`), as gpu/slot.py's broker names them.

    A missing limit is created with `units` (default: the GPU policy's units_per_device); an existing one
    keeps the size set in the UI unless `units` is given. Other GPU hosts' brokers create their own.
    """
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    policy = await load_gpu_policy()
    devices = host_devices(policy.devices)
    if not devices:
        report("gpu limit", f"{GPU_LIMIT_NAME}:{host_name()}:*", "none: no GPU here (GPU hosts make theirs)")
    for index in devices:
        name = limit_name(index)
        current, created = await ensure_limit(client, name, units or policy.units_per_device)
        if created:
            report("gpu limit", name, f"created ({current.limit} units)")
        elif units is not None and current.limit != units:
            await client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=units))
            report("gpu limit", name, f"updated ({units} units)")
        else:
            report("gpu limit", name, f"ok ({current.limit} units)")


# Every block type users edit, registered so the UI catalog offers each one (e.g. to save new presets).
BLOCK_TYPES = (
    RunPolicy, AlertRules, GpuPolicy, RunnerConfig,
    SubtitleConfig, TranscodePresets, EnhanceConfig, AsrConfig,
)  # fmt: skip


async def ensure_blocks(client, report: Report, reset: bool) -> AlertRules:
    """Register every block type; save each shipped document (named in core/block_names.py) when missing.

    A server bootstrapped before the documents had their own names holds them as `default`: that
    document is copied to the new name (the user's edits kept) and left in place for older workers.
    """
    wanted = [(RunPolicy, name) for name in sorted(policy_names())]
    wanted += [(AlertRules, ALERT_RULES), (SubtitleConfig, SUBTITLE_SETTINGS)]
    wanted += [(GpuPolicy, policy_document_name())]
    for block_cls in BLOCK_TYPES:
        await block_cls.aregister_type_and_schema(client=client)
        report("block type", block_cls.get_block_type_slug(), "registered")
    for block_cls, name in wanted:
        label = f"{block_cls.get_block_type_slug()}/{name}"
        if await _saved(client, block_cls, name):
            if reset:
                await block_cls().asave(name, overwrite=True, client=client)
                report("block", label, "reset to defaults")
            else:
                report("block", label, "ok (kept as edited)")
        elif not reset and name in SHIPPED and await _saved(client, block_cls, LEGACY):
            old = await block_cls.aload(LEGACY, client=client)
            await block_cls.model_validate(old.model_dump(include=set(block_cls.model_fields))).asave(
                name, client=client
            )
            report("block", label, f"created from {LEGACY!r} (kept as edited)")
        else:
            await block_cls().asave(name, client=client)
            report("block", label, "created with defaults")
    return await AlertRules.aload(ALERT_RULES, client=client)


async def _saved(client, block_cls, name: str) -> bool:
    from prefect.exceptions import ObjectNotFound

    try:
        await client.read_block_document_by_name(name, block_cls.get_block_type_slug())
    except ObjectNotFound:
        return False
    return True


async def ensure_variables(client, report: Report, values: dict[str, str | None]) -> None:
    from prefect.client.schemas.actions import VariableCreate, VariableUpdate

    for name, value in values.items():
        current = await client.read_variable_by_name(name)
        if value is None:
            if current is None:
                raise SystemExit(f"variable {name!r} is not set yet: pass it on the first bootstrap")
            report("variable", name, f"ok ({current.value})")
        elif current is None:
            await client.create_variable(VariableCreate(name=name, value=value))
            report("variable", name, f"created ({value})")
        elif current.value != value:
            await client.update_variable(VariableUpdate(name=name, value=value))
            report("variable", name, f"updated ({value})")
        else:
            report("variable", name, f"ok ({value})")


def alert_automations(rules: AlertRules, notify_block_id=None) -> list:
    """The seeds' alert rules as Prefect automations (AutomationCore objects, not yet created)."""
    from prefect.automations import (
        AutomationCore,
        ChangeFlowRunState,
        DoNothing,
        EventTrigger,
        Posture,
        SendNotification,
    )
    from prefect.client.schemas.objects import StateType

    def alerts(subject: str, body: str) -> list:
        if notify_block_id is None:  # the firing still shows in the event feed and the automation's history
            return [DoNothing()]
        return [SendNotification(block_document_id=notify_block_id, subject=subject, body=body)]

    hold = rules.gpu_hold_hard_timeout_seconds
    silence = rules.heartbeat_grace_seconds
    # A "Do nothing" action looks broken in the UI unless the description says why it is there.
    quiet = (
        ""
        if notify_block_id
        else (
            " No notification block is set (AlertRules.notification_block), so a firing only shows in the"
            " event feed and this automation's history."
        )
    )
    return [
        AutomationCore(
            name=f"{ALERT_PREFIX}GPU slot held past the hard timeout",
            description=f"A task took a slot of a GPU limit and did not free it within {hold:.0f} s.{quiet}",
            trigger=EventTrigger(
                posture=Posture.Proactive,
                match={"prefect.resource.name": f"{GPU_LIMIT_NAME}*"},
                after={"prefect.concurrency-limit.acquired"},
                expect={"prefect.concurrency-limit.released"},
                for_each={"related:task-run:prefect.resource.id"},
                threshold=1,
                within=timedelta(seconds=hold),
            ),
            actions=alerts(
                "GPU slot held too long",
                f"{{{{ event.resource.name }}}} held past {hold:.0f} s by task run "
                "{{ event.resource_in_role['task-run'].name }}",
            ),
        ),
        AutomationCore(
            name=f"{ALERT_PREFIX}run without heartbeats marked crashed",
            description=(
                f"A flow run silent (no heartbeat, no final state) for {silence:.0f} s is Crashed. A run "
                "that finished, waits to retry or is paused is left alone; the alert is its own automation."
            ),
            trigger=EventTrigger(
                posture=Posture.Proactive,
                match={"prefect.resource.id": "prefect.flow-run.*"},
                after={"prefect.flow-run.heartbeat"},
                expect={"prefect.flow-run.heartbeat", *NOT_RUNNING_EVENTS},
                for_each={"prefect.resource.id"},
                threshold=1,
                within=timedelta(seconds=silence),
            ),
            actions=[
                ChangeFlowRunState(
                    state=StateType.CRASHED,
                    message=f"{NO_HEARTBEAT} for {silence:.0f} s: the worker or its machine died",
                ),
            ],  # fmt: skip
        ),
        AutomationCore(
            name=f"{ALERT_PREFIX}run crashed for missing heartbeats",
            description=(
                "Alerts when the heartbeat automation did mark a run Crashed. Its firing on a run that had "
                "already finished (a heartbeat that reached the server after the final state) is refused by "
                f"the server and alerts nothing.{quiet}"
            ),
            trigger=EventTrigger(
                posture=Posture.Reactive,
                match={
                    "prefect.resource.id": "prefect.flow-run.*",
                    "prefect.state-message": f"{NO_HEARTBEAT}*",
                },
                expect={"prefect.flow-run.Crashed"},
                for_each={"prefect.resource.id"},
                threshold=1,
                within=timedelta(0),
            ),
            actions=alerts("Flow run crashed", "{{ flow_run.name }} stopped sending heartbeats"),
        ),
        AutomationCore(
            name=f"{ALERT_PREFIX}failure rate above threshold",
            description=(
                f"{rules.failure_threshold} or more failed runs of one deployment within "
                f"{rules.failure_window_seconds:.0f} s.{quiet}"
            ),
            trigger=EventTrigger(
                posture=Posture.Reactive,
                match={"prefect.resource.id": "prefect.flow-run.*"},
                expect={"prefect.flow-run.Failed"},
                for_each={"related:deployment:prefect.resource.id"},
                threshold=rules.failure_threshold,
                within=timedelta(seconds=rules.failure_window_seconds),
            ),
            actions=alerts(
                "Failure rate above threshold",
                f"{rules.failure_threshold}+ failures within {rules.failure_window_seconds:.0f} s: "
                "{{ event.resource_in_role['deployment'].name }}",
            ),
        ),
    ]


def check_heartbeat_grace(rules: AlertRules) -> None:
    """A grace shorter than two heartbeat intervals would crash healthy runs between their heartbeats."""
    from prefect.settings import get_current_settings

    every = get_current_settings().flows.heartbeat_frequency
    if every and rules.heartbeat_grace_seconds < 2 * every:
        raise SystemExit(
            f"AlertRules.heartbeat_grace_seconds={rules.heartbeat_grace_seconds:.0f} is under twice the flow "
            f"heartbeat interval ({every} s, PREFECT_FLOWS_HEARTBEAT_FREQUENCY): healthy runs would be "
            "marked crashed; raise the grace in the block or shorten the interval on the workers"
        )


async def ensure_automations(client, report: Report, rules: AlertRules) -> None:
    check_heartbeat_grace(rules)
    notify_id = None
    if rules.notification_block:
        slug, _, name = rules.notification_block.partition("/")
        notify_id = (await client.read_block_document_by_name(name, slug)).id
    wanted = [*alert_automations(rules, notify_id), crash_rerun_automation(CRASH_RERUN_AUTOMATION)]
    for automation in wanted:
        existing = await client.read_automations_by_name(automation.name)
        for extra in existing[1:]:
            await client.delete_automation(extra.id)
        if not existing:
            await client.create_automation(automation)
            report("automation", automation.name, "created")
        elif _same(existing[0], automation):
            report("automation", automation.name, "ok")
        else:
            await client.update_automation(existing[0].id, automation)
            report("automation", automation.name, "updated")


AUTOMATION_FIELDS = {"name", "description", "enabled", "trigger", "actions"}


def canonical(value: object) -> object:
    """JSON-able form where a set (a trigger's `expect`, `after`, `for_each`) is a sorted list.

    A plain `model_dump(mode="json")` lists a set in hash order, which follows PYTHONHASHSEED: two
    processes would disagree about an unchanged automation and update it on every bootstrap.
    """
    if isinstance(value, set | frozenset):
        items = [canonical(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return to_jsonable_python(value)


def automation_fingerprint(automation) -> str:
    """The fields bootstrap owns, as canonical JSON: equal strings mean nothing to update."""
    return json.dumps(canonical(automation.model_dump(include=AUTOMATION_FIELDS)), sort_keys=True)


def _same(current, wanted) -> bool:
    return automation_fingerprint(current) == automation_fingerprint(wanted)


async def bootstrap(
    *,
    output_root: Path | None,
    inbox: Path | None,
    gpu_units: int | None,
    gpu_pool_concurrency: int | None,
    cpu_pool_concurrency: int | None = CPU_POOL_CONCURRENCY,
    reset_blocks: bool = False,
) -> list[str]:
    from prefect.client.orchestration import get_client

    report = Report([])
    async with get_client() as client:
        await ensure_pools(client, report, gpu_pool_concurrency, cpu_pool_concurrency)
        rules = await ensure_blocks(client, report, reset_blocks)
        await ensure_gpu_limits(client, report, gpu_units)
        await ensure_variables(
            client,
            report,
            {
                OUTPUT_VARIABLE: str(output_root.resolve()) if output_root else None,
                INBOX_VARIABLE: str(inbox.resolve()) if inbox else None,
            },
        )
        await ensure_automations(client, report, rules)
    return report.lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create YiVideo's pools, limits, blocks and automations.")
    parser.add_argument("--output-root", type=Path, help=f"where deployed runs write ({OUTPUT_VARIABLE})")
    parser.add_argument("--inbox", type=Path, help=f"the watched upload folder ({INBOX_VARIABLE})")
    parser.add_argument(
        "--gpu-units", type=int, default=None, help="capacity of each GPU's limit (default: the GPU policy's)"
    )
    parser.add_argument("--gpu-pool-concurrency", type=int, default=None, help="flow runs at once on 'gpu'")
    parser.add_argument(
        "--cpu-pool-concurrency", type=int, default=CPU_POOL_CONCURRENCY,
        help="flow runs at once on 'cpu' (a burst queues instead of crashing the server; 0: no limit)",
    )  # fmt: skip
    parser.add_argument("--reset-blocks", action="store_true", help="write block defaults over UI edits")
    args = parser.parse_args(argv)
    for folder in (args.output_root, args.inbox):
        if folder:
            folder.mkdir(parents=True, exist_ok=True)
    lines = asyncio.run(
        bootstrap(
            output_root=args.output_root,
            inbox=args.inbox,
            gpu_units=args.gpu_units,
            gpu_pool_concurrency=args.gpu_pool_concurrency,
            cpu_pool_concurrency=args.cpu_pool_concurrency or None,
            reset_blocks=args.reset_blocks,
        )
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
