"""Bad input, table-driven: each kind on each flow's command line it can reach ends in one plain line on
stderr naming the input and the cause, a documented exit status, no traceback and no output folder.

The rows here are all caught before the Prefect API starts (the CLI probes first); rows that need a run
(a stage failing on a full disk, images in a batch) are in the tests further down.
"""

from __future__ import annotations

import contextlib
import os
import random
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from core.cli import EXIT_BAD_INPUT, EXIT_FAILED, run_cli
from flows import enhance, pipeline, subtitles, transcode, transcribe
from samples.realvideo import realvideo_dir

REPO = Path(__file__).resolve().parents[1]
MAINS = {
    "subtitles": subtitles.main,
    "transcode": transcode.main,
    "transcribe": transcribe.main,
    "enhance": enhance.main,
    "pipeline": pipeline.main,
}


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-y", "-v", "error", *args], check=True, timeout=60)


def _png_header(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims `width`x`height` (a decompression bomb needs no pixels to be one)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (width + 1) * min(height, 4))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad-input")
    src = ["-f", "lavfi", "-i", "testsrc2=s=320x240:r=25", "-f", "lavfi", "-i", "sine=f=440", "-t", "4"]
    _ffmpeg(*src, "-c:v", "libx264", "-c:a", "aac", "-movflags", "+faststart", str(d / "front.mp4"))
    _ffmpeg(*src, "-c:v", "libx264", "-c:a", "aac", str(d / "end.mp4"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x240:r=25", "-t", "2", "-c:v", "libx264", str(d / "mute.mp4"))
    _ffmpeg("-f", "lavfi", "-i", "sine=f=300", "-t", "2", str(d / "tone.wav"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x120", "-frames:v", "1", str(d / "still.png"))
    files = {}
    for layout in ("front", "end"):
        data = (d / f"{layout}.mp4").read_bytes()
        files[f"truncated-{layout}"] = d / f"cut-{layout}.mp4"
        files[f"truncated-{layout}"].write_bytes(data[: len(data) // 2])
    files["zero-byte"] = d / "empty.mp4"
    files["zero-byte"].write_bytes(b"")
    files["not-media"] = d / "notes.txt"
    files["not-media"].write_text("just some text\n", encoding="utf-8")
    files["garbage"] = d / "garbage.mp4"
    files["garbage"].write_bytes(bytes(range(256)) * 64)
    files["text-named-png"] = d / "text.png"
    files["text-named-png"].write_text("not an image\n", encoding="utf-8")
    files["bomb"] = _png_header(d / "bomb.png", 20000, 20000)
    files["absurd-geometry"] = _png_header(d / "wide.png", 60000, 1)
    files["missing"] = d / "nope.mp4"
    files["directory"] = d / "folder.mp4"
    files["directory"].mkdir()
    files["newline-name"] = d / "two\nlines.mp4"  # missing, and its name must not split the error line
    files["image"], files["audio"], files["mute"] = d / "still.png", d / "tone.wav", d / "mute.mp4"
    moving = ["-f", "lavfi", "-i", "testsrc2=s=160x120:r=5", "-t", "1"]
    files["animated-gif"], files["apng"] = d / "moving.gif", d / "moving.png"
    _ffmpeg(*moving, str(files["animated-gif"]))
    _ffmpeg(*moving, "-plays", "0", "-f", "apng", str(files["apng"]))  # a valid APNG: not "corrupt"
    return files


VIDEO_FLOWS = ("subtitles", "transcode", "transcribe", "pipeline")
# kind -> (flows it reaches, words the cause must contain)
CASES: dict[str, tuple[tuple[str, ...], str]] = {
    "missing": (("subtitles", "transcode", "transcribe", "enhance", "pipeline"), "does not exist"),
    "directory": (("subtitles", "transcode", "transcribe", "enhance", "pipeline"), "not a regular file"),
    "zero-byte": (("subtitles", "transcode", "transcribe", "enhance", "pipeline"), "empty (0 bytes)"),
    "truncated-front": (("subtitles", "transcode", "transcribe", "pipeline"), "truncated"),
    "truncated-end": (("subtitles", "transcode", "transcribe", "pipeline"), "not a readable media file"),
    "not-media": (("subtitles", "transcode", "transcribe", "pipeline"), "not a readable media file"),
    "garbage": (("subtitles", "transcode", "transcribe", "pipeline"), "not a readable media file"),
    "text-named-png": (("subtitles", "transcode", "transcribe", "pipeline"), "not a readable image"),
    "bomb": (("subtitles", "transcode", "transcribe", "pipeline"), "too large (max_pixels"),
    "absurd-geometry": (("subtitles", "transcode", "transcribe", "pipeline"), "too large"),
    "image": (("subtitles", "transcode", "transcribe", "pipeline"), "is image"),
    "audio": (("subtitles", "transcode", "pipeline"), "is audio"),
    "mute": (("transcribe",), "no audio"),
    "newline-name": (("subtitles", "transcode", "transcribe", "enhance", "pipeline"), "does not exist"),
    "animated-gif": (VIDEO_FLOWS, "animated image (5 frames)"),  # enhance: test_animated_images_in_a_batch
    "apng": (VIDEO_FLOWS, "animated image (5 frames)"),  # was: "corrupt or truncated file?"
}
ROWS = [(kind, flow) for kind, (flows, _) in CASES.items() for flow in flows]


def _run(flow: str, argv: list[str], capsys) -> tuple[int, str, str]:
    code = run_cli(MAINS[flow], argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("kind", "flow"), ROWS, ids=[f"{k}-{f}" for k, f in ROWS])
def test_bad_input_is_one_line_and_exit_2(bad, kind, flow, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, _, err = _run(flow, ["--output-dir", str(out_dir), "--", str(bad[kind])], capsys)
    lines = err.strip().splitlines()
    assert code == EXIT_BAD_INPUT, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert CASES[kind][1] in lines[0], lines[0]
    assert bad[kind].name.replace("\n", "\\n") in lines[0], "the line names the input"
    assert "Traceback" not in err
    assert not out_dir.exists() or not any(out_dir.rglob("*")), "no output folder for a bad input"


PARAMS = [
    ("subtitles", ["--sample-fps", "0"]),
    ("subtitles", ["--sample-fps", "-2"]),
    ("subtitles", ["--sample-fps", "nan"]),
    ("transcode", ["--timeout", "0"]),
    ("enhance", ["--scale", "0"]),
    ("enhance", ["--batch-size", "0"]),
    ("enhance", ["--max-concurrency", "-1"]),
]


@pytest.mark.parametrize(("flow", "extra"), PARAMS, ids=[f"{f}{''.join(e)}" for f, e in PARAMS])
def test_invalid_parameters_are_refused_before_anything_runs(bad, flow, extra, tmp_path, capsys):
    source = bad["image"] if flow == "enhance" else bad["mute"]
    with pytest.raises(SystemExit) as info:
        run_cli(MAINS[flow], [*extra, "--output-dir", str(tmp_path / "out"), str(source)])
    err = capsys.readouterr().err
    assert info.value.code == EXIT_BAD_INPUT and "must be above 0" in err, err
    assert not (tmp_path / "out").exists()


@contextlib.contextmanager
def _tmpfs(path: Path, options: str):
    path.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]
    if subprocess.run(mount, capture_output=True, check=False).returncode:
        pytest.skip("needs root to mount a small tmpfs (a full or read-only output disk)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


DISKS = [("size=64k", "no space left"), ("ro,size=1m", "not writable")]


@pytest.mark.parametrize(("options", "cause"), DISKS)
def test_full_or_read_only_output_disk_is_refused_up_front(bad, tmp_path, capsys, options, cause):
    with _tmpfs(tmp_path / "disk", options) as disk:
        for flow in ("subtitles", "transcode", "transcribe", "enhance"):
            source = {"enhance": bad["image"], "transcribe": bad["audio"]}.get(flow, bad["mute"])
            code, _, err = _run(flow, ["--output-dir", str(disk / "out"), str(source)], capsys)
            assert code == EXIT_FAILED and cause in err and str(disk) in err, (flow, err)
            assert len(err.strip().splitlines()) == 1, err


def _noise_png(path: Path, side: int) -> Path:
    """Random pixels: PNG cannot compress them, so the enhanced size is known (side^2 x scale^2 x 3 bytes)."""
    import cv2
    import numpy as np

    cv2.imwrite(str(path), np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8))
    return path


# flow -> arguments on a disk that passes the up-front check (over MIN_FREE_BYTES) and fills during the run
FILLING_DISKS = {
    "enhance": lambda d: ["--engine", "opencv-classic", "--max-concurrency", "1",
                          str(_noise_png(d / "a.png", 1000)), str(_noise_png(d / "b.png", 1001))],
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("flow", list(FILLING_DISKS))
def test_an_output_disk_filling_during_the_run_is_one_line_and_exit_3(prefect_server, flow, tmp_path, capsys):
    """17 MiB free passes the check; two 2000x2000 noise PNGs (~12 MB each) do not fit: one line naming the
    output folder and the cause, exit 3, and nothing of the run left on the disk (its space given back)."""
    with _tmpfs(tmp_path / "disk", "size=17m") as disk:
        argv = ["--output-dir", str(disk / "out"), *FILLING_DISKS[flow](tmp_path)]
        code, out, err = _run(flow, argv, capsys)
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert code == EXIT_FAILED, err[-3000:]
        assert errors == [f"error: {disk / 'out'}: {errors[0].split(': ', 2)[2]}"], err[-3000:]
        assert "no space left on device" in errors[0] and "Traceback" not in err, errors
        assert not [p for p in disk.rglob("*") if p.is_file()], "no partial output on the full disk"
        assert not out.strip(), out


def test_the_command_line_answers_fast_without_a_traceback(bad, tmp_path):
    """As a user sees it: a real process, a name starting with '-' after '--', nothing but one line."""
    hostile = bad["missing"].parent / "-rf.mp4"
    hostile.write_bytes(b"")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "flows.subtitles", "--output-dir", str(tmp_path), "--", str(hostile)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert proc.stderr.strip() == f"error: {hostile}: file is empty (0 bytes)", proc.stderr
    assert time.monotonic() - started < 60  # an import, no Prefect API (the machine is shared and loaded)
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_a_good_run_on_the_embedded_server_prints_no_server_noise(bad, tmp_path):
    """The default set-up (no PREFECT_API_URL: a temporary server on SQLite): the user's terminal shows the
    result, not the server's telemetry or shutdown tracebacks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(tmp_path / "home"), "PREFECT_LOGGING_LEVEL": "WARNING"}
    command = ["-m", "flows.transcode", "--preset", "thumbnail", "--output-dir", str(tmp_path / "out")]
    proc = subprocess.run(
        [sys.executable, *command, str(bad["mute"])],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr
    assert Path(proc.stdout.strip().splitlines()[-1]).is_file()


def _rotated(src: Path, out: Path) -> Path:
    """A phone-style file: pixels stored turned a quarter, a display matrix (rotate=90) turning them back."""
    turned = out.with_suffix(".turned.mp4")
    _ffmpeg("-i", str(src), "-vf", "transpose=1", "-c:a", "copy", str(turned))
    _ffmpeg("-i", str(turned), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(out))
    turned.unlink()
    return out


@pytest.mark.slow
def test_rotated_video_is_read_as_displayed(prefect_server, tmp_path):
    from core.media import probe_media
    from samples.video import Cue, make_subtitled_video

    cues = [Cue(0.3, 1.8, "旋转的视频"), Cue(2.2, 3.6, "Rotated phone video")]
    upright = make_subtitled_video(tmp_path / "upright.mp4", cues, duration=4.0, size=(480, 854))
    stored = _rotated(upright, tmp_path / "phone.mp4")
    info = probe_media(stored)
    assert (info.width, info.height) == (480, 854), "the displayed size, as ffmpeg decodes it"
    result = subtitles.extract_subtitles(str(stored), str(tmp_path / "out"))
    assert [e.text for e in result.events] == [c.text for c in cues]


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["1x1", "one-frame"])
def test_tiny_videos_complete(prefect_server, tmp_path, capsys, shape):
    """A 1x1 video and a one-frame video are valid media: subtitles finds none, the thumbnail is the frame."""
    video = tmp_path / f"{shape}.mp4"
    if shape == "1x1":  # libx264 needs even sizes; ffv1 takes 1x1
        video = video.with_suffix(".mkv")
        encode = ["-i", "testsrc2=s=2x2", "-t", "1", "-vf", "scale=1:1", "-c:v", "ffv1"]
    else:
        encode = ["-i", "testsrc2=s=320x240", "-frames:v", "1", "-c:v", "libx264"]
    _ffmpeg("-f", "lavfi", *encode, str(video))
    for flow, extra, product in (("subtitles", [], ".srt"), ("transcode", ["--preset", "thumbnail"], ".jpg")):
        out = tmp_path / f"out-{flow}"
        code, stdout, err = _run(flow, [*extra, "--output-dir", str(out), str(video)], capsys)
        assert code == 0 and "Traceback" not in err, (flow, err)
        written = [p for p in out.rglob(f"*{product}") if p.stat().st_size > 0 or product == ".srt"]
        assert written, (flow, stdout, sorted(out.rglob("*")))


@pytest.mark.slow
def test_a_failed_preset_keeps_the_finished_renditions_in_a_manifest(
    prefect_server, bad, tmp_path, monkeypatch
):
    import json

    from blocks.policy import POLICY_ENV, RunPolicy
    from blocks.presets import SEED_PRESETS
    from core.errors import StageError

    # no stage retries: a timed-out preset is retried twice by default (StageTimeout is transient: the full
    # disk test below), each try an 8192 px veryslow encode on every core for its whole time limit (69 s)
    RunPolicy(stage_retries=0).save("no-stage-retries", overwrite=True)
    monkeypatch.setenv(POLICY_ENV, "no-stage-retries")
    # a preset that cannot finish within the time limit (8192 px wide, veryslow), beside a quick thumbnail;
    # 6 s, not 15: the encode burns a core until the limit (11 CPU s at 15 s) and the thumbnail takes <1 s
    huge = {"width": 8192, "height": 8192, "upscale": True, "speed": "veryslow"}
    out, custom = tmp_path / "out", {"broken": SEED_PRESETS["mp4_standard"].model_copy(update=huge)}
    with pytest.raises(StageError, match="1 of 2 presets failed") as info:
        transcode.transcode(str(bad["mute"]), ["thumbnail", "broken"], str(out), None, custom, 6.0)
    (manifest,) = out.rglob("manifest.json")
    written = json.loads(manifest.read_text(encoding="utf-8"))
    assert set(written["outputs"]) == {"thumbnail"} and set(written["failed"]) == {"broken"}
    assert Path(written["outputs"]["thumbnail"]).is_file() and str(manifest) in str(info.value)
    # every preset failing: nothing kept, no empty folders (not even transcode/)
    with pytest.raises(StageError):
        transcode.transcode(str(bad["mute"]), ["broken"], str(tmp_path / "none"), None, custom, 3.0)
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").rglob("*"))


def test_a_full_disk_under_ffmpeg_is_an_output_error_never_retried(tmp_path):
    """ffmpeg's exit on a full disk reads as the disk (OutputError: exit 3, not retried), known by the disk's
    free space rather than by ffmpeg's words; a timeout is a StageTimeout (retried), whatever it prints."""
    from core.errors import OutputError, StageTimeout, is_transient
    from core.media import run_media_command
    from stages.transcode.command import run_ffmpeg

    encode = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=640x480:r=25", "-t", "20"]
    encode += ["-c:v", "rawvideo", "-f", "nut"]
    with _tmpfs(tmp_path / "disk", "size=256k") as disk:
        with pytest.raises(OutputError, match="no space left on device") as info:
            run_media_command([*encode, str(disk / "a.nut")], timeout=60, stage="extract_audio", subject="a")
        assert not is_transient(info.value) and info.value.path == str(disk)
        with pytest.raises(OutputError, match="no space left on device"):
            run_ffmpeg([*encode, str(disk / "b.nut")], timeout=60, duration=20, subject="b")
    with pytest.raises(StageTimeout, match="timed out after") as slow:
        slow_cmd = ["ffmpeg", "-v", "error", "-re", *encode[4:10], "-f", "null", "-"]
        run_media_command(slow_cmd, timeout=0.5, stage="probe", subject="c")
    assert is_transient(slow.value)


def test_an_unknown_error_or_a_full_disk_runs_once_a_crashed_stage_retries(prefect_server):
    """Under the run policy in a real flow: a bug (KeyError) and a full disk fail at their first attempt."""
    import errno

    from prefect import flow, task

    from blocks.policy import RunPolicy
    from core.errors import OutputError, StageError
    from core.outputs import write_failure

    calls = {"bug": 0, "disk": 0, "crash": 0}
    raised = {
        "bug": KeyError("band"),
        "disk": write_failure(Path("/out"), OSError(errno.ENOSPC, "No space left on device")),
        "crash": StageError("keyframes", "a.mp4", "ffmpeg exited -9"),
    }

    @task
    def stage(kind: str) -> None:
        calls[kind] += 1
        raise raised[kind]

    policy = RunPolicy(stage_retries=2, stage_backoff_seconds=0.01, stage_backoff_jitter=0)

    @flow
    def run_all() -> None:
        for kind, error in (("bug", KeyError), ("disk", OutputError), ("crash", StageError)):
            with pytest.raises(error):
                policy.apply_to_task(stage)(kind)

    run_all()
    assert calls == {"bug": 1, "disk": 1, "crash": 3}


def test_runs_into_one_folder_share_one_manifest_of_what_is_there(tmp_path):
    """A second run into a folder keeps the first run's outputs listed while they are on disk; an output a
    user deleted drops out; a folder holding another flow's manifest is refused, not overwritten."""
    import json

    from core.errors import OutputError
    from core.outputs import write_manifest

    run_dir, source = tmp_path / "transcode" / "clip-0123abcd", tmp_path / "clip.mp4"
    run_dir.mkdir(parents=True)
    source.write_bytes(b"video")
    thumb, small = run_dir / "clip.thumbnail.jpg", run_dir / "clip.360p.mp4"
    thumb.write_bytes(b"jpeg")
    write_manifest(run_dir, flow="transcode", input_path=source, outputs={"thumbnail": thumb})
    small.write_bytes(b"mp4")
    manifest = write_manifest(run_dir, flow="transcode", input_path=source, outputs={"360p": small})
    listed = json.loads(manifest.read_text(encoding="utf-8"))["outputs"]
    assert listed == {"thumbnail": str(thumb), "360p": str(small)}
    thumb.unlink()
    write_manifest(run_dir, flow="transcode", input_path=source, outputs={"360p": small})
    assert json.loads(manifest.read_text(encoding="utf-8"))["outputs"] == {"360p": str(small)}
    with pytest.raises(OutputError, match="holds a transcode manifest, not subtitles"):
        write_manifest(run_dir, flow="subtitles", input_path=source, outputs={})
    assert json.loads(manifest.read_text(encoding="utf-8"))["flow"] == "transcode"


@pytest.mark.slow
def test_animated_images_in_a_batch_are_refused_in_plain_words(prefect_server, bad, tmp_path, capsys):
    """An animated GIF became its first frame without a word, a valid APNG was called corrupt: both are now
    refused by name, and the still image beside them is enhanced."""
    import zipfile

    images = [str(bad["image"]), str(bad["animated-gif"]), str(bad["apng"])]
    argv = ["--engine", "opencv-classic", "--output-dir", str(tmp_path), *images]
    code, _, err = _run("enhance", argv, capsys)
    assert code == 1, err  # partly done
    refused = [line for line in err.splitlines() if "animated image (5 frames)" in line]
    assert {name for name in ("moving.gif", "moving.png") if any(name in line for line in refused)} == {
        "moving.gif", "moving.png"}, err  # fmt: skip
    assert "corrupt" not in err and "Traceback" not in err, err
    (archive,) = tmp_path.rglob("enhanced.zip")
    assert zipfile.ZipFile(archive).namelist() == ["still.png"]


REAL_VIDEO = realvideo_dir() / "douyin_7625472985927237489_zh.mp4"  # 38 s short drama, 960x720


def _corrupt_middle(source: Path, out: Path, seed: int = 0, size: int = 60000) -> Path:
    """A real encode with `size` bytes of its middle written over with random bytes (from `seed`, so a
    run's damage is the same in every run): it still probes and decodes to its end, so only the decoders'
    errors tell."""
    data = bytearray(source.read_bytes())
    middle = len(data) * 45 // 100
    data[middle : middle + size] = random.Random(seed).randbytes(size)
    out.write_bytes(data)
    return out


# bytes that garble an AAC packet in SHORT_VIDEO's middle into another channel layout: ffmpeg decoding both
# streams from the keyframe before its last second stops there, and the probe called the file truncated
# (1 in ~150 random damages: a suite run failed on one, "nothing decodes near its stated end (10.07 s)")
AAC_STOPS_FFMPEG_SEED = 258


@pytest.mark.slow
def test_damage_inside_a_video_is_reported_and_exits_1(prefect_server, tmp_path, capsys):
    """A corrupt middle gave exit 0 and a rendition with frozen frames: now the decode errors are counted,
    their time ranges are in the manifest and on stderr, and the run exits 1 (partly done)."""
    import json

    if not REAL_VIDEO.is_file():
        pytest.skip(f"real footage not here: {REAL_VIDEO.parent} (see its README)")
    video = _corrupt_middle(REAL_VIDEO, tmp_path / "damaged.mp4")
    code, out, err = _run("transcode", ["--preset", "thumbnail", "--output-dir", str(tmp_path / "out"),
                                        str(video)], capsys)  # fmt: skip
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert code == 1, err[-3000:]
    assert len(warnings) == 1 and str(video) in warnings[0] and " decode errors at " in warnings[0], err
    (manifest,) = (tmp_path / "out").rglob("manifest.json")
    damage = json.loads(manifest.read_text(encoding="utf-8"))["decode_errors"]
    assert damage["errors"] > 10 and damage["ranges"], damage
    start, end = damage["ranges"][0]
    assert 5.0 < start < end < 33.0, "the damage is in the middle, not at the ends"


@pytest.mark.slow
def test_subtitles_date_the_damage_in_their_own_decode(prefect_server, tmp_path, capsys):
    """Issue 23 point 4: the subtitles flow decoded every picture twice, for its keyframes and once more in
    a decode check beside them (~20 of 112 CPU s on 10 minutes of 720p). The keyframes decode now dates the
    decoders' errors itself, window by window (tests/test_decode_windows.py cuts the damage every way):
    the count, first error and time ranges of one pass over the pictures, the same warning, manifest and
    exit 1, and no decode-check stage run."""
    import json

    from core.damage import scan_decode_errors
    from core.media import probe_media

    if not REAL_VIDEO.is_file():
        pytest.skip(f"real footage not here: {REAL_VIDEO.parent} (see its README)")
    video = _corrupt_middle(REAL_VIDEO, tmp_path / "damaged.mp4")
    code, _, err = _run("subtitles", ["--output-dir", str(tmp_path / "out"), str(video)], capsys)
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert code == 1, err[-3000:]
    assert len(warnings) == 1 and str(video) in warnings[0] and " decode errors at " in warnings[0], err
    (manifest,) = (tmp_path / "out").rglob("manifest.json")
    written = json.loads(manifest.read_text(encoding="utf-8"))
    assert "keyframes" in written["stage_seconds"] and "decode-check" not in written["stage_seconds"], written
    damage, once = written["decode_errors"], scan_decode_errors(probe_media(video), streams="video")
    assert once.errors > 10, once
    assert (damage["errors"], damage["first_error"]) == (once.errors, once.first_error), (damage, once)
    flat = [t for span in damage["ranges"] for t in span]
    assert flat == pytest.approx([t for span in once.ranges for t in span]), (damage, once)


SHORT_VIDEO = realvideo_dir() / "douyin_7625253704698556297_zh.mp4"  # 10 s drama, 540x940


def _corrupt_audio(out: Path) -> Path:
    """The real drama's speech alone (AAC, 12 s, the index last as ffmpeg writes it), 6 kB of its middle
    overwritten (`_corrupt_middle`): it probes and decodes to its end; only the AAC decoder's errors tell."""
    audio = out.with_name("clean-" + out.name)
    _ffmpeg("-i", str(REAL_VIDEO), "-vn", "-c:a", "copy", "-t", "12", str(audio))
    return _corrupt_middle(audio, out, size=6000)


def test_a_damaged_middle_that_stops_ffmpeg_on_both_streams_is_not_called_truncated(tmp_path):
    """The probe decoded the last second of both streams at once: the garbled AAC packet before it (the
    seek starts at the keyframe before) stopped ffmpeg, and a file whose video decodes to its end was
    refused as "truncated or corrupt". Each stream is now tried alone where both fail together."""
    from core.damage import scan_decode_errors
    from core.media import probe_media

    if not SHORT_VIDEO.is_file():
        pytest.skip(f"real footage not here: {SHORT_VIDEO.parent} (see its README)")
    info = probe_media(_corrupt_middle(SHORT_VIDEO, tmp_path / "damaged.mp4", AAC_STOPS_FFMPEG_SEED))
    damage = scan_decode_errors(info, streams="video")
    assert info.duration > 10 and damage.errors > 0, damage


@pytest.mark.slow
@pytest.mark.parametrize("flow", ["transcribe", "pipeline", "pipeline-transcribe", "pipeline-ocr"])
def test_damage_is_reported_by_transcribe_and_the_pipeline(prefect_server, flow, tmp_path, capsys):
    """Issue 29 point 4 beyond transcode and subtitles: a damaged stretch of speech (transcribe checks the
    audio it reads) and a corrupt middle under the pipeline's own subtitle stages or under its transcribe
    step (a sub-flow, whose damage the pipeline reported nowhere and exited 0): counted, one warning with
    the time ranges, the ranges in the pipeline's manifest, exit 1 (partly done). Issue 23: where the
    pipeline reads keyframes, their decode dates the pictures' errors (one pass's count and first error),
    with no decode check of its own (a second decode of every picture)."""
    import json

    from core.damage import scan_decode_errors
    from core.media import probe_media

    if not REAL_VIDEO.is_file():
        pytest.skip(f"real footage not here: {REAL_VIDEO.parent} (see its README)")
    out = tmp_path / "out"
    if flow == "transcribe":
        damaged = _corrupt_audio(tmp_path / "damaged speech.m4a")
        argv = ["--language", "zh", "--output-dir", str(out), str(damaged)]
    else:
        damaged = _corrupt_middle(SHORT_VIDEO, tmp_path / "damaged.mp4")
        chain = {"pipeline-transcribe": "transcribe", "pipeline-ocr": "ocr"}.get(flow, "subtitle_area")
        argv = ["--chain", chain, "--output-dir", str(out), str(damaged)]
    code, _, err = _run(flow.split("-")[0], argv, capsys)
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert code == 1, err[-3000:]
    assert len(warnings) == 1 and str(damaged) in warnings[0] and " decode errors at " in warnings[0], err
    (manifest,) = out.glob(f"{flow.split('-')[0]}/*/manifest.json")
    written = json.loads(manifest.read_text(encoding="utf-8"))
    damage = written["decode_errors"]
    assert damage["errors"] > 0 and damage["ranges"], damage
    start, end = damage["ranges"][0]
    assert 0.5 < start < end < 11.5, "the damage is in the middle, not at the ends"
    if flow == "pipeline-ocr":
        assert "keyframes" in written["stage_seconds"], written
        assert "decode-check" not in written["stage_seconds"], written
        once = scan_decode_errors(probe_media(damaged), streams="video")
        assert (damage["errors"], damage["first_error"]) == (once.errors, once.first_error), (damage, once)


def test_a_transcode_timeout_in_the_environment_reaches_the_stage_as_its_setting(
    prefect_server, bad, tmp_path, monkeypatch
):
    """YIVIDEO_TRANSCODE_TIMEOUT_S on a worker: read and checked once as the flow starts (a bad value fails
    the run there, naming the variable, before any stage: nothing retried), never inside the stage."""
    from flows.transcode import transcode
    from stages.transcode.command import default_timeout, timeout_from_environment

    monkeypatch.setenv("YIVIDEO_TRANSCODE_TIMEOUT_S", "10m")
    assert default_timeout(1.0) == 140.0, "the stage's own default ignores the environment"
    started = time.monotonic()
    state = transcode(str(bad["mute"]), ["thumbnail"], str(tmp_path / "out"), return_state=True)
    assert state.is_failed() and "YIVIDEO_TRANSCODE_TIMEOUT_S: '10m' is not a number" in state.message, state
    assert time.monotonic() - started < 20 and not (tmp_path / "out").exists(), "failed before any stage"
    monkeypatch.setenv("YIVIDEO_TRANSCODE_TIMEOUT_S", "45")
    assert timeout_from_environment() == 45.0


def test_decode_errors_are_dated_by_the_progress_between_them():
    from core.damage import damage_from_log

    log = ["out_time_us=1000000", "speed= 9.7x", "progress=continue", "out_time_us=15000000",
           "[h264 @ 0x55de255f5e80] error while decoding MB 57 32, bytestream 3153",
           "Error while decoding stream #0:0: Invalid data found when processing input",
           "out_time_us=15500000", "[aac @ 0x5647d04bbd00] Reserved bit set.", "out_time_us=30000000",
           "[h264 @ 0x1] concealing 40 DC errors", "progress=end"]  # fmt: skip
    damage = damage_from_log(Path("a.mp4"), log, duration=30.2)
    assert damage.errors == 4 and damage.first_error == "error while decoding MB 57 32, bytestream 3153"
    assert damage.ranges == ((14.5, 16.0), (29.5, 30.2))
    assert not damage_from_log(Path("b.mp4"), ["out_time_us=5", "speed=N/A", "progress=end"], 1.0).damaged
    # framecrc (what the scan runs): each frame's pts in its stream's time base; the header is not an error
    frames = ["#software: Lavf59.27.100", "#tb 0: 1/44100", "#tb 1: 1/25", "#media_type 0: audio",
              "0,     237568,     237568,     1024,     4096, 0x32601502", "1,  134,  134,  1,  460800, 0x1",
              "0,     238592,     238592,     1024,     4096, 0x47be43b8",
              "[aac @ 0x55c2396e08c0] Number of bands (68) exceeds limit (42).",
              "Error while decoding stream #0:0: Invalid data found when processing input"]  # fmt: skip
    damage = damage_from_log(Path("c.m4a"), frames, duration=12.0)
    assert damage.errors == 2 and damage.first_error.startswith("Number of bands"), damage
    assert damage.ranges == ((238592 / 44100 - 0.5, 238592 / 44100 + 0.5),), damage.ranges


@pytest.mark.slow
def test_a_pipeline_failing_after_it_wrote_says_partly_done(prefect_server, bad, tmp_path, capsys):
    """Transcode writes its renditions, then transcribe finds no audio: was exit 2 ("nothing written") and an
    empty pipeline folder; now exit 1, one line saying what failed and what was kept, and a manifest."""
    import json

    out = tmp_path / "out"
    code, _, err = _run("pipeline", ["--chain", "transcode", "transcribe", "--output-dir", str(out),
                                     str(bad["mute"])], capsys)  # fmt: skip
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 1, err[-3000:]
    assert len(errors) == 1 and "pipeline partly done for" in errors[0] and "transcribe failed" in errors[0]
    (manifest,) = (out / "pipeline").rglob("manifest.json")
    listed = json.loads(manifest.read_text(encoding="utf-8"))["outputs"]
    assert listed and all(Path(p).is_file() for p in listed.values()), listed
    assert str(manifest) in errors[0]
