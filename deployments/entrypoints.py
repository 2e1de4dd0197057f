"""The flows as deployed: each with the retries and timeouts of its run policy block applied.

prefect.yaml points here. A worker imports this module when it starts a run; the `RunPolicy` document named
by YIVIDEO_RUN_POLICY (prefect.yaml sets it per deployment) is read then, so an edit in the UI applies to
the next run. Everywhere else (`prefect deploy`, tests, notebooks) the built-in defaults apply, offline.
"""

from __future__ import annotations

import logging

from blocks.policy import current_run_policy
from deployments.crash_reruns import refuse_crash_loops
from deployments.inbox import sweep_inbox as _sweep_inbox
from flows.enhance import enhance_images as _enhance_images
from flows.enhance import enhance_yardstick as _enhance_yardstick
from flows.fuse import fuse_subtitles as _fuse_subtitles
from flows.pipeline import run_pipeline as _run_pipeline
from flows.subtitles import extract_subtitles as _extract_subtitles
from flows.transcode import transcode as _transcode
from flows.transcribe import transcribe as _transcribe

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

# a crashed run is scheduled again by bootstrap's automation; refuse_crash_loops caps how often
extract_subtitles = refuse_crash_loops(_policy.apply_to_flow(_extract_subtitles))
enhance_images = refuse_crash_loops(_policy.apply_to_flow(_enhance_images))
enhance_yardstick = _policy.apply_to_flow(_enhance_yardstick)
fuse_subtitles = refuse_crash_loops(_policy.apply_to_flow(_fuse_subtitles))
run_pipeline = refuse_crash_loops(_policy.apply_to_flow(_run_pipeline))
transcode = refuse_crash_loops(_policy.apply_to_flow(_transcode))
transcribe = refuse_crash_loops(_policy.apply_to_flow(_transcribe))
sweep_inbox = _policy.apply_to_flow(_sweep_inbox)
