"""Generated media kept across sessions (samples/media_cache.py): rendered once per generator version, the
same bytes and return value on a hit, a damaged copy never reaches the cache, and two processes rendering
one sample at once both get it whole."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from samples.media_cache import CACHE_ENV, cached_media, generator_version, prune
from samples.video import Cue, make_subtitled_video


@dataclass(frozen=True)
class Rendered:
    path: Path
    frames: tuple[int, ...]


def _render_slowly(out: Path, text: str, *, pause: float = 0.0) -> Rendered:
    """Writes in two halves with a pause between: a reader of a half-written file would see it."""
    out = Path(out)
    calls = Path(os.environ["MEDIA_CACHE_TEST_CALLS"])
    with calls.open("a") as log:
        log.write(f"{os.getpid()}\n")
    with out.open("w") as f:
        f.write(text[: len(text) // 2])
        f.flush()
        time.sleep(pause)
        f.write(text[len(text) // 2 :])
    return Rendered(out, (len(text), 1))


render = cached_media("out")(_render_slowly)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    monkeypatch.setenv("MEDIA_CACHE_TEST_CALLS", str(tmp_path / "calls"))
    return root


def _calls(tmp_path: Path) -> int:
    log = tmp_path / "calls"
    return len(log.read_text().split()) if log.exists() else 0


def test_a_second_call_copies_the_first_render_and_returns_its_value(cache, tmp_path):
    first = render(tmp_path / "a" / "x.txt", "hello world")
    second = render(tmp_path / "b" / "x.txt", "hello world")
    assert _calls(tmp_path) == 1
    assert first == Rendered(tmp_path / "a" / "x.txt", (11, 1))
    assert second == Rendered(tmp_path / "b" / "x.txt", (11, 1))
    assert second.path.read_text() == "hello world"
    render(tmp_path / "c" / "x.txt", "other text")  # other arguments: rendered
    render(tmp_path / "c" / "y.txt", "hello world")  # another file name (a suffix may pick the format)
    assert _calls(tmp_path) == 3


def test_a_damaged_copy_does_not_reach_the_cache(cache, tmp_path):
    first = render(tmp_path / "a" / "x.txt", "hello world")
    first.path.write_text("damaged by a test")
    assert render(tmp_path / "b" / "x.txt", "hello world").path.read_text() == "hello world"
    assert render(tmp_path / "a" / "x.txt", "hello world").path.read_text() == "hello world"
    assert _calls(tmp_path) == 1


def test_an_input_file_is_keyed_by_its_content(cache, tmp_path):
    source = tmp_path / "input.txt"
    source.write_text("one")
    render(tmp_path / "a" / "x.txt", str(source))
    source.write_text("two")
    render(tmp_path / "a" / "x.txt", str(source))
    assert _calls(tmp_path) == 2


def test_a_font_update_renders_again(cache, tmp_path, monkeypatch):
    """libass draws with the installed fonts: a new font version under the same ffmpeg is a new render."""
    tools = tmp_path / "bin"
    tools.mkdir()
    fc_list = tools / "fc-list"
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    for version, expected_calls in (("1", 1), ("1", 1), ("2", 2)):
        fc_list.write_text(f"#!/bin/sh\necho /fonts/NotoSansCJK.ttc\\|{version}\n")
        fc_list.chmod(0o755)
        generator_version.cache_clear()
        render(tmp_path / "out" / "a.txt", "text")
        assert _calls(tmp_path) == expected_calls, version
    generator_version.cache_clear()  # the next test keys with the real fonts again


def test_without_the_setting_every_call_renders(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("MEDIA_CACHE_TEST_CALLS", str(tmp_path / "calls"))
    render(tmp_path / "x.txt", "hello")
    render(tmp_path / "x.txt", "hello")
    assert _calls(tmp_path) == 2


CHILD = """
import sys
from pathlib import Path
sys.path[:0] = sys.argv[1:3]  # the repository (samples) and tests/ (this module, named as pytest names it)
from test_media_cache import render
render(Path(sys.argv[3]), "written by two processes at once", pause=2.0)
"""
TESTS = Path(__file__).resolve().parent


def test_two_processes_rendering_one_sample_at_once_both_get_it_whole(cache, tmp_path):
    """Two fresh interpreters (a fork of the suite's process carries its threads and captured streams:
    one failed there with its traceback lost)."""
    outs = [str(tmp_path / f"p{i}" / "x.txt") for i in (0, 1)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(TESTS.parent), str(TESTS), out],
            stderr=subprocess.PIPE,
            text=True,
        )
        for out in outs
    ]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-2000:]
    assert _calls(tmp_path) == 2  # both missed: each rendered privately, one entry won
    for i in (0, 1):
        assert (tmp_path / f"p{i}" / "x.txt").read_text() == "written by two processes at once"
    entries = list(cache.glob("??/*"))
    assert [p.name.startswith(".") for p in entries] == [False], entries  # no private folder left
    assert render(tmp_path / "p2" / "x.txt", "written by two processes at once", pause=2.0).path.exists()
    assert _calls(tmp_path) == 2


def test_unused_entries_are_pruned(cache, tmp_path):
    render(tmp_path / "x.txt", "old")
    (entry,) = cache.glob("??/*")
    os.utime(entry, (time.time() - 40 * 86400,) * 2)
    assert prune(cache) == 1 and not entry.exists()


def test_a_real_render_is_cached_with_the_same_bytes(cache, tmp_path):
    cues = [Cue(0.2, 1.0, "缓存 cache")]
    first = make_subtitled_video(tmp_path / "a.mp4", cues, duration=1.2, size=(320, 180), audio=False)
    (entry,) = cache.glob("??/*")
    stored = entry / "media" / "a.mp4"
    again = make_subtitled_video(tmp_path / "b" / "a.mp4", cues, duration=1.2, size=(320, 180), audio=False)
    assert first == tmp_path / "a.mp4" and again == tmp_path / "b" / "a.mp4"
    assert first.read_bytes() == again.read_bytes() == stored.read_bytes()
    assert len(list(cache.glob("??/*"))) == 1  # rendered once


@pytest.mark.parametrize("background", ["dark", "gradient", "busy"])
def test_a_background_renders_the_same_pixels_every_time(tmp_path, monkeypatch, background):
    """What the cache keeps must be what a render gives: ffmpeg's gradients drew random colours per render
    despite its seed, and a pale render kept in the cache failed the corpus test for 30 days."""
    monkeypatch.delenv(CACHE_ENV, raising=False)
    frames = []
    for name in ("a.mp4", "b.mp4"):
        cues = [Cue(0.2, 0.8, "same")]
        video = make_subtitled_video(tmp_path / name, cues, duration=1.0, background=background)
        frame = subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-i", str(video), "-frames:v", "1", "-f", "rawvideo", "-"],
            capture_output=True, check=True,
        )  # fmt: skip
        frames.append(frame.stdout)
    assert frames[0] == frames[1]
