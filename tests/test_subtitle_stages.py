"""The plain stage functions of the subtitle flow, on small synthetic inputs with known answers."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from core.errors import ConfigError
from core.schema import Band, FrameText, OcrLine
from stages.subtitles.area import AreaSettings, choose_band, scattered, split_static_boxes
from stages.subtitles.band import band_from_fractions
from stages.subtitles.crop import crop_band, trim_to_text
from stages.subtitles.postprocess import (
    PostprocessSettings,
    chinese_ellipsis,
    events_by_position,
    frames_to_events,
    split_line,
    to_srt,
)
from stages.subtitles.rows import lines_to_rows
from stages.subtitles.text_signal import (
    KeyframeSettings,
    new_line,
    pooled_cells,
    signal_change,
    text_signal,
    thinned,
)
from stages.subtitles.vote import vote_text


def outlined_text(text: str, size=(120, 640), x=40, background=(60, 40, 30)) -> np.ndarray:
    """White text with a 3 px black outline, the way subtitles are burned in."""
    mask = np.zeros(size, np.uint8)
    cv2.putText(mask, text, (x, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.6, 255, 3, cv2.LINE_AA)
    fill = mask > 127
    outline = cv2.dilate(fill.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    img = np.zeros((*size, 3), np.uint8)
    img[:] = background
    img[outline] = 0
    img[fill] = 255
    return img


def test_band_from_fractions_is_even_and_inside_the_frame():
    band = band_from_fractions((0.0, 0.8, 1.0, 0.95), 1281, 721)
    assert band.source == "user"
    assert band.x0 % 2 == 0 and band.y0 % 2 == 0 and band.width % 2 == 0 and band.height % 2 == 0
    assert 0 <= band.y0 < band.y1 <= 721 and band.x1 <= 1281


@pytest.mark.parametrize("bad", [(0.5, 0.2, 0.4, 0.9), (0, 0, 1), (0, 0.9, 1, 1.2)])
def test_band_from_fractions_rejects_nonsense(bad):
    with pytest.raises(ConfigError, match="band"):
        band_from_fractions(bad, 1280, 720)


def test_static_overlays_are_set_aside_and_subtitles_kept():
    logo, clock = (20, 20, 240, 76), (1080, 22, 1258, 48)
    subtitles = [(500, 620, 780, 660), (420, 618, 860, 662), None, (560, 622, 720, 660), (470, 619, 810, 661)]
    frames = [[logo, clock] + ([s] if s else []) for s in subtitles]
    static, moving = split_static_boxes(frames, 1280, AreaSettings())
    assert set(static) == {logo, clock}
    assert sum(len(m) for m in moving) == 4
    band = choose_band(moving, 1280, 720, AreaSettings())
    assert band is not None and band.y0 < 618 and band.y1 > 662
    assert band.y0 > 76, "the band must not reach up to the logo row"


def test_no_text_gives_no_band():
    assert choose_band([[], [], []], 1280, 720, AreaSettings()) is None


def test_text_signal_changes_with_text_not_with_background():
    settings = KeyframeSettings()
    a = text_signal(outlined_text("HELLO"), settings)
    a_other_bg = text_signal(outlined_text("HELLO", background=(90, 120, 60)), settings)
    b = text_signal(outlined_text("WORLD"), settings)
    blank = text_signal(np.full((120, 640, 3), 70, np.uint8), settings)
    assert np.count_nonzero(a) >= settings.min_text_cells
    assert np.count_nonzero(blank) == 0
    assert signal_change(a, a_other_bg) < settings.change_threshold
    assert signal_change(a, b) > settings.change_threshold


def test_pooled_cells_count_over_a_fifth_of_each_whole_cell():
    """OpenCV's area mean gives the cells a count over c²/5 gives, at every cell size (the signal's
    keyframes and trims depend on each cell), also at the counts either side of the threshold."""
    rng = np.random.default_rng(7)
    for c in (2, 3, 4, 5, 6, 8, 11, 15, 16, 20):
        for density in (0.05, 0.2, 0.25, 0.5):
            mask = (rng.random((7 * c + 3, 13 * c + 1)) < density).astype(np.uint8) * 255
            h, w = mask.shape[0] // c * c, mask.shape[1] // c * c
            counts = (mask[:h, :w] > 0).reshape(h // c, c, w // c, c).sum(axis=(1, 3))
            assert np.array_equal(pooled_cells(mask, c), counts > c * c / 5), (c, density)
    exact = np.zeros((4, 8), np.uint8)
    exact[0, :3] = 255  # 3 of 16 set: not over a fifth
    exact[0, 4:8] = 255  # 4 of 16: over
    assert pooled_cells(exact, 4).tolist() == [[False, True]]
    assert pooled_cells(np.zeros((3, 40), np.uint8), 4).shape == (0, 10)


def test_crop_masks_static_boxes_and_trims_to_text():
    strip = outlined_text("HELLO", size=(120, 640), x=200)
    band = Band(0, 600, 640, 720, static_boxes=((560, 610, 630, 650),))
    strip[10:50, 560:630] = 255
    cropped = crop_band(strip, band)
    assert cropped[10:50, 560:630].max() == 0
    columns = text_signal(cropped, KeyframeSettings()).any(axis=0)
    trimmed = trim_to_text(cropped, columns, pad=16)
    assert 150 < trimmed.shape[1] < 480


def line(text, x0, y0, x1, y1, conf=0.99):
    return OcrLine(text, conf, (x0, y0, x1, y1))


def test_whole_frames_are_read_from_their_strip_as_jpeg_and_bands_stay_lossless(tmp_path):
    """A whole frame with nothing to mask goes to OCR as the keyframes stage wrote it (no decode and
    re-encode per keyframe), in JPEG (PNG cost 19 ms a 720 x 734 frame, JPEG 3.5 ms); band crops stay
    lossless (BMP: a 1280 x 160 strip cost 7.3 + 4.2 ms to write and read as PNG, 0.7 + 0.8 ms), and a whole
    frame with a logo to mask is written masked."""
    from core.schema import Keyframe, KeyframeSet
    from stages.subtitles.band import WHOLE_FRAME
    from stages.subtitles.crop import crop_keyframes, scratch_format
    from stages.subtitles.stitch import stitch_keyframes

    frame = outlined_text("HELLO", size=(360, 640))
    whole, logo = (
        Band(0, 0, 640, 360, source=WHOLE_FRAME),
        Band(0, 0, 640, 360, WHOLE_FRAME, ((0, 0, 60, 30),)),
    )
    assert scratch_format(whole)[0] == ".jpg" and scratch_format(Band(0, 200, 640, 360))[0] == ".bmp"
    strip = tmp_path / "strip_000003.jpg"
    cv2.imwrite(str(strip), frame, scratch_format(whole)[1])
    kfs = KeyframeSet(tmp_path, whole, 10.0, 1.0, (Keyframe(3, 0.3, 0.6, strip),), 10)
    cropped = crop_keyframes(kfs, tmp_path, KeyframeSettings())
    assert cropped.frames[0].image_path == strip and sorted(p.name for p in tmp_path.iterdir()) == [
        strip.name
    ]
    (batch,) = stitch_keyframes(cropped, tmp_path)
    assert batch.image_path.suffix == ".jpg"
    masked = crop_keyframes(replace(kfs, band=logo), tmp_path, KeyframeSettings()).frames[0].image_path
    assert masked != strip and masked.suffix == ".jpg" and cv2.imread(str(masked))[:24, :56].max() < 16


def test_lines_to_rows_joins_a_row_and_orders_two_rows():
    rows = lines_to_rows(
        [line("line", 220, 62, 300, 100), line("Second", 100, 60, 210, 100), line("第一行", 120, 5, 260, 45)]
    )
    assert [r.text for r in rows] == ["第一行", "Second line"]


def frame(i, start, end, text, conf=0.98):
    lines = (
        tuple(line(t, 0, 40 * k, 100, 40 * k + 30, conf) for k, t in enumerate(text.split("\n")))
        if text
        else ()
    )
    return FrameText(i, start, end, lines)


def test_events_merge_split_and_keep_repeats_apart():
    frames = [
        frame(0, 0.5, 1.5, "同一句话"),
        frame(1, 1.5, 2.5, "同一句话"),  # same text: one event
        frame(2, 2.5, 3.5, "第一条字幕"),  # changed without a gap: split
        frame(3, 3.5, 4.5, "第二条字幕"),  # one character of a short line differs: split
        frame(4, 5.0, 6.0, "同一句话"),  # after a gap (4.5-5.0): a second event
        frame(5, 6.0, 7.0, "Nothing lost when a worker dies"),
        frame(6, 7.0, 7.4, "Nothing lost when a worker dles"),  # OCR jitter in a long line: merged
        frame(7, 8.0, 9.0, "noise", conf=0.3),  # low confidence: dropped
    ]
    events = frames_to_events(frames, PostprocessSettings())
    assert [(e.start, e.end, e.text) for e in events] == [
        (0.5, 2.5, "同一句话"),
        (2.5, 3.5, "第一条字幕"),
        (3.5, 4.5, "第二条字幕"),
        (5.0, 6.0, "同一句话"),
        (6.0, 7.4, "Nothing lost when a worker dies"),
    ]
    srt_text = to_srt(events)
    assert srt_text.startswith("1\n00:00:00,500 --> 00:00:02,500\n同一句话")


def test_no_frames_no_events():
    assert frames_to_events([], PostprocessSettings()) == []
    assert to_srt([]) == ""


def test_area_samples_do_not_alias_with_evenly_timed_lines(media_dir):
    """Lines every 4 s with the gap where even sampling (one frame per 4 s) would land every time."""
    from core.media import probe_media
    from samples.video import Cue, make_subtitled_video
    from stages.subtitles.area import detect_subtitle_band
    from stages.subtitles.ocr import OcrSettings

    cues = [Cue(4 * i + 0.9, 4 * i + 3.9, f"第{i + 1}句 line {i + 1}") for i in range(10)]
    video = make_subtitled_video(
        media_dir / "periodic.mp4", cues, duration=40.0, size=(640, 360), audio=False
    )
    band = detect_subtitle_band(probe_media(video), OcrSettings(), AreaSettings(samples=10))
    assert band.source == "auto" and band.y0 > 180, band


def test_area_seeks_on_long_video_without_aliasing(media_dir):
    """Long video seeks to its picks: 480 s of lines every 4 s puts the 40 candidates 12 s apart and the
    second look's 120 at 4 s, so picks at the candidates' own times all land in the gap between lines
    (the hour-long 720p run found no band that way). Built from the 40 s pattern played 12 times."""
    from core.media import probe_media
    from samples.video import Cue, make_subtitled_video, repeat_video
    from stages.subtitles.area import SEEK_FROM_SECONDS, detect_subtitle_band
    from stages.subtitles.ocr import OcrSettings

    cues = [Cue(4 * i + 0.9, 4 * i + 3.9, f"第{i + 1}句 line {i + 1}") for i in range(10)]
    part = make_subtitled_video(
        media_dir / "periodic-part.mp4", cues, duration=40.0, size=(640, 360), audio=False
    )
    info = probe_media(repeat_video(part, 12))
    assert info.duration >= SEEK_FROM_SECONDS
    band = detect_subtitle_band(info, OcrSettings(), AreaSettings(samples=10))
    assert band.source == "auto" and band.y0 > 180, band


def test_spaces_restored_in_glued_latin_text_only():
    from stages.subtitles.spacing import restore_spaces

    assert restore_spaces("Ridersgatheratthe start line") == "Riders gather at the start line"
    assert restore_spaces("Thankyouforwatching") == "Thank you for watching"
    assert restore_spaces("Trafflcis slow") == "Traffic is slow"
    assert restore_spaces("Uploaded ina browser") == "Uploaded in a browser"  # small drawtext, 480x270
    assert restore_spaces("isit ofa") == "is it of a"
    for kept in ("into the", "also", "Ana", "ido"):  # common or not two function words
        assert restore_spaces(kept) == kept
    for kept in ("YiVideo 字幕识别完成", "TAXI EXIT 300m", "onnxruntime", "Subtitles from pixels", "Go!"):
        assert restore_spaces(kept) == kept


def test_fragments_merge_but_a_changed_short_line_splits():
    frames = [
        frame(0, 0.0, 1.0, "after the central bank held rates"),
        frame(1, 1.0, 1.2, "the central bank"),  # part of the line over a bright background
        frame(2, 1.2, 2.0, "after the central bank held rates"),
        frame(3, 2.0, 3.0, "Gate 4 is open"),
        frame(4, 3.0, 4.0, "Gate 5 is open"),
        frame(5, 4.0, 5.0, "Pollce ask drivers to wait"),
        frame(6, 5.0, 6.0, "Police ask drivers to wait"),  # l/i confusion: the same line
    ]
    events = frames_to_events(frames, PostprocessSettings())
    assert [(e.start, e.end, e.text) for e in events] == [
        (0.0, 2.0, "after the central bank held rates"),
        (2.0, 3.0, "Gate 4 is open"),
        (3.0, 4.0, "Gate 5 is open"),
        (4.0, 6.0, "Police ask drivers to wait"),
    ]


def test_steady_signal_ignores_flicker_and_keeps_text():
    from stages.subtitles.keyframes import steady_signals

    text = outlined_text("HELLO")
    rng = np.random.default_rng(1)
    flicker = []
    for _ in range(4):  # thin bright-on-dark specks at new places every sample
        img = np.full((120, 640, 3), 60, np.uint8)
        for x, y in rng.integers(0, [630, 110], size=(12, 2)):
            img[y : y + 3, x : x + 3] = 255
            img[y + 3 : y + 6, x : x + 3] = 0
        flicker.append(img)
    frames = list(enumerate(flicker + [text, text, text]))
    band = Band(0, 0, 640, 120)
    signals = [sig for _, _, sig in steady_signals(iter(frames), band, KeyframeSettings())]
    assert all(np.count_nonzero(s) < KeyframeSettings().min_text_cells for s in signals[:3])
    assert all(np.count_nonzero(s) >= KeyframeSettings().min_text_cells for s in signals[4:])


def test_a_line_read_ten_times_with_three_different_errors_comes_out_right():
    reads = ["13路末班车"] * 4 + [
        "13隐索班车",
        "13路患班年",
        "13降束斑率",
        "13路束班车",
        "13路末班",
        "13路末班车",
    ]
    assert vote_text([(r, 0.1) for r in reads]) == "13路末班车"
    frames = [frame(i, i * 0.2, (i + 1) * 0.2, r, conf=0.9) for i, r in enumerate(reads)]
    frames = [FrameText(f.keyframe_index, f.start, f.end, f.lines, line=7) for f in frames]
    events = frames_to_events(frames, PostprocessSettings())
    assert [(e.start, e.end, e.text) for e in events] == [(0.0, 2.0, "13路末班车")]


def test_one_misread_frame_never_splits_a_line_and_a_lasting_change_does():
    texts = ["一二三四五六七八九十", "一二三四五六七八九十", "一二三四五大七八九十", "一二三四五六七八九十"]
    frames = [
        FrameText(i, i * 0.5, (i + 1) * 0.5, frame(i, 0, 0, t).lines, line=3) for i, t in enumerate(texts)
    ]
    assert [e.text for e in frames_to_events(frames, PostprocessSettings())] == ["一二三四五六七八九十"]
    texts = ["Gate 4 is open"] * 2 + ["Gate 5 is open"] * 2  # the image saw one line: the text still splits
    frames = [
        FrameText(i, i * 0.5, (i + 1) * 0.5, frame(i, 0, 0, t).lines, line=3) for i, t in enumerate(texts)
    ]
    assert [e.text for e in frames_to_events(frames, PostprocessSettings())] == [
        "Gate 4 is open",
        "Gate 5 is open",
    ]


def test_a_line_misread_for_a_moment_between_two_reads_of_it_is_one_event():
    """A re-encoded 5 s cut of …297 (pale small text): the image saw a new line at 1.9 s, where two frames
    read 对 as 又; then the line read right again. Three events (A, A', A) before; one now. A change that
    lasts ("Gate 4" -> "Gate 5"), or comes back only after a second, stays."""
    a, misread = "总对不起对不起", "总又不起对不起"
    spans = [(1.4, 1.5), (1.5, 1.6), (1.6, 1.7), (1.7, 1.8), (1.8, 1.9), (1.9, 2.1), (2.1, 2.3), (2.3, 2.5)]
    spans += [(2.5, 2.6)]
    texts = [a] * 5 + [misread] * 2 + [a] * 2  # the frames as read
    frames = [
        FrameText(i, start, end, frame(i, 0, 0, t, 0.95).lines, line=3 if i < 5 else 4)
        for i, ((start, end), t) in enumerate(zip(spans, texts, strict=True))
    ]
    events = frames_to_events(frames, PostprocessSettings())
    assert [(e.start, e.end, e.text) for e in events] == [(1.4, 2.6, a)]
    texts = ["Gate 4 is open"] * 2 + ["Gate 5 is open"] * 2 + ["Gate 4 is open"] * 2
    frames = [
        FrameText(i, 0.6 * i, 0.6 * i + 0.6, frame(i, 0, 0, t).lines, line=i // 2)
        for i, t in enumerate(texts)
    ]
    assert len(frames_to_events(frames, PostprocessSettings())) == 3  # the middle line shown 1.2 s


def test_one_long_keyframe_per_side_splits_on_other_text_but_not_on_a_near_misread():
    """The demo's small text: the 4-px stroke cells saw '欢迎使用 YiVideo' -> 'Subtitles from pixels' as one
    line, each shown 2 s in one keyframe; the English read at 0.975 (below the 0.98 a near text needs)."""

    def two(a, b, conf_b):
        return [
            FrameText(0, 0.5, 2.5, frame(0, 0, 0, a, 0.997).lines, line=1),
            FrameText(1, 2.5, 4.5, frame(1, 0, 0, b, conf_b).lines, line=1),
        ]

    events = frames_to_events(two("欢迎使用YiVideo", "Subtitles from pixels", 0.975), PostprocessSettings())
    assert [(e.start, e.end, e.text) for e in events] == [
        (0.5, 2.5, "欢迎使用YiVideo"),
        (2.5, 4.5, "Subtitles from pixels"),
    ]
    events = frames_to_events(two("伸个懒腰吧", "申个懒腰吧", 0.956), PostprocessSettings())
    assert len(events) == 1  # one glyph apart, read less surely: a misread, not a second line
    for shown, misread in (("嗯", "恩"), ("好的啊", "好地呀")):  # short lines: one or two glyphs are "most"
        reads = [[(shown, 0.1)], [(shown, 0.1)], [(misread, 0.3)]]  # the misread held 0.6 s, read at 0.5
        assert split_line(reads, [(0, 0.1), (0.1, 0.2), (0.2, 0.8)], PostprocessSettings()) == [0], misread


def test_a_row_of_emoji_read_as_one_glyph_repeated_is_no_subtitle():
    """The meme edit (…405) shows rows of crying emoji that PP-OCRv6 reads as '3 3 3 30 3' at 0.99."""
    frames = [
        frame(0, 0.0, 1.0, "3 3 3 30 3"),
        frame(1, 1.0, 2.0, "人都喝醉了"),
        frame(2, 2.0, 3.0, "哈 哈 哈"),
    ]
    assert [e.text for e in frames_to_events(frames, PostprocessSettings())] == ["人都喝醉了", "哈 哈 哈"]


def test_a_line_shown_in_two_stacked_copies_is_said_once():
    copies = (
        line("你的眼里必里", 0, 0, 100, 30, 0.93),
        line("你的眼里心里", 0, 40, 100, 70, 0.99),
    )  # one misread
    frames = [FrameText(0, 0.0, 1.0, copies), frame(1, 1.0, 2.0, "你的眼里心里\n你的眼里心里")]
    assert [e.text for e in frames_to_events(frames, PostprocessSettings())] == ["你的眼里心里"]


def test_new_line_from_the_strokes_cut_and_crossfade_but_not_fade_or_noise():
    settings = KeyframeSettings()
    rng = np.random.default_rng(0)
    line_a = np.zeros((30, 120), bool)
    line_a[10:20, 20:100] = rng.random((10, 80)) < 0.5
    line_b = np.zeros((30, 120), bool)
    line_b[10:20, 20:100] = rng.random((10, 80)) < 0.5
    faded = line_a & (rng.random(line_a.shape) < 0.4)  # a fade keeps part of the strokes
    noisy = line_a ^ (rng.random(line_a.shape) < 0.03)
    assert new_line(line_a, line_b, settings)
    assert new_line(line_a | line_b, line_b, settings) or new_line(line_a, line_b, settings)
    assert not new_line(faded, line_a, settings) and not new_line(line_a, faded, settings)
    assert not new_line(line_a, noisy, settings)
    one_char = line_a.copy()
    one_char[10:20, 60:70] = ~line_a[10:20, 60:70] | (rng.random((10, 10)) < 0.2)  # "Gate 4" -> "Gate 5"
    assert new_line(line_a, one_char, settings)


def test_an_apostrophe_small_text_drops_in_half_its_reads_is_kept():
    """The 20 px footage line "I've missed the last bus": PP-OCRv4 read the apostrophe in 3 of 6 frames
    (the longer-shown ones without it); letters and word edges are voted by the majority as before."""
    reads = [
        ("Ive missed the lastbus", 0.47),
        ("I've missed the last bus", 0.19),
        ("Ive missed the lastbus", 0.19),
        ("I've missed the last bus", 0.1),
        ("Ive missed the last bus", 0.29),
        ("I've missed the last bus", 0.29),
    ]
    assert vote_text(reads) == "I've missed the last bus"
    assert vote_text([("I've missed", 0.2), ("Ive missed", 1.0)]) == "Ive missed"  # one stray read
    assert vote_text([("'Ive' missed", 1.0), ("Ive missed", 2.0)]) == "Ive missed"  # quotes at edges
    assert vote_text([("xyzw qq", 0.7), ("x'zw qq", 0.3)]) == "xyzw qq"  # a letter the majority read stays


def test_chinese_with_english_words_is_told_chinese():
    """The corpus's reading (Chinese lines with English ones and words) counted Han characters against
    Latin letters and came out English; in a loaded full suite OSD then called it Cyrillic and the run read
    nothing. A Han character weighs as much as a Latin word."""
    from stages.subtitles.script import han_share

    mixed = "今天我们去北京 Hello world, this is a test 第一行字幕 Second line here Mixed 中英文 subtitles"
    assert han_share(mixed) >= 0.5
    assert han_share("The quick brown fox jumps over the lazy dog 中") < 0.2  # a stray glyph is no Chinese
    assert han_share("これはペンです") == 1.0 and han_share("") == 0.0


def test_lines_all_over_the_frame_are_read_whole_a_band_with_a_face_or_a_title_is_not():
    """The meme edit's samples (720x734): captions under pictures left, right, top and middle, as many
    outside the band as in it; a drama's band with a face box (square) and one title outside it is a band."""
    band = Band(0, 488, 720, 630)
    meme = [[], [(65, 305, 273, 352)], [(55, 285, 332, 329)], [(300, 540, 420, 580)], [(62, 665, 135, 709)]]
    meme += [[(432, 405, 702, 444)], [(458, 398, 631, 443), (280, 500, 440, 540)], [(325, 96, 482, 187)]]
    assert scattered(meme, band, 734, AreaSettings())
    drama = [[(200, 540, 520, 580)]] * 8 + [
        [(181, 408, 318, 565)],
        [(250, 40, 470, 80)],
        [(181, 408, 318, 565)],
    ]
    assert not scattered(drama, band, 734, AreaSettings())


def test_lines_read_over_the_whole_frame_are_events_per_position():
    """Two captions at once at two places end at their own times; a caption that changes in place is a
    new event; one glyph read in a picture is none; a row read twice at once (a zoom) is said once."""
    left, right, zoomed = (40, 300, 260, 330), (420, 100, 680, 130), (44, 340, 262, 372)
    shown = [
        [("那是", left), ("糟糕是棣棣", right)],
        [("那是", left), ("糟糕是棣棣", right), ("T", (600, 600, 620, 630))],
        [("那是", left), ("糟糕是棣棣", right), ("那是", zoomed)],
        [("糟糕是棣棣", right)],
        [("我必须让他死心", left)],
        [("我必须让他死心", left)],
    ]
    frames = [
        FrameText(i, i * 0.5, i * 0.5 + 0.5, tuple(line(t, *box) for t, box in rows), line=i)
        for i, rows in enumerate(shown)
    ]
    events = events_by_position(frames, PostprocessSettings(spacing="none"))
    assert [(e.text, e.start, e.end) for e in events] == [
        ("那是", 0.0, 1.5),
        ("糟糕是棣棣", 0.0, 2.0),
        ("我必须让他死心", 2.0, 3.0),
    ]
    assert [e.index for e in events] == [1, 2, 3]


def test_pale_strokes_that_thin_where_the_line_was_stay_that_line():
    rng = np.random.default_rng(1)
    line_a = np.zeros((30, 120), bool)
    line_a[10:20, 20:100] = rng.random((10, 80)) < 0.05
    cells = np.argwhere(line_a)
    pale = np.zeros_like(line_a)
    pale[tuple(cells[:2].T)] = True  # two of the line's cells left: under min_text_cells
    elsewhere = np.zeros_like(line_a)
    elsewhere[2, 5] = True
    assert thinned(line_a, pale)
    assert not thinned(line_a, elsewhere) and not thinned(line_a, np.zeros_like(line_a))


def test_a_chinese_closing_ellipsis_read_as_dots_or_letters_is_written_as_such():
    assert chinese_ellipsis("这是她真心的么ooo ooo") == "这是她真心的么……"
    assert chinese_ellipsis("撸思她…") == "撸思她……" and chinese_ellipsis("好的。。。") == "好的……"
    assert chinese_ellipsis("Hello ooo") == "Hello ooo" and chinese_ellipsis("Wait...") == "Wait..."
    assert chinese_ellipsis("对。") == "对。"


def test_a_look_alike_traditional_glyph_is_simplified_where_simplified_chinese_was_read():
    frames = [frame(0, 0.0, 1.0, "不准再看別人")]
    simplified = PostprocessSettings(spacing="none", simplified=True)
    assert [e.text for e in frames_to_events(frames, simplified)] == ["不准再看别人"]
    assert [e.text for e in frames_to_events(frames, PostprocessSettings(spacing="none"))] == ["不准再看別人"]


def test_ocr_batches_run_on_the_engine_thread_whichever_task_thread_asks(tmp_path, monkeypatch):
    """Each OCR batch is a task run on a thread of its own: the engine is called on one thread of its own, so
    a batch's detector tensors (~0.4 GB) are freed where the next batch takes them again (one malloc arena)
    instead of staying in each task thread's arena (3.7 GB at 10 minutes of 720p) or being handed back and
    faulted in again after every batch (~17 CPU s per 10 minutes)."""
    import threading

    from core.schema import Keyframe, KeyframeSet
    from stages.subtitles.ocr import OcrSettings, load_ocr_engine, ocr_task
    from stages.subtitles.stitch import batch_keyframes, stitch_keyframes

    frames = []
    for i, text in enumerate(["HELLO", "WORLD"]):
        path = tmp_path / f"crop_{i}.png"
        cv2.imwrite(str(path), outlined_text(text))
        frames.append(Keyframe(index=i, start=float(i), end=i + 1.0, image_path=path, line=i))
    keyframes = KeyframeSet(tmp_path / "v.mp4", Band(0, 0, 640, 120), 10.0, 2.0, tuple(frames), 20)
    batches = stitch_keyframes(keyframes, tmp_path, max_height=200)
    assert len(batches) == 2
    settings = OcrSettings(lang="en")
    engine = load_ocr_engine(settings)
    callers, readers = set(), set()
    read = engine.read
    monkeypatch.setattr(engine, "read", lambda image: readers.add(threading.get_ident()) or read(image))
    texts: list[str] = []

    def run(number: int) -> None:  # as Prefect runs two mapped task runs: on two live threads at once
        callers.add(threading.get_ident())
        batch = batches[number - 1]
        texts.extend(t.text for t in ocr_task.fn(batch, batch_keyframes(keyframes, batch), settings, number))

    threads = [threading.Thread(target=run, args=(number,)) for number in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(texts) == ["HELLO", "WORLD"]
    assert len(callers) == 2 and len(readers) == 1 and not readers & callers, (callers, readers)


def test_the_first_window_is_short_and_the_windows_cover_the_video():
    """Reading starts after the first 15 s decode (the rest decodes meanwhile); later windows keep the
    user's length (bounded temporary disk); a clip under 20 s is one window."""
    from stages.subtitles.keyframes import video_windows

    assert video_windows(10.0, 300.0) == [(0.0, 10.0)]
    assert video_windows(20.0, 300.0) == [(0.0, 20.0)]
    assert video_windows(60.0, 300.0) == [(0.0, 15.0), (15.0, 60.0)]
    assert video_windows(600.0, 300.0) == [(0.0, 15.0), (15.0, 315.0), (315.0, 600.0)]
    assert video_windows(60.0, 9.0)[:2] == [(0.0, 9.0), (9.0, 18.0)], "never longer than the user's window"
    for duration in (20.5, 47.1, 315.4, 3600.0):
        windows = video_windows(duration, 300.0)
        assert windows[0][0] == 0.0 and windows[-1][1] == duration
        assert all(a[1] == b[0] for a, b in zip(windows, windows[1:], strict=False)), "contiguous"
        assert all(end - start <= 300.0 + 1.0 for start, end in windows)


def test_the_ocr_sessions_keep_their_memory_arena_and_read_as_the_librarys_own(monkeypatch, caplog):
    """rapidocr builds its onnxruntime sessions with the memory arena off: every run allocated and freed its
    tensors anew, 10-18% of a detection's CPU. The engine's sessions share the process's arena (one per
    session held 1.9 GB for three engines), keep their one thread, and read what the library's own sessions
    read (the same boxes, texts and scores). Each session is built once, on the arena, not built by the
    library and again by us (~90 ms of a ~200 ms load), and the library's own options are left as found.
    A GPU slot's engine where onnxruntime has no CUDA gets the same CPU sessions: it had onnxruntime's
    default threads (all cores, spinning: 1.8x the CPU of one thread beside two busy processes) and rapidocr
    logged 16 records of advice on installing onnxruntime-gpu at each load (8 a session, printed twice)."""
    import contextlib

    import onnxruntime as ort
    import rapidocr_onnxruntime.utils.infer_engine as rapid_sessions

    import stages.subtitles.ppocr as ppocr
    from stages.subtitles.ocr import OcrSettings, RapidOcrEngine

    built = []  # every session made, by the library (its module's name) or by onnxruntime's
    session_class = ort.InferenceSession

    def counted(*args, **kwargs):
        built.append(args)
        return session_class(*args, **kwargs)

    monkeypatch.setattr(rapid_sessions, "InferenceSession", counted)
    monkeypatch.setattr(ort, "InferenceSession", counted)
    engine = RapidOcrEngine(OcrSettings(lang="en"))
    assert len(built) == 2, "the detector's and the recogniser's sessions, once each"
    assert not rapid_sessions.OrtInferSession._init_sess_opts({}).enable_cpu_mem_arena, "the library's again"
    # a GPU slot's engine asks for CUDA; the onnxruntime we install has no CUDA provider: CPU sessions
    on_gpu = RapidOcrEngine(OcrSettings(lang="en", device="cuda:0"))
    assert not [r.getMessage() for r in caplog.records if r.name == "OrtInferSession"]
    assert on_gpu._ocr.text_det.infer.session.get_providers() == ["CPUExecutionProvider"]
    for built_engine in (engine, on_gpu):
        for session in (built_engine._ocr.text_det.infer.session, built_engine._ocr.text_rec.session.session):
            options = session.get_session_options()
            assert options.enable_cpu_mem_arena
            assert options.get_session_config_entry("session.use_env_allocators") == "1"  # one arena for all
            assert options.intra_op_num_threads == 1  # the settings' one thread, a GPU slot's too
    monkeypatch.setattr(ppocr, "_sessions_on_shared_arena", contextlib.nullcontext)
    library = RapidOcrEngine(OcrSettings(lang="en"))
    assert not library._ocr.text_det.infer.session.get_session_options().enable_cpu_mem_arena
    image = np.vstack([outlined_text("Gate 5 closes"), outlined_text("at noon", x=160)])
    lines = engine.read(image)
    assert sorted(line.text for line in lines) == ["Gate 5 closes", "at noon"], lines
    assert lines == library.read(image)
