"""Photo enhancement through the host's model service: deployed runs after the first load no network.

Real processes, as a process worker starts one per flow run (PREFECT__FLOW_RUN_ID set, the service's `auto`
mode), enhancing a real photograph with the real waifu2x network; the tiling and the per-tile progress stay
in the run, only the network calls travel to the service.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from core.model_service import address, status, stop

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# one run: what holds its networks, the loads in this process, tiles reported, a digest of the picture
RUN = """
import hashlib
from core.models import load_count
from samples.images import real_photo
from stages.enhance.engines import load_engine
from stages.enhance.settings import EnhanceSettings
settings = EnhanceSettings(engine="realesrgan-ncnn", model="waifu2x-photo", scale=2, faces="off", tile=48)
engine = load_engine(settings)
tiles = []
photo = real_photo("astronaut")[100:196, 160:256]
image = engine.enhance(photo, settings, lambda f, d, t: tiles.append(d)).image
digest = hashlib.sha256(image.tobytes()).hexdigest()[:16]
print(type(engine.networks).__name__, load_count(), len(tiles), digest)
"""


def run(home: Path, **env: str) -> tuple[str, int, int, str]:
    environ = {**os.environ, "PREFECT_HOME": str(home), "PYTHONPATH": str(REPO)}
    environ.update({"PREFECT__FLOW_RUN_ID": str(uuid.uuid4()), **env})
    if "YIVIDEO_MODEL_SERVICE" not in env:
        environ.pop("YIVIDEO_MODEL_SERVICE", None)
    command = [sys.executable, "-c", RUN]
    done = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    kind, loads, tiles, digest = done.stdout.strip().splitlines()[-1].split()
    return kind, int(loads), int(tiles), digest


@pytest.fixture
def home(tmp_path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    yield home
    stop(home)


def test_runs_after_the_first_load_no_network(home, tmp_path) -> None:
    alone = run(tmp_path, YIVIDEO_MODEL_SERVICE="off")
    assert alone[:3] == ("NcnnNetworks", 1, 4), alone  # 96 px in 48 px tiles: 4 tiles, progress on each
    first, second = run(home), run(home)
    assert first == second == ("ServedModel", 0, 4, alone[3]), "no load in either run, the same picture"
    found = status(address(home))
    assert found is not None and found["loads"] == 1, found
