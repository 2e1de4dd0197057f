"""Subtitles in the languages users bring (issue 22): the flow, language auto, on real footage with
libass-burned subtitles per language (samples/footage_languages.py), scored like a user; a script no model
reads is named.

Every supported language is held to the issue's target (CER <= 3%, recall >= 95%). Arabic reached it once
Tesseract's edge bars were stripped ("| أين المحطة": 5.7% -> 2.9% CER, one yeh read as beh left); Greek and
Thai once their reader kept only the shapes a dark outline rings (sunlit grass between the letters was read
as marks: "Τα λεμε αυριοκο πρωί") and read each row at three heights, the letters most agree on kept (el
4.8% -> 0%, th 15.6% -> 0%, "ปขขบคุณมาค" for "ขอบคุณมาก"). The corpus is rendered once per session
(media_dir). Measured with language auto: CER 0% ja, ko, ru, fr, de, vi, zh-Hant, hi, he, el, th; 1.5% es;
2.9% ar; 3.0% uk (one reader, rus+ukr; main read it so too); recall 100% each. A host without a script's
pack names the script and reads nothing.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from core.errors import ConfigError, MediaInputError
from core.models import LOAD_COUNTS, evict, evict_keys, resident_keys
from flows.subtitles import extract_subtitles
from samples.footage import render_case
from samples.footage_languages import LANGUAGE_CASES, language_case
from samples.frames import frames_at
from samples.realvideo import REALVIDEO_MISSING, realvideo_available
from samples.scoring import score_subtitles
from stages.subtitles.languages import LANGUAGE_CHOICES, LANGUAGES, SCRIPT_LANGUAGE, language, spacing_of
from stages.subtitles.ocr import OcrSettings, respaces
from stages.subtitles.spacing import space_words
from stages.subtitles.tesseract import LOADS

TARGET_CER, TARGET_RECALL = 0.03, 0.95
SUPPORTED = [c.lang for c in LANGUAGE_CASES if c.supported]


@pytest.fixture(scope="module")
def language_runs(prefect_server, media_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("languages-out")
    return {"out": out, "media": media_dir / "footage-languages", "results": {}, "texts": {}}


# The runs whose every engine load is counted (test_a_video_in_one_language_loads_one_recogniser): no model
# resident before them. The others start with the probe engine (PP-OCRv6) left resident, Tesseract readers
# evicted: what they prove is which readers a run loads and keeps, and a PP-OCRv6 load a run costs ~1 s
ENGINE_LOADS_COUNTED = ("ko", "ru", "uk")


def _run(runs, lang: str):
    """The case's run (once a module): its score, the language chosen and the models its run loaded (no
    reader resident before it): OCR engines by recogniser, Tesseract instances by language."""
    if lang not in runs["results"]:
        case = language_case(lang).case
        video = render_case(case, runs["media"])
        if lang in ENGINE_LOADS_COUNTED:
            evict()
        evict_keys(k for k in resident_keys() if dict(k.options).get("lang", "").startswith("tesseract:"))
        engines, tesseract = Counter(LOAD_COUNTS), Counter(LOADS)
        result = extract_subtitles(str(video), str(runs["out"]))
        loads = {
            "engines": {dict(k.options)["lang"]: n for k, n in (LOAD_COUNTS - engines).items()},
            "tesseract": dict(LOADS - tesseract),
            "resident": _resident_readers(),
        }
        score = score_subtitles(case.truth(), list(result.events))
        chosen = json.loads((result.srt_path.parent / "manifest.json").read_text())["lang"]
        print(f"{case.name:<20} chose {chosen}: {score.line()}  {[e.text for e in result.events]}  {loads}")
        runs["results"][lang] = (score, chosen, loads)
        runs["texts"][lang] = [e.text for e in result.events]
    return runs["results"][lang]


def _resident_readers() -> set[str]:
    """The Tesseract languages of the resident OCR engines."""
    langs = {dict(k.options).get("lang", "") for k in resident_keys() if k.capability == "ocr"}
    return {lang.removeprefix("tesseract:") for lang in langs if lang.startswith("tesseract:")}


@pytest.mark.slow
@pytest.mark.parametrize("lang", SUPPORTED)
def test_each_language_is_read_with_language_auto(language_runs, lang):
    score, chosen, loads = _run(language_runs, lang)
    assert language(chosen).recogniser == language(lang).recogniser, chosen  # the detector's choice
    rec = language(chosen).recogniser
    reads = {rec.model} if rec.engine == "tesseract" else set()
    assert set(loads["tesseract"]) - {"osd"} == reads, loads  # no reader loaded to look only
    assert set(loads["tesseract"].values()) <= {1}, loads  # nor twice
    assert loads["resident"] == reads, loads  # a reader tried and not chosen holds no resident slot
    assert score.cer <= TARGET_CER and score.recall >= TARGET_RECALL, score.line()


@pytest.mark.slow
@pytest.mark.parametrize("lang", ENGINE_LOADS_COUNTED)
def test_a_video_in_one_language_loads_one_recogniser(language_runs, lang):
    """Language auto: the PP-OCRv6 engine (it finds the band and probes the script), OSD, and the one
    reader that tells the language and then reads the video. Before, the Korean case loaded osd, ara and
    kor twice (scored, then read), the Russian one rus twice and ukr+rus, the Ukrainian one rus, then ukr."""
    _, _, loads = _run(language_runs, lang)
    reader = language(lang).recogniser.model
    assert loads["engines"] == {"ppocr:pp-ocrv6-small": 1, f"tesseract:{reader}": 1}, loads
    assert loads["tesseract"] == {"osd": 1, reader: 1}, loads


@pytest.mark.slow
def test_words_the_tight_crop_glued_are_spaced(language_runs):
    """The detector's tight box around "Wir sehen uns" reads "Wirsehen uns" (CER 0: spaces are not scored);
    the OCR stage reads Latin lines with spaces again with a margin and takes its spaces, not its letters."""
    _run(language_runs, "de")
    assert "Wir sehen uns" in language_runs["texts"]["de"], language_runs["texts"]["de"]


@pytest.mark.slow
def test_a_script_no_model_reads_is_named_and_not_read(language_runs, tmp_path, monkeypatch):
    """Thai on a host without its pack (Debian's tessdata, tesseract-ocr-tha left out): the run stops before
    OCR with one line naming the script and the package to install, and reads no look-alikes. No other
    script makes this case: OSD names Georgian, Armenian, Khmer and Tamil rows as other scripts (Telugu,
    Arabic, Katakana, Malayalam), and the flow refuses them without a name (only Bengali is named, and it
    has no reader to install), so the pack is what is taken away."""
    from core.caching import CACHE_ENV
    from core.packaged_models import TESSDATA_ENV, tessdata_dir

    thai = language("th")
    for data in tessdata_dir().glob("*.traineddata"):
        if data.stem != thai.recogniser.model:
            (tmp_path / data.name).symlink_to(data)
    monkeypatch.setenv(TESSDATA_ENV, str(tmp_path))
    monkeypatch.setenv(CACHE_ENV, "0")  # the language stage ran on this video with the pack
    case = language_case("th").case
    video = render_case(case, language_runs["media"])
    evict()
    with pytest.raises(MediaInputError) as refused:
        extract_subtitles(str(video), str(tmp_path / "out"))
    assert not _resident_readers(), "the readers tried (kor, rus, ara) are not kept"
    message = str(refused.value)
    assert "look like Thai script" in message and "no installed model reads it" in message
    assert f"apt-get install {thai.debian}" in message and "\n" not in message, message
    assert not list((tmp_path / "out").glob(f"subtitles/{case.name}-*")), "partial output left behind"


def _choice(runs, lang: str, lines: int, at: tuple[float, ...], skip: int = 0, top: float = 0.0):
    """The language stage's choice (stage function level, no flow run) on the rows of the case's first
    `lines` subtitles after `skip`, a frame at each share `at` of each one's time on screen, the `top` share
    of each frame left out; and the number of rows."""
    from stages.subtitles.script import choose_language, subtitle_rows

    case = language_case(lang).case
    frames = frames_at(render_case(case, runs["media"]), case.events[skip : skip + lines], at)
    frames = [frame[round(top * frame.shape[0]) :] for frame in frames]
    settings = OcrSettings(lang="auto")
    rows = subtitle_rows(frames, settings)
    return choose_language(rows, settings), len(rows)


@pytest.mark.slow
def test_frames_read_on_are_the_frames_a_seek_lands_on(language_runs):
    """frames_at reads on to a point a few seconds ahead rather than seek to it (a seek decodes again from
    the last keyframe: 2.0 CPU s for the 12 frames of `_choice`'s four lines, 0.3 s read on): the frames
    are those a seek to each point reads, ahead, back and on again."""
    import cv2

    case = language_case("he").case
    video = render_case(case, language_runs["media"])
    spans, at = [case.events[1], case.events[0], case.events[1], case.events[2]], (0.2, 0.8)
    capture, sought = cv2.VideoCapture(str(video)), []
    for span in spans:
        for point in at:
            capture.set(cv2.CAP_PROP_POS_MSEC, 1000 * (span.start + point * (span.end - span.start)))
            sought.append(capture.read()[1])
    read = frames_at(video, spans, at)
    assert len(read) == len(sought) == 8 and all((a == b).all() for a, b in zip(read, sought, strict=True))


@pytest.mark.slow
def test_one_hebrew_line_is_read_as_hebrew_not_thai(language_runs):
    """The rows of one Hebrew line ("שלום חברים", three frames): OSD calls them Thai stacked on one page
    (refused as Thai before the last stop), Hebrew in most rows alone: the Hebrew reader reads them (main
    refused them, no reader installed)."""
    choice, rows = _choice(language_runs, "he", 1, (0.25, 0.5, 0.75))
    assert rows == 3, rows
    assert choice.supported and choice.lang == "he" and not choice.doubt, choice.reason


@pytest.mark.slow
@pytest.mark.parametrize(("lang", "line"), [("el", 0), ("he", 1), ("hi", 1), ("hi", 0), ("hi", 3)])
def test_one_line_in_two_frames_is_read_by_its_reader_not_in_doubt(language_runs, lang, line):
    """Two rows (one line at 0.2 and 0.8 of its time), look-alike glyphs or headlines in both: too few rows
    to refuse on (MIN_ROWS), and the choice was kept in doubt, the video read as ch junk; its reader is now
    tried and chosen where it reads them (READS). Hindi lines OSD called Hebrew (line 0) or Japanese sideways
    (line 3) try the Hindi reader on their headlines in every row (none of 184 real Chinese row sets has
    them in every row). Of 110 one-line sets (2 or 3 frames) of the 14 supported cases (bench/ocr_languages.py
    --lines), 93 are read in their language and 8 in doubt (78 and 14 before, and 9 of ar, el, he, hi, th
    refused by a rule on sharp outlines, gone since)."""
    choice, rows = _choice(language_runs, lang, 1, (0.2, 0.8), skip=line)
    assert rows == 2, rows
    assert choice.supported and choice.lang == lang and not choice.doubt, choice.reason


@pytest.mark.slow
def test_one_thai_line_is_read_as_thai_not_english(language_runs):
    """The rows of one Thai line ("สวัสดีครับ", three frames), as a short clip gives: PP-OCRv6 reads
    "abansu" at 0.80, OSD says Hebrew (Latin upright at 0.2/0.5/0.8 of its time, chosen en at 0.86), and the
    Hebrew reader failing, the rows were refused. Look-alike glyphs in every row that nothing else reads try
    the Thai reader last: it reads them (0.94). Each line of the Thai case so taken, at four sets of times:
    th 12 of 12 (th 5, en 2, refused as Hebrew 2, in doubt 3 before)."""
    choice, rows = _choice(language_runs, "th", 1, (0.25, 0.5, 0.75))
    assert rows == 3, rows
    assert choice.supported and choice.lang == "th" and not choice.doubt, choice.reason


# Scripts OSD names (osd.traineddata) that a refusal could misname an unreadable script as
OSD_SCRIPTS = {*SCRIPT_LANGUAGE, *"Telugu Malayalam Kannada Fraktur Bengali Georgian Armenian".split()}
OSD_SCRIPTS |= {*"Khmer Ethiopic Tamil Gujarati Gurmukhi Myanmar Sinhala".split()}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("lang", "named"),
    [("ka", None), ("hy", None), ("km", None), ("am", None), ("bn", "Bengali"), ("ta", None)],
)
def test_a_script_no_model_reads_is_refused_in_one_line_not_named_as_another(language_runs, lang, named):
    """Georgian, Armenian, Khmer, Ethiopic, Bengali and Tamil rows (12, four lines): refused with one line
    that says no installed model reads them, naming the script only where OSD names it on the page and in
    the rows (Bengali; its headlines are the evidence), never another script. Main refused Georgian as
    "Telugu" (OSD's name for 3 rows of 12) and Ethiopic as Devanagari (the Hindi reader read 0.03), and
    read Armenian, Khmer and Bengali in doubt as ch (look-alike Latin in 5-12 rows, read at 0.63-0.66);
    Tamil, which OSD calls Latin at 90 degrees, by the stray ASCII letters the probe reads in 4 rows of 12
    (script_text.lettered_rows; a rule on its sharp outlined glyphs did it before, and is gone)."""
    choice, rows = _choice(language_runs, lang, 4, (0.2, 0.5, 0.8))
    assert rows == 12, rows
    assert not choice.supported, choice.reason
    _assert_refused_by_name(str(choice.refuse("video.mp4")), named)


@pytest.mark.slow
def test_armenian_rows_the_thai_reader_reads_at_0_8_are_not_read_as_thai(language_runs):
    """The Armenian case's rows from frames cut below their top 30% (a band crop moves the detector's rows
    by a few pixels): look-alike glyphs that OSD calls Thai row by row, and the Thai reader reads them at
    0.81. Chosen Thai at READS (0.7) before, as were 3 of 5 such cuts (whole, 30%, 50%, 55%, 70%) and one
    Hebrew line's rows read at 0.71; OSD's word now needs the reading a look-alike script needs
    (LOOK_ALIKE_READS, real Thai 0.92-0.94): refused, as the whole frames are. Lao rows the Thai reader
    reads at 0.88 are not told apart so (2 of 5 cuts chosen Thai; the flow refuses the Lao case on its
    stray ASCII letters)."""
    choice, rows = _choice(language_runs, "hy", 4, (0.2, 0.5, 0.8), top=0.3)
    assert rows == 12, rows
    assert not choice.supported, choice.reason
    _assert_refused_by_name(str(choice.refuse("video.mp4")), None)


@pytest.mark.slow
def test_tamil_rows_cut_below_60_percent_are_refused_not_read_in_doubt(language_runs):
    """The Tamil case's rows from frames cut below their top 60% (bench/ocr_languages.py --cuts): the probe
    reads 6 of the 12 rows as nothing, 3 as "?", one as "66", 2 as stray Latin letters ("GTMT母GSLCLIT"), and
    OSD says Han upside down. Read in doubt as ch before (junk with a warning), the stray letters counted
    against all 12 rows (4 needed); now against the rows the probe reads (2 of 6, STRAY_ROWS), refused as at
    50% and 70%."""
    choice, rows = _choice(language_runs, "ta", 4, (0.2, 0.5, 0.8), top=0.6)
    assert rows == 12, rows
    assert not choice.supported, choice.reason
    _assert_refused_by_name(str(choice.refuse("video.mp4")), None)


def _assert_refused_by_name(message: str, named: str | None) -> None:
    """One line saying no installed model reads the subtitles, naming `named` and no other script."""
    said = {name for name in OSD_SCRIPTS if f"{name} " in message or f"({name})" in message}
    if named is None:
        assert "a script no installed model reads" in message and not said, message
    else:
        assert f"look like {named} script" in message and said == {named}, message
    assert "\n" not in message, message


@pytest.mark.slow
@pytest.mark.parametrize(
    ("lang", "named"),
    [("ka", None), ("km", None), ("bn", "Bengali"), ("am", None), ("si", None), ("te", "Telugu")],
)
def test_the_flow_refuses_a_script_no_model_reads_before_any_ocr(language_runs, tmp_path, lang, named):
    """The whole flow, language auto, on the Georgian, Khmer, Bengali, Ethiopic, Sinhala and Telugu cases:
    the language stage judges the rows of the first stitched batches (5-11 rows), fewer than the stage
    test's 12. Before, Georgian was refused as Kannada (OSD's page at confidence 0 and 2 rows of 8) and Khmer
    read as Thai (the Thai reader at 0.60: "ชรค..." for every line, CER 100%); Ethiopic, Sinhala and Telugu
    were read in doubt as ch (one event of junk, "mnSO+10?" and "seg"; none), OSD calling them Devanagari,
    Latin upside down and Telugu with too few look-alike rows; the probe reads stray Latin letters in 3-7 of
    their rows, in at most one of each real Chinese row set in doubt. Nothing is left in the output folder."""
    case = language_case(lang).case
    with pytest.raises(MediaInputError) as refused:
        extract_subtitles(str(render_case(case, language_runs["media"])), str(tmp_path / "out"))
    _assert_refused_by_name(str(refused.value), named)
    assert not list((tmp_path / "out").glob(f"subtitles/{case.name}-*")), "partial output left behind"


def test_word_spaces_follow_the_language():
    assert space_words("Riders gatheratthe start line", spacing_of("en")) == "Riders gather at the start line"
    french = "Où est la bibliothèque ? Il a mangé une crêpe"
    assert space_words(french, spacing_of("fr")) == french  # no English splitting, accents kept
    assert space_words("今日は いい 天気", spacing_of("ja")) == "今日はいい天気"
    assert space_words("歡迎來到臺灣 Taipei", spacing_of("zh")) == "歡迎來到臺灣 Taipei"
    assert spacing_of("auto") == "english"  # today's default reader (Chinese with English) keeps the repair
    respaced = [code for code in LANGUAGE_CHOICES if respaces(OcrSettings(lang=code))]
    assert respaced == ["latin", "fr", "es", "de", "it", "pt"]  # PP-OCR, spaced, no English repair


def test_every_language_names_its_reader_and_unknown_codes_fail_once():
    for code, spec in LANGUAGES.items():
        assert spec.code == code and spec.spaces in ("english", "keep", "none")
        if spec.recogniser.engine == "tesseract":
            assert spec.debian.startswith("tesseract-ocr-"), code
    assert language("ja").recogniser.model == "pp-ocrv6-small"
    with pytest.raises(ConfigError, match="unknown subtitle language 'xx'"):
        OcrSettings(lang="xx")


def test_packaged_recogniser_and_tesseract_data_are_installed():
    from core.packaged_models import ocr_model_file, tesseract_languages

    assert ocr_model_file("pp-ocrv6-small").stat().st_size > 10_000_000
    installed = tesseract_languages()
    wanted = {spec.recogniser.model for c in SUPPORTED for spec in [language(c)]}
    assert {"osd"} | {m for m in wanted if m.isalpha() and not m.startswith("pp")} <= installed, installed


def test_greek_readings_are_monotonic():
    """tesseract-ocr-ell holds polytonic letters and read the Greek case's tonos as a breathing or a
    circumflex ("Τα λέμε αὐριο", "Πού εἶναι"); modern Greek subtitles carry one tonos, a diaeresis kept, and
    mu where it reads the micro sign ("φίλοι µου")."""
    from stages.subtitles.tesseract import monotonic

    assert monotonic("Τα λέμε αὐριο το πρωί") == "Τα λέμε αύριο το πρωί"
    assert monotonic("Πού εἶναι ο σταθμός;") == "Πού είναι ο σταθμός;"
    assert monotonic("Καλημέρα, προϊόν, ΐ") == "Καλημέρα, προϊόν, ΐ"
    assert monotonic("Καλημέρα φίλοι \u00b5ου") == "Καλημέρα φίλοι μου"


@pytest.mark.slow
@pytest.mark.skipif(not realvideo_available(), reason=REALVIDEO_MISSING)
def test_rows_nothing_reads_try_no_reader_the_evidence_does_not_name():
    """A real drama's rows blurred so that nothing reads them (OSD named Devanagari or Fraktur on such
    rows): the Hindi, Hebrew, Greek and Thai readers are tried only where the probe's evidence names their
    script (script.ON_EVIDENCE), so such clips load none of them; the readers tried in turn before them
    (kor, rus+ukr, ara) are as before. Where they were tried in that turn too, this clip loaded hin, heb and
    ell for nothing."""
    from samples.damaged_rows import DAMAGES, frames_at_cues
    from stages.subtitles.script import ON_EVIDENCE, choose_language, subtitle_rows

    settings = OcrSettings(lang="auto")
    rows = subtitle_rows(frames_at_cues("douyin_7625261726909372089_zh", slice(6), (0.5,)), settings)
    evict()  # a reader resident from an earlier test would be tried without a load
    before = Counter(LOADS)
    choice = choose_language([DAMAGES["blurred"](row) for row in rows], settings)
    assert choice.supported and choice.doubt, choice.reason
    on_evidence = {
        language(code).recogniser.model for code, s in LANGUAGES.items() if s.script in ON_EVIDENCE
    }
    assert not set(LOADS - before) & on_evidence, dict(LOADS - before)


@pytest.mark.slow
@pytest.mark.skipif(not realvideo_available(), reason=REALVIDEO_MISSING)
def test_crushed_chinese_rows_called_latin_upside_down_are_not_chosen_as_english():
    """A real drama's first key lines JPEG-crushed (bench/realvideo.py --damaged, the one set of 184 chosen
    en): OSD called them Latin at 180 degrees and main chose English; subtitle rows are upright, so that is
    no word for Latin: read in doubt with the default reader (the same model: the text alike)."""
    from samples.damaged_rows import DAMAGES, frames_at_cues
    from stages.subtitles.script import choose_language, subtitle_rows

    settings = OcrSettings(lang="auto")
    frames = frames_at_cues("douyin_7625472985927237489_zh", slice(0, 3), (0.3, 0.7))
    rows = subtitle_rows(frames, settings)
    choice = choose_language([DAMAGES["crushed"](row) for row in rows], settings)
    assert choice.supported and choice.doubt and choice.lang == "ch", choice.reason
