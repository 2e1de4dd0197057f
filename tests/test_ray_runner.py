"""The flows on Ray: one local Ray instance (2 CPUs, 2 fake GPUs) per module, a real Prefect server,
YIVIDEO_GPU_GATE=always so GPU stages take real Prefect GPU slots, real OCR on generated video."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from gpu_brokers import stop_brokers
from prefect import flow, task
from prefect.cache_policies import NONE
from ray_nodes import QUIET_RAYLET

from blocks.policy import RunPolicy
from blocks.runner import RunnerConfig
from core.errors import ConfigError, MediaInputError
from core.models import load_count
from flows.subtitles import extract_subtitles
from gpu.client import RUN_DIR_ENV
from gpu.devices import GATE_ENV, GPU_CAPABLE_TAG, HOST_ENV, limit_name
from gpu.slot import gpu_slot
from runtime.placement import placement_options
from runtime.runner import (
    RUNNER_BLOCK_ENV,
    RUNNER_ENV,
    StageRunner,
    runner_settings_from_env,
    with_runner,
)
from runtime.stage import Stages, run_stage
from samples.scoring import squash
from samples.video import busy_script, make_subtitled_video
from stages.subtitles.ocr import OcrSettings, ocr_task
from stages.subtitles.stitch import batch_keyframes

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="the ray extra is not installed")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ON_RAY = RunnerConfig(kind="ray")


def _set_limit(name: str, slots: int) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, slots)


@pytest.fixture(scope="module")
def ray_cluster(prefect_server, tmp_path_factory):
    """A local Ray instance whose workers reach the test's Prefect server and gate GPU stages on it."""
    from prefect.settings import PREFECT_API_URL

    gpu_env = {  # a host of our own with one single-slot device; brokers keep their files in a temp folder
        GATE_ENV: "always",
        HOST_ENV: f"ray-test-{os.getpid()}",
        RUN_DIR_ENV: str(tmp_path_factory.mktemp("gpu-run")),
    }
    saved = {k: os.environ.get(k) for k in {**gpu_env, **QUIET_RAYLET}}
    os.environ.update(gpu_env | QUIET_RAYLET)  # this process (local runs) and, inherited, the Ray nodes
    _set_limit(limit_name(0), 1)
    ray.init(
        num_cpus=2,
        num_gpus=2,  # fake: Ray may run two GPU stages at once; the Prefect limit (1 slot) still caps them
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=200 * 1024**2,
        # the test module itself (its probe tasks) must import in the workers
        runtime_env={
            "env_vars": {
                "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]),  # this checkout, not the installed one
                "PREFECT_API_URL": PREFECT_API_URL.value(),
                **gpu_env,
            }
        },
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        stop_brokers(Path(gpu_env[RUN_DIR_ENV]))  # else they idle on past the module, the session's end too
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(autouse=True)
def no_warm_actors_left():
    """Warm model actors hold their GPU share as long as they live: each test ends the ones it started."""
    yield
    if ray.is_initialized():
        from runtime.ray_engine import stop_model_servers

        stop_model_servers()


@pytest.fixture(scope="module")
def short_video(media_dir) -> Path:
    return make_subtitled_video(media_dir / "short-ray.mp4", busy_script()[:2], duration=5.0, size=(640, 360))


def test_subtitles_on_ray_match_the_local_runner(ray_cluster, short_video, tmp_path, monkeypatch):
    """On the short video (two lines; the busy one was 4x the pixels, for the same proof)."""
    local = with_runner(extract_subtitles, RunnerConfig())(str(short_video), str(tmp_path / "local"))
    loads_here = load_count("ocr")
    # as a deployment picks it: the flow's own StageRunner() reads the block its environment names
    ON_RAY.save(f"ray-test-{os.getpid()}", overwrite=True)
    monkeypatch.setenv(RUNNER_BLOCK_ENV, f"ray-test-{os.getpid()}")
    on_ray = extract_subtitles(str(short_video), str(tmp_path / "ray"))
    assert on_ray.srt_path.read_text(encoding="utf-8") == local.srt_path.read_text(encoding="utf-8")
    assert [e.text for e in on_ray.events] == [e.text for e in local.events]
    assert [squash(e.text) for e in local.events] == ["背景在动", "Movingbackgroundtest"]
    assert load_count("ocr") == loads_here, "the OCR stages ran in Ray workers, not in this process"
    with pytest.raises(MediaInputError, match="does not exist"):  # a stage's error crosses Ray as itself
        with_runner(extract_subtitles, ON_RAY)(str(tmp_path / "missing.mp4"), str(tmp_path / "ray"))


@task(name="ocr-and-report", tags=[GPU_CAPABLE_TAG], cache_policy=NONE)
def ocr_and_report(batches, keyframes, settings: OcrSettings) -> tuple[int, int, str, str | None]:
    """The real OCR stage, then which process ran it, how many models that process has loaded so far, and
    which GPUs Ray let it see."""
    texts = [t for batch in batches for t in ocr_task.fn(batch, batch_keyframes(keyframes, batch), settings)]
    seen = os.environ.get("CUDA_VISIBLE_DEVICES")
    return os.getpid(), load_count("ocr", "rapidocr"), " / ".join(t.text for t in texts), seen


@flow
def repeat_ocr(
    batches, keyframes, settings: OcrSettings, times: int
) -> list[tuple[int, int, str, str | None]]:
    return [run_stage(ocr_and_report, batches, keyframes, settings) for _ in range(times)]


@pytest.fixture(scope="module")
def ocr_input(short_video, tmp_path_factory):
    """Stitched keyframes of the short video, made by the plain stage functions (no OCR in this process)."""
    from core.media import probe_media
    from stages.subtitles.band import band_from_fractions
    from stages.subtitles.crop import crop_keyframes
    from stages.subtitles.keyframes import KeyframeSettings, extract_keyframes
    from stages.subtitles.stitch import stitch_keyframes

    work = tmp_path_factory.mktemp("ocr-input")
    info, settings = probe_media(short_video), KeyframeSettings()
    keyframes = extract_keyframes(
        info, band_from_fractions((0.0, 0.6, 1.0, 1.0), info.width, info.height), work, settings
    )
    crops = crop_keyframes(keyframes, work, settings)
    return stitch_keyframes(crops, work), crops


def test_gpu_workers_keep_their_models_across_tasks(ray_cluster, ocr_input):
    batches, crops = ocr_input
    times = 3
    warm = with_runner(repeat_ocr, ON_RAY)(batches, crops, OcrSettings(), times)
    cold_runner = ON_RAY.model_copy(update={"keep_gpu_workers": False})  # 2 tasks show a worker per task
    cold = with_runner(repeat_ocr, cold_runner)(batches, crops, OcrSettings(), 2)
    for reports in (warm, cold):
        assert all("Movingbackgroundtest" in squash(text) for _, _, text, _ in reports), reports
    warm_pids = {pid for pid, *_ in warm}
    assert os.getpid() not in warm_pids
    assert all(loads == 1 for _, loads, *_ in warm), f"a warm worker loaded the model again: {warm}"
    assert len(warm_pids) < times, f"no worker served two GPU tasks: {warm}"
    # a kept worker sees every GPU of its node (gpu_slot picks the device); Ray pins a one-task worker
    assert all(seen is None for *_, seen in warm) and all(seen in ("0", "1") for *_, seen in cold), (
        warm,
        cold,
    )
    # Ray's default for GPU tasks (max_calls=1): a fresh worker, and a fresh model load, for every task
    assert len({pid for pid, *_ in cold}) == len(cold) and all(loads == 1 for _, loads, *_ in cold), cold


@task(name="hold-gpu", tags=[GPU_CAPABLE_TAG], cache_policy=NONE)
def hold_gpu(seconds: float, meet: str) -> tuple[int, float, float, float]:
    """Hold the GPU slot for `seconds`, after the first two tasks have met (both running in Ray at once)."""
    Path(meet, str(os.getpid()) + str(time.monotonic_ns())).touch()
    deadline = time.monotonic() + 120
    while len(os.listdir(meet)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.time()
    with gpu_slot("hold-gpu") as grant:
        assert grant.limit is not None, "YIVIDEO_GPU_GATE=always should gate in the Ray worker"
        acquired = time.time()
        time.sleep(seconds)
        released = time.time()
    return os.getpid(), started, acquired, released


@flow(task_runner=StageRunner(ON_RAY))
def contend_for_gpu(count: int, seconds: float, meet: str) -> list[tuple[int, float, float, float]]:
    from prefect_ray.context import remote_options

    with remote_options(**placement_options(hold_gpu)):
        futures = [hold_gpu.submit(seconds, meet) for _ in range(count)]
    return [f.result() for f in futures]


def test_prefect_gpu_limit_caps_gpu_stages_inside_ray(ray_cluster, tmp_path):
    holds = contend_for_gpu(3, 1.0, str(tmp_path))
    assert len({pid for pid, *_ in holds}) >= 2, f"Ray ran the GPU tasks one at a time: {holds}"
    spans = sorted((acquired, released) for _, _, acquired, released in holds)
    overlaps = [(a, b) for a, b in zip(spans, spans[1:], strict=False) if a[1] > b[0]]
    assert not overlaps, f"two GPU tasks held the single slot at once: {overlaps}"
    # Ray ran two at once (they met): one of them waited for the other's slot
    assert max(acquired - started for _, started, acquired, _ in holds) >= 0.8, f"none waited: {holds}"


@flow(task_runner=StageRunner(ON_RAY.model_copy(update={"gpu_fraction": 0.5})))
def contend_in_actors(count: int, seconds: float, meet: str) -> list[tuple[int, float, float, float]]:
    stages = Stages(RunPolicy(stage_retries=0))
    futures = [stages.submit(hold_gpu, seconds, meet, model=f"model-{i}") for i in range(count)]
    return [f.result() for f in futures]


def test_warm_actors_take_the_prefect_gpu_limit_as_tasks_do(ray_cluster, tmp_path):
    from runtime.ray_engine import model_servers

    holds = contend_in_actors(3, 1.0, str(tmp_path))
    servers = model_servers()
    assert len(servers) == 3 and all(name.endswith("-gpu") for name in servers), servers
    actor_pids = {ray.get(actor.where.remote())[1] for actor in servers.values()}
    assert {pid for pid, *_ in holds} == actor_pids, "each model's stage ran in its own warm actor"
    spans = sorted((acquired, released) for _, _, acquired, released in holds)
    overlaps = [(a, b) for a, b in zip(spans, spans[1:], strict=False) if a[1] > b[0]]
    assert not overlaps, f"two actors held the single GPU slot at once: {overlaps}"
    assert max(acquired - started for _, started, acquired, _ in holds) >= 0.8, f"none waited: {holds}"


def test_runner_configuration_errors_are_clear(prefect_server, monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv(RUNNER_ENV, "spark")
    with pytest.raises(ConfigError, match="YIVIDEO_RUNNER='spark' is not a runner"):
        runner_settings_from_env()
    monkeypatch.setenv(RUNNER_BLOCK_ENV, "no-such-runner")
    with pytest.raises(ConfigError, match="runner block 'no-such-runner'"):
        runner_settings_from_env()
    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),
        pytest.raises(ConfigError, match="PREFECT_API_URL"),
    ):
        StageRunner(ON_RAY).__enter__()  # Ray workers cannot reach a throwaway in-process API
