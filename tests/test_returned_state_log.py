"""A flow that returns its own Failed state leaves no traceback in its run's log (deployments/entrypoints.py),
and a direct Python call of it raises one clear exception (flows/enhance.py).

Prefect resolves the returned state into an exception after the run ended and logs it as "Engine execution
exited with unexpected exception". For a partial enhance batch that was "TypeError: Unexpected result for
failed state: EnhanceBatchResult ... cannot be resolved into an exception", in the worker's log and raised
at a notebook user; the batch's data is now EnhanceBatchFailed, an exception naming the failed images that
is the partial result too. The real record is made here by Prefect's own code; the browser test reads a
failed enhance run's log on a real worker.
"""

from __future__ import annotations

import logging
import pickle
import sys
from pathlib import Path

import pytest

from core.schema import EnhanceBatchResult, ImageFailure
from deployments.entrypoints import ReturnedStateFilter
from flows.enhance import EnhanceBatchFailed, final_state

MESSAGE = "Engine execution exited with unexpected exception"


def _record(exc_info) -> logging.LogRecord:
    return logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, MESSAGE, None, exc_info)


def test_the_returned_failed_state_is_not_logged_as_a_traceback():
    broken = ImageFailure(Path("broken.jpg"), "MediaInputError", "bad")
    batch = EnhanceBatchResult(Path("out"), (), (broken,), None)
    state = final_state(batch)
    try:
        state.result(raise_on_failure=True)
    except EnhanceBatchFailed:
        resolved = sys.exc_info()
    assert str(resolved[1]) == state.message == "failed: 0 of 1 images; failed: broken.jpg: bad"
    assert not ReturnedStateFilter().filter(_record(resolved))
    assert state.result(raise_on_failure=False) == resolved[1]  # the partial result, not raised


def test_an_exception_of_the_flow_itself_keeps_its_traceback():
    try:
        raise ValueError("a bug in a flow")
    except ValueError:
        raised = sys.exc_info()
    assert ReturnedStateFilter().filter(_record(raised))
    other = logging.LogRecord("prefect.flow_runs", logging.INFO, __file__, 1, "Finished in state", None, None)
    assert ReturnedStateFilter().filter(other)


def test_a_direct_call_with_a_bad_image_raises_one_error_naming_it(prefect_server, tmp_path):
    """A notebook user's call: two good photos and an unreadable one. Not Prefect's TypeError: one
    exception naming broken.jpg, which holds the two enhanced photos and the ZIP, and pickles as itself."""
    from flows.enhance import enhance_images
    from samples.images import make_corrupt_image, make_face_set

    photos = [str(p) for p in make_face_set(tmp_path / "in", 2)]
    photos.append(str(make_corrupt_image(tmp_path / "in" / "broken.jpg")))
    with pytest.raises(EnhanceBatchFailed) as caught:
        enhance_images(photos, str(tmp_path / "out"), engine="opencv-classic")
    partial = caught.value
    assert str(partial).startswith("partially completed: 2 of 3 images enhanced; failed: broken.jpg: ")
    assert isinstance(partial, EnhanceBatchResult)
    assert [f.source.name for f in partial.failed] == ["broken.jpg"]
    assert [e.source.name for e in partial.enhanced] == ["face00.jpg", "face01.png"]
    assert all(e.output.is_file() for e in partial.enhanced) and partial.zip_path.is_file()
    copy = pickle.loads(pickle.dumps(partial))
    assert copy == partial and str(copy) == str(partial)
