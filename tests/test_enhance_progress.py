"""Progress a person can follow: the engine reports every tile, the stage says what it chose and about how
long it takes before it starts, and a real Prefect run's progress artifact moves within the image."""

from __future__ import annotations

import threading
import time

import cv2
import pytest

from samples.images import real_photo
from stages.enhance.engines import load_engine
from stages.enhance.imaging import tile_count
from stages.enhance.progress import ImageProgress, estimate, plan_line
from stages.enhance.settings import EnhanceSettings


def _photo(side: int):
    return cv2.resize(real_photo("astronaut"), (side, side), interpolation=cv2.INTER_AREA)


def test_the_engine_reports_every_tile_of_every_pass():
    settings = EnhanceSettings(scale=4, tile=64, model="waifu2x-photo")  # two passes: x2, then x2 again
    seen = []
    out = load_engine(settings).enhance(_photo(96), settings, lambda *step: seen.append(step))
    tiles = tile_count(96, 96, 64) + tile_count(192, 192, 64)
    assert out.image.shape == (384, 384, 3)
    assert [s[1] for s in seen] == list(range(1, tiles + 1)) and {s[2] for s in seen} == {tiles}
    fractions = [s[0] for s in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert fractions[tile_count(96, 96, 64) - 1] < 0.3  # the second pass has 4x the pixels: most work


def test_the_plan_names_the_choice_and_the_time_before_it_starts():
    asked = EnhanceSettings()
    chosen = EnhanceSettings(model="waifu2x-photo")
    line = plan_line("a.jpg", asked, chosen, (512, 512))
    assert line.startswith("a.jpg 512x512 -> 1024x1024: realesrgan-ncnn waifu2x-photo (automatic: a photo")
    assert "about" in line and 0 < estimate(chosen, 512, 512) < 30
    slow = EnhanceSettings(model="realesrgan-x4plus")
    assert estimate(slow, 512, 512) > 20 * estimate(chosen, 512, 512)
    assert "automatic" not in plan_line("a.jpg", slow, slow, (512, 512))  # asked for: no choice made


def test_time_left_follows_the_measured_pace():
    progress = ImageProgress("a.jpg", expected_s=10.0, publish=False)
    assert progress.describe(0.0, 0, 8, 1.0).endswith("0 %, about 9 s left")
    assert progress.describe(0.25, 2, 8, 3.0).endswith("tile 2 of 8, 25 %, about 9 s left")
    assert "done in 4.0 s" in progress.describe(1.0, 8, 8, 4.0)


@pytest.mark.slow
def test_a_runs_progress_artifact_moves_within_the_image(prefect_server, tmp_path):
    """While one image is enhanced in a real flow run, its progress artifact is read back from the API
    between 0 and 100 % with tiles and time left; at the end it says 100 % and how long it took."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterType

    from stages.enhance.enhance import enhance_image_task

    source = tmp_path / "photo.png"
    cv2.imwrite(str(source), _photo(256))

    @flow(name="enhance-progress-test")
    def one_image():
        return enhance_image_task(source, tmp_path / "out.png", EnhanceSettings(scale=4, tile=128))

    seen: list[tuple[float, str]] = []
    running = threading.Event()
    running.set()

    def watch():
        kind = ArtifactFilter(type=ArtifactFilterType(any_=["progress"]))
        with get_client(sync_client=True) as client:
            while running.is_set():
                for artifact in client.read_artifacts(artifact_filter=kind):
                    if artifact.description and artifact.description.startswith("photo.png"):
                        seen.append((float(artifact.data), artifact.description))
                time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        done = one_image()
    finally:
        time.sleep(0.5)
        running.clear()
        watcher.join(10)
    assert done.output_size == (1024, 1024) and done.model == "waifu2x-photo"
    within = [(value, text) for value, text in seen if 0 < value < 100]
    assert within, f"no progress between 0 and 100 % was read back: {sorted(set(seen))[:5]}"
    assert all("tile" in text and "left" in text for _, text in within), within[:3]
    assert "(automatic: a photograph), about" in seen[0][1]
    assert seen[-1][0] == 100.0 and "done in" in seen[-1][1]
