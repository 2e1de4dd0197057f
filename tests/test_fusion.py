"""Burned-in subtitles and speech fused (issue 28), on real footage with libass-burned subtitles and real
recorded speech of the same lines (samples/fusion_material.py): the fused file reads better than either
source, its lines start with the spoken word, and every place where the sources differ is listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from core.schema import SubtitleEvent
from flows.fuse import fuse_subtitles
from runtime.naming import artifact_key
from samples import fusion_material as material
from samples.scoring import score_subtitles
from stages.fusion.settle import normalise

pytestmark = pytest.mark.skipif(
    not material.available(), reason=f"real speech folder {material.speech_root()} is absent"
)
SAME = next(c for c in material.FUSION_CASES if c.name == "street_en_fused")


@pytest.fixture(scope="module")
def fused_run(prefect_server, media_dir, tmp_path_factory):
    video, truth = material.render_fusion_case(SAME, media_dir / "fusion")
    out = fuse_subtitles(str(video), str(tmp_path_factory.mktemp("fused")))
    return video, truth, out


def _voice_lines(truth):
    return [t for t in truth if t.shown is not None and t.voice_start is not None]


def _matching(lines, start: float, end: float):
    return max(lines, key=lambda line: min(end, line.end) - max(start, line.start))


def test_fused_cer_is_below_both_sources(fused_run):
    _, truth, out = fused_run
    fused = score_subtitles(truth, list(out.result.lines))
    ocr = score_subtitles(truth, list(out.subtitles.events))
    speech = score_subtitles(truth, list(out.speech.transcript.segments))
    figures = f"fused {fused.line()}\nOCR {ocr.line()}\nspeech {speech.line()}"
    assert fused.cer < ocr.cer and fused.cer < speech.cer, figures
    assert fused.recall == 1.0, figures  # the sign and the unsubtitled speech are lines too


def test_lines_start_with_the_spoken_word(fused_run):
    _, truth, out = fused_run
    both = [line for line in out.result.lines if line.source == "both"]
    for t in _voice_lines(truth):
        line = _matching(both, t.voice_start, t.voice_end)
        assert abs(line.start - t.voice_start) <= 0.1 + 1e-9, (t, line)
        if t.kind == "late":  # held 1.2 s after the last word: the fused line ends with the speech
            assert abs(line.end - t.voice_end) <= 0.3, (t, line)


def test_shown_early_and_held_late_are_reported_not_hidden(fused_run):
    _, truth, out = fused_run
    for kind, flag in (("early", "shown early"), ("late", "held late")):
        t = next(t for t in truth if t.kind == kind)
        line = _matching(out.result.lines, t.voice_start, t.voice_end)
        assert flag in line.timing and line.shown_start == pytest.approx(t.start, abs=0.1), line
    plain = [t for t in truth if t.kind == "plain"]
    assert not any(_matching(out.result.lines, t.start, t.end).timing for t in plain)


def test_sign_and_unsubtitled_speech_are_marked(fused_run):
    _, truth, out = fused_run
    doc = json.loads(out.json_path.read_text(encoding="utf-8"))
    sign = next(t for t in truth if t.kind == "sign")
    spoken = next(t for t in truth if t.kind == "unsubtitled")
    shown_only = [line for line in doc["lines"] if line["source"] == "subtitle_only"]
    said_only = [line for line in doc["lines"] if line["source"] == "speech_only"]
    detail = (sign, [(line["start"], line["text"]) for line in doc["lines"]], out.subtitles.events)
    assert [normalise(line["text"]).replace(" ", "") for line in shown_only] == ["threedayslater"], detail
    assert len(said_only) == 1 and normalise(said_only[0]["text"]) == normalise(spoken.spoken), detail
    assert said_only[0]["speech_start"] == pytest.approx(spoken.voice_start, abs=0.1)


def test_names_and_numbers_stay_as_shown(fused_run):
    """The speech heard 'Phil' as 'sir', 'Steels' as 'steals' and 'twentieth' as '20th': the pixels win."""
    _, _, out = fused_run
    text = " ".join(line.text for line in out.result.lines)
    assert "Phil." in text and "Steels" in text and "twentieth" in text, text


def test_every_disagreement_is_in_the_table_artifact(fused_run):
    video, truth, out = fused_run
    with get_client(sync_client=True) as client:
        key = artifact_key("fuse-disagreements", video.name)
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    rows = json.loads(found[0].data) if isinstance(found[0].data, str) else found[0].data
    listed = {(r["subtitle"], r["speech"]) for r in rows}
    for line in out.result.lines:
        differs = normalise(line.ocr_text or "") != normalise(line.speech_text or "")
        if differs or line.timing or line.reads:
            assert (line.ocr_text or "", line.speech_text or "") in listed, line
    kinds = " ".join(r["why"] for r in rows)
    for expected in ("shown early", "held late", "subtitle only", "speech only", "OCR read it"):
        assert expected in kinds, rows
    hard = [t for t in truth if t.kind == "hard"]
    assert all(any(normalise(t.spoken) == normalise(r["speech"]) for r in rows) for t in hard[1:]), rows


def test_fragments_and_pieces_are_one_line_in_displayed_words():
    """Pieces of one faint line (real OCR reads of the material) become one line; a name read in pieces is
    glued with the pixels' letters."""
    from core.schema import SpeechSegment, SpeechWord, Transcript
    from stages.fusion.fuse import fuse

    said = "Not at this particular case, Tom apologizes to Whitmore.".split()
    words = tuple(SpeechWord(5.2 + 0.4 * i, 5.5 + 0.4 * i, w, 0.9) for i, w in enumerate(said))
    segment = SpeechSegment(0, 5.2, 9.0, " ".join(said), words)
    transcript = Transcript(Path("speech.wav"), "en", 1.0, 10.0, (segment,), "faster-whisper", "base", "cpu")
    shown = [
        SubtitleEvent(1, 4.15, 4.35, "Not at this parti", 0.93),
        SubtitleEvent(2, 4.35, 8.75, "Not at this particular case, Tom, apologized whit te more.", 0.98),
    ]
    (line,) = fuse(shown, transcript).lines
    assert line.text == "Not at this particular case, Tom, apologized Whittemore."
    assert line.reads == ("Not at this parti",) and "shown early" in line.timing


