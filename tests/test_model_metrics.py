"""evaluate as an MLflow run: the test set as its dataset input and the metrics linked to
the logged model, found with ``mlflow.search_logged_models`` and read by the registry."""

from __future__ import annotations

import json

import pytest
import yaml

from smartassign.builder import build_model
from smartassign.cli import main
from smartassign.config import load_config
from smartassign.engine import tracking
from smartassign.model_io import save_model_dir
from smartassign.model_metrics import digest
from smartassign.registry import list_versions

from .engine_fixtures import trained_model_folder


def test_evaluate_links_its_metrics_to_the_logged_model_and_the_test_set(
    tiny_config_file, mlflow_store, tmp_path, capsys
):
    import mlflow

    params = tiny_config_file("evaluated")
    uri = trained_model_folder(tmp_path / "model", params)
    out = tmp_path / "evaluate"
    args = ["--params", str(params), "--model", str(tmp_path / "model"), "--no-real"]
    assert main(["evaluate", *args, "--out", str(out), "--quiet"]) == 0
    model_id = uri.removeprefix("models:/")
    assert f"metrics linked to logged model {model_id}" in capsys.readouterr().out
    written = json.loads((out / "metrics.json").read_text())
    test_set = digest(written["manifest_sha256"])

    mlflow.set_tracking_uri(mlflow_store)
    experiment = mlflow.get_experiment_by_name(load_config(params).registry.experiment)
    found = mlflow.search_logged_models(
        experiment_ids=[experiment.experiment_id],
        filter_string="metrics.`test/psnr_y_mean` > 0",
        datasets=[{"dataset_name": "test", "dataset_digest": test_set}],
        order_by=[{"field_name": "metrics.test/psnr_y_mean", "ascending": False}],
        output_format="list",
    )
    assert [model.model_id for model in found] == [model_id]
    linked = {m.key: m.value for m in found[0].metrics if m.dataset_digest == test_set}
    assert linked["test/psnr_y_mean"] == pytest.approx(written["test/psnr_y_mean"], abs=1e-4)
    run = mlflow.get_run(found[0].metrics[0].run_id)
    assert run.info.run_name == "evaluate"
    inputs = [(d.dataset.name, d.dataset.digest) for d in run.inputs.dataset_inputs]
    assert inputs == [("test", test_set)]

    # register reads the same numbers back from the logged model, no metric tags
    registered = ["--params", str(params), "--model-dir", str(tmp_path / "model")]
    assert main(["register", *registered, "--metrics", str(out / "metrics.json")]) == 0
    [version] = list_versions(load_config(params))
    assert version.metrics["test/psnr_y_mean"] == pytest.approx(
        written["test/psnr_y_mean"], abs=1e-4
    )
    name = load_config(params).registry.model_name
    tags = tracking.client().get_model_version(name, "1").tags
    assert not [key for key in tags if key.startswith("metric.")]


def test_evaluate_of_a_model_without_a_logged_model_says_so(
    tiny_config_file, mlflow_store, tmp_path, capsys
):
    params = tiny_config_file("unlogged")
    cfg = load_config(params)
    save_model_dir(build_model(cfg), tmp_path / "model", yaml.safe_dump(cfg.to_dict()))
    args = ["--params", str(params), "--model", str(tmp_path / "model"), "--no-real"]
    assert main(["evaluate", *args, "--out", str(tmp_path / "evaluate"), "--quiet"]) == 0
    assert "not logged to MLflow: no logged model of" in capsys.readouterr().out
    assert main(["evaluate", *args, "--out", str(tmp_path / "e2"), "--quiet", "--no-mlflow"]) == 0
    assert "MLflow" not in capsys.readouterr().out
