"""Tests for smartassign.metrics: scikit-image is the reference, Rain12 the real-data check."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2ycbcr
from skimage.data import astronaut
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from smartassign.metrics import psnr, psnr_batch, ssim, ssim_batch

PSNR_TOL = 1e-3
SSIM_TOL = 1e-4


def _reference_y(img: np.ndarray) -> np.ndarray:
    """Float BT.601 luma via scikit-image (MATLAB rgb2ycbcr convention, not rounded)."""
    return rgb2ycbcr(img)[..., 0]


def _reference(
    a: np.ndarray, b: np.ndarray, y_channel: bool, crop_border: int
) -> tuple[float, float]:
    c = crop_border
    a = a[c : a.shape[0] - c, c : a.shape[1] - c]
    b = b[c : b.shape[0] - c, c : b.shape[1] - c]
    kwargs: dict[str, Any] = {
        "gaussian_weights": True,
        "sigma": 1.5,
        "use_sample_covariance": False,
        "data_range": 255,
    }
    if y_channel:
        a, b = _reference_y(a), _reference_y(b)
    else:
        kwargs["channel_axis"] = 2
    p = peak_signal_noise_ratio(b, a, data_range=255)
    s = structural_similarity(a, b, **kwargs)
    return p, s


def _noisy(img: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    noise = rng.normal(0.0, std, img.shape)
    return np.clip(np.round(img + noise), 0, 255).astype(np.uint8)


def _pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    random_a = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    random_b = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    photo = astronaut()[100:196:2, 150:278:2]  # 48 x 64 crop of a natural image
    yy, xx = np.mgrid[0:40, 0:56]
    gradient = np.stack([xx * 4, yy * 6, (xx + yy) * 2], axis=-1).astype(np.uint8)
    checker = (((yy // 4 + xx // 4) % 2) * 255).astype(np.uint8)
    checker = np.repeat(checker[..., None], 3, axis=2)
    return {
        "random": (random_a, random_b),
        "photo-noise": (_noisy(photo, rng, 10.0), photo),
        "gradient-noise": (_noisy(gradient, rng, 3.0), gradient),
        "checker-shift": (np.roll(checker, 1, axis=1), checker),
    }


PAIRS = _pairs()


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("y_channel", [False, True])
@pytest.mark.parametrize("crop_border", [0, 4])
def test_matches_skimage(name: str, y_channel: bool, crop_border: int) -> None:
    a, b = PAIRS[name]
    ref_psnr, ref_ssim = _reference(a, b, y_channel, crop_border)
    kwargs = {"y_channel": y_channel, "crop_border": crop_border}
    assert psnr(a, b, **kwargs) == pytest.approx(ref_psnr, abs=PSNR_TOL)
    assert ssim(a, b, **kwargs) == pytest.approx(ref_ssim, abs=SSIM_TOL)


def test_crop_border_changes_result() -> None:
    a, b = PAIRS["photo-noise"]
    assert psnr(a, b, crop_border=4) != psnr(a, b)
    assert ssim(a, b, crop_border=4) != ssim(a, b)


@pytest.mark.parametrize("y_channel", [False, True])
def test_identical_images(y_channel: bool) -> None:
    img = PAIRS["photo-noise"][1]
    assert psnr(img, img.copy(), y_channel=y_channel) == math.inf
    assert ssim(img, img.copy(), y_channel=y_channel) == pytest.approx(1.0, abs=1e-12)
    t = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
    assert torch.isinf(psnr_batch(t, t.clone(), y_channel=y_channel)).all()
    assert ssim_batch(t, t.clone(), y_channel=y_channel).item() == pytest.approx(1.0, abs=1e-12)


def _to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


@pytest.mark.parametrize("y_channel", [False, True])
@pytest.mark.parametrize("crop_border", [0, 3])
def test_batch_matches_numpy(y_channel: bool, crop_border: int) -> None:
    names = ["random", "photo-noise"]
    size = (37, 48)
    preds = [PAIRS[n][0][: size[0], : size[1]] for n in names]
    targets = [PAIRS[n][1][: size[0], : size[1]] for n in names]
    kwargs = {"y_channel": y_channel, "crop_border": crop_border}
    got_psnr = psnr_batch(_to_tensor(preds), _to_tensor(targets), **kwargs)
    got_ssim = ssim_batch(_to_tensor(preds), _to_tensor(targets), **kwargs)
    assert got_psnr.shape == (2,)
    assert got_ssim.shape == (2,)
    for i, (a, b) in enumerate(zip(preds, targets, strict=True)):
        assert got_psnr[i].item() == pytest.approx(psnr(a, b, **kwargs), abs=PSNR_TOL)
        assert got_ssim[i].item() == pytest.approx(ssim(a, b, **kwargs), abs=SSIM_TOL)


def test_batch_quantises_like_uint8() -> None:
    """Out-of-range values are clamped and in-between values rounded to 8-bit levels."""
    rng = np.random.default_rng(1)
    pred = torch.from_numpy(rng.uniform(-0.2, 1.2, (1, 3, 24, 24)))
    target = torch.from_numpy(rng.uniform(0.0, 1.0, (1, 3, 24, 24))).float()

    def as_uint8(t: torch.Tensor) -> np.ndarray:
        x = np.clip(t[0].permute(1, 2, 0).double().numpy(), 0.0, 1.0)
        return np.round(x * 255.0).astype(np.uint8)

    a, b = as_uint8(pred), as_uint8(target)
    assert psnr_batch(pred, target).item() == pytest.approx(psnr(a, b), abs=PSNR_TOL)
    assert ssim_batch(pred, target).item() == pytest.approx(ssim(a, b), abs=SSIM_TOL)


GOOD = np.zeros((16, 16, 3), dtype=np.uint8)


@pytest.mark.parametrize("fn", [psnr, ssim])
@pytest.mark.parametrize(
    ("a", "b", "kwargs", "match"),
    [
        (GOOD.astype(np.float32), GOOD, {}, "dtype uint8"),
        (GOOD, GOOD.astype(np.int16), {}, "dtype uint8"),
        (GOOD[..., 0], GOOD[..., 0], {}, "H x W x 3"),
        (GOOD[..., :2], GOOD[..., :2], {}, "H x W x 3"),
        (GOOD, GOOD[:15], {}, "same shape"),
        (GOOD, GOOD, {"crop_border": 8}, "too large"),
        (GOOD, GOOD, {"crop_border": -1}, ">= 0"),
    ],
)
def test_numpy_bad_inputs(
    fn: Callable[..., float], a: np.ndarray, b: np.ndarray, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        fn(a, b, **kwargs)


def test_ssim_needs_window_sized_image() -> None:
    assert math.isfinite(psnr(GOOD, GOOD + 1, crop_border=3))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(GOOD, GOOD, crop_border=3)


def test_numpy_wrong_types() -> None:
    with pytest.raises(TypeError, match="numpy array"):
        psnr(GOOD.tolist(), GOOD)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="crop_border must be an int"):
        ssim(GOOD, GOOD, crop_border=1.0)  # type: ignore[arg-type]


T_GOOD = torch.zeros(2, 3, 16, 16)


@pytest.mark.parametrize("fn", [psnr_batch, ssim_batch])
@pytest.mark.parametrize(
    ("pred", "target", "kwargs", "match"),
    [
        (T_GOOD.to(torch.uint8), T_GOOD, {}, "floating-point"),
        (T_GOOD[0], T_GOOD[0], {}, "B x 3 x H x W"),
        (T_GOOD[:, :1], T_GOOD[:, :1], {}, "B x 3 x H x W"),
        (T_GOOD, T_GOOD[:1], {}, "same shape"),
        (T_GOOD, T_GOOD, {"crop_border": 8}, "too large"),
    ],
)
def test_torch_bad_inputs(
    fn: Callable[..., torch.Tensor],
    pred: torch.Tensor,
    target: torch.Tensor,
    kwargs: dict[str, Any],
    match: str,
) -> None:
    with pytest.raises(ValueError, match=match):
        fn(pred, target, **kwargs)


def _real_data_root() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
    return Path(os.environ.get("SMARTASSIGN_REAL_DATA", default))


def test_rain12_input_psnr_y() -> None:
    """Mean PSNR-Y of the rainy inputs of Rain12 against ground truth is 30.14 dB."""
    folder = _real_data_root() / "Rain12"
    if not folder.is_dir():
        pytest.skip(f"real-data folder is missing: {folder} (set SMARTASSIGN_REAL_DATA)")
    values = []
    for i in range(1, 13):
        with Image.open(folder / "rain" / f"rain-{i:03d}.png") as im:
            rain = np.asarray(im.convert("RGB"))
        with Image.open(folder / "norain" / f"norain-{i:03d}.png") as im:
            clean = np.asarray(im.convert("RGB"))
        values.append(psnr(rain, clean, y_channel=True))
    assert np.mean(values) == pytest.approx(30.14, abs=0.05)
