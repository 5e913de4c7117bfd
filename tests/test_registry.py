"""Registering and promoting models in a temporary SQLite MLflow registry."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch
import yaml

from smartassign.builder import build_model
from smartassign.cli import main
from smartassign.config import Config, config_from_dict, load_config
from smartassign.engine import tracking
from smartassign.model_io import load_model, log_model, save_model_dir
from smartassign.model_metrics import log_evaluation, model_id_of
from smartassign.registry import (
    CHALLENGER,
    CHAMPION,
    PromotionError,
    Reevaluation,
    list_versions,
    promote,
    register,
)

from .test_model import TINY

METRIC = "test/psnr_y_mean"


@pytest.fixture
def logged_model(mlflow_store: str, tmp_path) -> Callable[[], str]:
    """``logged_model()`` logs a new tiny SmartAssign to an MLflow run; returns its URI."""
    torch.manual_seed(0)
    cfg = config_from_dict({"model": TINY})
    save_model_dir(build_model(cfg), tmp_path / "logged", yaml.safe_dump(cfg.to_dict()))

    def make() -> str:
        run = tracking.client().create_run(tracking.experiment_id(tracking.client(), "logging"))
        return log_model(tmp_path / "logged", run.info.run_id)

    return make


def _evaluated(cfg: Config, model_uri: str, metrics: dict) -> str:
    """``model_uri`` with ``metrics`` linked to it on their test set, as evaluate logs them."""
    numbers = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    test_set = metrics["manifest_sha256"]
    sets = [("test", test_set, "data/manifests/test.jsonl", numbers)]
    log_evaluation(cfg.registry.experiment, model_id_of(model_uri), sets)
    return model_uri


def _register(
    cfg: Config, new_model: Callable[[], str], metrics: dict, trained: Config | None = None
) -> int:
    """Register a new logged model evaluated with ``metrics``."""
    return register(cfg, _evaluated(cfg, new_model(), metrics), metrics, trained or cfg)


def _aliases(cfg: Config) -> dict[int, tuple[str, ...]]:
    return {info.version: info.aliases for info in list_versions(cfg)}


def _promotion(cfg: Config, version: int) -> dict:
    tags = tracking.client().get_model_version(cfg.registry.model_name, str(version)).tags
    return json.loads(tags["promotion"])


def test_better_candidate_takes_champion_and_worse_does_not(logged_model):
    cfg = Config()
    first = _register(cfg, logged_model, {METRIC: 25.0, "manifest_sha256": "set-a"})
    assert _aliases(cfg)[first] == (CHALLENGER,)
    decision = promote(cfg)
    assert decision.promoted and decision.reason == "no champion yet"
    assert CHAMPION in _aliases(cfg)[first]

    worse = _register(cfg, logged_model, {METRIC: 24.5, "manifest_sha256": "set-a"})
    decision = promote(cfg)
    assert not decision.promoted
    assert decision.champion_value == 25.0 and decision.candidate_value == 24.5
    assert CHAMPION in _aliases(cfg)[first]
    assert _promotion(cfg, worse)["promoted"] is False
    champion_tags = tracking.client().get_model_version(cfg.registry.model_name, "1").tags
    assert json.loads(champion_tags["promotion_defended"])["candidate"] == worse

    better = _register(cfg, logged_model, {METRIC: 26.0, "manifest_sha256": "set-a"})
    decision = promote(cfg)
    assert decision.promoted and decision.champion_before == first
    assert _aliases(cfg)[better] == (CHALLENGER, CHAMPION)
    assert CHAMPION not in _aliases(cfg)[first]


def test_force_needs_a_reason_and_records_it(logged_model):
    cfg = Config()
    _register(cfg, logged_model, {METRIC: 30.0, "manifest_sha256": "set-a"})
    promote(cfg)
    weak = _register(cfg, logged_model, {METRIC: 20.0, "manifest_sha256": "set-a"})
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
    old = _register(cfg, logged_model, {METRIC: 28.0, "manifest_sha256": "old-set"})
    promote(cfg)
    new = _register(cfg, logged_model, {METRIC: 27.0, "manifest_sha256": "new-set"})
    with pytest.raises(PromotionError, match="another test set"):
        promote(cfg)
    asked = []

    def score(version: int) -> dict[str, float | str]:
        asked.append(version)
        return {METRIC: 26.0, "manifest_sha256": "new-set"}

    decision = promote(cfg, reevaluate=Reevaluation(lambda: "new-set", score))
    assert asked == [old]
    assert decision.promoted and decision.champion_value == 26.0
    assert CHAMPION in _aliases(cfg)[new]


def test_candidate_scored_on_an_older_test_set_is_not_compared(logged_model):
    """The champion can only be re-evaluated on the current test set: a candidate scored on
    yet another one must be evaluated again, or the two numbers mean different things."""
    cfg = Config()
    _register(cfg, logged_model, {METRIC: 28.0, "manifest_sha256": "set-a"})
    promote(cfg)
    stale = _register(cfg, logged_model, {METRIC: 29.0, "manifest_sha256": "set-b"})
    asked = []

    def score(version: int) -> dict[str, float | str]:
        asked.append(version)
        return {METRIC: 27.0, "manifest_sha256": "set-c"}

    with pytest.raises(PromotionError, match=f"v{stale} was evaluated on another test set"):
        promote(cfg, reevaluate=Reevaluation(lambda: "set-c", score))
    assert asked == [], "the champion was re-evaluated although no comparison could follow"
    assert CHAMPION not in _aliases(cfg)[stale]


def test_test_set_changing_during_re_evaluation_is_refused(logged_model):
    cfg = Config()
    _register(cfg, logged_model, {METRIC: 28.0, "manifest_sha256": "set-a"})
    promote(cfg)
    candidate = _register(cfg, logged_model, {METRIC: 29.0, "manifest_sha256": "set-b"})

    def score(version: int) -> dict[str, float | str]:
        return {METRIC: 27.0, "manifest_sha256": "set-c"}

    with pytest.raises(PromotionError, match="test set changed while champion v1"):
        promote(cfg, reevaluate=Reevaluation(lambda: "set-b", score))
    assert CHAMPION not in _aliases(cfg)[candidate]


def test_means_over_different_tasks_are_not_compared(logged_model):
    """A single-task model's mean covers one task: it cannot beat a two-task champion's
    mean, but a per-task metric compares them."""
    cfg = Config()
    both = {"test/rain/count": 12, "test/snow/count": 12, "test/rain/psnr_y": 27.0}
    _register(cfg, logged_model, {**both, METRIC: 28.0, "manifest_sha256": "set-a"})
    promote(cfg)
    rain_only = {"test/rain/count": 12, "test/rain/psnr_y": 30.0}
    single = _register(cfg, logged_model, {**rain_only, METRIC: 30.0, "manifest_sha256": "set-a"})
    with pytest.raises(PromotionError, match=r"rain and that of champion v1 rain\+snow"):
        promote(cfg)
    per_task = config_from_dict({"registry": {"metric": "test/rain/psnr_y"}})
    decision = promote(per_task, single)
    assert decision.promoted and decision.champion_value == 27.0


def test_registering_without_the_registry_metric_is_refused(logged_model):
    cfg = config_from_dict({"registry": {"metric": "test/snow/psnr_y"}})
    with pytest.raises(ValueError, match=r"registry\.metric 'test/snow/psnr_y' is not among"):
        _register(cfg, logged_model, {METRIC: 28.0, "manifest_sha256": "set-a"})
    assert tracking.client().search_registered_models() == []


def test_description_records_the_trained_configuration(logged_model):
    cfg = Config()
    trained = config_from_dict({"model": {"variant": "V5"}, "train": {"lr": 0.0005}})
    version = _register(cfg, logged_model, {METRIC: 28.0, "manifest_sha256": "set-a"}, trained)
    got = tracking.client().get_model_version(cfg.registry.model_name, str(version))
    assert got.description.startswith("SmartAssign V5; test/psnr_y_mean = 28.0000;")
    assert '"train.lr": 0.0005' in got.description


def test_cli_register_promote_and_list(logged_model, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(
        f"registry: {{model_name: derain-snow}}\ndata: {{root: {tmp_path / 'data'}}}\n"
    )
    assert main(["promote", "--params", str(params)]) == 2
    assert "no model named 'derain-snow' is registered" in capsys.readouterr().err
    assert main(["models", "--params", str(params)]) == 0
    assert "no versions of derain-snow registered" in capsys.readouterr().out
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.yaml").write_text(yaml.safe_dump(Config().to_dict()))
    metrics = tmp_path / "metrics.json"

    def evaluated(values: dict) -> None:
        """A newly trained model in ``model_dir``, evaluated with ``values``."""
        uri = _evaluated(load_config(params), logged_model(), values)
        (model_dir / "mlflow_model_uri").write_text(uri + "\n")
        metrics.write_text(json.dumps(values))

    out = tmp_path / "version.json"
    args = ["--params", str(params), "--model-dir", str(model_dir), "--metrics", str(metrics)]
    unevaluated = logged_model()
    (model_dir / "mlflow_model_uri").write_text(unevaluated + "\n")
    metrics.write_text(json.dumps({METRIC: 27.5, "manifest_sha256": "set-a"}))
    assert main(["register", *args]) == 2
    assert "run `smartassign evaluate` on it with MLflow tracking first" in (
        capsys.readouterr().err
    )
    evaluated({METRIC: 27.5, "manifest_sha256": "set-a"})
    assert main(["register", *args, "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == {"model_name": "derain-snow", "version": 1}
    assert main(["register", *args, "--out", str(tmp_path / "second.json")]) == 0
    decision = tmp_path / "decision.json"
    promote_first = ["promote", "--params", str(params), "--registered", str(out)]
    assert main([*promote_first, "--out", str(decision)]) == 0
    assert json.loads(decision.read_text())["candidate"] == 1
    assert json.loads(decision.read_text())["promoted"] is True
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"model_name": "another", "version": 1}))
    assert main(["promote", "--params", str(params), "--registered", str(other)]) == 2
    assert "names model 'another'" in capsys.readouterr().err
    assert main(["models", "--params", str(params)]) == 0
    listing = capsys.readouterr().out
    assert "champion" in listing and "challenger" in listing and "27.5000" in listing
    assert main(["promote", "--params", str(params), "--force"]) == 2
    assert "--force needs --reason" in capsys.readouterr().err
    assert main(["promote", "--params", str(params), "--version", "9"]) == 2
    assert "model derain-snow has no version 9" in capsys.readouterr().err
    evaluated({METRIC: 29.0, "manifest_sha256": "set-b"})
    assert main(["register", *args]) == 0
    assert main(["promote", "--params", str(params)]) == 2
    assert "data/manifests/test.jsonl not found: run `smartassign prepare`" in (
        capsys.readouterr().err
    )


def test_a_registered_model_is_weights_and_config_and_loads_after_an_attribute_rename(
    logged_model, monkeypatch
):
    import pickle

    import mlflow.pyfunc

    from smartassign.model import SmartAssign

    cfg = Config()
    version = _register(cfg, logged_model, {METRIC: 25.0, "manifest_sha256": "set-a"})
    uri = f"models:/{cfg.registry.model_name}/{version}"
    image = torch.rand(1, 3, 32, 32)
    before = load_model(uri)
    with torch.no_grad():
        expected = before(image).derain
    pickled = pickle.dumps(before)

    renamed = property(  # the attribute size_multiple becomes pad_multiple
        lambda self: self.pad_multiple, lambda self, value: setattr(self, "pad_multiple", value)
    )
    monkeypatch.setattr(SmartAssign, "size_multiple", renamed, raising=False)
    with pytest.raises(AttributeError, match="no attribute"):
        pickle.loads(pickled)(image)  # what a pickled model would do after the rename
    with torch.no_grad():
        torch.testing.assert_close(load_model(uri)(image).derain, expected)
    restored = mlflow.pyfunc.load_model(uri).predict(image.numpy())
    assert restored.shape == (1, 3, 32, 32) and restored.dtype == "float32"


def test_a_non_smartassign_mlflow_model_is_refused(mlflow_store):
    import mlflow
    import mlflow.pyfunc

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    mlflow.set_tracking_uri(mlflow_store)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=[])
    with pytest.raises(ValueError, match="not a SmartAssign model"):
        load_model(info.model_uri)
