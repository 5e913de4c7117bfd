"""Fine-tuning a trained model on real benchmark pairs (``train.init`` / ``--init``):
RainTrainH_12 of ../shared/data/real in its published layout, pairs held out by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from smartassign.builder import build_model
from smartassign.config import Config, ConfigError
from smartassign.data.common import DataError
from smartassign.data.prepare import prepare
from smartassign.engine import tracking
from smartassign.engine.checkpoint import save_checkpoint
from smartassign.engine.loop import LocalSession, WorkerRun
from smartassign.engine.run import export_model_dir, fit, initial_weights, train
from smartassign.evaluation import evaluate
from smartassign.model_io import load_model, save_model_dir

from .test_train import _ray_must_not_start

pytestmark = pytest.mark.slow


def rain_train_h(real_data_dir: Path) -> dict:
    """The RainTrainH_12 folder in its published Rain-streak layout, a quarter of its pairs
    held out for test and a quarter for val (by name)."""
    return {
        "name": "rain_train_h",
        "layout": "rain_streak",
        "root": str(real_data_dir / "RainTrainH_12"),
        "val_fraction": 0.25,
        "test_fraction": 0.25,
    }


def _heavy_rain(real_data_dir: Path, root: Path, base: Config) -> Config:
    """RainTrainH_12 alone (:func:`rain_train_h`), prepared into ``root``, trained on plain
    random crops: heavy rain covers every crop, so the detail-seeking crops of the synthetic
    default (``data.crop_candidates``) only narrow what the few steps see."""
    cfg = base.override(
        {
            "data.root": str(root),
            "data.synthetic": {**base.data.synthetic.model_dump(mode="json"), "enabled": False},
            "data.datasets": [rain_train_h(real_data_dir)],
            "data.samples_per_epoch": 64,
            "data.crop_candidates": 1,
        }
    )
    prepare(cfg, progress=False)
    return cfg


@pytest.fixture
def parent(tiny_config, tmp_path: Path) -> Path:
    """A model trained briefly on the synthetic default: the model to fine-tune. Its two
    epochs run the worker loop in this process (the fine-tuning run is the Ray run here)."""
    cfg = tiny_config("parent", epochs=2)
    run = WorkerRun(cfg, {"config": cfg.to_dict(), "session": LocalSession()})
    for epoch in range(cfg.train.epochs):
        run.train_epoch(epoch)
    checkpoint = tmp_path / "parent_checkpoint"
    save_checkpoint(
        checkpoint, cfg=cfg, progress=run.progress, parts=run.optimisation.state_dicts()
    )
    export_model_dir(checkpoint, tmp_path / "parent")
    return tmp_path / "parent"


@pytest.fixture
def saved_model(tiny_config, tmp_path: Path) -> Path:
    """A model folder of the tiny widths whose weights no fresh initialisation gives."""
    cfg = tiny_config("saved")
    model = build_model(cfg)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for weights in model.parameters():
            weights.add_(0.05 * torch.randn(weights.shape, generator=generator))
    folder = tmp_path / "saved_model"
    save_model_dir(model, folder, yaml.safe_dump(cfg.to_dict()))
    return folder


def test_fine_tuning_on_heavy_rain_raises_the_held_out_psnr(
    tiny_config, parent: Path, real_data_dir: Path, tmp_path: Path, mlflow_store: str, capsys
):
    tuning = {"epochs": 8, "lr": 0.005, "lr_schedule": "plateau"}
    cfg = _heavy_rain(real_data_dir, tmp_path / "rain_h", tiny_config("finetune", **tuning))
    before = evaluate(load_model(parent), cfg, "test", progress=False).metrics
    result = train(cfg.override({"train.init": str(parent)}))
    assert "recognition threshold left as trained" in capsys.readouterr().out
    after = evaluate(load_model(result.model_dir), cfg, "test", progress=False).metrics
    assert before["test/rain/count"] == after["test/rain/count"] == 3
    assert after["test/rain/psnr_y"] > before["test/rain/psnr_y"] + 0.5, (before, after)
    run = tracking.client().get_run(result.run_id)
    assert run.data.tags["parent_model"] == str(parent)


def test_the_run_starts_from_the_init_models_weights(
    tiny_config, saved_model: Path, real_data_dir: Path, tmp_path: Path
):
    """With a learning rate too small to move anything, the trained weights are the saved
    model's: the workers started from them, not from a fresh initialisation."""
    cfg = _heavy_rain(real_data_dir, tmp_path / "rain_h", tiny_config("frozen", epochs=1))
    cfg = cfg.override({"train.init": str(saved_model), "train.lr": 1e-12, "train.warmup_steps": 0})
    result, _ = fit(cfg, track=False)
    with result.checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / "state.pt", map_location="cpu", weights_only=False)
    for name, value in load_model(saved_model).state_dict().items():
        torch.testing.assert_close(state["model"][name], value, atol=1e-8, rtol=0)


