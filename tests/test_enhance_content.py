"""What the stage sees in a picture: NIQE as scikit-video computes it, photo or drawing, faces and the
faithful face region. Real photographs and drawings shipped by scikit-image, generated drawn faces."""

from __future__ import annotations

import sys
import types
from dataclasses import replace

import cv2
import numpy as np
import pytest
import skimage.data

from samples.images import PHOTO_SET, degrade, draw_face, real_photo
from stages.enhance.content import DRAWN_MODEL, PHOTO_MODEL, classify_content, find_faces, fit_to_content
from stages.enhance.enhance import enhance_array
from stages.enhance.quality import niqe, ssim
from stages.enhance.settings import EnhanceSettings
from stages.enhance.yardstick import shrink

PHOTOS = (*PHOTO_SET, "camera", "rocket", "motorcycle", "hubble_deep_field", "retina", "immunohistochemistry")


def _jpeg(image: np.ndarray, quality: int = 70) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)


def _drawings() -> dict[str, np.ndarray]:
    logo = cv2.cvtColor(skimage.data.logo()[:, :, :3], cv2.COLOR_RGB2BGR)
    horse = cv2.cvtColor((skimage.data.horse() * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    out = {"logo": logo, "logo-jpeg": _jpeg(logo), "horse": horse}
    for seed in range(3):
        out[f"face{seed}"] = draw_face((256, 256), seed=seed)
        out[f"face{seed}-jpeg"] = _jpeg(draw_face((256, 256), seed=seed))
    return out


@pytest.fixture
def skvideo_niqe(monkeypatch):
    """scikit-video's own NIQE, with what today's numpy/scipy removed put back (for this test only)."""
    import scipy
    from PIL import Image

    def imresize(image, factor, interp="bicubic", mode="F"):
        size = (int(image.shape[1] * factor), int(image.shape[0] * factor))
        return np.asarray(Image.fromarray(image, mode="F").resize(size, Image.Resampling.BICUBIC))

    misc = types.ModuleType("scipy.misc")
    misc.imresize = imresize
    monkeypatch.setitem(sys.modules, "scipy.misc", misc)
    monkeypatch.setattr(scipy, "misc", misc, raising=False)
    monkeypatch.setattr(np, "int", int, raising=False)
    from skvideo.measure import niqe as reference_niqe

    return lambda grey: float(reference_niqe(grey.astype(np.float32))[0])


@pytest.mark.parametrize("name", PHOTO_SET)
def test_niqe_matches_scikit_video(name, skvideo_niqe):
    photo = real_photo(name)
    blurred = cv2.GaussianBlur(photo, (0, 0), 2.0)
    for image in (photo, blurred):
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        assert niqe(image) == pytest.approx(skvideo_niqe(grey), rel=0.005)
    assert niqe(blurred) > niqe(photo) + 2  # blur is unnatural


@pytest.mark.parametrize("shrink_by", [1, 4])
def test_photos_and_drawings_are_told_apart(shrink_by):
    def small(image):
        size = (image.shape[1] // shrink_by, image.shape[0] // shrink_by)
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA) if shrink_by > 1 else image

    photos = {n: classify_content(small(real_photo(n))).kind for n in PHOTOS}
    drawings = {n: classify_content(small(image)).kind for n, image in _drawings().items()}
    assert set(photos.values()) == {"photo"}, photos
    assert set(drawings.values()) == {"drawn"}, drawings


def test_the_model_follows_the_content_unless_asked_for():
    photo, drawing = real_photo("coffee"), draw_face((128, 128), seed=1)
    auto = EnhanceSettings()
    assert fit_to_content(auto, photo).model == PHOTO_MODEL
    assert fit_to_content(auto, drawing).model == DRAWN_MODEL
    assert fit_to_content(replace(auto, model=DRAWN_MODEL), photo).model == DRAWN_MODEL
    assert fit_to_content(replace(auto, engine="opencv-classic"), photo).model is None


def test_faces_are_found_in_lfw_and_on_the_astronaut():
    lfw = skimage.data.lfw_subset()  # 100 faces, then 100 non-faces, 25x25 grey
    found = []
    for crop in lfw:
        grey = cv2.resize((crop * 255).astype(np.uint8), (48, 48), interpolation=cv2.INTER_CUBIC)
        found.append(
            bool(
                find_faces(
                    cv2.cvtColor(
                        cv2.copyMakeBorder(grey, 8, 8, 8, 8, cv2.BORDER_REPLICATE), cv2.COLOR_GRAY2BGR
                    )
                )
            )
        )
    assert sum(found[:100]) >= 95 and sum(found[100:]) <= 2, (sum(found[:100]), sum(found[100:]))
    _, low = shrink(real_photo("astronaut"), 4)
    (face,) = find_faces(low)  # her face spans about x 41-69, y 15-43 in the 128 px input
    assert 35 <= face.x <= 48 and 10 <= face.y <= 22 and 20 <= face.width <= 34
    assert find_faces(shrink(real_photo("coffee"), 4)[1]) == []


def test_faithful_faces_stay_closer_to_the_person():
    """The anime model turns her face into a cartoon; the faithful face region brings it back towards her."""
    reference, low = shrink(real_photo("astronaut"), 4)
    settings = EnhanceSettings(model=DRAWN_MODEL, scale=4)
    raw, _ = enhance_array(low, replace(settings, faces="off"))
    kept, _ = enhance_array(low, settings)
    assert raw.faces is None and kept.faces == 1
    face = (slice(60, 172), slice(164, 276))
    assert ssim(reference[face], kept.image[face]) > ssim(reference[face], raw.image[face]) + 0.01
    outside = (slice(300, 512), slice(0, 512))
    assert np.array_equal(kept.image[outside], raw.image[outside])  # the rest is the network's


def test_degraded_drawn_faces_are_what_the_demo_uses():
    """The demo's faces are drawn, then blurred and grained like old phone photos: they read as photos."""
    assert classify_content(degrade(draw_face((128, 128), seed=0), seed=0)).kind == "photo"
