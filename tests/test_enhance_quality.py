"""The quality gate on real photographs (scikit-image's astronaut, chelsea, coffee): shrunk 4x and enhanced
back, the default (the photo model, faces kept faithful) must look more natural than bicubic on every photo
(NIQE), most natural of the shipped models on average, and stay within 0.06 of bicubic's SSIM."""

from __future__ import annotations

import pytest

from samples.images import PHOTO_SET, real_photo
from stages.enhance.content import PHOTO_MODEL
from stages.enhance.yardstick import format_table, mean_scores, score_photo

pytestmark = pytest.mark.slow

RIVALS = ("realesrgan-ncnn:realesr-animevideov3", "realesrgan-ncnn:realesrgan-x4plus-anime")
METHODS = ("bicubic", "lanczos", *RIVALS, "default")


@pytest.fixture(scope="module")
def scores():
    found = [s for name in PHOTO_SET for s in score_photo(name, real_photo(name), METHODS, scale=4)]
    print("\n" + format_table(found))
    return found


def _by(scores, method):
    return {s.photo: s for s in scores if s.method == method}


def test_default_uses_the_photo_model_on_photographs(scores):
    assert {s.photo: s.model for s in scores if s.method == "default"} == dict.fromkeys(
        PHOTO_SET, PHOTO_MODEL
    )


def test_default_is_more_natural_than_bicubic_on_every_photo(scores):
    default, bicubic = _by(scores, "default"), _by(scores, "bicubic")
    worse = {p: (default[p].niqe, bicubic[p].niqe) for p in PHOTO_SET if default[p].niqe >= bicubic[p].niqe}
    assert not worse, f"NIQE (default, bicubic) where the default is not better: {worse}"


def test_default_has_the_best_mean_niqe_of_the_shipped_models(scores):
    means = {s.method: s.niqe for s in mean_scores(scores)}
    assert all(means["default"] < means[rival] for rival in RIVALS), means


def test_default_stays_within_006_of_bicubic_ssim_on_every_photo(scores):
    default, bicubic = _by(scores, "default"), _by(scores, "bicubic")
    gaps = {p: round(bicubic[p].ssim - default[p].ssim, 4) for p in PHOTO_SET}
    assert all(gap <= 0.06 for gap in gaps.values()), gaps
