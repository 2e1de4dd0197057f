"""Images for the enhancement flow's tests, demo and bench: face-like pictures, a corrupt file, a huge one.

The faces are drawn (head, hair, eyes, brows, nose, mouth) and then degraded with blur, noise and JPEG, so an
enhancer has something to do; their exact sizes are known, so outputs can be checked to the pixel.
`write_untrained_gfpgan_weights` saves randomly initialised GFPGAN, face detector and face parser networks in
the checkpoint formats the real weights use, so the gfpgan engine's loading and inference path runs offline.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from samples.media_cache import cached_media

SKIN_TONES = ((141, 180, 224), (105, 150, 198), (80, 115, 160), (170, 200, 235))  # BGR
HAIR_TONES = ((30, 30, 35), (40, 70, 110), (90, 140, 190), (60, 60, 70))


def draw_face(size: tuple[int, int], *, seed: int = 0) -> np.ndarray:
    """A BGR picture of a stylised frontal face centred on a gradient background (`size` is (w, h))."""
    width, height = size
    rng = np.random.default_rng(seed)
    top, bottom = rng.integers(60, 200, 3), rng.integers(60, 200, 3)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    image = (top * (1 - ramp) + bottom * ramp).repeat(width, axis=1).astype(np.uint8)
    cx, cy, unit = width // 2, height // 2, min(width, height) / 200.0
    skin = tuple(int(c) for c in SKIN_TONES[seed % len(SKIN_TONES)])
    hair = tuple(int(c) for c in HAIR_TONES[seed % len(HAIR_TONES)])

    def p(dx: float, dy: float) -> tuple[int, int]:
        return int(cx + dx * unit), int(cy + dy * unit)

    def r(n: float) -> int:
        return max(1, int(n * unit))

    cv2.ellipse(image, p(0, -10), (r(62), r(78)), 0, 180, 360, hair, -1, cv2.LINE_AA)
    cv2.ellipse(image, p(0, 5), (r(55), r(72)), 0, 0, 360, skin, -1, cv2.LINE_AA)
    for side in (-1, 1):
        cv2.ellipse(image, p(side * 22, -12), (r(11), r(6)), 0, 0, 360, (245, 245, 245), -1, cv2.LINE_AA)
        cv2.circle(image, p(side * 22, -12), r(4), (60, 40, 20), -1, cv2.LINE_AA)
        cv2.circle(image, p(side * 22, -12), r(1.8), (10, 10, 10), -1, cv2.LINE_AA)
        cv2.line(image, p(side * 12, -25), p(side * 32, -27), hair, r(2.5), cv2.LINE_AA)
        cv2.ellipse(image, p(side * 57, 0), (r(6), r(12)), 0, 0, 360, skin, -1, cv2.LINE_AA)
    darker = tuple(int(c * 0.8) for c in skin)
    cv2.line(image, p(0, -8), p(-4, 14), darker, r(2), cv2.LINE_AA)
    cv2.line(image, p(-4, 14), p(4, 15), darker, r(2), cv2.LINE_AA)
    cv2.ellipse(image, p(0, 35), (r(18), r(7)), 0, 0, 180, (70, 60, 170), r(3), cv2.LINE_AA)
    return image


def degrade(image: np.ndarray, *, seed: int = 0, blur: float = 1.2, noise: float = 6.0) -> np.ndarray:
    """What an old phone photo looks like: soft and grainy."""
    rng = np.random.default_rng(seed + 1000)
    soft = cv2.GaussianBlur(image, (0, 0), blur) if blur > 0 else image
    grain = rng.normal(0.0, noise, image.shape) if noise > 0 else 0.0
    return np.clip(soft.astype(np.float32) + grain, 0, 255).astype(np.uint8)


def make_face_image(
    out: str | Path, size: tuple[int, int] = (128, 128), *, seed: int = 0, jpeg_quality: int = 70
) -> Path:
    """A degraded face picture; the format follows the suffix (.jpg, .png, .webp ...)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if out.suffix.lower() in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(out.suffix, degrade(draw_face(size, seed=seed), seed=seed), params)
    if not ok:
        raise ValueError(f"OpenCV cannot write {out.suffix} images")
    data.tofile(out)
    return out


def make_face_set(folder: str | Path, count: int, *, size: tuple[int, int] = (128, 128)) -> list[Path]:
    """`count` different faces, alternating JPEG and PNG."""
    folder = Path(folder)
    return [
        make_face_image(folder / f"face{i:02d}{'.jpg' if i % 2 == 0 else '.png'}", size, seed=i)
        for i in range(count)
    ]


