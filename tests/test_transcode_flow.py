"""The transcode flow on generated clips: every preset on odd-sized, portrait and silent video, each output
checked with ffprobe; presets from a saved block and from code; unknown presets; skipped and corrupt input."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import assert_no_partial_outputs, read_back_run

from blocks.presets import SEED_PRESETS, TranscodePresets
from core.errors import ConfigError, MediaInputError
from flows.transcode import main, transcode
from samples.clips import make_clip
from samples.video import Cue, make_subtitled_video
from stages.transcode.presets import TranscodePreset

ALL = list(SEED_PRESETS)


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", str(path)],
        capture_output=True, check=True, text=True,
    )  # fmt: skip
    data = json.loads(out.stdout)
    streams = {s["codec_type"]: s for s in data["streams"]}
    return {
        "codec": streams["video"]["codec_name"],
        "size": (streams["video"]["width"], streams["video"]["height"]),
        "audio": "audio" in streams,
        "duration": float(streams["video"].get("duration", 0)),
        "format": data["format"]["format_name"],
    }


# clip -> preset -> (codec, frame size, audio) that the seven shipped presets must produce
SOURCE = {"odd": (852, 478), "portrait": (480, 854), "silent": (640, 360)}
EXPECTED = {
    "odd": {"mp4_standard": (848, 480), "mp4_smooth": (640, 360), "thumbnail": (1280, 720)},
    "portrait": {"mp4_standard": (480, 848), "mp4_smooth": (360, 640), "thumbnail": (720, 1280)},
    "silent": {"mp4_standard": (640, 360), "mp4_smooth": (640, 360), "thumbnail": (1280, 720)},
}
CODEC = {"mp4_standard": "h264", "mp4_smooth": "h264", "custom_mute_preview": "h264", "thumbnail": "mjpeg"}
MUTED = {"h265_mute", "custom_mute_preview", "thumbnail"}


@pytest.fixture(scope="module")
def clips(media_dir) -> dict[str, tuple[Path, float, bool]]:
    """name -> (path, duration, has audio): an odd 853x479 and a portrait clip with audio, a silent one."""
    return {
        "odd": (make_clip(media_dir / "odd 853x479.mp4", size=(853, 479), duration=2.0), 2.0, True),
        "portrait": (make_clip(media_dir / "portrait.mp4", size=(480, 854), duration=2.0), 2.0, True),
        "silent": (
            make_subtitled_video(media_dir / "silent.mp4", [Cue(0.2, 1.8, "无声 silent")], duration=2.0,
                                 size=(640, 360), audio=False),
            2.0,
            False,
        ),
    }  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", ["odd", "portrait", "silent"])
def test_every_preset_renders_checked_outputs(prefect_server, clips, tmp_path, name):
    video, duration, has_audio = clips[name]
    started = time.perf_counter()
    result = transcode(str(video), ALL, str(tmp_path))
    wall = time.perf_counter() - started
    assert [r.preset for r in result.renditions] == ALL
    for rendition in result.renditions:
        seen = ffprobe(rendition.path)
        extension = "jpg" if rendition.preset == "thumbnail" else "mp4"
        assert rendition.path.name == f"{video.stem.replace(' ', '_')}.{rendition.preset}.{extension}"
        assert seen["codec"] == CODEC.get(rendition.preset, "hevc"), rendition
        assert seen["size"] == EXPECTED[name].get(rendition.preset, SOURCE[name]), rendition
        assert seen["audio"] == (has_audio and rendition.preset not in MUTED), rendition
        if rendition.preset == "thumbnail":
            assert seen["format"] == "image2"
        else:
            assert abs(seen["duration"] - duration) <= 2 / 25, rendition
    manifest = json.loads(result.manifest_path.read_text(encoding="utf-8"))
    assert manifest["input"] == str(video) and set(manifest["outputs"]) == set(ALL)
    assert sum(r.seconds for r in result.renditions) > wall, "the presets ran concurrently"
    assert_no_partial_outputs(tmp_path)


def test_presets_from_a_saved_block_and_from_code(prefect_server, clips, tmp_path):
    video = clips["odd"][0]
    tiny = TranscodePreset(description="1 s muted 320x180", width=320, height=180, max_duration=1.0,
                           audio=False, speed="ultrafast")  # fmt: skip
    TranscodePresets(presets={"tiny_preview": tiny}, default_presets=["tiny_preview"]).save(
        "transcode-test", overwrite=True
    )
    result = transcode(str(video), output_dir=str(tmp_path), presets_block="transcode-test")
    (preview,) = result.renditions
    assert ffprobe(preview.path) | {"format": None} == {
        "codec": "h264", "size": (320, 180), "audio": False, "duration": 1.0, "format": None,
    }  # fmt: skip
    smaller_smooth = SEED_PRESETS["mp4_smooth"].model_copy(update={"width": 320, "height": 180})
    result = transcode(
        str(video), ["mp4_smooth"], str(tmp_path), custom_presets={"mp4_smooth": smaller_smooth}
    )
    assert ffprobe(result.renditions[0].path)["size"] == (320, 180), "code overrides the shipped preset"


def test_a_cpu_encode_is_not_tagged_gpu_and_gets_no_unenforceable_timeout(prefect_server, clips, tmp_path):
    """On this CPU host the video preset encodes with libx264: its task run is "gpu-capable" but not "gpu"
    (a tag limit on `gpu` once failed such a burst), and the run's log has no "timeout in a worker thread"
    warning: ffmpeg's own time limit bounds it, not a task timeout Prefect cannot enforce in a thread."""
    from gpu.devices import GPU_CAPABLE_TAG, GPU_TAG

    video = str(clips["odd"][0])
    state = transcode(video, ["mp4_smooth"], str(tmp_path), timeout_seconds=300, return_state=True)
    assert state.result().renditions[0].encoder == "libx264"
    runs, logs = read_back_run(state.state_details.flow_run_id)
    (encode,) = [run for run in runs if run.name == "transcode mp4_smooth"]
    assert GPU_CAPABLE_TAG in encode.tags and not [run.name for run in runs if GPU_TAG in run.tags]
    assert not [m for m in logs if "worker thread" in m], logs


