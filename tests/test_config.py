from pathlib import Path

import pytest
import yaml

from smartassign.config import Config, ConfigError, Variant, config_from_dict, load_config

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def test_shipped_params_load_into_typed_sections():
    cfg = load_config(PARAMS)
    assert isinstance(cfg, Config)
    raw = yaml.safe_load(PARAMS.read_text())
    assert cfg.model.variant is Variant(raw["model"]["variant"])
    for section, key in (("loss", "lambda1"), ("loss", "lambda2"), ("train", "lr")):
        value = getattr(getattr(cfg, section), key)
        assert isinstance(value, float) and value == pytest.approx(raw[section][key])
    assert cfg.train.lr_schedule == raw["train"]["lr_schedule"]
    assert set(cfg.to_dict()) == {
        "experiment",
        "model",
        "loss",
        "data",
        "train",
        "tune",
        "ablation",
        "registry",
        "inference",
        "evaluate",
        "analysis",
    }


def test_code_defaults_are_the_shipped_params():
    """A key left out of a params file gets the value params.yaml documents."""
    shipped, defaults = load_config(PARAMS).flat(), Config().flat()
    assert {k: (v, shipped.get(k)) for k, v in defaults.items() if shipped.get(k) != v} == {}


def test_shipped_params_spell_out_every_model_and_loss_key():
    tree = yaml.safe_load(PARAMS.read_text())
    for section in ("model", "loss"):
        fields = set(type(getattr(Config(), section)).model_fields)
        assert set(tree[section]) == fields, section


def _write(tmp_path: Path, tree: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_unknown_key_is_refused_with_its_name(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.chanels: unknown key"):
        load_config(_write(tmp_path, {"model": {"chanels": 8}}))


def test_unknown_section_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"optimiser: unknown key"):
        load_config(_write(tmp_path, {"optimiser": {"lr": 1}}))


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("model", "channels", 0),
        ("model", "gate", "tanh"),
        ("model", "variant", "V9"),
        ("loss", "lambda1", -0.1),
        ("train", "lr", 0),
        ("train", "device", "tpu"),
        ("analysis", "split", "train"),
        ("analysis", "closed_below", 1.0),
    ],
)
def test_out_of_range_values_name_the_key(tmp_path, section, key, value):
    with pytest.raises(ConfigError, match=rf"{section}\.{key}:"):
        load_config(_write(tmp_path, {section: {key: value}}))


def test_heads_must_divide_the_token_width():
    with pytest.raises(ConfigError, match=r"model\.embed_dim \(30\) must be divisible"):
        config_from_dict({"model": {"embed_dim": 30, "num_heads": 4}})


def test_recognition_window_follows_the_training_crop():
    with pytest.raises(
        ConfigError, match=r"model\.recognition_window \(32\) must be data\.crop_size \(64\)"
    ):
        config_from_dict({"data": {"crop_size": 64}})
    cfg = config_from_dict({"data": {"crop_size": 64}, "model": {"recognition_window": 64}})
    assert cfg.model.recognition_window == 64
    whole = config_from_dict({"data": {"crop_size": 64}, "model": {"recognition_window": 0}})
    assert whole.model.recognition_window == 0


def test_monitor_and_registry_metric_must_grow_with_quality():
    with pytest.raises(ConfigError, match=r"train\.monitor: .*'val/psnr_y' is not a val metric"):
        config_from_dict({"train": {"monitor": "val/psnr_y"}})
    with pytest.raises(ConfigError, match=r"registry\.metric: .*'test/rain/input_psnr_y' is not"):
        config_from_dict({"registry": {"metric": "test/rain/input_psnr_y"}})
    with pytest.raises(ConfigError, match=r"V5 has no recognition head"):
        config_from_dict({"model": {"variant": "V5"}, "train": {"monitor": "val/recognition_acc"}})
    single = {"variant": "V4", "single_task": "rain"}
    with pytest.raises(
        ConfigError, match=r"val/snow/psnr is never measured: variant V4 covers rain"
    ):
        config_from_dict({"model": single, "train": {"monitor": "val/snow/psnr"}})
    per_dataset = "test/synthetic/snow/ssim"
    cfg = config_from_dict(
        {"train": {"monitor": "val/rain/ssim_y"}, "registry": {"metric": per_dataset}}
    )
    assert (cfg.train.monitor, cfg.registry.metric) == ("val/rain/ssim_y", per_dataset)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_override_revalidates_and_refuses_unknown_keys():
    cfg = Config()
    tuned = cfg.override({"loss.lambda2": 0.01, "model.gkfm_out": 16})
    assert tuned.loss.lambda2 == pytest.approx(0.01)
    assert tuned.model.gkfm_out == 16
    assert cfg.loss.lambda2 == pytest.approx(0.001)
    with pytest.raises(ConfigError, match=r"loss\.lamda2: unknown"):
        cfg.override({"loss.lamda2": 1.0})
    with pytest.raises(ConfigError, match=r"loss\.lambda1:"):
        cfg.override({"loss.lambda1": -1.0})


def test_flat_view_uses_dotted_keys():
    flat = Config().flat()
    assert flat["model.variant"] == "V6"
    assert flat["train.batch_size"] == 32
