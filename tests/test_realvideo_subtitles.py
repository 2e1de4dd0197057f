"""The subtitle flow on six real short videos with creator-burned subtitles, against our timed keys.

The videos are in `../shared/realvideo/` (samples/realvideo.py; skipped where absent), the keys in
samples/realvideo_keys/ (made frame by frame). Issue 21's gates: recall and precision >= 0.95, CER <= 0.03,
exact lines >= 0.85, line ends within 0.15 s. The five dramas meet them. The meme edit's lines sit all
over the frame (left, right, top and middle, two at once): the area stage sees as many lines outside any
band as in it, so the whole frame is read and events are made per position; it meets the same gates.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.subtitles import extract_subtitles
from samples.media_cache import cached_media
from samples.realvideo import (
    REALVIDEO_MISSING,
    REALVIDEO_STEMS,
    answer_key,
    cut_key,
    cut_realvideo,
    realvideo_available,
    realvideo_path,
)
from samples.scoring import SubtitleScore, pooled, score_subtitles

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not realvideo_available(), reason=REALVIDEO_MISSING)]

SCATTERED = "douyin_7625248139076178405_zh"  # meme edit: lines all over the frame, two at once
DRAMAS = [stem for stem in REALVIDEO_STEMS if stem != SCATTERED]
CUTS = [(SCATTERED, 8.5), ("douyin_7625472985927237489_zh", 15.3)]  # 5 s cuts the throughput bench made
CUTS += [(SCATTERED, 6.8)]  # an emoji row counted as the band's line: 1 of 4 captions (bench/realvideo.py)


@cached_media("out")
def _cut(source: Path, stem: str, start: float, seconds: float, out: Path) -> Path:
    """cut_realvideo's clip, kept across sessions like the generated media (samples/media_cache.py): an
    x264 encode of each cut cost ~1.6 CPU s per test, every session. `source`, the shared video itself,
    keys the entry by its content; the samples sources and ffmpeg's version key it too."""
    return cut_realvideo(stem, start, seconds, out)


def cut(stem: str, start: float, out: Path) -> Path:
    return _cut(realvideo_path(stem), stem, start, 5.0, out)


@pytest.fixture(scope="module")
def real_scores(prefect_server, tmp_path_factory) -> dict[str, SubtitleScore]:
    out = tmp_path_factory.mktemp("realvideo-out")
    scores = {}
    for stem in REALVIDEO_STEMS:
        result = extract_subtitles(str(realvideo_path(stem)), str(out))
        scores[stem] = score_subtitles(answer_key(stem), list(result.events))
        print(f"{stem:<32} {scores[stem].line()}")
    return scores


def test_the_dramas_meet_the_issue_gates(real_scores):
    total = pooled([real_scores[stem] for stem in DRAMAS])
    detail = {stem: real_scores[stem].line() for stem in DRAMAS}
    assert total.recall >= 0.95 and total.precision >= 0.95, (total.line(), detail)
    assert total.cer <= 0.03, (total.line(), detail)
    assert total.exact_lines >= 0.85, (total.line(), detail)
    assert total.median_start_error <= 0.15 and total.median_end_error <= 0.15, total.line()


@pytest.mark.parametrize("stem", DRAMAS)
def test_every_drama_keeps_its_lines_one_event_each(real_scores, stem):
    score = real_scores[stem]
    assert score.recall >= 0.95, score.line()
    assert score.precision >= 0.95, score.line()  # the faint pale line of …297: one event, not two
    # every line, not only the median, starts and ends within 0.1 s of the key (issue 21 point 4; measured:
    # <= 0.033 s); …297's pale last line started 0.6 s late before its lead samples were read
    assert score.max_start_error <= 0.1 and score.max_end_error <= 0.1, (score.start_errors, score.end_errors)


def test_the_scattered_meme_edit_is_read_whole_per_position(real_scores):
    score = real_scores[SCATTERED]  # measured: 25 of 25 lines, 25 events, all read exactly
    assert score.recall >= 0.95 and score.precision >= 0.95, score.line()
    assert score.exact_lines >= 0.85 and score.cer <= 0.03, score.line()
    assert score.median_start_error <= 0.15 and score.median_end_error <= 0.15, score.line()
    # every line within 0.1 s (measured: <= 0.033 s); the pale "撸思面馆" started 0.233 s late before the
    # samples ahead of each whole-frame keyframe were read
    assert score.max_start_error <= 0.1 and score.max_end_error <= 0.1, (score.start_errors, score.end_errors)


