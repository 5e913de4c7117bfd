"""Calibration of the recognition head's routing threshold (smartassign.engine.calibration)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from smartassign.builder import build_model
from smartassign.config import Config, config_from_dict
from smartassign.data.manifest import load_pair, manifest_path, read_manifest, write_manifest
from smartassign.engine.calibration import calibrate_recognition, logit_difference
from smartassign.model_io import load_model, save_model_dir
from tests.engine_fixtures import tiny_tree


def _config(root: Path, **model: object) -> Config:
    tree = tiny_tree(root)
    tree["model"] = {**tree["model"], **model}
    return config_from_dict(tree)


def _differences(model: torch.nn.Module, cfg: Config) -> dict[str, float]:
    """``l_rain - l_snow`` of the one validation image per task of the tiny data."""
    root = Path(cfg.data.root)
    records = read_manifest(manifest_path(root, "val"))
    assert sorted(r.task for r in records) == ["rain", "snow"]
    return {r.task: logit_difference(model, load_pair(r, root)[0], cfg) for r in records}


@pytest.fixture
def biased_model(tiny_data: Path) -> tuple[torch.nn.Module, Config]:
    """A tiny model whose head sends every image to rain: its FC bias favours rain by 6."""
    cfg = _config(tiny_data)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.recognition.fc.bias.copy_(torch.tensor([3.0, -3.0]))
    return model, cfg


def test_calibration_moves_the_threshold_midway_between_the_tasks(biased_model):
    model, cfg = biased_model
    before = _differences(model, cfg)
    calibration = calibrate_recognition(model, cfg, limit=0)
    after = _differences(model, cfg)

    assert calibration.images == {"rain": 1, "snow": 1}
    assert calibration.accuracy_before == 0.5  # both images went to rain
    assert calibration.shift == pytest.approx((before["rain"] + before["snow"]) / 2, abs=1e-5)
    assert after["rain"] == pytest.approx(-after["snow"], abs=1e-4)
    assert after["rain"] - after["snow"] == pytest.approx(before["rain"] - before["snow"], abs=1e-4)
    assert calibration.accuracy_after == (1.0 if before["rain"] > before["snow"] else 0.0)


def test_calibration_is_saved_with_the_weights(biased_model, tmp_path):
    model, cfg = biased_model
    calibrate_recognition(model, cfg, limit=0)
    save_model_dir(model, tmp_path / "model", yaml.safe_dump(cfg.to_dict()))
    loaded = load_model(tmp_path / "model")
    torch.testing.assert_close(loaded.recognition.logit_offset, model.recognition.logit_offset)
    assert loaded.recognition.logit_offset.abs().sum() > 0


def test_weights_saved_before_the_offset_load_uncalibrated(tiny_data):
    model = build_model(_config(tiny_data))
    weights = model.state_dict()
    del weights["recognition.logit_offset"]
    model.recognition.logit_offset.fill_(1.0)
    model.load_state_dict(weights)
    torch.testing.assert_close(model.recognition.logit_offset, torch.zeros(2))


def test_calibration_needs_both_tasks_and_a_recognition_head(tiny_data, tmp_path):
    rain_only = [
        dataclasses.replace(r, input=str(tiny_data / r.input), target=str(tiny_data / r.target))
        for r in read_manifest(manifest_path(tiny_data, "val"))
        if r.task == "rain"
    ]
    write_manifest(manifest_path(tmp_path, "val"), rain_only)
    cfg = _config(tmp_path)
    model = build_model(cfg)
    assert calibrate_recognition(model, cfg, limit=0) is None
    torch.testing.assert_close(model.recognition.logit_offset, torch.zeros(2))

    without_head = _config(tiny_data, variant="V5")
    assert calibrate_recognition(build_model(without_head), without_head, limit=0) is None