def test_the_run_starts_with_the_recognition_threshold_uncalibrated(tiny_config, tmp_path: Path):
    """A calibrated model's logit offset is not carried into the run that starts from it:
    the run learns raw logits and is calibrated again at its end."""
    cfg = tiny_config("calibrated")
    model = build_model(cfg)
    model.recognition.logit_offset.copy_(torch.tensor([-0.7, 0.7]))
    save_model_dir(model, tmp_path / "calibrated", yaml.safe_dump(cfg.to_dict()))
    weights = initial_weights(cfg.override({"train.init": str(tmp_path / "calibrated")}))
    torch.testing.assert_close(weights["recognition.logit_offset"], torch.zeros(2))
    torch.testing.assert_close(weights["recognition.fc.bias"], model.recognition.fc.bias.detach())


def test_an_init_model_of_other_widths_is_refused_before_ray_starts(
    tiny_config, saved_model: Path, monkeypatch
):
    cfg = tiny_config("wide").override(
        {"train.init": str(saved_model), "model.channels": 16, "model.gkfm_out": 12}
    )
    _ray_must_not_start(monkeypatch)
    with pytest.raises(ConfigError, match=r"train\.init: the weights of .* do not fit") as error:
        fit(cfg, track=False)
    assert "model.channels 8 there, 16 here" in str(error.value)
    assert "model.gkfm_out 8 there, 12 here" in str(error.value)


def test_a_missing_init_model_is_refused_before_ray_starts(tiny_config, tmp_path, monkeypatch):
    cfg = tiny_config("missing").override({"train.init": str(tmp_path / "nowhere")})
    _ray_must_not_start(monkeypatch)
    with pytest.raises(ConfigError, match=r"train\.init: .*nowhere: model folder not found"):
        fit(cfg, track=False)


def test_a_missing_dataset_root_is_named_by_its_key(tiny_config, tmp_path):
    cfg = tiny_config("root").override(
        {
            "data.root": str(tmp_path / "data"),
            "data.datasets": [
                {"name": "h", "layout": "rain_streak", "root": str(tmp_path / "RainTrainH")}
            ],
        }
    )
    with pytest.raises(DataError, match=r"data\.datasets\[0\]\.root: data set 'h': root folder"):
        prepare(cfg, progress=False)


def test_a_train_split_without_pairs_is_refused_before_ray_starts(
    tiny_config, real_data_dir, tmp_path, monkeypatch
):
    """A train manifest left empty (every pair held out, limited or skipped)."""
    cfg = _heavy_rain(real_data_dir, tmp_path / "rain_h", tiny_config("empty"))
    (tmp_path / "rain_h" / "manifests" / "train.jsonl").write_text("")
    _ray_must_not_start(monkeypatch)
    with pytest.raises(ConfigError, match=r"the train split in .* has no pairs"):
        fit(cfg, track=False)
    (tmp_path / "rain_h" / "manifests" / "train.jsonl").unlink()
    with pytest.raises(ConfigError, match=r"data\.root: no training manifest .* prepare"):
        fit(cfg, track=False)
