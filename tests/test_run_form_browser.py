"""The Prefect UI's Run form in a real browser (Debian's chromium, Playwright): choices shown at once.

The session's Prefect server on a fresh PostgreSQL database (UI on), bootstrapped and `prefect deploy --all`
run as the README says (conftest `deployed_api`, shared with tests/test_web_browser.py); no worker: what the
form sends is checked against the deployment as the server stored it. The form's picture goes to
$YIVIDEO_SCREENSHOTS (the README's docs/screenshots/prefect-run-form.png) or a temp folder.
"""

from __future__ import annotations

import re

import httpx
import pytest
from test_web_browser import _shot, browser, shots  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def api(deployed_api) -> str:
    """The session's deployed stack (conftest: shared with tests/test_web_browser.py)."""
    return deployed_api[0]


def _deployment_id(api: str, flow: str, name: str) -> str:
    answer = httpx.get(f"{api}/deployments/name/{flow}/{name}", timeout=10)
    answer.raise_for_status()
    return answer.json()["id"]


def _form(page, ui: str, deployment_id: str):
    page.goto(f"{ui}/deployments/deployment/{deployment_id}/run")
    page.get_by_text("Parameters", exact=True).first.wait_for(timeout=60_000)
    return page


def _property(page, name: str):
    """One parameter's block in the form, by its label (`engine` or `engine (Optional)`)."""
    label = page.locator(".schema-form-property__label", has_text=re.compile(rf"^{name}( \(Optional\))?$"))
    return page.locator(".schema-form-property").filter(has=label).first


def _shown_at_once(page, name: str) -> bool:
    """A dropdown in view without a click, not the "type | None" toggle Prefect draws for `X | None`."""
    block = _property(page, name)
    toggle = "any-of" in (block.get_attribute("class") or "")
    return block.locator(".p-select").first.is_visible() and not toggle


def test_choices_are_dropdowns_at_once_and_the_server_takes_what_the_form_sends(api, browser, shots):  # noqa: F811
    ui = api.removesuffix("/api")
    enhance = _deployment_id(api, "enhance-images", "enhance")
    transcode = _deployment_id(api, "transcode", "transcode")
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    try:
        _form(page, ui, enhance)
        assert [_shown_at_once(page, p) for p in ("engine", "model", "faces")] == [True] * 3
        assert not _shown_at_once(page, "scale")  # a number that may be empty keeps Prefect's toggle
        _property(page, "engine").locator(".p-select-button__control").click()
        page.wait_for_timeout(500)
        _shot(page, shots / "prefect-run-form.png")
        _form(page, ui, transcode)
        assert _shown_at_once(page, "presets")
        _form(page, ui, _deployment_id(api, "transcribe", "transcribe"))
        assert _shown_at_once(page, "engine") and _shown_at_once(page, "language")
    finally:
        page.close()
    # what the form sends when nothing is chosen ("" and []) is taken by the deployment's stored schema; a
    # name that is not a preset is refused
    start = f"{api}/deployments/{transcode}/create_flow_run"
    taken = httpx.post(start, json={"parameters": {"video": "/data/in/clip.mp4", "presets": []}}, timeout=10)
    assert taken.status_code == 201, taken.text
    # the stack is the session's: the browser upload tests' workers must not pick this run up later
    assert httpx.delete(f"{api}/flow_runs/{taken.json()['id']}", timeout=10).status_code == 204
    typo = httpx.post(start, json={"parameters": {"video": "/data/in/clip.mp4", "presets": ["mp4_smoth"]}})
    assert typo.status_code == 409 and "mp4_smoth" in typo.text, typo.text
