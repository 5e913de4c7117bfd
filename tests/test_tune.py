"""Ray Tune sweeps: search-space checks, ASHA early stopping, MLflow nesting, resuming."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray import tune

from smartassign.cli import main
from smartassign.config import Config, ConfigError, config_from_dict, load_config
from smartassign.engine import tracking
from smartassign.tuning import apply_tuned
from smartassign.tuning.best import write_best_params
from smartassign.tuning.runs import PARENT_TAG, STOPPED
from smartassign.tuning.space import check_space, param_space
from smartassign.tuning.sweep import experiment_path, search_algorithm, sweep
from smartassign.tuning.trainable import objective, trial_config

from .engine_fixtures import tiny_tree

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def _with_tune(tree: dict[str, Any], out: Path, **tune_cfg: Any) -> dict[str, Any]:
    tree = {**tree, "tune": {"storage_path": str(out / "ray"), **tune_cfg}}
    tree["tune"].setdefault("best_params", str(out / "best_params.yaml"))
    tree["tune"].setdefault("summary", str(out / "summary.json"))
    return tree


# --- search space and objective (no Ray) -----------------------------------------------


def test_default_search_space_becomes_ray_tune_domains():
    cfg = load_config(PARAMS)
    space = param_space(check_space(cfg))
    assert set(space) == {"loss.lambda1", "loss.lambda2", "model.gkfm_hidden", "model.gkfm_out"}
    assert isinstance(space["loss.lambda1"], tune.search.sample.Float)
    assert space["loss.lambda1"].lower == pytest.approx(1e-3)
    assert space["model.gkfm_out"].categories == [16, 24, 32]
    assert cfg.train.tuned_params == ""


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"loss.lambda9": {"loguniform": [0.1, 1.0]}}, r"loss\.lambda9: unknown configuration key"),
        ({"model": {"choice": [1]}}, r"model: is a section"),
        ({"model.synthetic": {"choice": [1]}}, r"model\.synthetic: unknown configuration key"),
        ({"data.synthetic": {"choice": [1]}}, r"data\.synthetic: is a section"),
        ({"loss.lambda1": {"loguniform": [-0.1, 0.1]}}, r"loss\.lambda1: loguniform bounds"),
        ({"loss.lambda2": {"uniform": [-0.1, 0.1]}}, r"loss\.lambda2: value -0\.1 is invalid"),
        ({"loss.lambda1": {"uniform": [0.1, 0.01]}}, r"loss\.lambda1: uniform low 0\.1"),
        ({"model.gkfm_out": {"choice": []}}, r"model\.gkfm_out: empty choice"),
        ({"model.gkfm_out": {"grid": []}}, r"model\.gkfm_out: empty grid"),
        ({"model.gkfm_out": {"choice": [16, 0]}}, r"model\.gkfm_out: value 0 is invalid"),
        ({"model.gkfm_out": {"normal": [16, 2]}}, r"model\.gkfm_out: unknown distribution"),
        ({"model.gkfm_out": [16, 24]}, r"model\.gkfm_out: expected one of"),
        ({"train.epochs": {"choice": [1, 2]}}, r"train\.epochs: cannot be swept"),
        (
            {"train.resources_per_worker": {"choice": [{"CPU": 1}]}},
            r"train\.resources_per_worker: cannot be swept",
        ),
        ({"tune.num_samples": {"choice": [1, 2]}}, r"tune\.num_samples: the tune section"),
    ],
)
def test_bad_search_space_is_refused_at_load_naming_the_key(tmp_path, entry, message):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"tune": {"search_space": entry}}))
    with pytest.raises(ConfigError, match=r"tune\.search_space: .*" + message):
        load_config(path)


def test_tune_settings_are_checked_together():
    with pytest.raises(ConfigError, match=r"tune\.grace_period \(5\) exceeds tune\.epochs"):
        config_from_dict({"tune": {"epochs": 3, "grace_period": 5}})
    with pytest.raises(ConfigError, match=r"tune\.task_weights"):
        config_from_dict({"tune": {"task_weights": {"rain": 0, "snow": 0}}})
    with pytest.raises(ConfigError, match=r"tune\.task_weights\.fog"):
        config_from_dict({"tune": {"task_weights": {"fog": 1}}})
    with pytest.raises(ConfigError, match=r"tune\.resources_per_trial"):
        config_from_dict({"tune": {"resources_per_trial": {"CPU": 0}}})
    grid = {"search": "optuna", "search_space": {"train.lr": {"grid": [1e-3, 1e-4]}}}
    with pytest.raises(ConfigError, match=r"tune\.search_space\.train\.lr: grid is not supported"):
        config_from_dict({"tune": grid})


def test_space_invalid_with_the_base_config_is_refused_before_any_trial(
    tmp_path, mlflow_store, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    tree = _with_tune({}, tmp_path, search_space={"model.embed_dim": {"choice": [64, 30]}})
    cfg = config_from_dict(tree)  # embed_dim 30 is a valid int on its own ...
    with pytest.raises(ConfigError, match=r"tune\.search_space\.model\.embed_dim: value 30"):
        sweep(cfg)  # ... but not divisible by model.num_heads (4)
    assert not Path(experiment_path(cfg.tune)).exists()
    assert not (tmp_path / "mlflow.db").exists()
    space = "tune.search_space={loss.lambda9: {choice: [1]}}"
    assert main(["tune", "--params", str(PARAMS), "--set", space]) == 2
    assert "loss.lambda9: unknown configuration key" in capsys.readouterr().err


def test_optuna_is_tpe_when_installed_and_refused_when_not(monkeypatch):
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator

    tune_cfg = config_from_dict({"tune": {"search": "optuna", "max_concurrent": 3}}).tune
    searcher = search_algorithm(tune_cfg)
    assert isinstance(searcher, ConcurrencyLimiter)
    assert searcher.max_concurrent == 3
    assert type(searcher.searcher).__name__ == "OptunaSearch"
    assert isinstance(search_algorithm(Config().tune), BasicVariantGenerator)
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ConfigError, match=r"tune\.search: optuna is not installed"):
        search_algorithm(tune_cfg)


def test_objective_is_a_weighted_mean_over_tasks():
    metrics = {"val/rain/psnr_y": 30.0, "val/snow/psnr_y": 20.0, "val/rain/ssim": 0.9}
    assert objective(metrics, Config().tune) == pytest.approx(25.0)
    rainy = config_from_dict({"tune": {"task_weights": {"rain": 3, "snow": 1}}}).tune
    assert objective(metrics, rainy) == pytest.approx(27.5)
    ssim = config_from_dict({"tune": {"metric": "ssim"}}).tune
    assert objective(metrics, ssim) == pytest.approx(0.9)  # snow absent: rain only


def test_a_trial_runs_on_its_cpu_share():
    base = Config().override(
        {"tune.resources_per_trial": {"CPU": 3}, "tune.epochs": 2, "train.val_every": 3}
    )
    cfg = trial_config(base, {"loss.lambda1": 0.05})
    assert cfg.train.resources_per_worker == {"CPU": 3}
    assert (cfg.train.epochs, cfg.train.num_workers, cfg.loss.lambda1) == (2, 0, 0.05)
    assert cfg.train.val_every == 1  # ASHA needs the objective after every epoch


def test_apply_tuned_switches_between_tuned_and_default_params(tmp_path):
    cfg = Config()
    assert apply_tuned(cfg) is cfg
    best = write_best_params(
        tmp_path / "best.yaml", {"loss.lambda1": 0.02, "model.gkfm_out": 16}, objective=25.0
    )
    tuned = apply_tuned(cfg.override({"train.tuned_params": str(best)}))
    assert tuned.loss.lambda1 == pytest.approx(0.02)
    assert tuned.model.gkfm_out == 16
    with pytest.raises(ConfigError, match=r"train\.tuned_params: .*missing\.yaml not found"):
        apply_tuned(cfg.override({"train.tuned_params": str(tmp_path / "missing.yaml")}))
    bad = write_best_params(tmp_path / "bad.yaml", {"loss.lambda7": 0.02})
    with pytest.raises(ConfigError, match=r"train\.tuned_params .*loss\.lambda7: unknown"):
        apply_tuned(cfg.override({"train.tuned_params": str(bad)}))


# --- sweeps on the shared Ray instance --------------------------------------------------

BAD = {"model.residual": False}  # zero-initialised decoders without the residual: black output


@pytest.fixture(scope="module")
def asha_sweep(ray_session, tiny_data, tmp_path_factory) -> Iterator[tuple[Any, Config, str]]:
    """A 4-trial grid, two trials clearly worse (``model.residual: false``), under ASHA."""
    out = tmp_path_factory.mktemp("asha")
    tree = _with_tune(
        tiny_tree(tiny_data),
        out,
        name="asha",
        num_samples=1,
        max_concurrent=2,
        epochs=2,
        grace_period=1,
        search_space={
            "loss.lambda1": {"grid": [0.005, 0.02]},
            "model.residual": {"grid": [True, False]},
        },
    )
    cfg = config_from_dict(tree)
    uri = f"sqlite:///{out / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        yield sweep(cfg), cfg, uri


@pytest.mark.slow
def test_four_trial_sweep_finishes_and_releases_its_resources(asha_sweep):
    import ray

    result, cfg, _ = asha_sweep
    assert not result.interrupted
    assert len(result.rows) == 4
    assert all(row.status != "error" for row in result.rows), result.table
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        assert time.monotonic() < deadline, f"trial resources not released: {result.table}"
        time.sleep(0.5)
    summary = json.loads(Path(cfg.tune.summary).read_text())
    assert summary["trials"] == 4
    assert summary["finished"] + summary["stopped_early"] == 4


@pytest.mark.slow
def test_asha_stops_the_clearly_worse_trials_early(asha_sweep):
    result, cfg, _ = asha_sweep
    worse = [row for row in result.rows if row.params["model.residual"] is False]
    stopped = [row for row in worse if row.status == STOPPED]
    assert stopped, result.table
    assert all(row.epochs < cfg.tune.epochs for row in stopped)
    assert result.rows[0].params["model.residual"] is True, result.table
    assert max(r.objective for r in worse) < min(
        r.objective for r in result.rows if r.params["model.residual"]
    )


@pytest.mark.slow
def test_trials_are_nested_mlflow_runs_and_the_best_file_matches_the_parent(asha_sweep):
    result, cfg, uri = asha_sweep
    client = tracking.client(uri)
    parent = client.get_run(result.parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`{PARENT_TAG}` = '{result.parent_run_id}'"
    )
    assert len(children) == 4
    for child in children:
        assert child.info.status == "FINISHED"
        assert {"loss.lambda1", "model.residual", "train.lr"} <= set(child.data.params)
        history = client.get_metric_history(child.info.run_id, "objective")
        row = next(r for r in result.rows if r.run_id == child.info.run_id)
        assert sorted(m.step for m in history) == list(range(1, row.epochs + 1))
        assert "val/psnr_y_mean" in child.data.metrics
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id, "sweep")}
    assert {"sweep/summary.json", "sweep/summary.txt", "sweep/best_params.yaml"} <= artifacts

    best_file = yaml.safe_load(Path(cfg.tune.best_params).read_text())
    best_run = client.get_run(parent.data.tags["best_run_id"])
    assert best_file["mlflow_run_id"] == best_run.info.run_id
    assert best_file["trial_id"] == parent.data.tags["best_trial_id"]
    assert best_file["objective"] == pytest.approx(parent.data.metrics["best/objective"])
    assert best_file["objective"] == pytest.approx(best_run.data.metrics["objective"])
    for key, value in best_file["params"].items():
        assert json.loads(best_run.data.params[key]) == pytest.approx(value)
    assert best_file["params"] == result.rows[0].params


class InterruptAfterFirstTrial(tune.Callback):
    """Ctrl+C once, as soon as the first trial has finished (the marker keeps it to once:
    ``Tuner.restore`` brings callbacks back)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if not self.marker.exists():
            self.marker.write_text(trial.trial_id)
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_rerunning_finished_trials(
    ray_session, tiny_data, tmp_path, mlflow_store, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    tree = _with_tune(
        tiny_tree(tiny_data),
        tmp_path,
        name="resume",
        num_samples=1,
        max_concurrent=1,
        epochs=1,
        scheduler="fifo",
        search_space={"loss.lambda1": {"grid": [0.005, 0.02]}},
    )
    marker = tmp_path / "interrupted"
    first = sweep(config_from_dict(tree), callbacks=[InterruptAfterFirstTrial(marker)])
    assert first.interrupted
    assert not Path(tree["tune"]["best_params"]).exists()
    finished_trial = marker.read_text()
    client = tracking.client()
    (finished_run,) = client.search_runs(
        [client.get_run(first.parent_run_id).info.experiment_id],
        f"tags.`smartassign.trial_id` = '{finished_trial}'",
    )
    before = client.get_metric_history(finished_run.info.run_id, "objective")
    assert [m.step for m in before] == [1]
    resumed_at = time.time() * 1000

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tree))
    assert main(["tune", "--params", str(params)]) == 0
    printed = capsys.readouterr().out
    assert "resuming the interrupted sweep" in printed
    assert finished_trial in printed

    after = client.get_metric_history(finished_run.info.run_id, "objective")
    assert [(m.step, m.timestamp) for m in after] == [(m.step, m.timestamp) for m in before]
    assert all(m.timestamp < resumed_at for m in after)
    children = client.search_runs(
        [finished_run.info.experiment_id], f"tags.`{PARENT_TAG}` = '{first.parent_run_id}'"
    )
    assert len(children) == 2  # one run per trial: the finished one was not started again
    summary = json.loads(Path(tree["tune"]["summary"]).read_text())
    assert summary["trials"] == summary["finished"] == 2
    assert Path(tree["tune"]["best_params"]).is_file()