def test_unknown_preset_is_a_config_error_listing_the_known_ones(prefect_server, clips, tmp_path):
    with pytest.raises(ConfigError) as info:
        transcode(str(clips["silent"][0]), ["mp4_standard", "mkv_8k"], str(tmp_path))
    assert "mkv_8k" in str(info.value) and all(name in str(info.value) for name in SEED_PRESETS)
    assert not list(tmp_path.iterdir()), "nothing runs before the presets are known"


def test_non_video_inputs_are_skipped_with_the_reason(prefect_server, media_dir, tmp_path):
    tone = media_dir / "tone.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=d=1", str(tone)], check=True)
    picture = media_dir / "still.png"
    still = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=s=64x64:d=1", "-frames:v", "1"]
    subprocess.run([*still, str(picture)], check=True)
    notes = media_dir / "notes.txt"
    notes.write_text("meeting notes, not a video\n", encoding="utf-8")
    for path, reason in (
        (tone, "is audio, not video"),
        (picture, "is image, not video"),
        (notes, "not a media"),
    ):
        result = transcode(str(path), ["mp4_standard"], str(tmp_path))
        assert result.renditions == () and result.manifest_path is None
        assert reason in result.skipped, result.skipped
    assert not list(tmp_path.iterdir())


def test_corrupt_video_fails_clearly_and_leaves_nothing(prefect_server, clips, tmp_path):
    garbage = tmp_path / "in" / "garbage.mp4"
    garbage.parent.mkdir()
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64)
    out = tmp_path / "out"
    with pytest.raises(MediaInputError, match="garbage.mp4"):
        transcode(str(garbage), ["mp4_standard"], str(out))
    data = clips["portrait"][0].read_bytes()
    truncated = tmp_path / "in" / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])  # its header survives, half its frames do not
    with pytest.raises(MediaInputError, match="truncated or corrupt"):  # the probe decodes its end
        transcode(str(truncated), ["mp4_smooth", "h265_mute"], str(out))
    assert not out.exists() or not list(out.rglob("*.mp4")), list(out.rglob("*"))
    assert_no_partial_outputs(tmp_path)


def test_command_line_prints_the_output_paths_last(prefect_server, clips, tmp_path, capsys):
    assert main([str(clips["silent"][0]), "--preset", "thumbnail", "--output-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].endswith("silent.thumbnail.jpg") and Path(lines[-2]).is_file()
    assert lines[-1].endswith("manifest.json") and Path(lines[-1]).is_file()