def test_translated_subtitles_keep_both_texts_and_the_speaker(prefect_server, media_dir, tmp_path):
    """Chinese subtitles over English speech of two speakers: both texts per line, aligned by time, with
    the speaker label from diarization; nothing is 'corrected' across languages."""
    case = next(c for c in material.FUSION_CASES if c.translated)
    video, truth = material.render_fusion_case(case, media_dir / "fusion")
    out = fuse_subtitles(str(video), str(tmp_path), diarize=True)
    lines = out.result.lines
    assert out.result.translated and [line.source for line in lines] == ["translated"] * len(truth), lines
    for t, line in zip(truth, lines, strict=True):
        assert line.text == t.shown and line.speaker, line
        assert normalise(line.speech_text).split()[:2] == normalise(t.spoken).split()[:2], line
        assert abs(line.start - t.start) <= 0.1 and not line.corrections, line
    assert "\n" in out.srt_path.read_text(encoding="utf-8")  # each cue: the subtitle, then what was said
    labels = [line.speaker for line in lines]  # aew, axb, aew in the material
    assert labels[0] == labels[2] != labels[1], labels


def test_an_unsure_word_is_settled_by_the_speech_but_never_a_name_or_number():
    from stages.fusion.settle import FusionSettings, settle_words

    unsure = SubtitleEvent(1, 0.0, 2.0, "Pollce ask drivers at Gate 4 to wait, Tom", 0.82)
    text, notes = settle_words(unsure, "Police ask drivers at gate four to wait, Tim", FusionSettings())
    assert text == "Police ask drivers at Gate 4 to wait, Tom", notes
    assert [(c.ocr, c.taken) for c in notes] == [("Pollce", True), ("4", False), ("Tom", False)], notes
    sure = SubtitleEvent(2, 0.0, 2.0, "God bless 'em", 0.98)
    assert settle_words(sure, "God bless him.", FusionSettings())[0] == "God bless 'em"


def test_a_video_without_speech_is_refused_in_one_line(media_dir, tmp_path, capsys):
    """The CLI checks before any server starts: one line naming the input and the cause, no output. In
    process (`main` through run_cli); the exit status of a real process: tests/test_cli_lifecycle.py."""
    from core.cli import run_cli
    from flows.fuse import main

    material.render_fusion_case(SAME, media_dir / "fusion")
    (silent,) = (media_dir / "fusion" / "silent").glob(f"{SAME.name}-*.mp4")
    out = tmp_path / "out"
    code = run_cli(main, [str(silent), "--output-dir", str(out)])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert silent.name in lines[0] and "no audio track" in lines[0], lines
    assert not out.exists() or not any(out.rglob("*"))


def test_a_deployed_fuse_run_on_a_silent_video_fails_before_any_ocr(prefect_server, media_dir, tmp_path):
    """The upload page and the Run form call the flow, not the CLI: the flow checks the audio first (it
    ran the whole subtitle pass, then failed in transcribe)."""
    from flows.fuse import fuse_subtitles

    material.render_fusion_case(SAME, media_dir / "fusion")
    (silent,) = (media_dir / "fusion" / "silent").glob(f"{SAME.name}-*.mp4")
    state = fuse_subtitles(str(silent), str(tmp_path / "out"), return_state=True)
    assert state.is_failed() and "no audio track" in state.message, state.message
    assert not (tmp_path / "out" / "subtitles").exists(), "no subtitle pass ran"


