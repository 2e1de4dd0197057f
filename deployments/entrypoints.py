"""The flows as deployed: each with the retries and timeouts of its run policy block applied.

prefect.yaml points here. A worker imports this module when it starts a run; the `RunPolicy` document named
by YIVIDEO_RUN_POLICY (prefect.yaml sets it per deployment) is read then, so an edit in the UI applies to
the next run. Everywhere else (`prefect deploy`, tests, notebooks) the built-in defaults apply, offline.
"""

from __future__ import annotations

import importlib
import logging

from blocks.policy import current_run_policy
from deployments.crash_reruns import refuse_crash_loops
from deployments.deployed import DEPLOYED

_policy = current_run_policy()


class ReturnedStateFilter(logging.Filter):
    """Drops Prefect's "Engine execution exited with unexpected exception" record when the exception is
    Prefect resolving the flow's own returned Failed state (raised in prefect/states.py), e.g. a partial
    enhance batch's EnhanceBatchFailed. The run's log already ends "Finished in state Failed('partially
    completed: ...')"; a traceback after it told nothing more about an expected failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.msg != "Engine execution exited with unexpected exception":
            return True
        tb = record.exc_info[2]
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        return not (tb and tb.tb_frame.f_code.co_filename.replace("\\", "/").endswith("prefect/states.py"))


logging.getLogger("prefect.flow_runs").addFilter(ReturnedStateFilter())  # the worker's flow process only

__all__ = list(DEPLOYED)


def __getattr__(name: str):  # noqa: ANN202 (a Prefect Flow)
    """A flow is imported when Prefect asks for it (`getattr` on this module): a worker's flow-run process
    imports only its own flow's stages: 1.3 s of imports instead of 1.7 s for all seven, on every run."""
    if name not in DEPLOYED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute, capped = DEPLOYED[name]
    flow = _policy.apply_to_flow(getattr(importlib.import_module(module), attribute))
    globals()[name] = flow = refuse_crash_loops(flow) if capped else flow
    return flow


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(DEPLOYED))
