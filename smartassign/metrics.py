"""PSNR and SSIM as reported in the deraining / desnowing literature.

Conventions shared by every function here:

* Images are RGB with 8-bit levels: the numpy functions take ``uint8`` arrays of shape
  ``H x W x 3``; the torch functions take float tensors ``B x 3 x H x W`` in ``[0, 1]`` and
  quantise them first exactly like saving an 8-bit image would (clamp to ``[0, 1]``, scale
  by 255, round half to even), so that both paths give the same numbers for the same image.
* The peak value is 255 (``data_range=255``).
* ``crop_border`` removes that many pixels from each of the four sides before anything is
  computed.
* ``y_channel=True`` evaluates on the luma channel of ITU-R BT.601 in the MATLAB
  ``rgb2ycbcr`` convention, ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with ``R, G, B``
  in ``[0, 1]``, so ``Y`` lies in ``[16, 235]``. ``Y`` is kept as a float, not rounded to
  8 bits: on Rain12 this reproduces the published mean input PSNR-Y of 30.14 dB
  (rounding ``Y`` gives 30.13 dB).
* PSNR is ``10 log10(255^2 / MSE)`` with the MSE over all pixels (and all three channels
  for RGB); identical images give ``inf``.
* SSIM follows Wang et al. (2004) as implemented by scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255)``: an 11 x 11 Gaussian window with sigma 1.5 (scipy's ``truncate=3.5``),
  population (co)variances, ``K1 = 0.01``, ``K2 = 0.03``. The SSIM map is averaged after
  dropping the 5 pixels on each side whose window would leave the image, and for RGB the
  mean is taken over the three channels.

All computation is in float64.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

__all__ = ["psnr", "psnr_batch", "ssim", "ssim_batch"]

_PEAK = 255.0
_SIGMA = 1.5
_TRUNCATE = 3.5
_RADIUS = int(_TRUNCATE * _SIGMA + 0.5)  # 5, the radius scipy.ndimage uses
_WIN_SIZE = 2 * _RADIUS + 1  # 11
_C1 = (0.01 * _PEAK) ** 2
_C2 = (0.03 * _PEAK) ** 2
_Y_WEIGHTS = (65.481, 128.553, 24.966)

_Array = TypeVar("_Array", np.ndarray, torch.Tensor)


def _check_crop(height: int, width: int, crop_border: int, min_size: int) -> None:
    if isinstance(crop_border, bool) or not isinstance(crop_border, int):
        raise TypeError(f"crop_border must be an int, got {type(crop_border).__name__}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    h, w = height - 2 * crop_border, width - 2 * crop_border
    if h < min_size or w < min_size:
        raise ValueError(
            f"crop_border={crop_border} is too large for {height}x{width} images: "
            f"{max(h, 0)}x{max(w, 0)} pixels would remain, at least {min_size}x{min_size} needed"
        )


def _prepare_numpy(
    a: np.ndarray, b: np.ndarray, y_channel: bool, crop_border: int, min_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate, crop and convert to float64 (``H x W x 3``, or ``H x W`` for Y)."""
    for name, img in (("a", a), ("b", b)):
        if not isinstance(img, np.ndarray):
            raise TypeError(f"{name} must be a numpy array, got {type(img).__name__}")
        if img.dtype != np.uint8:
            raise ValueError(f"{name} must have dtype uint8, got {img.dtype}")
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"{name} must have shape H x W x 3, got {img.shape}")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    _check_crop(a.shape[0], a.shape[1], crop_border, min_size)
    c = crop_border
    out = []
    for img in (a, b):
        x = img[c : img.shape[0] - c, c : img.shape[1] - c].astype(np.float64)
        if y_channel:
            r, g, bl = _Y_WEIGHTS
            x = 16.0 + (r * x[..., 0] + g * x[..., 1] + bl * x[..., 2]) / 255.0
        out.append(x)
    return out[0], out[1]


def psnr(a: np.ndarray, b: np.ndarray, *, y_channel: bool = False, crop_border: int = 0) -> float:
    """Peak signal-to-noise ratio in dB between ``a`` (restored) and ``b`` (ground truth).

    Both are ``uint8`` ``H x W x 3`` RGB arrays; see the module docstring for the
    conventions. Returns ``math.inf`` for identical images.

    Raises:
        TypeError: an input is not a numpy array, or ``crop_border`` is not an int.
        ValueError: dtype not ``uint8``, shape not ``H x W x 3``, shapes differ, or
            ``crop_border`` is negative or leaves no pixel.
    """
    x, y = _prepare_numpy(a, b, y_channel, crop_border, min_size=1)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(_PEAK**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, *, y_channel: bool = False, crop_border: int = 0) -> float:
    """Mean structural similarity between ``a`` (restored) and ``b`` (ground truth).

    Both are ``uint8`` ``H x W x 3`` RGB arrays, at least 11 x 11 after cropping; see the
    module docstring for the conventions (Gaussian window, scikit-image border handling).

    Raises:
        TypeError: an input is not a numpy array, or ``crop_border`` is not an int.
        ValueError: dtype not ``uint8``, shape not ``H x W x 3``, shapes differ, or
            ``crop_border`` is negative or leaves less than 11 x 11 pixels.
    """
    x, y = _prepare_numpy(a, b, y_channel, crop_border, min_size=_WIN_SIZE)
    # Filter the two spatial axes only; sigma 0 leaves the channel axis untouched.
    sigma = (_SIGMA, _SIGMA, 0.0)[: x.ndim]

    def blur(img: np.ndarray) -> np.ndarray:
        return gaussian_filter(img, sigma=sigma, truncate=_TRUNCATE, mode="reflect")

    ssim_map = _ssim_map(blur(x), blur(y), blur(x * x), blur(y * y), blur(x * y))
    r = _RADIUS
    return float(ssim_map[r:-r, r:-r].mean())


