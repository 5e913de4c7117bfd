from pathlib import Path

import pytest
import yaml

from smartassign.config import Config, ConfigError, Variant, config_from_dict, load_config

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def test_shipped_params_load_into_typed_sections():
    cfg = load_config(PARAMS)
    assert isinstance(cfg, Config)
    assert cfg.model.variant is Variant.V6
    assert cfg.loss.lambda1 == pytest.approx(0.01)
    assert cfg.loss.lambda2 == pytest.approx(0.001)
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.train.lr_schedule == "cosine"
    assert cfg.loss.charbonnier == "image"
    assert set(cfg.to_dict()) == {
        "model",
        "loss",
        "data",
        "train",
        "tune",
        "ablation",
        "registry",
        "inference",
    }


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
    assert config_from_dict({"data": {"crop_size": 64}, "model": {"recognition_window": 0}})


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
    assert flat["train.batch_size"] == 64
