"""notebooks/quickstart.ipynb runs top to bottom in a real kernel and shows what it promises."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from samples.scoring import squash

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"


def _outputs(cell) -> tuple[str, list[str]]:
    """(all text and markdown the cell showed, the MIME types of its outputs)."""
    text, kinds = [], []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            text.append(out.get("text", ""))
        for kind, value in (out.get("data") or {}).items():
            kinds.append(kind)
            if kind in ("text/markdown", "text/plain"):
                text.append(value if isinstance(value, str) else "".join(value))
    return "".join(text), kinds


@pytest.mark.slow
def test_quickstart_notebook_runs_every_flow(prefect_server, tmp_path, monkeypatch):
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("YIVIDEO_QUICKSTART_OUT", str(tmp_path))
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))  # the session's server, not a new one
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "stored without outputs"
    resources = {"metadata": {"path": str(tmp_path)}}
    NotebookClient(nb, timeout=300, kernel_name="python3", resources=resources).execute()

    shown = {  # by the flow each cell imports
        line.split(" import ")[1]: _outputs(cell)
        for cell in nb.cells
        for line in cell.source.splitlines()
        if cell.cell_type == "code" and line.startswith("from flows.")
    }
    subtitles_text, subtitles_kinds = shown["extract_subtitles"]
    assert "image/png" in subtitles_kinds, "the subtitle band is drawn on a frame"
    assert squash("欢迎使用 YiVideo") in squash(subtitles_text), subtitles_text  # the first subtitles, read
    assert squash("Subtitles from pixels") in squash(subtitles_text), subtitles_text
    assert "weather" in shown["transcribe"][0].lower() or "testing" in shown["transcribe"][0].lower()
    assert "mp4_standard" in shown["transcode"][0] and "image/jpeg" in shown["transcode"][1]
    assert "partially completed" in shown["enhance_images"][0] and "image/png" in shown["enhance_images"][1]
    assert "ran:   subtitle_area → keyframes" in shown["run_pipeline"][0]
    assert list(tmp_path.glob("subtitles/demo-*/demo.srt"))
    assert list(tmp_path.glob("transcribe/speech-*/speech.srt"))