@pytest.mark.parametrize(("stem", "start"), CUTS)
def test_a_five_second_cut_is_read_not_refused_as_another_script(prefect_server, tmp_path, stem, start):
    """Short clips are what users send most. Of 100 five-second cuts (bench/throughput.py) three failed as
    "the subtitles look like Devanagari / Hebrew script": on the meme cut only pictures reached the script
    classifier (a line beside a picture was joined into the picture's row), and on the drama cut the band
    went onto a wall tile's glyph-sized icons (four samples) instead of the one line (two samples)."""
    clip = cut(stem, start, tmp_path / f"cut-{start}.mp4")
    result = extract_subtitles(str(clip), str(tmp_path / "out"))
    score = score_subtitles(cut_key(stem, start, 5.0), list(result.events))
    assert score.recall == 1 and score.precision == 1 and score.cer == 0, score.line()
    errors = (score.start_errors, score.end_errors)
    assert score.max_start_error <= 0.15 and score.max_end_error <= 0.15, errors


HELD = [("douyin_7625060323589901610_zh", 3.4), ("douyin_7625261726909372089_zh", 5.1)]


@pytest.mark.parametrize(("stem", "start"), HELD)
def test_a_line_held_over_most_of_a_cut_is_read_not_masked_as_a_logo(prefect_server, tmp_path, stem, start):
    """A 5 s cut holds one line over most of the band stage's samples, at one place: by place alone a
    static overlay, masked, and the cut read no line at all (…1610: three lines of one width in 8 of 10
    samples; …2089: one line in 6). The pixels inside the box tell: a logo's never change over the clip,
    these lines come, go and replace each other (stages/subtitles/overlays.py)."""
    clip = cut(stem, start, tmp_path / f"cut-{start}.mp4")
    result = extract_subtitles(str(clip), str(tmp_path / "out"))
    assert not result.band.static_boxes, result.band
    score = score_subtitles(cut_key(stem, start, 5.0), list(result.events))
    assert score.recall == 1 and score.precision == 1, score.line()


def test_a_cut_without_subtitles_says_so_and_reads_no_icons(prefect_server, tmp_path):
    """…489 from 17 s to 22 s shows no line, only a wall tile's icons: it was refused as Devanagari, then
    (with the band on the tile) read as "eir". A band needs a box seen as a line; here the text signal
    gives the lower part and OCR finds nothing there."""
    stem, start = "douyin_7625472985927237489_zh", 17.0
    assert not cut_key(stem, start, 5.0)
    clip = cut(stem, start, tmp_path / f"cut-{start}.mp4")
    result = extract_subtitles(str(clip), str(tmp_path / "out"))
    assert not result.events, [event.text for event in result.events]


@pytest.mark.parametrize(
    ("stem", "damage", "cues", "at"),
    [
        # before 43f31dc: refused as Devanagari (Hindi), as Devanagari, "look like Fraktur script"
        ("douyin_7625060323589901610_zh", "blurred", slice(6), (0.5,)),
        ("douyin_7625261726909372089_zh", "blurred", slice(6), (0.5,)),
        ("douyin_7625248139076178405_zh", "faded", slice(6), (0.5,)),
        # before this change: read as Japanese (OSD said Katakana, PP-OCRv6 read nothing: OSD's word alone)
        ("douyin_7625060323589901610_zh", "faded", slice(2, 5), (0.3, 0.7)),
    ],
)
def test_rows_no_reader_reads_are_read_in_doubt_not_refused_on_the_classifier_alone(stem, damage, cues, at):
    """The subtitle rows of a real drama's lines, blurred or faded so that no reader reads them (an opening
    out of focus, a fading line): OSD still names a script, and its word alone refused the video or picked
    its reader (samples/damaged_rows.py; bench/realvideo.py --damaged measures 184 such row sets).
    PP-OCRv6 finds no look-alike glyphs in them, so the default reader reads it and the doubt is said in
    one line; nor is a Tesseract reader chosen that reads nothing (read 44 of 138 such row sets as Russian
    or Arabic before 43f31dc), nor ja on OSD's word. This rule also holds the case of …489 read in 700 px
    batches (its first three held one row OCR read as nothing, called Devanagari): read whole, not refused,
    even with MIN_ROWS put back to 1, so that run of the whole drama is not repeated here."""
    from samples.damaged_rows import DAMAGES, frames_at_cues
    from stages.subtitles.languages import DEFAULT
    from stages.subtitles.ocr import OcrSettings
    from stages.subtitles.script import choose_language, subtitle_rows

    settings = OcrSettings(lang="auto")
    rows = subtitle_rows(frames_at_cues(stem, cues, at), settings)
    assert len(rows) >= 3, len(rows)  # enough rows that a refusal would have been judged from them
    choice = choose_language([DAMAGES[damage](row) for row in rows], settings)
    assert choice.supported and choice.doubt and choice.lang == DEFAULT, choice
    assert "in doubt" in choice.reason and "\n" not in choice.reason, choice.reason
