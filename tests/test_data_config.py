"""The ``data`` section of params.yaml: typed, documented, and refusing bad combinations."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from smartassign.config import ConfigError, DataConfig, config_from_dict, load_config

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def _data(**data: object):
    return config_from_dict({"data": data})


def test_shipped_params_spell_out_every_data_key():
    tree = yaml.safe_load(PARAMS.read_text())["data"]
    assert set(tree) == set(DataConfig.model_fields)
    cfg = load_config(PARAMS).data
    assert set(tree["synthetic"]) == set(type(cfg.synthetic).model_fields)
    assert set(tree["synthetic"]["rain"]) == set(type(cfg.synthetic.rain).model_fields)
    assert set(tree["synthetic"]["snow"]) == set(type(cfg.synthetic.snow).model_fields)


@pytest.mark.parametrize(
    ("synthetic", "match"),
    [
        ({"rain": {"length": [40, 8]}}, r"data\.synthetic\.rain: .*length: low end 40"),
        ({"snow": {"size": [-1, 2]}}, r"data\.synthetic\.snow: .*size: must not be negative"),
        ({"rain": {"haze_probability": 2}}, r"data\.synthetic\.rain\.haze_probability"),
    ],
)
def test_bad_ranges_name_the_key(synthetic, match):
    with pytest.raises(ConfigError, match=match):
        _data(synthetic=synthetic)


def test_angles_may_be_negative():
    assert _data(synthetic={"rain": {"angle": [-40, -10]}}).data.synthetic.rain.angle == (-40, -10)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"layout": "paired", "input_dir": "a", "target_dir": "b"}, "needs task"),
        ({"layout": "csd", "task": "snow"}, "task: only for layout 'paired'"),
        (
            {
                "layout": "paired",
                "task": "rain",
                "input_dir": "a",
                "target_dir": "b",
                "match": "regex",
                "input_regex": "(.+)",
                "target_regex": "(?P<key>.+)",
            },
            "input_regex: match=regex needs a named group",
        ),
        ({"layout": "csd", "val_fraction": 0.5, "test_fraction": 0.5}, "must stay below 1"),
        ({"layout": "unknown"}, r"data\.datasets\.0\.layout"),
    ],
)
def test_dataset_specs_are_checked(spec, match):
    with pytest.raises(ConfigError, match=match):
        _data(datasets=[{"name": "x", "root": "/tmp", **spec}])


def test_names_are_unique_and_synthetic_is_reserved():
    with pytest.raises(ConfigError, match="duplicate names"):
        _data(datasets=[{"name": "synthetic", "layout": "csd", "root": "/tmp"}])


def test_crop_size_consistency():
    with pytest.raises(ConfigError, match=r"precrop.size \(64\) must be 0 or at least crop_size"):
        _data(crop_size=128, precrop={"size": 64})
    with pytest.raises(ConfigError, match="would refuse every synthetic image"):
        _data(crop_size=128, small_images="refuse", synthetic={"size": 96})


def test_a_full_dump_validates_again():
    cfg = _data(datasets=[{"name": "csd", "layout": "csd", "root": "/tmp"}])
    assert cfg.override({"data.seed": 3}).data.datasets == cfg.data.datasets
