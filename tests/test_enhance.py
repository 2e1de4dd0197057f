"""The enhancement stage on generated images: real engines (ncnn Real-ESRGAN, OpenCV), real guard rails.

The gfpgan engine's loading and inference path runs on untrained weights this test writes in the real
checkpoint formats; it is skipped only where the gfpgan extra (torch, gfpgan, basicsr, facexlib) is absent.
"""

from __future__ import annotations

import importlib.util
import zipfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.errors import ConfigError, MediaInputError
from core.models import evict, load_count
from core.schema import EnhancedImage, ImageFailure
from samples.images import degrade, draw_face, make_corrupt_image, make_face_image, make_huge_image
from stages.enhance.batch import batch_output_dir, finish_batch, plan_outputs
from stages.enhance.engines import load_engine
from stages.enhance.enhance import enhance_image
from stages.enhance.imaging import read_image, target_size
from stages.enhance.settings import EnhanceSettings
from tests.conftest import assert_no_partial_outputs

HAS_GFPGAN = all(importlib.util.find_spec(m) is not None for m in ("torch", "gfpgan", "basicsr", "facexlib"))


ANIME = "realesr-animevideov3"  # the fast model: drawn faces are what it was trained for


def _psnr_gain(engine: str, seed: int) -> float:
    """PSNR (dB) of the engine's x2 output against the clean face, minus that of plain bicubic."""
    clean = draw_face((256, 256), seed=seed)
    small = degrade(cv2.resize(clean, (128, 128), interpolation=cv2.INTER_AREA), seed=seed, blur=0.6)
    bicubic = cv2.resize(small, (256, 256), interpolation=cv2.INTER_CUBIC)
    settings = EnhanceSettings(engine=engine, scale=2, model=ANIME if engine == "realesrgan-ncnn" else None)
    enhanced = load_engine(settings).enhance(small, settings).image
    return cv2.PSNR(clean, enhanced) - cv2.PSNR(clean, bicubic)


@pytest.mark.parametrize(("engine", "min_gain_db"), [("realesrgan-ncnn", 2.0), ("opencv-classic", 1.0)])
def test_engines_restore_a_degraded_face_better_than_bicubic(engine, min_gain_db):
    gains = [_psnr_gain(engine, seed) for seed in (0, 1)]
    assert min(gains) >= min_gain_db, gains


@pytest.mark.parametrize(
    ("engine", "scale", "name", "size"),
    [
        ("realesrgan-ncnn", 2.0, "a.jpg", (120, 90)),
        ("realesrgan-ncnn", 3.0, "b.png", (64, 48)),
        ("opencv-classic", 1.5, "c.webp", (101, 77)),
    ],
)
def test_output_has_exact_size_and_format(tmp_path, engine, scale, name, size):
    src = make_face_image(tmp_path / "in" / name, size, seed=5)
    dest = tmp_path / "out" / name
    model = ANIME if engine == "realesrgan-ncnn" else None
    done = enhance_image(src, dest, EnhanceSettings(engine=engine, scale=scale, model=model))
    written = cv2.imread(str(dest), cv2.IMREAD_UNCHANGED)
    assert (written.shape[1], written.shape[0]) == target_size(*size, scale) == done.output_size
    assert done.input_size == size and done.output == dest and done.engine == engine and done.model == model
    assert dest.read_bytes()[:4] == src.read_bytes()[:4]  # same container: JPEG/PNG/RIFF magic
    assert_no_partial_outputs(tmp_path)


def test_alpha_channel_survives(tmp_path):
    rgba = np.dstack([draw_face((80, 60), seed=2), np.full((60, 80), 255, np.uint8)])
    rgba[:, :40, 3] = 0  # left half transparent
    src = tmp_path / "alpha.png"
    cv2.imwrite(str(src), rgba)
    enhance_image(src, tmp_path / "out.png", EnhanceSettings(engine="opencv-classic", scale=2))
    out = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (120, 160, 4)
    assert out[:, :70, 3].max() == 0 and out[:, 90:, 3].min() == 255


