"""The host's model service (core/model_service.py): separate flow-run processes share one OCR load, a run
loads in itself when the service is off or cannot start, and a service killed under a call loses no run;
photo enhancement's networks are shared the same way, its tiling and progress staying in the run.

Real processes throughout: each "run" is a fresh Python process, as a process worker starts one per flow
run (PREFECT__FLOW_RUN_ID set, the service's `auto` mode), reading a real frame with the real PP-OCR model
(skipped where the shared real videos are absent), or enhancing a real photograph with the real waifu2x
network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from core.model_service import address, status, stop
from samples.realvideo import REALVIDEO_MISSING, realvideo_available, realvideo_dir, realvideo_path
from stages.subtitles.ocr import ENGINES as ENGINES_OCR
from stages.subtitles.ocr import OcrSettings, ocr_model_key

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# one run's OCR: its engine (a handle on the service, or loaded here), the loads in this process, the text
RUN = """
import sys, cv2
from core.models import load_count
from stages.subtitles.ocr import OcrSettings, load_ocr_engine
engine = load_ocr_engine(OcrSettings())
image = cv2.imread(sys.argv[1])
print("calling", flush=True)
lines = engine.read(image)
print(type(engine).__name__, load_count(), "|".join(line.text for line in lines))
"""
# one run of a burst: once argv[3] runs are up (argv[2] holds a file for each), the same model called three
# times; the span of its calls, then what it read
BURST = """
import os, sys, time, cv2
from pathlib import Path
from core.models import load_count
from stages.subtitles.ocr import OcrSettings, load_ocr_engine
engine, image = load_ocr_engine(OcrSettings()), cv2.imread(sys.argv[1])
ready, deadline = Path(sys.argv[2]), time.monotonic() + 120
(ready / str(os.getpid())).touch()
while len(list(ready.iterdir())) < int(sys.argv[3]) and time.monotonic() < deadline:
    time.sleep(0.01)
start = time.time()
texts = {"|".join(line.text for line in engine.read(image)) for _ in range(3)}
print(start, time.time())
print(type(engine).__name__, load_count(), len(texts), texts.pop())
"""
# the same, with the service SIGKILLed while it loads the model for this run's first call
KILLED = """
import os, signal, sys, threading, time, cv2
from core.model_service import address, status
from core.models import load_count
from stages.subtitles.ocr import OcrSettings, load_ocr_engine
from prefect.settings import get_current_settings
engine = load_ocr_engine(OcrSettings())
pid = status(address(__import__("pathlib").Path(get_current_settings().home)))["pid"]
threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()
lines = engine.read(cv2.imread(sys.argv[1]))
print(type(engine).__name__, load_count(), "|".join(line.text for line in lines))
"""
# one run's enhancement: what holds its networks, the loads in this process, tiles reported, a digest
ENHANCE = """
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


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> Path:
    """A frame of a real short drama with a burned-in subtitle line."""
    if not realvideo_available():
        pytest.skip(REALVIDEO_MISSING)
    path = tmp_path_factory.mktemp("frame") / "frame.png"
    video = realvideo_path("douyin_7625472985927237489_zh")
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-ss", "5", "-i", str(video), "-frames:v", "1", str(path)],
        check=True,
    )
    return path


@pytest.fixture
def home(tmp_path) -> Path:
    """A PREFECT_HOME of its own: its own service, stopped after the test."""
    home = tmp_path / "home"
    home.mkdir()
    yield home
    stop(home)


