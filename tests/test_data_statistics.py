"""Rain and snow statistics measure what was drawn: known streaks, flakes and veils."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from smartassign.config import REAL_CHECK_SETS
from smartassign.data.statistics import rain_statistics, removal_bounds, snow_statistics
from smartassign.metrics import psnr

ROOT = Path(__file__).resolve().parents[1]


def _streaks(angle: float, length: int, width: float, count: int = 300) -> np.ndarray:
    """Uniform lines of ``length`` px at ``angle`` degrees from vertical (lower end to the
    right for positive angles), Gaussian profile of sigma ``width``, peak 0.4."""
    rng = np.random.default_rng(0)
    field = np.zeros((400, 400), np.float32)
    theta = np.radians(angle)
    for y, x in rng.integers(0, 400, (count, 2)):
        dx, dy = length / 2 * np.sin(theta), length / 2 * np.cos(theta)
        start = (int(np.rint(x - dx)), int(np.rint(y - dy)))
        end = (int(np.rint(x + dx)), int(np.rint(y + dy)))
        cv2.line(field, start, end, 1.0, 1, cv2.LINE_AA)
    lone = np.zeros((64, 64), np.float32)
    lone[:, 32] = 1.0
    peak = cv2.GaussianBlur(lone, (0, 0), width).max()  # one line's peak after the blur
    return 0.4 * np.clip(cv2.GaussianBlur(field, (0, 0), width) / peak, 0, 1)


@pytest.mark.parametrize(
    ("angle", "length", "width"), [(0, 30, 1.0), (15, 40, 1.0), (-20, 60, 1.6)]
)
def test_direction_width_and_length_of_drawn_streaks(angle, length, width):
    rng = np.random.default_rng(4)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (400, 400)).astype(np.float32), (0, 0), 6)
    clean = np.repeat((70 + 300 * texture).clip(40, 100).astype(np.uint8)[..., None], 3, axis=2)
    degraded = np.clip(clean + _streaks(angle, length, width)[..., None] * 255, 0, 255)
    stats = rain_statistics(degraded.astype(np.uint8), clean)
    assert stats.angle == pytest.approx(angle, abs=3)
    assert stats.length == pytest.approx(length, rel=0.25)
    assert stats.width == pytest.approx(2.355 * width, rel=0.35)  # FWHM of the profile
    assert stats.greyness == pytest.approx(1.0, abs=0.02)  # added equally to R, G and B
    assert stats.veil == pytest.approx(0.0, abs=0.01)
    assert stats.darker == 0.0  # rain only brightens
    assert stats.shift < 0.3  # the streaks, in the input only, pull it slightly
    assert stats.contrast_p95 == pytest.approx(0.4, abs=0.05)


def test_a_uniform_veil_is_veil_not_streaks():
    rng = np.random.default_rng(1)
    clean = rng.integers(40, 200, (200, 200, 3)).astype(np.uint8)
    clean = cv2.GaussianBlur(clean, (0, 0), 3)
    veiled = (clean * 0.8 + 0.2 * 230).astype(np.uint8)  # I = J (1 - v) + A v, v = 0.2
    stats = rain_statistics(veiled, clean)
    assert stats.veil_slope == pytest.approx(0.2, abs=0.03)
    assert stats.veil > 0.05
    assert stats.coverage < 0.05


def test_a_dim_veil_darkens_bright_parts_and_is_measured_as_transmission_and_light():
    """A grey light below the scene's brightest parts (RainTrainL, docs/data.md) lowers the
    contrast from both ends: darker pixels, yet a veil of the fitted ``t`` and ``A``."""
    rng = np.random.default_rng(2)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (400, 400)).astype(np.float32), (0, 0), 10)
    luma = cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    clean = np.repeat(luma[..., None], 3, axis=2)
    veiled = (clean * 0.6 + 0.4 * 0.3 * 255).astype(np.uint8)
    stats = rain_statistics(veiled, clean)
    assert stats.transmission == pytest.approx(0.6, abs=0.05)
    assert stats.veil_light == pytest.approx(0.3, abs=0.05)
    assert stats.darker > 0.1
    streaked = np.clip(clean + _streaks(5, 30, 1.0)[..., None] * 255, 0, 255)
    clear = rain_statistics(streaked.astype(np.uint8), clean)
    assert clear.transmission == pytest.approx(1.0, abs=0.03)
    assert math.isnan(clear.veil_light)


def test_a_shifted_target_is_measured_as_darker_pixels_and_a_shift():
    rng = np.random.default_rng(3)
    scene = cv2.GaussianBlur(rng.integers(0, 255, (200, 200, 3)).astype(np.uint8), (0, 0), 2)
    stats = rain_statistics(scene, np.roll(scene, 2, axis=1))
    assert stats.shift == pytest.approx(2.0, abs=0.2)
    assert stats.darker > 0.1


def test_removal_bounds_take_out_rain_and_only_rain():
    rng = np.random.default_rng(5)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (400, 400)).astype(np.float32), (0, 0), 6)
    clean = np.repeat((70 + 300 * texture).clip(40, 100).astype(np.uint8)[..., None], 3, axis=2)
    streaked = np.clip(clean + _streaks(5, 30, 1.0)[..., None] * 255, 0, 255).astype(np.uint8)
    rainy = removal_bounds(streaked, clean)
    assert rainy.input == pytest.approx(psnr(streaked, clean, y_channel=True), abs=0.01)
    assert rainy.streaks_removed > rainy.input + 5  # the streaks are details, brighter
    assert rainy.brightening_removed == math.inf  # rain only brightens
    veiled = (clean * 0.8 + 0.2 * 230).astype(np.uint8)
    hazy = removal_bounds(veiled, clean)
    assert hazy.veil_removed > hazy.input + 10 and hazy.streaks_removed < hazy.input + 3
    dim = (clean * 0.6 + 0.4 * 0.3 * 255).astype(np.uint8)  # a grey veil also darkens
    rain = streaked.astype(int) - clean
    dimmed = removal_bounds(np.clip(dim + rain, 0, 255).astype(np.uint8), clean)
    assert dimmed.veil_removed < dimmed.input + 3 < dimmed.streaks_removed + 3
    assert dimmed.veil_and_streaks_removed > dimmed.input + 10
    darker = (clean * 0.8).astype(np.uint8)  # another exposure: not rain, nothing to take out
    dark = removal_bounds(darker, clean)
    assert dark.brightening_removed == pytest.approx(dark.input, abs=0.01)


def test_coloured_residual_is_not_grey():
    clean = np.full((100, 100, 3), 60, np.uint8)
    degraded = clean.copy()
    degraded[::10, :, 0] += 80  # red lines only
    assert rain_statistics(degraded, clean).greyness < 0.05


def test_flakes_are_counted_and_sized():
    image = np.full((300, 300, 3), 50, np.uint8)
    rng = np.random.default_rng(2)
    centres = rng.integers(10, 290, (40, 2))
    for y, x in centres:
        cv2.circle(image, (int(x), int(y)), 3, (230, 230, 230), -1)
    stats = snow_statistics(image)
    assert stats.flake_density == pytest.approx(40 / 300**2 * 10_000, rel=0.15)
    assert stats.flake_radius_median == pytest.approx(3.3, abs=0.8)
    assert stats.flake_contrast > 0.5


def test_mismatched_pair_sizes_are_refused():
    with pytest.raises(ValueError, match="pair sizes differ"):
        rain_statistics(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8))


def test_degradation_stats_script_sets_the_generator_beside_the_real_pairs(
    real_data_dir, tmp_path, monkeypatch
):
    """docs/degradation_stats.py, which gives docs/data.md its tables: every real set and
    the generator, every statistic, the veil where there is one, and the oracle bounds."""
    spec = importlib.util.spec_from_file_location("stats", ROOT / "docs" / "degradation_stats.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "stats.json"
    argv = ["--real", str(real_data_dir), "--params", str(ROOT / "params.yaml")]
    monkeypatch.setattr(
        sys, "argv", ["degradation_stats.py", *argv, "--samples", "6", "--out", str(out)]
    )
    script.main()
    stats = json.loads(out.read_text())
    assert set(stats["rain"]) == {*REAL_CHECK_SETS, "generator"}
    for summary in stats["rain"].values():
        assert set(summary) == set(script.RAIN_KEYS)
    assert stats["rain"]["Rain12"]["veil_light"] == [None, None, None]  # no veil to measure
    assert stats["rain"]["Rain12"]["transmission"][1] > 0.97
    assert stats["rain"]["RainTrainL_10"]["transmission"][1] < 0.9
    assert stats["rain"]["RainTrainL_10"]["veil_light"][1] < 0.6  # a dim veil
    bounds = stats["removal_bounds"]["RainTrainL_10"]
    assert bounds["input"] < bounds["streaks_removed"] < bounds["veil_and_streaks_removed"]
    assert stats["images"]["generator rain"] == 6 and stats["images"]["RainTrainL_10"] == 9
    worse = stats["worse_with_streaks_removed"]
    assert set(worse) == set(REAL_CHECK_SETS)
    assert list(worse["RainTrainL_10"]) == ["rain-10"]
    assert worse["RainTrainL_10"]["rain-10"]["gain"] < 0  # its target is brighter than its input
    assert worse["RainTrainL_10"]["rain-10"]["target_brighter"] > 10
    assert worse["Rain12"] == {}  # its residual is all rain: the oracle restores every pair
