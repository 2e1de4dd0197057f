"""A flow that returns its own Failed state leaves no traceback in its run's log (deployments/entrypoints.py).

Prefect resolves the returned state into an exception after the run ended and logs it as "Engine execution
exited with unexpected exception"; for a partial enhance batch that was "TypeError: Unexpected result for
failed state: EnhanceBatchResult ... cannot be resolved into an exception". The real record is made here
by Prefect's own code; the browser test reads a failed enhance run's log on a real worker.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from prefect.states import Failed

from core.schema import EnhanceBatchResult
from deployments.entrypoints import ReturnedStateFilter

MESSAGE = "Engine execution exited with unexpected exception"


def _record(exc_info) -> logging.LogRecord:
    return logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, MESSAGE, None, exc_info)


def test_the_returned_failed_state_is_not_logged_as_a_traceback():
    batch = EnhanceBatchResult(Path("out"), (), (), None)
    try:
        Failed(message="failed: 0 of 1 images", data=batch).result(raise_on_failure=True)
    except TypeError:
        resolved = sys.exc_info()
    assert "cannot be resolved into an exception" in str(resolved[1])
    assert not ReturnedStateFilter().filter(_record(resolved))


def test_an_exception_of_the_flow_itself_keeps_its_traceback():
    try:
        raise ValueError("a bug in a flow")
    except ValueError:
        raised = sys.exc_info()
    assert ReturnedStateFilter().filter(_record(raised))
    other = logging.LogRecord("prefect.flow_runs", logging.INFO, __file__, 1, "Finished in state", None, None)
    assert ReturnedStateFilter().filter(other)
