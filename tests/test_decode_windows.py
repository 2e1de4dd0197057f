"""The subtitles flow's decode check is its keyframes decode (issue 23 point 4): each window dates the
decoders' errors in its own part, and the windows together say what one pass over the pictures says,
wherever their ends cut the damage. Real ffmpeg on a real drama with its bytes overwritten in places."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from core.damage import combined_damage, damage_from_log, damage_in_window, dated_errors, scan_decode_errors
from core.media import probe_media
from core.schema import Band, DecodeDamage
from samples.realvideo import realvideo_dir
from stages.subtitles.band import WHOLE_FRAME
from stages.subtitles.keyframes import extract_keyframes
from stages.subtitles.text_signal import KeyframeSettings

REAL_VIDEO = realvideo_dir() / "douyin_7625472985927237489_zh.mp4"  # 38 s short drama, 960x720


@pytest.fixture(scope="module")
def spotted(tmp_path_factory) -> Path:
    """3 kB overwritten (seeded) at every 5% of the file from 10% to 90%: errors over most of the drama."""
    if not REAL_VIDEO.is_file():
        pytest.skip(f"real footage not here: {REAL_VIDEO.parent} (see its README)")
    data = bytearray(REAL_VIDEO.read_bytes())
    for percent in range(10, 95, 5):
        at = len(data) * percent // 100
        data[at : at + 3000] = random.Random(percent).randbytes(3000)  # the same in every run
    out = tmp_path_factory.mktemp("damaged") / "spotted.mp4"
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize(
    ("source", "step"),
    [("auto", 4.37), ("auto", 7.0), (WHOLE_FRAME, 5.5)],
    ids=["band-4.37", "band-7", "frame"],
)
def test_windows_count_each_error_once_wherever_they_end(spotted, tmp_path, source, step):
    """Windows overlap where a seek runs up from the keyframe before a window's start (and a whole frame's
    lead samples): their errors were counted by the window before, which decodes on past its end to date
    them. Cut every few seconds, the windows' damage is the one pass's: count, first error, ranges."""
    info = probe_media(spotted)
    once = scan_decode_errors(info, streams="video")
    assert once.errors > 20 and len(once.ranges) > 4, once
    band = Band(0, 0, info.width, info.height, source=WHOLE_FRAME) if source == WHOLE_FRAME else None
    band = band or Band(0, info.height * 4 // 5, info.width, info.height)
    ends = [round(step * k, 2) for k in range(1, int(info.duration / step) + 1)] + [info.duration]
    parts = []
    for window in zip([0.0, *ends[:-1]], ends, strict=True):
        keyframes = extract_keyframes(info, band, tmp_path / f"{window[0]}", KeyframeSettings(), window)
        assert keyframes.damage is not None
        parts.append(keyframes.damage)
    assert sum(1 for part in parts if part.damaged) > 2, "damage in several windows"
    joined = combined_damage(info.path, parts)
    assert (joined.errors, joined.first_error) == (once.errors, once.first_error), (parts, once)
    flat = [t for span in joined.ranges for t in span]
    assert flat == pytest.approx([t for span in once.ranges for t in span]), (joined, once)


def test_an_empty_band_decodes_nothing_and_says_so(spotted, tmp_path):
    """No band, no decode: no damage either way (None), so the flow runs the decode check itself."""
    nothing = Band(0, 0, 0, 0, source="none")
    keyframes = extract_keyframes(probe_media(spotted), nothing, tmp_path, KeyframeSettings())
    assert keyframes.damage is None and keyframes.samples_decoded == 0


def test_a_window_keeps_the_errors_between_its_first_frame_and_the_next_windows():
    log = ["#tb 0: 1/10", "[h264 @ 0x1] run-up error", "0, 0, 0, 1, 1, 0x1", "[h264 @ 0x1] mine at 20.0",
           "0, 5, 5, 1, 1, 0x1", "[h264 @ 0x1] mine at 20.5", "0, 50, 50, 1, 1, 0x1",
           "[h264 @ 0x1] next's"]  # fmt: skip
    errors = list(dated_errors(log))
    assert errors[0] == (None, "run-up error") and errors[-1] == (5.0, "next's"), errors
    damage = damage_in_window(Path("a.mp4"), errors, 20.0, 24.0, 60.0)
    assert damage.errors == 2 and damage.first_error == "mine at 20.0", damage
    assert damage.ranges == ((19.5, 21.0),), damage
    first = damage_in_window(Path("a.mp4"), errors, 0.0, 4.5, 60.0)  # from the start: nothing before it
    assert first.errors == 3 and first.ranges == ((0.0, 1.0),), first


@pytest.mark.parametrize("split", [1, 2, 3])
def test_parts_join_as_one_pass_would(split):
    """Two errors at most JOIN_SECONDS (1 s) apart are one range, also when two windows counted them."""
    log = [f"out_time_us={int(t * 1e6)}\nerror at {t}" for t in (3.0, 4.0, 5.2, 9.0)]
    whole = damage_from_log(Path("a.mp4"), "\n".join(log).splitlines(), 30.0)
    assert whole.errors == 4 and whole.ranges == ((2.5, 4.5), (4.7, 5.7), (8.5, 9.5)), whole
    parts = [
        damage_from_log(Path("a.mp4"), "\n".join(part).splitlines(), 30.0)
        for part in (log[:split], log[split:])
    ]
    assert combined_damage(Path("a.mp4"), parts) == whole, parts
    assert combined_damage(Path("a.mp4"), [DecodeDamage(Path("a.mp4"))]) == DecodeDamage(Path("a.mp4"))