def test_fuse_is_a_step_of_the_workflow_chain():
    """`fuse` pulls in the subtitle stages and transcribe, and runs after diarize where the chain has it."""
    from flows.pipeline import plan_chain

    subtitles = ["subtitle_area", "keyframes", "crop", "stitch", "ocr", "postprocess"]
    assert plan_chain(["fuse"]) == [*subtitles, "transcribe", "fuse"]
    assert plan_chain(["fuse", "diarize"]) == [*subtitles, "transcribe", "diarize", "fuse"]
    assert plan_chain(["transcode", "fuse"])[0] == "transcode"


@pytest.mark.slow
def test_the_pipeline_fuse_step_is_the_fuse_flow_on_the_chain_s_own_results(fused_run, tmp_path):
    """workflow_chain ["fuse"] on the real material: the fused SRT/VTT/JSON in the pipeline's folder and
    manifest, the same lines as the fuse flow (the chain's events carry the frames' other reads too)."""
    from flows.pipeline import run_pipeline

    video, _, flow_run = fused_run
    result = run_pipeline(str(video), ("fuse",), str(tmp_path))
    assert result.plan[-2:] == ("transcribe", "fuse")
    assert [o.stage for o in result.stages] == list(result.plan)
    step = result.stages[-1]
    assert set(step.outputs) == {"fused_srt", "fused_vtt", "fused_json"}, step
    assert all(path.parent == result.run_dir for path in step.outputs.values())
    manifest = json.loads(result.manifest_path.read_text(encoding="utf-8"))
    assert {"fused_srt", "fused_json", "subtitles_srt", "speech_srt"} <= set(manifest["outputs"]), manifest
    doc = json.loads(step.outputs["fused_json"].read_text(encoding="utf-8"))
    flow_doc = json.loads(flow_run.json_path.read_text(encoding="utf-8"))
    assert [line["text"] for line in doc["lines"]] == [line["text"] for line in flow_doc["lines"]]
    srt = step.outputs["fused_srt"].read_text(encoding="utf-8")
    assert srt == flow_run.srt_path.read_text(encoding="utf-8")
    assert f"{len(doc['lines'])} fused lines, {doc['disagreements']} where" in step.summary, step.summary
    assert any(event.reads for event in result.events), "the chain's events publish their other reads"


def test_a_frame_misread_is_settled_only_where_the_speech_agrees_and_never_a_name(fused_run):
    """Each event publishes the other texts its keyframes read (`reads`, in the subtitles JSON too; real
    ones here, e.g. "Lord, but Img i ad to see you again, Phil."). Had a one-glyph misread won the vote
    ("clad"), the real speech settles it only to a word another read has in its place, and never a name.
    Real reads and the real transcript of the material; the winning text is swapped for the misread (its
    keyframes re-read a line only when its strokes change, so no one-glyph misread won a vote there)."""
    from dataclasses import replace

    from stages.fusion.fuse import fuse

    _, _, out = fused_run
    events = list(out.subtitles.events)
    doc = json.loads(out.subtitles.json_path.read_text(encoding="utf-8"))
    assert [tuple(e["reads"]) for e in doc["events"]] == [e.reads for e in events]
    assert any(e.reads for e in events), events
    real = next(e for e in events if e.text.startswith("Lord, but"))
    misread = real.text.replace("glad", "clad")

    def fused_text(event) -> tuple[str, list]:
        others = [e for e in events if e.index != event.index]
        line = next(
            x for x in fuse([*others, event], out.speech.transcript).lines if x.ocr_text == event.text
        )
        return line.text, [(c.ocr, c.speech, c.taken) for c in line.corrections]

    text, notes = fused_text(replace(real, text=misread, reads=(real.text, *real.reads)))
    assert "I'm glad to see" in text and ("clad", "glad", True) in notes, (text, notes)
    assert "Phil." in text, "the speech said 'sir': a name stays as shown"
    text, notes = fused_text(replace(real, text=misread, reads=()))
    assert "I'm clad to see" in text, "no frame read 'glad': the OCR was sure of a listed word"
    text, _ = fused_text(replace(real, text=misread, reads=(misread.replace("clad", "slad"),)))
    assert "I'm clad to see" in text, "the speech is not what another frame read there"
    author = next(e for e in events if e.text.startswith("Author"))
    steals = author.text.replace("Steels", "Steals")  # a frame that read the name as the speech hears it
    text, notes = fused_text(replace(author, reads=(steals,)))
    assert "Philip Steels" in text and ("Steels,", "steals,", False) in notes, (text, notes)
