"""The transcode stage on its own: frame-size planning, the ffmpeg command, running, checking, publishing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import assert_no_partial_outputs

from blocks.presets import SEED_PRESETS, TranscodePresets
from core.errors import ConfigError, StageError
from gpu.devices import cuda_device_count
from gpu.limits import nvenc_limit_name, nvenc_session
from samples.clips import make_clip
from stages.transcode.checks import OutputCheckError, check_output
from stages.transcode.command import build_command
from stages.transcode.geometry import plan_geometry
from stages.transcode.nvenc import encoder_works, listed_encoders, nvenc_usable
from stages.transcode.presets import TranscodePreset, resolve_presets
from stages.transcode.probe import probe_streams
from stages.transcode.transcode import transcode_preset


def ffprobe(path: Path) -> dict:
    """The test's own look at a file: its streams as ffprobe reports them."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", str(path)],
        capture_output=True, check=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def clip(media_dir) -> Path:
    return make_clip(media_dir / "stage-clip.mp4", size=(640, 360), duration=2.0, audio=True)


@pytest.mark.parametrize(
    ("source", "preset", "scaled", "out"),
    [
        ((1920, 1080), "mp4_standard", (848, 480), (848, 480)),  # 16:9 is within 1% of 848x480: fills it
        ((853, 479), "mp4_standard", (848, 480), (848, 480)),  # odd size, 0.8% off the box: fills it
        ((480, 854), "mp4_standard", (480, 848), (480, 848)),  # portrait: the box turns with it
        ((1920, 1040), "mp4_standard", (848, 460), (848, 460)),  # 4.5% off: fitted inside, aspect kept
        ((1440, 1080), "mp4_standard", (640, 480), (640, 480)),  # 4:3 in the 16:9 box
        ((850, 478), "mp4_standard", (848, 480), (848, 480)),  # just larger than the box: fills it
        ((1920, 1080), "mp4_smooth", (640, 360), (640, 360)),
        ((320, 240), "mp4_standard", (320, 240), (320, 240)),  # never enlarged
        ((853, 479), "h265_mute", (852, 478), (852, 478)),  # source size, made even
        ((853, 479), "thumbnail", (1280, 720), (1280, 720)),  # within 1%: fills the box
        ((1440, 1080), "thumbnail", (960, 720), (1280, 720)),  # 4:3: letterboxed to the box
        ((480, 854), "thumbnail", (720, 1280), (720, 1280)),
    ],
)
def test_frame_size_fills_a_box_of_its_shape_else_keeps_aspect(source, preset, scaled, out):
    geometry = plan_geometry(*source, SEED_PRESETS[preset])
    assert (geometry.scaled_width, geometry.scaled_height) == scaled
    assert (geometry.out_width, geometry.out_height) == out


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"width": 640}, "give both width and height"),
        ({"width": 641, "height": 360}, "even sides"),
        ({"speed": "warp"}, "'ultrafast'"),
        ({"video_bitrate": "lots"}, "video_bitrate"),
        ({"fit": "pad"}, "needs a box"),
    ],
)
def test_bad_presets_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        TranscodePreset(**fields)


def test_seven_seed_presets_are_shipped_and_unknown_names_list_them():
    library = TranscodePresets()
    shipped = "mp4_standard mp4_smooth hdlbr_h265 lcd_h265 h265_mute custom_mute_preview thumbnail".split()
    assert list(library.known()) == shipped
    assert (
        SEED_PRESETS["mp4_standard"].video_codec == "h264"
        and SEED_PRESETS["hdlbr_h265"].video_codec == "h265"
    )
    with pytest.raises(ConfigError) as info:
        resolve_presets(["mp4_standard", "webm_4k"], library.known())
    assert "webm_4k" in str(info.value) and all(name in str(info.value) for name in SEED_PRESETS)
    own = TranscodePreset(width=320, height=180)
    assert resolve_presets(["mine"], library.known({"mine": own})) == {"mine": own}