def test_jpeg_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    picture = Image.fromarray(cv2.cvtColor(draw_face((60, 40), seed=1), cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    picture.save(tmp_path / "phone.jpg", exif=exif)
    done = enhance_image(
        tmp_path / "phone.jpg", tmp_path / "out.jpg", EnhanceSettings(engine="opencv-classic")
    )
    assert done.input_size == (40, 60) and done.output_size == (80, 120)  # upright, as a viewer shows it


@pytest.mark.parametrize("engine", ["realesrgan-ncnn", "opencv-classic"])
def test_tiles_leave_no_seams(engine):
    image = degrade(draw_face((120, 90), seed=4), seed=4)  # four 64-px tiles
    model = ANIME if engine == "realesrgan-ncnn" else None
    whole_settings, tiled_settings = (
        EnhanceSettings(engine=engine, scale=2, tile=t, model=model) for t in (0, 64)
    )
    whole = load_engine(whole_settings).enhance(image, whole_settings).image
    tiled = load_engine(tiled_settings).enhance(image, tiled_settings).image
    assert whole.shape == tiled.shape == (180, 240, 3)
    diff = np.abs(whole.astype(int) - tiled.astype(int))
    assert diff.mean() < 0.05 and diff.max() <= 3


def test_engine_is_resident(tmp_path):
    settings = EnhanceSettings(engine="realesrgan-ncnn", scale=4, tile=128)
    evict()
    before = load_count("enhance", "realesrgan-ncnn")
    first, second = load_engine(settings), load_engine(settings)
    assert first.networks is second.networks and load_count("enhance", "realesrgan-ncnn") == before + 1
    assert first.native_scale == 4


def test_corrupt_images_fail_clearly_and_leave_nothing(tmp_path):
    settings = EnhanceSettings(engine="opencv-classic")
    garbage = make_corrupt_image(tmp_path / "garbage.jpg", kind="garbage")
    truncated = make_corrupt_image(tmp_path / "truncated.png", kind="truncated")
    with pytest.raises(MediaInputError, match="corrupt|not a readable media file"):
        enhance_image(garbage, tmp_path / "out" / "garbage.jpg", settings)
    with pytest.raises(MediaInputError, match="cannot be decoded"):
        enhance_image(truncated, tmp_path / "out" / "truncated.png", settings)
    with pytest.raises(MediaInputError, match="does not exist"):
        enhance_image(tmp_path / "missing.png", tmp_path / "out" / "missing.png", settings)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_pixel_limits_are_checked_before_decoding(tmp_path, media_dir):
    huge = make_huge_image(media_dir / "huge.png", (6000, 4000))  # 24 MP, a few hundred KB
    with pytest.raises(MediaInputError, match=r"6000x4000 = 24,000,000 pixels.*max_pixels"):
        read_image(huge, EnhanceSettings(max_pixels=4096 * 4096))
    small = make_face_image(tmp_path / "small.png", (100, 100))
    with pytest.raises(MediaInputError, match=r"output would be 400x400.*max_output_pixels"):
        read_image(small, EnhanceSettings(scale=4, max_output_pixels=300 * 300))


def test_bad_settings_are_config_errors(tmp_path):
    src = make_face_image(tmp_path / "f.png", (32, 32))
    for settings, message in [
        (EnhanceSettings(engine="waifu9000"), "unknown enhance engine"),
        (EnhanceSettings(scale=8), "scale 8"),
        (EnhanceSettings(tile=8), "tile 8"),
        (EnhanceSettings(model="realesrgan-x9"), "unknown realesrgan-ncnn model"),
        (EnhanceSettings(faces="blur"), "faces 'blur' is not one of faithful, off"),
    ]:
        with pytest.raises(ConfigError, match=message):
            enhance_image(src, tmp_path / "o.png", settings)


def test_gfpgan_missing_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("YIVIDEO_MODEL_DIR", str(tmp_path / "models"))
    src = make_face_image(tmp_path / "f.png", (32, 32))
    expected = tmp_path / "models" / "gfpgan" / "GFPGANv1.4.pth"
    with pytest.raises(ConfigError, match=f"GFPGAN weights not found: looked for {expected}"):
        enhance_image(src, tmp_path / "o.png", EnhanceSettings(engine="gfpgan"))
    weights = tmp_path / "GFPGANv1.4.pth"
    weights.write_bytes(b"x")
    faces = tmp_path / "faces"
    with pytest.raises(ConfigError, match=f"face detector weights .* looked for {faces}/detection_Resnet50"):
        enhance_image(
            src,
            tmp_path / "o.png",
            EnhanceSettings(engine="gfpgan", gfpgan_weights=str(weights), face_model_dir=str(faces)),
        )
    assert not (tmp_path / "o.png").exists()


def test_the_upload_page_names_the_missing_gfpgan_weight_file(tmp_path, monkeypatch):
    """The page's engine list says which weight file is missing, by the error's path: it took the message's
    tail before and said "its weights are missing (GFPGANv1.4.pth (download it there or set its path))"."""
    from deployments.web.choices import weights_missing

    monkeypatch.setenv("YIVIDEO_MODEL_DIR", str(tmp_path / "models"))
    assert weights_missing(EnhanceSettings(engine="gfpgan")) == "its weights are missing (GFPGANv1.4.pth)"
    weights = tmp_path / "GFPGANv1.4.pth"
    weights.write_bytes(b"x")
    settings = EnhanceSettings(engine="gfpgan", gfpgan_weights=str(weights), face_model_dir=str(tmp_path))
    assert weights_missing(settings) == "its weights are missing (detection_Resnet50_Final.pth)"
    for name in ("detection_Resnet50_Final.pth", "parsing_parsenet.pth"):
        (tmp_path / name).write_bytes(b"x")
    assert weights_missing(settings) == ""


def test_batch_plan_zip_and_manifest(tmp_path):
    a = make_face_image(tmp_path / "x" / "face.jpg", (40, 30), seed=1)
    b = make_face_image(tmp_path / "y" / "face.jpg", (40, 30), seed=2)  # same stem, different folder
    settings = EnhanceSettings(engine="opencv-classic", scale=2)
    run_dir = batch_output_dir(tmp_path / "out", [a, b, tmp_path / "gone.png"], settings)
    plan = plan_outputs([a, b, tmp_path / "gone.png"], run_dir)
    assert [dest.name for _, dest in plan] == ["face.jpg", "face-2.jpg", "gone.png"]
    outcomes: list = [enhance_image(src, dest, settings) for src, dest in plan[:2]]
    outcomes.append(ImageFailure(plan[2][0], "MediaInputError", "file does not exist"))
    result = finish_batch(run_dir, outcomes, settings)
    assert [type(o) for o in outcomes] == [EnhancedImage, EnhancedImage, ImageFailure]
    assert len(result.enhanced) == 2 and len(result.failed) == 1 and not result.complete
    with zipfile.ZipFile(result.zip_path) as archive:
        assert sorted(archive.namelist()) == ["face-2.jpg", "face.jpg"]
        for item in result.enhanced:
            assert archive.read(item.output.name) == item.output.read_bytes()
    assert '"2 of 3 images enhanced"' in result.manifest_path.read_text()
    assert batch_output_dir(tmp_path / "out", [a, b, tmp_path / "gone.png"], settings) == run_dir
    assert batch_output_dir(tmp_path / "out", [a], settings) != run_dir


@pytest.mark.slow
@pytest.mark.skipif(not HAS_GFPGAN, reason="gfpgan extra not installed (see README 'Photo enhancement')")
def test_gfpgan_engine_loads_and_runs_on_untrained_weights(tmp_path):
    """The real loader (GFPGANv1Clean, RetinaFace, ParseNet, Real-ESRGAN background) on checkpoints in the
    real formats; untrained, so only shapes and the code path are checked, not restoration quality."""
    from samples.images import write_untrained_gfpgan_weights
    from stages.enhance.engines.gfpgan import GfpganEngine

    paths = write_untrained_gfpgan_weights(tmp_path / "models", background=True)
    evict()
    loads = load_count("enhance", "gfpgan")
    settings = EnhanceSettings(engine="gfpgan", scale=2, **paths)
    src = make_face_image(tmp_path / "face.png", (40, 32), seed=1)
    done = enhance_image(src, tmp_path / "out" / "face.png", settings)  # detect, (no face), background x2
    assert done.output_size == (80, 64) and done.faces == 0  # this untrained detector is set to find none
    engine = load_engine(settings)
    assert isinstance(engine, GfpganEngine) and engine.restorer.bg_upsampler is not None
    crop = make_face_image(tmp_path / "crop.png", (128, 128), seed=2)
    aligned = replace(settings, scale=1, aligned=True)  # same resident model: scale and mode are per call
    done = enhance_image(crop, tmp_path / "out" / "crop.png", aligned)  # one full GFPGAN forward pass
    assert done.faces == 1 and done.output_size == (128, 128)
    assert cv2.imread(str(done.output)).std() > 0
    assert load_count("enhance", "gfpgan") == loads + 1
    Path(paths["gfpgan_weights"]).write_bytes(b"not a checkpoint")
    evict()
    with pytest.raises(ConfigError, match=f"GFPGAN weights {paths['gfpgan_weights']} cannot be loaded"):
        enhance_image(crop, tmp_path / "out" / "bad.png", aligned)
    assert not (tmp_path / "out" / "bad.png").exists()
