"""Registering and promoting models in a temporary SQLite MLflow registry."""

from __future__ import annotations

import json

import pytest
import torch

from smartassign.cli import main
from smartassign.config import Config, ModelConfig
from smartassign.engine import tracking
from smartassign.model import SmartAssign
from smartassign.registry import (
    CHALLENGER,
    CHAMPION,
    PromotionError,
    list_versions,
    promote,
    register,
)

from .test_model import TINY

METRIC = "test/psnr_y_mean"


@pytest.fixture
def logged_model(mlflow_store: str) -> str:
    """A tiny SmartAssign logged to an MLflow run; returns its model URI."""
    import mlflow
    import mlflow.pytorch

    mlflow.set_tracking_uri(mlflow_store)
    torch.manual_seed(0)
    model = SmartAssign.from_config(ModelConfig(**TINY))
    with mlflow.start_run():
        info = mlflow.pytorch.log_model(model, name="model", serialization_format="pickle")
    return info.model_uri


def _aliases(cfg: Config) -> dict[int, tuple[str, ...]]:
    return {info.version: info.aliases for info in list_versions(cfg)}


def _promotion(cfg: Config, version: int) -> dict:
    tags = tracking.client().get_model_version(cfg.registry.model_name, str(version)).tags
    return json.loads(tags["promotion"])


def test_better_candidate_takes_champion_and_worse_does_not(logged_model):
    cfg = Config()
    first = register(cfg, logged_model, {METRIC: 25.0, "manifest_sha256": "set-a"})
    assert _aliases(cfg)[first] == (CHALLENGER,)
    decision = promote(cfg)
    assert decision.promoted and decision.reason == "no champion yet"
    assert CHAMPION in _aliases(cfg)[first]

    worse = register(cfg, logged_model, {METRIC: 24.5, "manifest_sha256": "set-a"})
    decision = promote(cfg)
    assert not decision.promoted
    assert decision.champion_value == 25.0 and decision.candidate_value == 24.5
    assert CHAMPION in _aliases(cfg)[first]
    assert _promotion(cfg, worse)["promoted"] is False
    champion_tags = tracking.client().get_model_version(cfg.registry.model_name, "1").tags
    assert json.loads(champion_tags["promotion_defended"])["candidate"] == worse

    better = register(cfg, logged_model, {METRIC: 26.0, "manifest_sha256": "set-a"})
    decision = promote(cfg)
    assert decision.promoted and decision.champion_before == first
    assert _aliases(cfg)[better] == (CHALLENGER, CHAMPION)
    assert CHAMPION not in _aliases(cfg)[first]


def test_force_needs_a_reason_and_records_it(logged_model):
    cfg = Config()
    register(cfg, logged_model, {METRIC: 30.0, "manifest_sha256": "set-a"})
    promote(cfg)
    weak = register(cfg, logged_model, {METRIC: 20.0, "manifest_sha256": "set-a"})
    with pytest.raises(PromotionError, match="--force needs --reason"):
        promote(cfg, force=True)
    decision = promote(cfg, weak, force=True, reason="roll back to the model QA signed off")
    assert decision.promoted
    record = _promotion(cfg, weak)
    assert record["forced"] is True
    assert "roll back to the model QA signed off" in record["reason"]
    assert CHAMPION in _aliases(cfg)[weak]


def test_champion_on_another_test_set_is_re_evaluated(logged_model):
    cfg = Config()
    old = register(cfg, logged_model, {METRIC: 28.0, "manifest_sha256": "old-set"})
    promote(cfg)
    new = register(cfg, logged_model, {METRIC: 27.0, "manifest_sha256": "new-set"})
    with pytest.raises(PromotionError, match="another test set"):
        promote(cfg)
    asked = []

    def reevaluate(version: int) -> dict[str, float]:
        asked.append(version)
        return {METRIC: 26.0}

    decision = promote(cfg, reevaluate=reevaluate)
    assert asked == [old]
    assert decision.promoted and decision.champion_value == 26.0
    assert CHAMPION in _aliases(cfg)[new]


def test_cli_register_promote_and_list(logged_model, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("registry: {model_name: derain-snow}\n")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "mlflow_model_uri").write_text(logged_model + "\n")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({METRIC: 27.5, "manifest_sha256": "set-a"}))
    out = tmp_path / "version.json"
    args = ["--params", str(params), "--model-dir", str(model_dir), "--metrics", str(metrics)]
    assert main(["register", *args, "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == {"model_name": "derain-snow", "version": 1}
    decision = tmp_path / "decision.json"
    assert main(["promote", "--params", str(params), "--out", str(decision)]) == 0
    assert json.loads(decision.read_text())["promoted"] is True
    assert main(["models", "--params", str(params)]) == 0
    listing = capsys.readouterr().out
    assert "challenger,champion" in listing and "27.5000" in listing
    assert main(["promote", "--params", str(params), "--force"]) == 2
    assert "--force needs --reason" in capsys.readouterr().err
