"""The subtitle flow on real footage with libass-burned subtitles (samples/footage.py), scored like a user.

Targets over the whole corpus (issue 11): CER <= 1%, WER <= 2%, event recall and precision >= 98%, every
case's recall >= 95%, median start and end error <= 0.1 s. The corpus is rendered once per session.
"""

from __future__ import annotations

import pytest

from flows.subtitles import extract_subtitles
from samples.footage import FOOTAGE_CASES, ass_plain_text, render_case
from samples.scoring import SubtitleScore, pooled, score_subtitles


@pytest.fixture(scope="module")
def footage_scores(prefect_server, media_dir, tmp_path_factory) -> dict[str, SubtitleScore]:
    out = tmp_path_factory.mktemp("footage-out")
    scores = {}
    for case in FOOTAGE_CASES:
        result = extract_subtitles(str(render_case(case, media_dir / "footage")), str(out))
        scores[case.name] = score_subtitles(case.truth(), list(result.events))
        print(f"{case.name:<26} {scores[case.name].line()}")
    return scores


@pytest.mark.slow
def test_footage_corpus_meets_the_targets(footage_scores):
    total = pooled(list(footage_scores.values()))
    detail = {name: s.line() for name, s in footage_scores.items()}
    assert total.cer <= 0.01, (total.line(), detail)
    assert total.wer <= 0.02, (total.line(), detail)
    assert total.recall >= 0.98 and total.precision >= 0.98, (total.line(), detail)
    assert total.median_start_error <= 0.1 and total.median_end_error <= 0.1, total.line()


@pytest.mark.slow
@pytest.mark.parametrize("case", [c.name for c in FOOTAGE_CASES])
def test_every_footage_case_keeps_its_lines(footage_scores, case):
    assert footage_scores[case].recall >= 0.95, footage_scores[case].line()


def test_ground_truth_comes_from_the_ass_events():
    assert ass_plain_text("{\\fad(400,500)}（完）") == "（完）"
    assert ass_plain_text("第一行字幕\\NSecond line here") == "第一行字幕\nSecond line here"
    signs = [e for c in FOOTAGE_CASES for e in c.events if not e.dialogue]
    assert signs and all(e.text not in {t.text for c in FOOTAGE_CASES for t in c.truth()} for e in signs)
