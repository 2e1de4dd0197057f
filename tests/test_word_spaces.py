"""Word spaces from geometry (stages/subtitles/spacing.spaces_from_gaps): a gap between two glyphs clearly
wider than the row's letter gaps is a space the reader dropped, whatever the language's words."""

from __future__ import annotations

import pytest

from samples.footage import ass_plain_text, render_case
from samples.footage_languages import language_case
from stages.subtitles.spacing import spaces_from_gaps


def _glyphs(text: str, letter: int, space: int, glued: int = 0) -> list[tuple[str, int, int, bool]]:
    """`text`'s glyphs 10 px wide, `letter` px apart; `space` px between words; "|" marks a space the
    reader did not write (`glued` px: a gap as wide as a space, inside a word as read)."""
    glyphs, x, gap, starts = [], 0, 0, True
    for char in text:
        if char in " |":
            gap, starts = (space, True) if char == " " else (glued, False)
            continue
        x += gap
        glyphs.append((char, x, x + 10, starts))
        x, gap, starts = x + 10, letter, False
    return glyphs


def test_a_gap_as_wide_as_the_rows_spaces_is_a_space():
    assert spaces_from_gaps(_glyphs("Τα|λέμε αύριο|το πρωί", 6, 18, glued=15), 80) == "Τα λέμε αύριο το πρωί"
    # letter gaps of one width but one wider letter pair (8 of 6): no space; a row read as one word falls
    # back on the row's height (16 px of 80)
    assert spaces_from_gaps(_glyphs("Καλη|μέρα φίλοι", 6, 18, glued=8), 80) == "Καλημέρα φίλοι"
    assert spaces_from_gaps(_glyphs("Δεν|ξέρω", 5, 0, glued=17), 80) == "Δεν ξέρω"
    assert spaces_from_gaps(_glyphs("Ευχαριστώ", 5, 0), 80) == "Ευχαριστώ"


def test_right_to_left_rows_and_marks_over_letters_make_no_space():
    rtl = [(c, x0, x1, s) for c, x0, x1, s in _glyphs("ab|cd ef", 4, 18, glued=17)]
    mirrored = [(c, 200 - x1, 200 - x0, s) for c, x0, x1, s in rtl]  # read right to left
    assert spaces_from_gaps(mirrored, 80) == "ab cd ef"
    tonos = [("α", 0, 10, True), ("\u0301", 3, 8, False), ("β", 14, 24, False)]  # a mark overlaps its letter
    assert spaces_from_gaps(tonos, 80) == "α\u0301β"


@pytest.mark.slow
def test_greek_words_the_reader_glued_are_spaced_by_their_gaps(media_dir):
    """The Greek case's third line, read by tesseract-ocr-ell as "Ταλέμε αύριοτο πρωί" (its letters right,
    CER 0, WER 2 of 5): the glyph gaps of "Τα|λέμε" and "αύριο|το" are as wide as its spaces."""
    from samples.frames import frames_at
    from stages.subtitles.ocr import OcrSettings, load_ocr_engine

    case = language_case("el").case
    event = case.events[2]
    (frame,) = frames_at(render_case(case, media_dir / "footage-languages"), [event])
    band = frame[int(frame.shape[0] * 0.66) :]
    read = [line.text for line in load_ocr_engine(OcrSettings(lang="el")).read(band)]
    assert read == [ass_plain_text(event.text)] == ["Τα λέμε αύριο το πρωί"], read
