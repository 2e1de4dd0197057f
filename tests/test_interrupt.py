"""A stage the user stopped (Ctrl-C, SIGTERM) fails and is never taken for finished: real ffmpeg decodes.

The CLI-level proofs (one line, exit 130 / 143, the re-run resuming) are in test_cli_lifecycle.py; these pin
the two ways a stopped decode passed for a finished one or was retried, each without a race to win.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import psutil
import pytest

from core.errors import StageError, is_transient
from core.interrupt import STOP
from core.media import iter_video_frames, require_tool, run_media_command
from samples.clips import make_clip

REPO = Path(__file__).resolve().parents[1]


def _decode(video, fps: float = 25):
    return iter_video_frames(
        video, fps=fps, filters="scale=320:180", out_width=320, out_height=180, timeout=60, stage="keyframes"
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_ffmpeg_stopped_by_the_users_signal_fails_its_stage_only_once_the_cli_stops(tmp_path, signum):
    """The race one fresh-clone suite run lost: the terminal's Ctrl-C reaches ffmpeg and the CLI at once,
    and the keyframes thread saw ffmpeg gone before the main thread's handler had set STOP, so its failure
    was logged and retried ("Retry 1/2 will start") ahead of "error: interrupted". Here a decoding ffmpeg
    gets the signal and STOP comes 0.5 s later (a late handler): the stage fails only after STOP, and its
    failure is not retried (core/interrupt.py's child_failed)."""
    video = make_clip(tmp_path / "clip.mp4", duration=10.0, audio=False)
    frames = _decode(video)
    next(frames)  # ffmpeg decodes, held by the full pipe
    (ffmpeg,) = [child for child in psutil.Process().children() if child.name() == "ffmpeg"]
    ffmpeg.send_signal(signum)
    late_handler = threading.Timer(0.5, STOP.set)
    late_handler.start()
    try:
        with pytest.raises(StageError) as failed:
            for _ in frames:
                pass
        assert STOP.is_set(), "the stage failed before the CLI's handler stopped the run"
        assert not is_transient(failed.value), failed.value
        assert "stopped by the user" in str(failed.value), failed.value
    finally:
        late_handler.join()
        STOP.clear()


def test_ending_the_children_leaves_their_exit_status_to_whoever_started_them():
    """The CLI's handler ends this process's children (end_children). It reaped them (psutil's wait_procs),
    and the stage thread's Popen.wait then got ECHILD, which subprocess reports as exit 0: a fresh-clone
    suite run's Ctrl-C'd keyframes stage took its cut-short decode for the whole window, was cached, and the
    re-run said "no subtitles found" on a real drama. Run in a process of its own session: end_children
    ends every child of its caller's session (here the test worker's servers too)."""
    script = textwrap.dedent(f"""
        import subprocess, time
        from core.interrupt import end_children
        ffmpeg = subprocess.Popen(
            [{require_tool("ffmpeg")!r}, "-v", "error", "-nostdin", "-re", "-f", "lavfi",
             "-i", "testsrc=size=320x180:rate=25", "-f", "null", "-"])
        time.sleep(0.5)  # past ffmpeg's start: its handler catches SIGTERM
        end_children()
        print(ffmpeg.wait(timeout=10))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
        start_new_session=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) in (255, -signal.SIGTERM), done.stdout  # 0: reaped behind its back


def test_a_decode_that_ends_after_the_stop_fails_whatever_ffmpeg_exits(tmp_path):
    """Once the user stopped the run, a decode's end is never its stage's success: ffmpeg's exit status may
    not tell (above), and a stage returning the frames it got would be cached as finished. Here ffmpeg runs
    to its end and exits 0 after STOP is set: the decode still fails, and is not retried."""
    video = make_clip(tmp_path / "clip.mp4", duration=2.0, audio=False)
    frames = _decode(video, fps=5)
    next(frames)
    STOP.set()
    try:
        with pytest.raises(StageError) as failed:
            for _ in frames:
                pass
        assert not is_transient(failed.value), failed.value
        assert "stopped by the user (ffmpeg decode ended with exit status 0)" in str(failed.value)
    finally:
        STOP.clear()


def test_a_command_that_ends_after_the_stop_says_the_user_stopped_it(tmp_path):
    """An ffmpeg command (run_media_command: audio extraction, probes' helpers) that exits 0 after STOP
    fails as the decode does, and says why: Prefect's UI showed "ffmpeg exited 0: ..." for it."""
    video = make_clip(tmp_path / "clip.mp4", duration=1.0, audio=False)
    command = [require_tool("ffmpeg"), "-v", "error", "-i", str(video), "-f", "null", "-"]
    assert run_media_command(command, timeout=60, stage="audio", subject=video).returncode == 0
    STOP.set()
    try:
        with pytest.raises(StageError, match=r"stopped by the user \(ffmpeg ended with exit status 0\)"):
            run_media_command(command, timeout=60, stage="audio", subject=video)
    finally:
        STOP.clear()