def test_tuned_args_turn_the_best_params_into_dvc_exp_run_arguments(tmp_path, capsys):
    """``dvc exp run $(smartassign tuned-args)``: one ``-S key=value`` per tuned param,
    checked against the config; the same values ``train.tuned_params`` applies."""
    best = write_best_params(
        tmp_path / "best.yaml",
        {"loss.lambda1": 0.0123, "model.gkfm_hidden": 32, "model.gate": "sigmoid"},
        sweep="sweep",
    )
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    assert main(["tuned-args", str(best), "--params", str(params)]) == 0
    words = capsys.readouterr().out.splitlines()[-1].split()  # Ray may log lines before
    assert words == [
        "-S",
        "loss.lambda1=0.0123",
        "-S",
        "model.gkfm_hidden=32",
        "-S",
        "model.gate=sigmoid",
    ]
    pairs = dict(word.split("=", 1) for word in words[1::2])
    by_dvc = load_config(params).override({k: yaml.safe_load(v) for k, v in pairs.items()})
    by_switch = apply_tuned(load_config(params).override({"train.tuned_params": str(best)}))
    assert by_dvc.override({"train.tuned_params": str(best)}) == by_switch

    bad = write_best_params(tmp_path / "bad.yaml", {"loss.lambda9": 0.1})
    assert main(["tuned-args", str(bad), "--params", str(params)]) == 2
    assert f"{bad}: loss.lambda9: unknown configuration key" in capsys.readouterr().err
    assert main(["tuned-args", str(tmp_path / "none.yaml"), "--params", str(params)]) == 2
    assert "not found; run `smartassign tune`" in capsys.readouterr().err