def run(script: str, home: Path, frame: Path, **env: str) -> tuple[str, int, str, str]:
    """One flow-run-like process: (engine type, loads in it, text read, its stderr)."""
    environ = {**os.environ, "PREFECT_HOME": str(home), "PYTHONPATH": str(REPO)}
    environ.update({"PREFECT__FLOW_RUN_ID": str(uuid.uuid4()), **env})
    environ.pop("YIVIDEO_MODEL_SERVICE", None) if "YIVIDEO_MODEL_SERVICE" not in env else None
    done = subprocess.run(
        [sys.executable, "-c", script, str(frame)], env=environ, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    kind, loads, text = done.stdout.strip().splitlines()[-1].split(" ", 2)
    return kind, int(loads), text, done.stderr


@pytest.fixture(scope="module")
def expected(frame, tmp_path_factory) -> str:
    """What the model reads in a process of its own, no service."""
    home = tmp_path_factory.mktemp("alone")
    kind, loads, text, _ = run(RUN, home, frame, YIVIDEO_MODEL_SERVICE="off")
    assert (kind, loads) == ("RapidOcrEngine", 1) and text, "the frame has a subtitle line"
    assert status(address(home)) is None, "off: no service started"
    return text


def test_two_runs_share_one_load(home, frame, expected) -> None:
    first = run(RUN, home, frame)
    second = run(RUN, home, frame)
    assert first[:3] == second[:3] == ("ServedModel", 0, expected), "no load in either run, same text"
    found = status(address(home))
    assert found is not None and found["loads"] == 1, found
    key = str(ocr_model_key(OcrSettings()))  # the key in full: detector, recogniser and every setting
    assert found["models"] == [key] and "lang=ppocr:pp-ocrv6-small" in key and "det_max_side=1440" in key
    assert [(k, why) for k, why, _ in found["load_log"]] == [(key, "first load")]
    assert (found["models_mb"], found["budget_mb"]) == (32, 512), "PP-OCRv6 by its measured size"


def test_runs_calling_at_once_make_the_service_load_nothing_more(home, frame, expected) -> None:
    """The burst case: with the model resident, runs that call it at once queue for it. The service loaded
    a copy of it for them before (a second load per model; copies then filled the resident slots and a
    burst of deployed runs evicted and reloaded them)."""
    assert run(RUN, home, frame)[:3] == ("ServedModel", 0, expected)
    tiled = frame.parent / "tiled-burst.png"  # about a second a call: the runs' calls overlap
    big = "import cv2, numpy, sys; cv2.imwrite(sys.argv[1], numpy.tile(cv2.imread(sys.argv[2]), (3, 3, 1)))"
    subprocess.run([sys.executable, "-c", big, str(tiled), str(frame)], check=True)
    environ = {**os.environ, "PREFECT_HOME": str(home), "PYTHONPATH": str(REPO)}
    environ.pop("YIVIDEO_MODEL_SERVICE", None)
    runs, ready = 3, home.parent / "burst-ready"  # the runs call once all are up: their imports under load
    ready.mkdir()  # differ by more than three calls take, and one run finished before another called
    burst = [
        subprocess.Popen(
            [sys.executable, "-c", BURST, str(tiled), str(ready), str(runs)],
            env={**environ, "PREFECT__FLOW_RUN_ID": str(uuid.uuid4())},
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(runs)
    ]
    outs = [proc.communicate(timeout=300)[0].strip().splitlines() for proc in burst]
    assert [proc.returncode for proc in burst] == [0] * runs, outs
    spans = [tuple(map(float, out[-2].split())) for out in outs]  # each run's first to last call
    assert max(start for start, _ in spans) < min(end for _, end in spans), f"not called at once: {spans}"
    results = {out[-1] for out in outs}  # no load in any run, the same text each call and each run
    assert len(results) == 1 and results.pop().startswith("ServedModel 0 1 ") and expected in outs[0][-1]
    found = status(address(home))
    assert found["loads"] == 1, found


def test_a_run_loads_itself_when_the_service_cannot_start(home, frame, expected) -> None:
    kind, loads, text, stderr = run(RUN, home, frame, YIVIDEO_MODEL_SERVICE_IDLE_S="soon")
    assert (kind, loads, text) == ("RapidOcrEngine", 1, expected), "the service refused its bad setting"
    warned = [line for line in stderr.splitlines() if "model service unavailable" in line]
    assert len(warned) == 1 and "is not a number of seconds" in warned[0], stderr[-2000:]


def test_a_service_killed_under_a_call_loses_no_run(home, frame, expected) -> None:
    kind, loads, text, stderr = run(KILLED, home, frame)
    assert (kind, loads, text) == ("ServedModel", 1, expected), "the call ran here, once loaded, same text"
    lost = [line for line in stderr.splitlines() if "model service lost" in line]
    assert len(lost) == 1, stderr[-2000:]
    assert status(address(home)) is None
    assert run(RUN, home, frame)[:3] == ("ServedModel", 0, expected), "the next run starts a new service"


def test_the_service_outlives_a_run_killed_under_a_call(home, frame, expected) -> None:
    run(RUN, home, frame)  # the service is up with the model
    environ = {**os.environ, "PREFECT_HOME": str(home), "PYTHONPATH": str(REPO)}
    environ["YIVIDEO_MODEL_SERVICE"] = "on"
    big = "import cv2, numpy, sys; cv2.imwrite(sys.argv[1], numpy.tile(cv2.imread(sys.argv[2]), (4, 4, 1)))"
    tiled = frame.parent / "tiled.png"
    subprocess.run([sys.executable, "-c", big, str(tiled), str(frame)], check=True)
    victim = subprocess.Popen([sys.executable, "-c", RUN, str(tiled)], env=environ, stdout=subprocess.PIPE)
    assert victim.stdout.readline().strip() == b"calling"
    time.sleep(0.3)  # the service reads the 3840x2880 image (seconds)
    victim.kill()
    victim.wait()
    assert run(RUN, home, frame)[:3] == ("ServedModel", 0, expected), "served once the victim's call ended"
    assert status(address(home))["loads"] == 1


def test_enhancement_runs_after_the_first_load_no_network(home, tmp_path) -> None:
    """The ncnn networks are served; each tile is one call and progress still comes tile by tile."""
    alone = run(ENHANCE, tmp_path, tmp_path, YIVIDEO_MODEL_SERVICE="off")  # no frame: the photo is packaged
    assert alone[:2] == ("NcnnNetworks", 1) and alone[2].startswith("4 "), alone  # 96 px in 48 px tiles
    first, second = run(ENHANCE, home, tmp_path), run(ENHANCE, home, tmp_path)
    assert first[:3] == second[:3] == ("ServedModel", 0, alone[2]), "no load in either run, the same picture"
    found = status(address(home))
    assert found is not None and found["loads"] == 1, found


def test_readers_loaded_during_a_whisper_call_do_not_push_it_out(frame, monkeypatch) -> None:
    """Issue 23: a run's language probe tries three small Tesseract readers while another run's Whisper call
    runs. Over the memory budget (40 MB here: Whisper alone is 113), the readers push out each other, never
    the model under a call: Whisper is loaded once for both calls. With a cap of 1 model (the count cap
    before), each reader evicted it under its call and the next call loaded it again. The first call is held
    open (the real one after the readers) so that they load under it however loaded the host is."""
    import threading

    import cv2

    from core import models
    from core.model_service import Service
    from stages.speech.audio import iter_audio_windows
    from stages.speech.engines import ENGINES, AsrSettings, asr_model_key

    meeting = realvideo_dir().parent / "realspeech" / "meetings" / "ami_EN2001a_0-30s.wav"
    if not meeting.exists():
        pytest.skip(f"{meeting} is absent")
    monkeypatch.setenv("YIVIDEO_RESIDENT_MODELS_MB", "40")
    monkeypatch.setenv("YIVIDEO_MAX_RESIDENT_MODELS", "1")
    models.evict()
    service, asr = Service("unused"), AsrSettings(device="cpu")
    _, samples = next(iter_audio_windows(meeting))
    whisper = ("call", asr_model_key(asr), ENGINES[asr.engine], asr, "transcribe", (samples, None, asr), {})
    before, spans = models.load_count("asr"), {}
    readers_in, real_transcribe = threading.Event(), ENGINES[asr.engine].transcribe

    def held_open(engine, *args, **kwargs):  # the first call stays under way until the readers are loaded:
        readers_in.wait(120)  # on a loaded host (4 xdist workers) the 30 s meeting was read before them
        return real_transcribe(engine, *args, **kwargs)

    monkeypatch.setattr(ENGINES[asr.engine], "transcribe", held_open)

    def transcribe(name: str) -> None:
        start = time.monotonic()
        ok, window = service.answer(whisper)
        assert ok and window.segments, window
        spans[name] = (start, time.monotonic())

    call = threading.Thread(target=transcribe, args=("first",))
    call.start()
    while models.load_count("asr") == before:  # loaded: its call runs now
        time.sleep(0.02)
    image = cv2.imread(str(frame))
    try:
        for code in ("ko", "ru", "ar"):
            settings = OcrSettings(lang=code)
            reader = (ocr_model_key(settings), ENGINES_OCR[settings.engine], settings)
            ok, _ = service.answer(("call", *reader, "read", (image,), {}))
            assert ok
        readers_done = time.monotonic()
    finally:
        readers_in.set()  # a reader that failed leaves no held call waiting out its 120 s
    call.join()
    assert spans["first"][1] > readers_done, "the readers loaded while Whisper's call ran"
    transcribe("second")
    assert models.load_count("asr") == before + 1, list(models.LOADS)[-5:]
    models.evict()
