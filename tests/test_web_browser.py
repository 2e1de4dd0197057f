"""The upload page in a real browser (Debian's chromium driven by Playwright) on a real stack.

A Prefect server on a fresh PostgreSQL database (tests/pg_server.py, UI on), bootstrap, `prefect deploy
--all`, a worker per pool and `python -m deployments.web`, all as subprocesses. Then, as a person would:
three photos and one corrupt file -> the corrupt one refused with its reason, three enhanced, a ZIP of three;
a video with two presets ticked -> both renditions; a subtitled video -> its SRT shown inline; a 200 MB
video uploaded (throughput and time from drop to first progress printed). Screenshots of the page and of
the Prefect UI go to $YIVIDEO_SCREENSHOTS (the README's come from docs/screenshots) or a temp folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_server import free_port, prefect_postgres_server

from samples.clips import make_clip
from samples.images import make_corrupt_image, make_face_set
from samples.video import Cue, make_subtitled_video

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip
RUN_TIMEOUT_MS = 300_000


class Procs:
    """Long-running subprocesses of the stack, each logging to a file quoted when something fails."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env, self.procs = root, env, {}

    def start(self, name: str, *cmd: str) -> None:
        with open(self.root / f"{name}.log", "wb") as out:
            self.procs[name] = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=out,
                                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def run(self, *cmd: str, timeout: float = 240) -> str:
        proc = subprocess.run(cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def tails(self) -> str:
        logs = sorted(self.root.glob("*.log"))
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Iterator[dict]:
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing: apt-get install -y chromium (make system-deps does it)")
    root = tmp_path_factory.mktemp("web-e2e")
    with prefect_postgres_server("yivideo_web_test", env_extra={"PREFECT_UI_ENABLED": "true"}) as api:
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PREFECT_API_URL": api,
            "PREFECT_HOME": str(root / "prefect-home"),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_LOGGING_LEVEL": "INFO",
        }
        procs = Procs(root, env)
        port = free_port()
        try:
            procs.run(str(BIN / "python"), "-m", "deployments.bootstrap", "--output-root", str(root / "out"),
                      "--inbox", str(root / "inbox"))  # fmt: skip
            procs.run(str(BIN / "prefect"), "--no-prompt", "deploy", "--all")
            procs.start("worker-cpu", str(BIN / "python"), "-m", "deployments.worker", "--pool", "cpu")
            procs.start("worker-gpu", str(BIN / "python"), "-m", "deployments.worker", "--pool", "gpu")
            procs.start("web", str(BIN / "python"), "-m", "deployments.web", "--port", str(port),
                        "--data-dir", str(root / "web-data"), "--max-upload-mb", "300")  # fmt: skip
            _wait_http(f"http://127.0.0.1:{port}/health", procs)
            url = f"http://127.0.0.1:{port}"
            yield {"url": url, "ui": api.removesuffix("/api"), "root": root, "procs": procs}
        finally:
            procs.stop_all()


