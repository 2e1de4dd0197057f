"""How runs are retried, timed out and watched, as Prefect blocks editable in the UI.

`RunPolicy` holds retries (with exponential backoff for stages) and timeouts. Deployed flows pick the
document named by YIVIDEO_RUN_POLICY (set per deployment in prefect.yaml) when a worker loads them, so an
edit in the UI applies to the next run without a redeploy. `AlertRules` holds the thresholds of the
automations that `python -m deployments.bootstrap` creates (the seeds' alert rules).
"""

from __future__ import annotations

from typing import TypeVar

from prefect.blocks.core import Block
from pydantic import Field

from blocks.loader import load_block
from core.errors import retry_if_transient

POLICY_ENV = "YIVIDEO_RUN_POLICY"

F = TypeVar("F")
T = TypeVar("T")


class RunPolicy(Block):
    """Retries with backoff and timeouts for flows and their stages."""

    _block_type_name = "YiVideo Run Policy"
    _block_type_slug = "yivideo-run-policy"

    flow_retries: int = Field(
        0, ge=0, le=10, description="whole-flow retries (stages retry on their own; bad input never passes)"
    )
    flow_retry_delay_seconds: float = Field(30.0, ge=0, description="wait before a flow retry")
    flow_timeout_seconds: float | None = Field(
        3600.0, gt=0, description="a flow run longer than this fails with a timeout (None: no limit)"
    )
    stage_retries: int = Field(2, ge=0, le=10, description="retries of a failed stage (transient errors)")
    stage_backoff_seconds: float = Field(2.0, ge=0, description="first retry delay; doubles each retry")
    stage_backoff_jitter: float = Field(0.2, ge=0, le=1, description="random spread of retry delays")
    stage_timeout_seconds: float | None = Field(
        1800.0,
        gt=0,
        description="a stage running longer than this fails (None: no limit); applied where Prefect can stop "
        "a stage: on Ray. Stages on local threads are bounded by the flow timeout and ffmpeg's own limit",
    )

    def stage_retry_delays(self) -> list[float]:
        """Exponential backoff: base, 2*base, 4*base, ... one delay per retry."""
        return [self.stage_backoff_seconds * 2**i for i in range(self.stage_retries)]

    def apply_to_flow(self, flow: F) -> F:
        return flow.with_options(  # type: ignore[attr-defined]
            retries=self.flow_retries,
            retry_delay_seconds=self.flow_retry_delay_seconds,
            timeout_seconds=self.flow_timeout_seconds,
        )

    def apply_to_task(self, task: T) -> T:
        return task.with_options(  # type: ignore[attr-defined]
            retries=self.stage_retries,
            retry_delay_seconds=self.stage_retry_delays() or 0,
            retry_jitter_factor=self.stage_backoff_jitter if self.stage_retries else None,
            retry_condition_fn=retry_if_transient,  # the one rule (core/errors.py)
            timeout_seconds=self.stage_timeout_seconds,
        )


def current_run_policy() -> RunPolicy:
    """The policy document named by YIVIDEO_RUN_POLICY (deployed runs), else the built-in defaults.

    Outside deployments (tests, notebooks, `python -m flows...`) no API call is made. A deployment that
    names a document that does not exist fails loudly: run `python -m deployments.bootstrap` first.
    """
    return load_block(RunPolicy, env=POLICY_ENV)


class AlertRules(Block):
    """Thresholds of the shipped automations (the seeds' alert rules)."""

    _block_type_name = "YiVideo Alert Rules"
    _block_type_slug = "yivideo-alert-rules"

    gpu_hold_hard_timeout_seconds: float = Field(
        1800.0, ge=10, description="alert when a GPU slot is held longer than this"
    )
    heartbeat_grace_seconds: float = Field(
        600.0,
        ge=10,
        description="a flow run silent this long is marked Crashed; keep it at least twice the heartbeat "
        "interval of the workers (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, 180 s by default)",
    )
    failure_threshold: int = Field(3, ge=1, description="alert when this many runs of a deployment fail...")
    failure_window_seconds: float = Field(600.0, ge=10, description="...within this many seconds")
    notification_block: str | None = Field(
        None,
        description="'<block-type-slug>/<name>' of a notification block (e.g. slack-webhook/ops) to alert "
        "through; without one, a firing shows in the Prefect UI's event feed and automation history",
    )