def make_corrupt_image(out: str | Path, *, kind: str = "garbage") -> Path:
    """Named like an image but not one: random bytes ("garbage") or a PNG cut short ("truncated")."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "garbage":
        out.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        ok, data = cv2.imencode(".png", degrade(draw_face((256, 256), seed=3)))
        assert ok
        out.write_bytes(data.tobytes()[: len(data) // 3])  # valid signature and header, data cut short
    else:
        raise ValueError(f"unknown corrupt kind {kind!r}: garbage or truncated")
    return out


@cached_media("out")
def make_huge_image(out: str | Path, size: tuple[int, int] = (6000, 4000)) -> Path:
    """A valid image with many pixels but few bytes (flat colour compresses well): for the pixel limit.
    Made once: an existing file at `out` is reused (tests share one)."""
    out = Path(out)
    if out.is_file() and out.stat().st_size > 0:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    image = np.full((height, width, 3), (90, 120, 150), dtype=np.uint8)
    cv2.rectangle(image, (width // 4, height // 4), (3 * width // 4, 3 * height // 4), (200, 200, 200), -1)
    ok, data = cv2.imencode(
        out.suffix or ".png", image, [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    )
    if not ok:
        raise ValueError(f"OpenCV cannot write {out.suffix} images")
    tmp = out.with_name(f".{out.name}.tmp")
    data.tofile(tmp)
    tmp.replace(out)
    return out


def write_untrained_gfpgan_weights(folder: str | Path, *, background: bool = False, seed: int = 0) -> dict:
    """Randomly initialised GFPGANv1Clean, RetinaFace-ResNet50 and ParseNet (and optionally Real-ESRGAN x2)
    checkpoints, saved under the real files' names and formats. Needs the gfpgan extra (torch).

    Returns the paths as EnhanceSettings keyword arguments. Untrained weights restore nothing, but they load
    and run exactly as the real ones do, so the engine's code path is proven without a download. The
    detector's class head is set to find no face (detection still runs); `aligned=True` runs GFPGAN itself.
    """
    from stages.enhance.engines.gfpgan import (
        FACE_DETECTOR_FILE,
        FACE_PARSER_FILE,
        alias_functional_tensor,
        gfpgan_clean_network,
    )

    alias_functional_tensor()
    import torch
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.parsenet import ParseNet

    torch.manual_seed(seed)
    folder = Path(folder)
    faces = folder / "facexlib"
    faces.mkdir(parents=True, exist_ok=True)
    gfpgan = gfpgan_clean_network(channel_multiplier=2)
    paths = {"gfpgan_weights": str(folder / "gfpgan" / "GFPGANv1.4.pth"), "face_model_dir": str(faces)}
    Path(paths["gfpgan_weights"]).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params_ema": gfpgan.state_dict()}, paths["gfpgan_weights"])
    detector = RetinaFace(network_name="resnet50", half=False, device="cpu")
    with torch.no_grad():  # untrained, it "finds" many faces, each a full GFPGAN pass: find none
        for head in detector.ClassHead:
            head.conv1x1.weight.zero_()
            head.conv1x1.bias.copy_(torch.tensor([10.0, -10.0] * head.num_anchors))
    torch.save(detector.state_dict(), faces / FACE_DETECTOR_FILE)
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), faces / FACE_PARSER_FILE)
    if background:
        from basicsr.archs.rrdbnet_arch import RRDBNet

        bg = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=2)
        paths["bg_upsampler_weights"] = str(folder / "realesrgan" / "RealESRGAN_x2plus.pth")
        Path(paths["bg_upsampler_weights"]).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"params_ema": bg.state_dict()}, paths["bg_upsampler_weights"])
    return paths


# Real photographs that scikit-image ships (no download): the quality yardstick's set. The first three are the
# test set (a portrait, an animal, a still life); the rest widen the bench.
PHOTO_SET = ("astronaut", "chelsea", "coffee")
MORE_PHOTOS = ("camera", "rocket", "motorcycle")


def real_photo(name: str) -> np.ndarray:
    """One of scikit-image's shipped photographs as 8-bit BGR (grey ones as three equal channels)."""
    import skimage.data

    image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2BGR)


def write_real_photos(folder: str | Path, names: tuple[str, ...] = PHOTO_SET) -> list[Path]:
    """The named photographs as PNG files (for the flow, which takes paths)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / f"{name}.png"
        if not path.is_file():
            cv2.imwrite(str(path), real_photo(name))
        paths.append(path)
    return paths