def test_command_uses_nvenc_and_nvdec_only_when_asked(clip, tmp_path):
    source = probe_streams(clip)
    cpu = build_command(clip, tmp_path / "o.mp4", SEED_PRESETS["hdlbr_h265"], source)
    assert "libx265" in cpu and "-hwaccel" not in cpu and "-crf" in cpu
    assert any("loudnorm=I=-17:LRA=11:TP=-1" in arg for arg in cpu), cpu
    gpu = build_command(
        clip, tmp_path / "o.mp4", SEED_PRESETS["hdlbr_h265"], source, hardware=True, gpu_index=1
    )
    assert gpu[gpu.index("-hwaccel") + 1] == "cuda" and "hevc_nvenc" in gpu
    assert gpu[gpu.index("-cq") + 1] == "20" and "-crf" not in gpu
    assert gpu[gpu.index("-hwaccel_device") + 1] == "1" and gpu[gpu.index("-gpu") + 1] == "1", (
        "the slot's GPU"
    )
    muted = build_command(clip, tmp_path / "o.mp4", SEED_PRESETS["h265_mute"], source)
    assert "-an" in muted and "[0:a:0]" not in " ".join(muted)
    assert muted[muted.index("-b:v") + 1] == "2867k" and "-progress" in muted


@pytest.mark.skipif(cuda_device_count() > 0, reason="this host has a CUDA device")
def test_listed_nvenc_is_not_used_without_a_gpu():
    """ffmpeg lists h264_nvenc on hosts without a GPU; only a working test encode counts."""
    if "h264_nvenc" in listed_encoders():
        assert not encoder_works("h264_nvenc")
    assert not nvenc_usable(SEED_PRESETS["mp4_standard"])
    assert encoder_works("libx264")


def test_stage_publishes_a_checked_rendition_with_progress(clip, tmp_path):
    seen: list[float] = []
    rendition = transcode_preset(clip, "mp4_smooth", SEED_PRESETS["mp4_smooth"], tmp_path, "clip",
                                 on_progress=seen.append)  # fmt: skip
    assert rendition.path == tmp_path / "clip.mp4_smooth.mp4" and rendition.encoder == "libx264"
    streams = {s["codec_type"]: s for s in ffprobe(rendition.path)["streams"]}
    video = streams["video"]
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 640, 360)
    assert streams["audio"]["codec_name"] == "aac"
    assert abs(float(video["duration"]) - 2.0) <= 0.08
    assert seen and seen[-1] == 1.0 and seen == sorted(seen), seen
    assert_no_partial_outputs(tmp_path)


def test_truncated_input_fails_its_check_and_publishes_nothing(clip, tmp_path):
    data = clip.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])  # moov (faststart) intact: probes fine, decodes short
    out = tmp_path / "out"
    with pytest.raises(OutputCheckError, match="truncated or corrupt input") as info:
        transcode_preset(truncated, "mp4_smooth", SEED_PRESETS["mp4_smooth"], out, "truncated")
    assert "expected 2.000 s" in str(info.value)
    assert not list(out.glob("*"))


def test_failed_checks_name_every_reason(clip, tmp_path):
    source = probe_streams(clip)
    hevc_box = TranscodePreset(video_codec="h265", width=320, height=180, audio=False)
    with pytest.raises(OutputCheckError) as info:
        check_output(clip, hevc_box, source, subject=clip.name)
    message = str(info.value)
    assert "video codec is h264, expected hevc" in message
    assert "frame is 640x360, expected 320x180" in message
    assert "audio is present, expected absent" in message


def test_ffmpeg_has_its_own_timeout(clip, tmp_path):
    with pytest.raises(StageError, match="timed out after"):
        transcode_preset(clip, "hdlbr_h265", SEED_PRESETS["hdlbr_h265"], tmp_path, "clip", timeout=0.05)
    assert not list(tmp_path.glob("*"))


def test_nvenc_sessions_are_a_per_host_limit(prefect_server, monkeypatch):
    from prefect.client.orchestration import get_client

    monkeypatch.setenv("YIVIDEO_NVENC_SESSIONS", "2")
    with nvenc_session("test-host") as name:
        assert name == nvenc_limit_name("test-host") == "nvenc:test-host"
        with get_client(sync_client=True) as client:
            limit = client.read_global_concurrency_limit_by_name(name)
        assert (limit.limit, limit.active_slots) == (2, 1)
    monkeypatch.setenv("YIVIDEO_NVENC_SESSIONS", "5")  # an existing limit (edited in the UI) is kept
    with nvenc_session("test-host"), get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(name).limit == 2
    monkeypatch.setenv("YIVIDEO_NVENC_SESSIONS", "many")
    with pytest.raises(ConfigError, match="YIVIDEO_NVENC_SESSIONS"), nvenc_session("other-host"):
        pass