def _wait_http(url: str, procs: Procs, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError(f"{url} not up after {timeout:.0f} s\n{procs.tails()}")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("YIVIDEO_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _shot(page, path: Path, **options) -> None:
    """A screenshot, reduced to a 128-colour PNG so the README's pictures stay small."""
    from PIL import Image

    page.screenshot(path=str(path), **options)
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=128)
    small.save(path, optimize=True)


def _pick(page, files: list[Path]) -> None:
    page.set_input_files("[data-testid=picker]", [str(f) for f in files])


def _card(page, job: str, name: str):
    """The run card of `job` on the file `name` (the page also lists earlier runs)."""
    return page.locator(f"[data-testid=job-card][data-job={job}]", has_text=f"{job} · {name}").first


def _wait_final(page, card, procs: Procs, timeout: float = RUN_TIMEOUT_MS) -> str:
    try:
        page.wait_for_function(
            "c => ['COMPLETED','FAILED','CRASHED','CANCELLED'].includes(c.dataset.state)",
            arg=card.element_handle(timeout=60_000), timeout=timeout,
        )  # fmt: skip
    except Exception as exc:
        raise AssertionError(f"run did not finish: {exc}\n{procs.tails()}") from exc
    return card.get_attribute("data-state")


def test_photos_videos_and_subtitles_through_the_page(web, browser, shots, media_dir):
    procs: Procs = web["procs"]
    photos = make_face_set(media_dir / "web-photos", 3)
    broken = make_corrupt_image(media_dir / "web-photos" / "broken.jpg")
    clip = make_clip(media_dir / "web-clip.mp4", size=(640, 360), duration=2.0)
    cues = [Cue(0.3, 1.8, "网页上传的字幕"), Cue(2.2, 3.8, "Uploaded in a browser")]
    subtitled = make_subtitled_video(media_dir / "web-subtitled.mp4", cues, duration=4.5, size=(480, 270))

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(web["url"])
    page.wait_for_selector("body[data-ready=true]")  # the options are in

    # three photos and a corrupt file, all sent to enhance
    _pick(page, [*photos, broken])
    rows = page.locator("[data-testid=pending-row]")
    assert rows.count() == 4
    for i in range(4):
        rows.nth(i).locator("[data-testid=job]").select_option("enhance")
    _shot(page, shots / "upload-choose.png")
    page.click("[data-testid=start]")

    # a video with two presets ticked, and a subtitled video for subtitles
    started = "[data-testid=job-card][data-job=enhance], [data-testid=start-error]"
    page.wait_for_selector(started, timeout=120_000)
    assert not page.locator("[data-testid=start-error]").count(), page.inner_text("body") + procs.tails()
    _pick(page, [clip, subtitled])
    rows = page.locator("[data-testid=pending-row]")
    rows.nth(0).locator("[data-testid=job]").select_option("transcode")
    for box in rows.nth(0).locator(".transcode-opts input").all():
        box.set_checked(box.get_attribute("value") in {"mp4_standard", "mp4_smooth"})
    rows.nth(1).locator("[data-testid=job]").select_option("subtitles")
    page.click("[data-testid=start]")

    refused = page.locator("[data-testid=upload-row][data-name='broken.jpg'] [data-testid=upload-error]")
    assert "broken.jpg: not a readable" in refused.inner_text(), refused.inner_text()

    enhance = _card(page, "enhance", photos[0].name)
    assert _wait_final(page, enhance, procs) == "COMPLETED", enhance.inner_text() + procs.tails()
    inputs = enhance.locator("[data-testid=job-input]")
    assert sorted(inputs.all_inner_texts()) == sorted(f"{p.name} — done" for p in photos)
    with page.expect_download() as download:
        enhance.locator("[data-testid=zip]").click()
    archive = web["root"] / "enhanced.zip"
    download.value.save_as(archive)
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == sorted(f"{p.stem}{p.suffix}" for p in photos)
    assert enhance.locator("[data-testid=compare]").count() == 3

    transcode = _card(page, "transcode", clip.name)
    assert _wait_final(page, transcode, procs) == "COMPLETED", transcode.inner_text() + procs.tails()
    names = transcode.locator("[data-testid=outputs] a").all_inner_texts()
    assert sorted(names) == ["web-clip.mp4_smooth.mp4", "web-clip.mp4_standard.mp4"], names
    for link in transcode.locator("[data-testid=outputs] a").all():
        response = page.request.get(web["url"] + link.get_attribute("href"))
        assert response.ok and response.body()[4:8] == b"ftyp", link.get_attribute("href")

    subtitles = _card(page, "subtitles", subtitled.name)
    assert _wait_final(page, subtitles, procs) == "COMPLETED", subtitles.inner_text() + procs.tails()
    srt = subtitles.locator("[data-testid=srt]").inner_text()
    assert "网页上传的字幕" in srt and "Uploaded in a browser" in srt, srt
    keys = _artifact_keys(web["ui"], subtitles.locator("[data-testid=prefect-run]").get_attribute("href"))
    assert {"subtitles-web-subtitled-mp4", "subtitles-timing-web-subtitled-mp4"} <= keys, keys

    page.evaluate("window.scrollTo(0, 0)")
    _shot(page, shots / "upload-results.png", full_page=True)
    run_link = transcode.locator("[data-testid=prefect-run]").get_attribute("href")
    _prefect_ui_shots(browser, web["ui"], run_link, shots)
    page.close()


def _artifact_keys(ui: str, run_url: str) -> set[str]:
    """The keys of the artifacts a run made, from the Prefect API (one card per input, a timing table)."""
    import httpx

    run_id = run_url.rstrip("/").rsplit("/", 1)[1]
    body = {"artifacts": {"flow_run_id": {"any_": [run_id]}}}
    answer = httpx.post(f"{ui}/api/artifacts/filter", json=body, timeout=10)
    answer.raise_for_status()
    return {a["key"] for a in answer.json() if a.get("key")}


def _prefect_ui_shots(browser, ui: str, run_url: str, shots: Path) -> None:
    """The Prefect UI's runs list and the transcode run's tasks (the page's link to it), for the README."""
    page = browser.new_page(viewport={"width": 1400, "height": 1250})
    page.goto(f"{ui}/runs")
    page.wait_for_selector("text=enhance ·", timeout=60_000)
    _shot(page, shots / "prefect-runs.png")
    assert run_url.startswith(f"{ui}/runs/flow-run/"), run_url
    page.goto(run_url)
    page.get_by_text("Task Runs", exact=True).first.click()
    page.wait_for_selector("text=transcode mp4_smooth", timeout=60_000)  # tasks named after what they do
    page.wait_for_timeout(1500)
    _shot(page, shots / "prefect-run.png")
    page.close()


def test_files_picked_before_the_options_arrive_get_every_choice(web, browser, media_dir):
    """A quick user (or a busy host) picks files before /api/options answers: the rows wait for it. Built
    earlier, a row had no engine to choose, and its start came back as "not started: [object Object]"."""
    photo = make_face_set(media_dir / "web-early", 1)[0]
    held = []
    page = browser.new_page()
    page.route("**/api/options", lambda route: held.append(route))  # answered when released below
    page.goto(web["url"])
    page.wait_for_function("() => document.querySelector('#picker') !== null")
    _pick(page, [photo])
    page.wait_for_timeout(500)
    assert page.locator("[data-testid=pending-row]").count() == 0, "no row without its options"
    assert held, "the page asked for its options"
    held[0].continue_()
    row = page.locator("[data-testid=pending-row]").first
    row.wait_for()
    engines = row.locator("[data-testid=engine] option").all_inner_texts()
    assert engines == ["realesrgan-ncnn", "opencv-classic", "gfpgan"], engines
    page.close()


def test_a_200_mb_video_upload(web, browser, media_dir):
    """Upload throughput and the time from the drop to the run's first progress, printed for the report."""
    big = media_dir / "web-big.avi"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=640x360:r=25:d=24",
         "-c:v", "rawvideo", "-pix_fmt", "yuv420p", str(big)], check=True, timeout=120,
    )  # fmt: skip
    size = big.stat().st_size
    assert 200e6 <= size <= 230e6, size
    page = browser.new_page()
    page.goto(web["url"])
    page.wait_for_selector("body[data-ready=true]")  # the options are in
    _pick(page, [big])
    row = page.locator("[data-testid=pending-row]").first
    row.locator("[data-testid=job]").select_option("transcode")
    for box in row.locator(".transcode-opts input").all():
        box.set_checked(box.get_attribute("value") == "mp4_smooth")
    page.click("[data-testid=start]")
    card = _card(page, "transcode", big.name)
    assert _wait_final(page, card, web["procs"]) == "COMPLETED", card.inner_text()
    timings = page.evaluate("window.yivideoTimings")
    upload = timings["uploads"][big.name]
    assert upload["status"] == 200 and upload["bytes"] == size
    first = timings["firstProgressAt"]
    assert first is not None, "no progress was shown before the run finished"
    rate = size / 1e6 / upload["seconds"]
    print(f"\nupload of {size / 1e6:.0f} MB: {upload['seconds']:.2f} s = {rate:.0f} MB/s; "
          f"drop to first run progress: {(first - timings['dropAt']) / 1000:.1f} s")  # fmt: skip
    page.close()
    assert shutil.which("ffprobe")
