"""Measured statistics of rain in a degraded / clean pair, and of snow in a snowy image.

Used to fit the synthetic generator (:mod:`smartassign.data.synthetic`) to real benchmark
pairs: the same functions measure both, so their numbers are comparable
(``docs/degradation_stats.py`` writes the table of docs/data.md).

**Rain** (:func:`rain_statistics`), on the luma ``Y`` (BT.601 weights, ``[0, 1]``) of the
residual ``r = Y(input) - Y(target)``:

* *brightening*: the mean of ``r``.
* *veil*: the residual between streaks, ``base`` = a 15 x 15 minimum of ``r`` smoothed by a
  Gaussian (sigma 8 px). Under ``I = J (1 - v) + A v`` it is ``v (A - J)``; ``veil`` is its
  mean, and ``veil_slope`` the ``v`` of a least-squares fit ``base = v A - v J`` (``J``
  taken through the same 15 x 15 window, as a maximum, and smoothing).
* *streaks*: ``s = r - base``; a pixel is a streak pixel where ``s > STREAK_LEVEL``.
  ``coverage`` is their share, ``contrast`` the mean and ``contrast_p95`` the 95th
  percentile of ``s`` on them, ``energy`` the mean of ``s`` over the image.
* *direction*: the structure tensor of ``s`` (gradients smoothed over sigma 2 px) gives
  each pixel an orientation; weighted by the coherent gradient energy, ``angle`` is their
  circular mean (degrees from vertical, positive = lower end to the right, as the
  generator's ``rain.angle``) and ``angle_spread``
  their circular standard deviation.
* *shape*: ``s`` is rotated so the mean direction is vertical and its autocorrelation
  taken. ``width`` is the full width at half maximum across the streaks divided by
  ``sqrt(2)`` (a Gaussian profile's own FWHM), ``length`` twice the lag along them where
  the autocorrelation falls to half (a uniform streak of length ``L`` halves at ``L / 2``).
* *veil as transmission and light*: within windows of ``VEIL_WINDOW`` px, a least-squares
  line ``Y(input) = t Y(target) + A (1 - t)`` fitted to both lumas on textured windows.
  Both lumas first go through a ``VEIL_ERODE`` square minimum filter (it looks between
  the streaks, and commutes with the veil's affine map) and a Gaussian of sigma
  ``VEIL_BLUR`` (so that sharpness and sub-pixel shifts do not count). ``transmission``
  is the median ``t`` (1 = no veil), ``veil_light`` the ``A`` of the median offset
  ``A (1 - t)`` given that ``t`` (``nan`` where ``t`` is at least ``VEIL_CLEAR``). A grey
  veil darkens what is brighter than ``A`` and lifts what is darker: it shows as *darker*
  pixels, too.
* *colour*: ``greyness`` = smallest / largest channel of the mean RGB residual over streak
  pixels (1 = grey or white streaks).
* *what rain cannot explain*: rain only brightens, so ``darker``, the share of pixels whose
  input is darker than the target by more than ``STREAK_LEVEL``, measures other
  differences (colour grading, sharpening, another frame); ``shift`` is the length of the
  translation between input and target found by phase correlation (pixels; the registered
  Rain12 and RainTrainH pairs give under 0.1).

**What removing rain can gain** (:func:`removal_bounds`): PSNR-Y (BT.601 luma, as
:func:`smartassign.metrics.psnr` with ``y_channel``) of the input against the target, and of
the input corrected by an oracle that knows the target but removes only what rain can
cause. The residual ``r`` splits into a smooth part ``low`` (Gaussian, sigma
``SMOOTH_SIGMA``) and details ``d = r - low``. *streaks_removed* takes out every detail
brighter than its surroundings (``max(d, 0)``), *veil_removed* the smooth brightening
(``max(low, 0)``: rain accumulation, haze), *brightening_removed* every positive residual
(``max(r, 0)``: all that rain can add, and the bright half of any misregistration: a
generous bound). *veil_and_streaks_removed* takes out the streaks and then undoes a smooth
veil, ``t`` and ``A`` free to vary over about ``2 VEIL_RADIUS`` px: the input is mapped onto
the target by a local affine fit of the lumas (a guided filter of radius ``VEIL_RADIUS``),
the best a derainer that also dehazes could do. It cannot restore detail, shifts or
sharpness, and it would undo a smooth colour grading as well: no input tells a grey veil
from a grading that lowers contrast. What none of these removes is not rain.

**Snow** (:func:`snow_statistics`) needs no clean image: flakes are small bright blobs,
found by a white top-hat of ``Y`` (``Y`` minus its 11 x 11 opening) above
``FLAKE_LEVEL``. ``flake_density`` counts the connected blobs per 10 000 pixels, ``coverage``
their pixel share, ``flake_radius_median`` / ``_p90`` the equivalent-disc radius of the
blobs and ``flake_contrast`` the mean top-hat on them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from smartassign.data.common import LUMA

STREAK_LEVEL = 0.02
"""Residual above the veil (luma, ``[0, 1]``) from which a pixel counts as a streak."""

VEIL_WINDOW = 81
"""Side (pixels) of the windows the veil's transmission and light are fitted in."""

