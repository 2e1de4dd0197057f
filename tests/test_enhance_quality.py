"""The quality gate on real photographs (scikit-image's astronaut, chelsea, coffee): shrunk 2x (the default
scale) and 4x and enhanced back, the default (the photo model, faces kept faithful) must look more natural
than bicubic on every photo (NIQE), more natural on average than the other fast model, and stay within 0.06 of
bicubic's SSIM. The slow RRDB models (realesrgan-x4plus, -x4plus-anime: 25-100x the cost) are compared in
bench/enhance_speed.py, not here (minutes per photo on a shared CPU)."""

from __future__ import annotations

import pytest

from samples.images import PHOTO_SET, real_photo
from stages.enhance.content import PHOTO_MODEL
from stages.enhance.yardstick import format_table, mean_scores, score_photo

pytestmark = pytest.mark.slow

RIVALS = ("realesrgan-ncnn:realesr-animevideov3",)
METHODS = ("bicubic", "lanczos", *RIVALS, "default")


@pytest.fixture(scope="module", params=[2, 4], ids=["x2", "x4"])
def scores(request):
    found = [
        s for name in PHOTO_SET for s in score_photo(name, real_photo(name), METHODS, scale=request.param)
    ]
    print(f"\nx{request.param}\n" + format_table(found))
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


def test_default_has_a_better_mean_niqe_than_the_other_fast_model(scores):
    means = {s.method: s.niqe for s in mean_scores(scores)}
    assert all(means["default"] < means[rival] for rival in RIVALS), means


def test_default_stays_within_006_of_bicubic_ssim_on_every_photo(scores):
    default, bicubic = _by(scores, "default"), _by(scores, "bicubic")
    gaps = {p: round(bicubic[p].ssim - default[p].ssim, 4) for p in PHOTO_SET}
    assert all(gap <= 0.06 for gap in gaps.values()), gaps