def _ssim_map(ux: _Array, uy: _Array, uxx: _Array, uyy: _Array, uxy: _Array) -> _Array:
    """SSIM from local means and second moments (numpy arrays or torch tensors)."""
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    return ((2 * ux * uy + _C1) * (2 * vxy + _C2)) / ((ux * ux + uy * uy + _C1) * (vx + vy + _C2))


def _prepare_torch(
    pred: torch.Tensor, target: torch.Tensor, y_channel: bool, crop_border: int, min_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate, crop, quantise to 8-bit levels in float64 (``B x C x H x W``, C = 3 or 1)."""
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor in [0, 1], got {t.dtype}")
        if t.ndim != 4 or t.shape[1] != 3:
            raise ValueError(f"{name} must have shape B x 3 x H x W, got {tuple(t.shape)}")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, "
            f"got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    _check_crop(pred.shape[2], pred.shape[3], crop_border, min_size)
    c = crop_border
    out = []
    for t in (pred, target):
        x = t.detach()[..., c : t.shape[2] - c, c : t.shape[3] - c].to(torch.float64)
        x = torch.round(x.clamp(0.0, 1.0) * 255.0)
        if y_channel:
            r, g, bl = _Y_WEIGHTS
            x = 16.0 + (r * x[:, 0:1] + g * x[:, 1:2] + bl * x[:, 2:3]) / 255.0
        out.append(x)
    return out[0], out[1]


def psnr_batch(
    pred: torch.Tensor, target: torch.Tensor, *, y_channel: bool = False, crop_border: int = 0
) -> torch.Tensor:
    """Per-sample PSNR in dB of float ``B x 3 x H x W`` tensors in ``[0, 1]``.

    The tensors are quantised to 8-bit levels first (see the module docstring), so each
    value equals :func:`psnr` on the corresponding ``uint8`` images. Returns a float64
    tensor of shape ``B`` on the input's device, ``inf`` where a pair is identical. Not
    differentiable (use it for validation, not as a loss).

    Raises:
        TypeError: an input is not a tensor, or ``crop_border`` is not an int.
        ValueError: not floating point, shape not ``B x 3 x H x W``, shapes differ, or
            ``crop_border`` is negative or leaves no pixel.
    """
    x, y = _prepare_torch(pred, target, y_channel, crop_border, min_size=1)
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(_PEAK**2 / mse)


def ssim_batch(
    pred: torch.Tensor, target: torch.Tensor, *, y_channel: bool = False, crop_border: int = 0
) -> torch.Tensor:
    """Per-sample mean SSIM of float ``B x 3 x H x W`` tensors in ``[0, 1]``.

    The tensors are quantised to 8-bit levels first (see the module docstring), so each
    value equals :func:`ssim` on the corresponding ``uint8`` images: the separable 11 x 11
    Gaussian window is applied without padding, which yields exactly the part of the SSIM
    map that scikit-image keeps. Returns a float64 tensor of shape ``B`` on the input's
    device. Not differentiable (use it for validation, not as a loss).

    Raises:
        TypeError: an input is not a tensor, or ``crop_border`` is not an int.
        ValueError: not floating point, shape not ``B x 3 x H x W``, shapes differ, or
            ``crop_border`` is negative or leaves less than 11 x 11 pixels.
    """
    x, y = _prepare_torch(pred, target, y_channel, crop_border, min_size=_WIN_SIZE)
    channels = x.shape[1]
    offsets = torch.arange(-_RADIUS, _RADIUS + 1, dtype=torch.float64, device=x.device)
    g = torch.exp(-0.5 * (offsets / _SIGMA) ** 2)
    g = g / g.sum()
    g_rows = g.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    g_cols = g.view(1, 1, 1, -1).expand(channels, 1, 1, -1)

    def blur(img: torch.Tensor) -> torch.Tensor:
        img = F.conv2d(img, g_rows, groups=channels)
        return F.conv2d(img, g_cols, groups=channels)

    ssim_map = _ssim_map(blur(x), blur(y), blur(x * x), blur(y * y), blur(x * y))
    return ssim_map.mean(dim=(1, 2, 3))