VEIL_ERODE = 7
"""Side (pixels) of the minimum filter that looks between the streaks before the veil fit."""

VEIL_BLUR = 4.0
"""Gaussian sigma (pixels) both lumas are blurred by before the veil fit."""

VEIL_TEXTURE = 0.002
"""Variance of the target's luma in a window from which the veil is fitted there (a flat
window shows no contrast to compare)."""

VEIL_CLEAR = 0.95
"""Transmission from which an image counts as unveiled (its veil light is not measured)."""

VEIL_RADIUS = 60
"""Radius (pixels) of the local affine fit of ``veil_and_streaks_removed``."""

FLAKE_LEVEL = 0.06
"""White top-hat (luma) from which a pixel counts as part of a flake."""


class _Rounded:
    """``as_dict``: every field of a statistics dataclass, rounded to 4 decimals."""

    def as_dict(self) -> dict[str, float]:
        return {key: round(value, 4) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class RainStatistics(_Rounded):
    """Rain of one pair (module docstring for each field's definition)."""

    brightening: float
    veil: float
    veil_slope: float
    coverage: float
    contrast: float
    contrast_p95: float
    energy: float
    angle: float
    angle_spread: float
    width: float
    length: float
    transmission: float
    veil_light: float
    greyness: float
    darker: float
    shift: float


@dataclass(frozen=True)
class RemovalBounds(_Rounded):
    """PSNR-Y (dB) of one pair's input, and of the input with its rain taken out by an
    oracle (module docstring)."""

    input: float
    streaks_removed: float
    veil_removed: float
    brightening_removed: float
    veil_and_streaks_removed: float


@dataclass(frozen=True)
class SnowStatistics(_Rounded):
    """Flakes of one snowy image (module docstring)."""

    flake_density: float
    coverage: float
    flake_radius_median: float
    flake_radius_p90: float
    flake_contrast: float


def _float_rgb(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected uint8 H x W x 3 pixels, got {pixels.dtype} {pixels.shape}")
    return pixels.astype(np.float32) / 255.0


def residual_luma(degraded: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """``Y(input) - Y(target)`` in ``[-1, 1]``."""
    if degraded.shape != clean.shape:
        raise ValueError(f"pair sizes differ: {degraded.shape} and {clean.shape}")
    return (_float_rgb(degraded) - _float_rgb(clean)) @ LUMA


def _shift(degraded: np.ndarray, clean: np.ndarray) -> float:
    """Length (pixels) of the translation between input and target, by phase correlation."""
    (dx, dy), _ = cv2.phaseCorrelate(_float_rgb(degraded) @ LUMA, _float_rgb(clean) @ LUMA)
    return float(math.hypot(dx, dy))


def veil_and_streaks(degraded: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The smooth residual between streaks (``base``) and the streak layer ``s`` (luma)."""
    residual = residual_luma(degraded, clean)
    lowest = cv2.erode(residual, np.ones((15, 15), np.uint8), borderType=cv2.BORDER_REFLECT)
    base = cv2.GaussianBlur(lowest, (0, 0), 8.0, borderType=cv2.BORDER_REFLECT)
    return base, residual - base


def _box(image: np.ndarray, side: int) -> np.ndarray:
    return cv2.blur(image, (side, side), borderType=cv2.BORDER_REFLECT)


def veil_transmission(degraded: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """Median transmission ``t`` and veil light ``A`` of ``I = t J + A (1 - t)``, fitted in
    windows (module docstring; ``A`` is ``nan`` for an unveiled image)."""
    between = np.ones((VEIL_ERODE, VEIL_ERODE), np.uint8)
    source = cv2.erode(_float_rgb(degraded) @ LUMA, between, borderType=cv2.BORDER_REFLECT)
    target = cv2.erode(_float_rgb(clean) @ LUMA, between, borderType=cv2.BORDER_REFLECT)
    x = cv2.GaussianBlur(source, (0, 0), VEIL_BLUR, borderType=cv2.BORDER_REFLECT)
    j = cv2.GaussianBlur(target, (0, 0), VEIL_BLUR, borderType=cv2.BORDER_REFLECT)
    mean_x, mean_j = _box(x, VEIL_WINDOW), _box(j, VEIL_WINDOW)
    variance = _box(j * j, VEIL_WINDOW) - mean_j * mean_j
    covariance = _box(x * j, VEIL_WINDOW) - mean_x * mean_j
    textured = variance > VEIL_TEXTURE
    if not textured.any():
        return 1.0, math.nan
    t = float(np.median(covariance[textured] / variance[textured]))
    offset = float(np.median(mean_x[textured] - t * mean_j[textured]))
    return t, offset / (1 - t) if t < VEIL_CLEAR else math.nan


def _local_affine(source: np.ndarray, target: np.ndarray, radius: int) -> np.ndarray:
    """``source`` mapped onto ``target`` by an affine fit in every window (guided filter)."""
    side = 2 * radius + 1
    mean_s, mean_t = _box(source, side), _box(target, side)
    variance = _box(source * source, side) - mean_s * mean_s
    covariance = _box(source * target, side) - mean_s * mean_t
    gain = covariance / (variance + 1e-4)  # flat windows: gain near 0, target's mean
    offset = mean_t - gain * mean_s
    return _box(gain, side) * source + _box(offset, side)


def _orientation(streaks: np.ndarray) -> tuple[float, float]:
    """Circular mean and spread (degrees from vertical) of the streak orientation."""
    gx = cv2.Sobel(streaks, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(streaks, cv2.CV_32F, 0, 1, ksize=3)
    jxx = cv2.GaussianBlur(gx * gx, (0, 0), 2.0)
    jyy = cv2.GaussianBlur(gy * gy, (0, 0), 2.0)
    jxy = cv2.GaussianBlur(gx * gy, (0, 0), 2.0)
    # Double-angle vector of the gradient orientation; its length is the coherent energy.
    cos2, sin2 = jxx - jyy, 2 * jxy
    weight = np.sqrt(cos2 * cos2 + sin2 * sin2)
    total = float(weight.sum())
    if total <= 0:
        return 0.0, 0.0
    unit_c = cos2 / np.maximum(weight, 1e-12)
    unit_s = sin2 / np.maximum(weight, 1e-12)
    mean_c = float((weight * unit_c).sum() / total)
    mean_s = float((weight * unit_s).sum() / total)
    # Gradient angle phi from the x axis; a streak runs perpendicular to its gradient, so
    # its angle from vertical equals -phi (image rows grow downwards).
    gradient = 0.5 * math.atan2(mean_s, mean_c)
    resultant = min(1.0, math.hypot(mean_c, mean_s))
    spread = math.sqrt(max(0.0, -2.0 * math.log(max(resultant, 1e-9)))) / 2
    return math.degrees(-gradient), math.degrees(spread)


def _half_lag(profile: np.ndarray) -> float:
    """Lag (pixels, linear interpolation) where a profile that starts at 1 falls to 0.5."""
    below = np.nonzero(profile < 0.5)[0]
    if below.size == 0:
        return float(profile.size)
    index = int(below[0])
    before, after = profile[index - 1], profile[index]
    return index - 1 + float((before - 0.5) / max(before - after, 1e-12))


def _shape(streaks: np.ndarray, angle: float) -> tuple[float, float]:
    """Width (FWHM) and length of the streaks from their autocorrelation."""
    height, width = streaks.shape
    centre = (width / 2, height / 2)
    # Rotating the image by -angle (OpenCV: positive = counter-clockwise) makes the
    # streaks vertical.
    rotation = cv2.getRotationMatrix2D(centre, -angle, 1.0)
    upright = cv2.warpAffine(streaks, rotation, (width, height), flags=cv2.INTER_LINEAR)
    valid = cv2.warpAffine(
        np.ones_like(streaks), rotation, (width, height), flags=cv2.INTER_NEAREST
    )
    upright = np.where(valid > 0, upright - upright[valid > 0].mean(), 0.0).astype(np.float32)
    spectrum = np.fft.rfft2(upright, s=(2 * height, 2 * width))
    correlation = np.fft.irfft2(spectrum * np.conj(spectrum), s=(2 * height, 2 * width))
    if correlation[0, 0] <= 0:
        return 0.0, 0.0
    correlation /= correlation[0, 0]
    across = correlation[0, : width // 2]
    along = correlation[: height // 2, 0]
    return 2 * _half_lag(across) / math.sqrt(2), 2 * _half_lag(along)


def rain_statistics(degraded: np.ndarray, clean: np.ndarray) -> RainStatistics:
    """Veil, streak coverage, contrast, direction, shape and colour of one rain pair
    (``uint8`` RGB, same size; the module docstring defines each number)."""
    base, streaks = veil_and_streaks(degraded, clean)
    # base = smoothed minimum of v (A - J): regress it on the smoothed maximum of J
    luma = _float_rgb(clean) @ LUMA
    brightest = cv2.dilate(luma, np.ones((15, 15), np.uint8), borderType=cv2.BORDER_REFLECT)
    brightest = cv2.GaussianBlur(brightest, (0, 0), 8.0, borderType=cv2.BORDER_REFLECT)
    design = np.stack([np.ones(luma.size), brightest.ravel()], axis=1)
    _, slope = np.linalg.lstsq(design, base.ravel(), rcond=None)[0]
    mask = streaks > STREAK_LEVEL
    on = streaks[mask]
    angle, spread = _orientation(streaks)
    width, length = _shape(np.clip(streaks, 0, None), angle)
    transmission, veil_light = veil_transmission(degraded, clean)
    if on.size:
        colour = (_float_rgb(degraded) - _float_rgb(clean))[mask].mean(axis=0)
        greyness = float(colour.min() / colour.max()) if colour.max() > 0 else 0.0
    else:
        greyness = 0.0
    return RainStatistics(
        brightening=float((base + streaks).mean()),
        veil=float(base.mean()),
        veil_slope=float(-slope),
        coverage=float(mask.mean()),
        contrast=float(on.mean()) if on.size else 0.0,
        contrast_p95=float(np.percentile(on, 95)) if on.size else 0.0,
        energy=float(np.clip(streaks, 0, None).mean()),
        angle=angle,
        angle_spread=spread,
        width=width,
        length=length,
        transmission=transmission,
        veil_light=veil_light,
        greyness=max(0.0, greyness),
        darker=float((residual_luma(degraded, clean) < -STREAK_LEVEL).mean()),
        shift=_shift(degraded, clean),
    )


SMOOTH_SIGMA = 15.0
"""Gaussian sigma (pixels) of the smooth part of a residual in :func:`removal_bounds`."""

_Y_RANGE = 219 / 255
"""BT.601 studio-swing luma spans 16-235: ``Y`` differences in ``[0, 1]`` scale by this."""


def _psnr_y(residual: np.ndarray) -> float:
    """PSNR-Y (dB) of a luma difference in ``[0, 1]`` units, on the BT.601 16-235 scale."""
    mse = float(np.mean((residual * _Y_RANGE) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def removal_bounds(degraded: np.ndarray, clean: np.ndarray) -> RemovalBounds:
    """PSNR-Y of the input, and of the input with its bright streaks, its smooth brightening
    or all its brightening removed by an oracle (``uint8`` RGB, same size; module
    docstring)."""
    residual = residual_luma(degraded, clean)
    smooth = cv2.GaussianBlur(residual, (0, 0), SMOOTH_SIGMA, borderType=cv2.BORDER_REFLECT)
    streaks = np.clip(residual - smooth, 0, None)
    veil = np.clip(smooth, 0, None)
    target = _float_rgb(clean) @ LUMA
    dehazed = _local_affine(target + residual - streaks, target, VEIL_RADIUS)
    return RemovalBounds(
        input=_psnr_y(residual),
        streaks_removed=_psnr_y(residual - streaks),
        veil_removed=_psnr_y(residual - veil),
        brightening_removed=_psnr_y(np.minimum(residual, 0)),
        veil_and_streaks_removed=_psnr_y(dehazed - target),
    )


def snow_statistics(snowy: np.ndarray) -> SnowStatistics:
    """Flake density, coverage, sizes and contrast of one snowy image (``uint8`` RGB)."""
    luma = _float_rgb(snowy) @ LUMA
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))
    tophat = cv2.morphologyEx(luma, cv2.MORPH_TOPHAT, kernel)
    mask = (tophat > FLAKE_LEVEL).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    radii = np.sqrt(areas / math.pi) if areas.size else np.zeros(1)
    return SnowStatistics(
        flake_density=float((count - 1) / luma.size * 10_000),
        coverage=float(mask.mean()),
        flake_radius_median=float(np.median(radii)),
        flake_radius_p90=float(np.percentile(radii, 90)),
        flake_contrast=float(tophat[mask > 0].mean()) if mask.any() else 0.0,
    )
