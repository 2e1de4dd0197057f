"""Resume instead of redo: finished stages are reused by a re-run on the same input and settings.

The cache key (core/caching.py) is the input's content, the stage settings and the code version; a
crashed run's work folder keeps its token, so the re-run reuses even the stages whose results are files.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.caching import WORK_TOKEN, code_version, consume, fingerprint, open_work_dir, source_closure
from samples.realvideo import realvideo_dir
from samples.video import Cue, make_subtitled_video

REPO = Path(__file__).resolve().parents[1]
LINES = ["续跑第0句", "Resume line 1", "续跑第2句", "Resume line 3", "续跑第4句", "Resume line 5"]
CUES = [Cue(0.4 + 2.5 * i, 2.4 + 2.5 * i, text) for i, text in enumerate(LINES)]


@pytest.fixture(scope="module")
def video(media_dir) -> Path:
    return make_subtitled_video(media_dir / "resume.mp4", CUES, duration=15.5, size=(640, 360))


def test_fingerprints_follow_content_not_names(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert fingerprint(a) == fingerprint(b) and fingerprint(str(a)) == fingerprint(b)
    b.write_bytes(b"changed")
    assert fingerprint(a) != fingerprint(b)
    work = open_work_dir(tmp_path / "work")
    scratch = work / "part" / "strip.png"
    first = fingerprint(scratch)
    scratch.parent.mkdir()
    scratch.write_bytes(b"pixels")
    assert open_work_dir(work) and fingerprint(scratch) == first, "scratch files: by token and place"
    (work / WORK_TOKEN).unlink()
    assert fingerprint(open_work_dir(work) / "part" / "strip.png") != first, "a new folder never matches"


def test_the_code_version_covers_what_the_stage_runs(tmp_path):
    """Editing the GPU broker (or another stage) keeps cached OCR results; editing what OCR runs does not."""
    import shutil

    for package in ("core", "gpu", "stages"):
        shutil.copytree(REPO / package, tmp_path / package)
    runs = {str(p.relative_to(tmp_path)) for p in source_closure("stages.subtitles.ocr", tmp_path)}
    assert {"stages/subtitles/ocr.py", "core/schema.py", "gpu/slot.py"} <= runs, runs
    assert not runs & {"gpu/broker.py", "gpu/scheduler.py", "stages/subtitles/keyframes.py"}, runs
    before = code_version("stages.subtitles.ocr", tmp_path)
    with open(tmp_path / "gpu" / "broker.py", "a", encoding="utf-8") as f:
        f.write("\n# an edit to the broker\n")
    with open(tmp_path / "stages" / "subtitles" / "keyframes.py", "a", encoding="utf-8") as f:
        f.write("\n# an edit to another stage\n")
    code_version.cache_clear()
    assert code_version("stages.subtitles.ocr", tmp_path) == before
    with open(tmp_path / "core" / "schema.py", "a", encoding="utf-8") as f:
        f.write("\n# an edit to what OCR returns\n")
    code_version.cache_clear()
    assert code_version("stages.subtitles.ocr", tmp_path) != before
    assert code_version("stages.subtitles.keyframes", tmp_path) != code_version("stages.subtitles.ocr")


@pytest.fixture
def storage(tmp_path):
    """Results stored under this test only (the cache must not hit on an earlier session's runs)."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "storage"}):
        yield tmp_path / "storage"


@pytest.mark.slow
def test_a_second_run_reuses_the_expensive_stages(prefect_server, storage, video, tmp_path):
    from flows.subtitles import extract_subtitles

    first = extract_subtitles(str(video), str(tmp_path / "one"), return_state=True)
    again = extract_subtitles(str(video), str(tmp_path / "two"), return_state=True)
    events = [e.text for e in first.result().events]
    assert [e.text for e in again.result().events] == events and len(events) == len(CUES), events
    assert _cached(first) == set()
    # the first run's work folder is gone: the stages that read or write files in it run again
    assert _cached(again) == {"subtitle_area", "postprocess"}, _cached(again)
    other = extract_subtitles(str(video), str(tmp_path / "three"), sample_fps=4.0, return_state=True)
    assert _cached(other) == {"subtitle_area"}, "other keyframe settings: only the band is reused"
    assert len(other.result().events) == len(CUES)


def _cached(state) -> set[str]:
    """Stage names whose task run in this flow run ended Cached (reused, not run)."""
    return _stages(state.state_details.flow_run_id, "Cached")


def _stages(run: Path | object, state_name: str) -> set[str]:
    """Stage names of one flow run (by id, or the run writing into an output folder) in a given state."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    from tests.conftest import recorded_task_runs

    with get_client(sync_client=True) as client:
        if isinstance(run, Path):
            flow_runs = client.read_flow_runs(sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=200)  # newest
            ids = [r.id for r in flow_runs if r.parameters.get("output_dir") == str(run)]
        else:
            ids = [run]
        if not ids:
            return set()
        tasks = recorded_task_runs(client, ids, final=not isinstance(run, Path))  # by id: a run that ended
    return {t.task_key.rsplit("-", 1)[0].removesuffix("_task") for t in tasks if t.state_name == state_name}


def _read_until(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    """The process's output up to the first line holding `marker` (all of it if it ends or times out).
    Its stdout is unbuffered, so what select() reports readable is all there is to read."""
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        if not select.select([proc.stdout], [], [], 1.0)[0]:
            continue
        line = proc.stdout.readline().decode("utf-8", "replace")
        seen.append(line)
        if marker in line or not line:
            break
    return "".join(seen)


def _subtitles_cli(video: Path, out: Path, env: dict[str, str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "flows.subtitles", str(video), "--output-dir", str(out)]
    # unbuffered: see _read_until
    return subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, bufsize=0)  # fmt: skip


@pytest.mark.slow
def test_kill_9_in_the_last_stage_then_the_rerun_resumes(prefect_server, storage, video, tmp_path):
    """The demonstration: kill -9 while OCR runs; the re-run reuses the stages before OCR (and its batches
    that finished)."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": str(PREFECT_API_URL.value()),
           "PREFECT_LOCAL_STORAGE_PATH": str(storage), "PREFECT_LOGGING_LEVEL": "INFO",
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    out = tmp_path / "out"
    started = time.monotonic()
    proc = _subtitles_cli(video, out, env)
    # kill at the first log line of OCR, the last long stage (the run's own log, not the API: polling the
    # API for task-run states let a short OCR finish unseen on a loaded host)
    seen = _read_until(proc, "Task run 'ocr batch 1/", timeout=300)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "Task run 'ocr batch 1/" in seen, seen[-3000:]
    killed_after = time.monotonic() - started
    (work,) = out.glob("subtitles/*/.work")
    assert (work / WORK_TOKEN).exists(), "a crash leaves the work folder: the re-run resumes from it"

    started = time.monotonic()
    rerun = _subtitles_cli(video, out, env)
    log = rerun.communicate(timeout=600)[0].decode("utf-8", "replace")
    rerun_took = time.monotonic() - started
    assert rerun.returncode == 0, log[-3000:]
    (manifest,) = out.glob("subtitles/*/manifest.json")
    seconds = json.loads(manifest.read_text(encoding="utf-8"))["stage_seconds"]
    print(f"\nkilled in OCR after {killed_after:.1f} s; re-run took {rerun_took:.1f} s; stages {seconds}")
    # the stages before OCR come from the cache; so do OCR batches that finished before the kill (per batch)
    cached = _stages(out, "Cached")
    before_ocr = {"subtitle_area", "keyframes", "crop", "stitch", "language"}
    assert before_ocr <= cached <= before_ocr | {"ocr"}, cached
    assert not work.exists(), "the finished run removes the work folder"


def test_a_cached_result_whose_files_are_gone_is_computed_again(prefect_server, storage, tmp_path):
    """The stage cache is never trusted over missing files: deleted (an interrupted run's cleanup, a user's
    rm) -> the stage runs again; consumed on purpose by the flow (a finished window) -> still reused."""
    from prefect import flow, task

    from core.caching import resumable

    runs: list[str] = []

    @task(name="strips", **resumable())
    def strips(source: Path, work: Path, count: int) -> list[Path]:
        runs.append(str(work))
        work.mkdir(parents=True, exist_ok=True)
        out = [work / f"strip_{i}.png" for i in range(count)]
        for p in out:
            p.write_bytes(source.read_bytes())
        return out

    @flow
    def make(source: Path, work: Path) -> tuple[list[Path], str]:
        state = strips(source, work, 3, return_state=True)
        return state.result(), state.name

    source = tmp_path / "frame.bin"
    source.write_bytes(b"pixels")
    work = open_work_dir(tmp_path / ".work")
    window = work / "000000.0"
    first, name = make(source, window)
    assert name == "Completed" and all(p.is_file() for p in first)
    assert make(source, window)[1] == "Cached", "its files are there: reused"
    first[1].unlink()  # one strip gone
    again, name = make(source, window)
    assert name == "Completed" and all(p.is_file() for p in again), "recomputed, not trusted"
    assert make(source, window)[1] == "Cached", "the recomputed result is reused in its turn"
    consume(window)
    assert not window.exists() and make(source, window)[1] == "Cached", "consumed on purpose: reused"
    assert len(runs) == 2


REAL_VIDEO = realvideo_dir() / "douyin_7625253704698556297_zh.mp4"  # 10 s, 540x940, small text


@pytest.mark.slow
def test_killed_after_keyframes_its_strips_deleted_the_rerun_recomputes(prefect_server, storage, tmp_path):
    """Issue 29's broken folder, on a real short drama: the run dies after `keyframes`, the strips its cached
    result points at are gone (a cleanup, a user's rm); re-running into the same folder recomputes the
    keyframes instead of failing on a missing strip, and reuses the band."""
    if not REAL_VIDEO.is_file():
        pytest.skip(f"real footage not here: {REAL_VIDEO.parent} (see its README)")
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": str(PREFECT_API_URL.value()),
           "PREFECT_LOCAL_STORAGE_PATH": str(storage), "PREFECT_LOGGING_LEVEL": "INFO",
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    out = tmp_path / "out"
    proc = _subtitles_cli(REAL_VIDEO, out, env)
    seen = _read_until(proc, "Task run 'crop band", timeout=300)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "Task run 'crop band" in seen, seen[-3000:]
    (work,) = out.glob("subtitles/*/.work")
    strips = [p for p in work.rglob("strip_*")]  # the band strips, whatever their image format
    assert strips, sorted(work.rglob("*"))
    for strip in strips:
        strip.unlink()
    rerun = _subtitles_cli(REAL_VIDEO, out, env)
    log = rerun.communicate(timeout=600)[0].decode("utf-8", "replace")
    assert rerun.returncode == 0, log[-3000:]
    assert "is missing" not in log and "Traceback" not in log, log[-3000:]
    (srt,) = out.glob("subtitles/*/*.srt")
    assert srt.read_text(encoding="utf-8").strip(), "subtitles read from the recomputed keyframes"
    cached = _stages(out, "Cached")
    assert "subtitle_area" in cached and "keyframes" not in cached, cached


# ---------------------------------------------------------------- stop each stage of each flow, run again
# Every flow, stopped at each of its stages and run again into the same folder: the re-run ends as an
# uninterrupted run does, reuses the stages that finished before the stop and leaves nothing half-written.
# One stage per flow is stopped by a real SIGKILL of a CLI process while the stage runs (the runtime's
# test-only hook announces the stage's start; the test kills the process group at that line); the others by
# the hook's in-process KeyboardInterrupt as the stage starts (a Ctrl-C arriving then: the flow's own
# cleanup runs, and keeps the scratch folder for the re-run). Names: the stages' functions (task keys).
SUBTITLE_STAGES = ("subtitle_area", "keyframes", "crop", "stitch", "language", "ocr", "postprocess")
TRANSCRIBE_STAGES = ("extract_audio", "transcribe", "write_transcript")
RESUMABLE = {*SUBTITLE_STAGES, "transcribe"}  # core.caching.resumable(); the rest are cheap and run again
TASK_NAMES = {"language": "subtitle-language", "enhance_image": "enhance-image"}  # otherwise the same
KILLED = {"ocr", "transcribe", "transcode", "enhance_image"}  # one per flow: SIGKILL of a CLI process
CASES = [("subtitles", s) for s in SUBTITLE_STAGES] + [("transcribe", s) for s in TRANSCRIBE_STAGES]
CASES += [("transcode", "transcode"), ("enhance", "enhance_image")]
PRESETS = ("mp4_standard", "thumbnail")


@pytest.fixture(scope="module")
def stop_inputs(media_dir) -> dict[str, list[Path]]:
    """Tiny inputs: a 6 s subtitled clip (two lines, one window), one spoken sentence, two small faces."""
    from samples.audio import make_speech
    from samples.images import make_face_set

    cues = [Cue(0.4, 2.6, "停下再来"), Cue(3.2, 5.6, "Stop and start again")]
    clip = make_subtitled_video(media_dir / "stop-clip.mp4", cues, duration=6.0, size=(640, 360))
    speech = make_speech(media_dir / "stop-speech.wav", "en", ("Stop it and start it again.",)).path
    faces = make_face_set(media_dir / "stop-faces", 2, size=(96, 96))
    return {"subtitles": [clip], "transcribe": [speech], "transcode": [clip], "enhance": faces}


def _run_flow(flow: str, inputs: list[Path], out: Path):
    """One in-process run of `flow` on `inputs` into `out`: its final state."""
    if flow == "subtitles":
        from flows.subtitles import extract_subtitles

        return extract_subtitles(str(inputs[0]), str(out), return_state=True)
    if flow == "transcribe":
        from flows.transcribe import transcribe

        return transcribe(str(inputs[0]), str(out), "en", return_state=True)  # no language detection pass
    if flow == "transcode":
        from flows.transcode import transcode

        return transcode(str(inputs[0]), list(PRESETS), str(out), return_state=True)
    from flows.enhance import enhance_images

    return enhance_images([str(p) for p in inputs], str(out), return_state=True)


def _cli(flow: str, inputs: list[Path], out: Path) -> list[str]:
    """The command line a user would type for the same run."""
    args = [str(p) for p in inputs] + ["--output-dir", str(out)]
    if flow == "transcode":
        args += [arg for preset in PRESETS for arg in ("--preset", preset)]
    elif flow == "transcribe":
        args += ["--language", "en"]
    return [sys.executable, "-m", f"flows.{flow}", *args]


def _outputs(out: Path) -> dict[str, bytes | tuple]:
    """What a run left under `out`, by relative path: text outputs by content, media by what a probe sees
    (an encode's bytes may differ from run to run), images by size and mean; manifests by their outputs."""
    from core.media import probe_media

    found: dict[str, bytes | tuple] = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = str(path.relative_to(out))
        if path.suffix in (".srt", ".vtt", ".txt"):
            found[rel] = path.read_bytes()
        elif path.name == "manifest.json":
            manifest = json.loads(path.read_text(encoding="utf-8"))
            found[rel] = tuple(sorted(manifest.get("outputs") or manifest))  # enhance: its own layout
        elif path.suffix in (".mp4", ".jpg", ".png"):
            info = probe_media(path)
            found[rel] = (info.kind, info.width, info.height, round(info.duration, 1))
        else:
            found[rel] = ()
    return found


@pytest.fixture(scope="module")
def uninterrupted(prefect_server, stop_inputs, tmp_path_factory) -> dict[str, dict[str, bytes | tuple]]:
    """Each flow's outputs from one run that nobody stopped (results stored apart: no case reuses them)."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    root = tmp_path_factory.mktemp("uninterrupted")
    found = {}
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: root / "storage"}):
        for flow, inputs in stop_inputs.items():
            assert _run_flow(flow, inputs, root / flow).is_completed(), flow
            found[flow] = _outputs(root / flow)
    return found


def _stop(flow: str, stage: str, inputs: list[Path], out: Path, storage: Path, monkeypatch) -> None:
    """Run `flow` and stop it at `stage`: SIGKILL of its CLI while the stage runs, or a KeyboardInterrupt."""
    from prefect.settings import PREFECT_API_URL

    name = TASK_NAMES.get(stage, stage)
    if stage not in KILLED:
        monkeypatch.setenv("YIVIDEO_TEST_INTERRUPT_AT", name)
        with pytest.raises(KeyboardInterrupt):
            _run_flow(flow, inputs, out)
        monkeypatch.delenv("YIVIDEO_TEST_INTERRUPT_AT")
        return
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": str(PREFECT_API_URL.value()),
           "PREFECT_LOCAL_STORAGE_PATH": str(storage), "PYTHONUNBUFFERED": "1",
           "YIVIDEO_TEST_INTERRUPT_AT": f"{name}:announce"}  # fmt: skip
    proc = subprocess.Popen(_cli(flow, inputs, out), cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)  # fmt: skip
    seen = _read_until(proc, f"stage {name} started", timeout=300)
    if flow == "transcode":  # ffmpeg is writing its temporary file: killed half-written
        deadline = time.monotonic() + 20
        while not any(".part" in p.name for p in out.rglob("*")) and time.monotonic() < deadline:
            time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert f"stage {name} started" in seen, seen[-3000:]
    assert not list(out.rglob("manifest.json")), "killed before the run finished"


@pytest.mark.slow
@pytest.mark.parametrize(("flow", "stage"), CASES, ids=[f"{f}-{s}" for f, s in CASES])
def test_stopped_at_each_stage_the_rerun_resumes(
    flow, stage, stop_inputs, uninterrupted, storage, tmp_path, monkeypatch
):
    from tests.conftest import assert_no_partial_outputs

    out, inputs = tmp_path / "out", stop_inputs[flow]
    _stop(flow, stage, inputs, out, storage, monkeypatch)
    state = _run_flow(flow, inputs, out)
    assert state.is_completed(), state.message
    assert _outputs(out) == uninterrupted[flow], "the re-run's outputs are an uninterrupted run's"
    assert_no_partial_outputs(out)
    assert not [p for p in out.rglob(".work*")], "no scratch folder left"
    order = SUBTITLE_STAGES if flow == "subtitles" else TRANSCRIBE_STAGES if flow == "transcribe" else ()
    finished = {s for s in order[: order.index(stage)] if s in RESUMABLE} if stage in order else set()
    cached = _cached(state)
    if stage in KILLED and stage in RESUMABLE:  # killed mid-stage: its parts that finished (OCR batches) too
        assert finished <= cached <= finished | {stage}, cached
    else:
        assert cached == finished, cached
