"""A crashed run is run again, a few times at most: kill -9 of its process, a worker or machine lost.

Prefect retries a flow whose code raised, but a crash (the process died) ends the run for good. The
automation made here (bootstrap creates it) puts a Crashed run of our deployments back to Scheduled
("AwaitingRetry"), so a worker picks it up again; the stages it had finished come back from the cache
(core/caching.py), so it resumes. The cap lives in the run itself: a run that has crashed more than
YIVIDEO_MAX_CRASH_RERUNS times (default 2) fails at its start, with that message, instead of running again.
"""

from __future__ import annotations

import functools
import inspect
import os
import typing

from core.errors import YiVideoError

MAX_RERUNS_ENV = "YIVIDEO_MAX_CRASH_RERUNS"
DEFAULT_MAX_RERUNS = 2
RERUN_STATE_NAME = "AwaitingRetry"
DEPLOYMENT_TAG = "yivideo"  # every deployment in prefect.yaml carries it
TAG_RESOURCE = f"prefect.tag.{DEPLOYMENT_TAG}"


class CrashLoopError(YiVideoError, RuntimeError):
    """A run crashed more often than the cap allows: it is failed, not re-run again."""


def max_reruns() -> int:
    return int(os.environ.get(MAX_RERUNS_ENV, DEFAULT_MAX_RERUNS))


def crash_rerun_automation(name: str):
    """The automation: Crashed flow run of a `yivideo`-tagged deployment -> Scheduled (AwaitingRetry)."""
    from prefect.automations import AutomationCore, ChangeFlowRunState, EventTrigger, Posture
    from prefect.client.schemas.objects import StateType

    return AutomationCore(
        name=name,
        description=(
            "A crashed run (its process, worker or machine died) is scheduled again and resumes from its "
            f"finished stages; after {max_reruns()} crashes the run fails at its start instead."
        ),
        trigger=EventTrigger(
            posture=Posture.Reactive,
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "tag", "prefect.resource.id": TAG_RESOURCE},
            expect={"prefect.flow-run.Crashed"},
            for_each={"prefect.resource.id"},
            threshold=1,
            within=0,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.SCHEDULED,
                name=RERUN_STATE_NAME,
                message="re-run after a crash (deployments/crash_reruns.py)",
                force=True,
            )
        ],
    )


def crashes_so_far() -> int:
    """How many times the current flow run has crashed before (0 outside a flow run or the API)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return 0
    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(ctx.flow_run.id)
    return sum(1 for s in states if s.type == StateType.CRASHED)


def refuse_crash_loops(flow):
    """`flow`, failing at its start once its run has crashed more than the cap allows."""
    body = flow.fn

    @functools.wraps(body)
    def guarded(*args, **kwargs):
        crashes = crashes_so_far()
        if crashes > max_reruns():
            raise CrashLoopError(
                f"this run crashed {crashes} times (more than {MAX_RERUNS_ENV}={max_reruns()}): "
                "not run again; look at the worker's log for what killed it"
            )
        return body(*args, **kwargs)

    # the annotations resolved in the flow's own module: Prefect builds its parameter model from them, and
    # this module's globals do not hold the names the flow's (postponed) annotations use
    guarded.__annotations__ = typing.get_type_hints(body)
    guarded.__signature__ = inspect.signature(body, eval_str=True)  # type: ignore[attr-defined]
    capped = flow.with_options()
    capped.fn = guarded
    return capped
