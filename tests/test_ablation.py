"""Ablation study (paper Tables 3 and 4): arms, config checks, tables, and a resumed study."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from ray import tune

from smartassign.ablation import report
from smartassign.ablation.arms import arm_named, run_config, study_arms
from smartassign.ablation.study import check_runs, study_path
from smartassign.ablation.trainable import BACKBONE_TAG
from smartassign.builder import build_model
from smartassign.cli import main
from smartassign.config import Config, ConfigError, Variant, config_from_dict, load_config
from smartassign.data.dataset import PairedImageDataset
from smartassign.engine import tracking
from smartassign.engine.checkpoint import inference_weights, load_state
from smartassign.engine.loop import seed_everything
from smartassign.evaluation import evaluate
from smartassign.tuning.runs import PARENT_TAG

from .engine_fixtures import tiny_tree

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


# --- arms and configuration (no Ray) ----------------------------------------------------


def test_default_study_has_every_arm_of_tables_3_and_4():
    cfg = load_config(PARAMS)
    names = [arm.name for arm in check_runs(cfg)]
    assert names == ["V1", "V2", "V3", "V4-rain", "V4-snow", "V5", "V6", "K1", "K2"]
    assert [a.name for a in study_arms([Variant.K2, Variant.V6])] == ["V6", "K2"]
    assert arm_named("K1").from_v6 and not arm_named("V6").from_v6
    assert arm_named("V4-snow").task == "snow"


def test_a_run_gets_its_arm_seed_budget_and_trial_settings():
    cfg = Config().override({"ablation.overrides": {"train.epochs": 3, "loss.lambda1": 0.05}})
    run = run_config(cfg, arm_named("V4-snow"), 7)
    assert (run.model.variant, run.model.single_task) == (Variant.V4, "snow")
    assert (run.train.seed, run.data.seed, run.train.epochs) == (7, 7, 3)
    assert run.loss.lambda1 == pytest.approx(0.05)
    assert run.train.num_workers == 0
    assert run.train.resources_per_worker == cfg.ablation.resources_per_trial
    assert run_config(cfg, arm_named("K2"), 0).model.variant is Variant.K2


@pytest.mark.parametrize(
    ("ablation", "message"),
    [
        ({"overrides": {"train.epochz": 3}}, r"train\.epochz: unknown configuration key"),
        ({"overrides": {"train.epochs": 0}}, r"train\.epochs: value 0 is invalid"),
        ({"overrides": {"model": {"channels": 8}}}, r"model: is a section"),
        ({"overrides": {"train.seed": 3}}, r"train\.seed: cannot be overridden"),
        ({"overrides": {"model.variant": "V2"}}, r"model\.variant: cannot be overridden"),
        ({"overrides": {"tune.epochs": 2}}, r"tune\.epochs: the tune section"),
        ({"variants": ["V1", "K1"]}, r"K1 start from the trained V6 backbone; add V6"),
        ({"variants": ["V1", "V1"]}, r"ablation\.variants: non-empty, no repeats"),
        ({"variants": ["V9"]}, r"ablation\.variants\.0"),
        ({"seeds": [1, 1]}, r"ablation\.seeds"),
        ({"resources_per_trial": {"CPU": 0}}, r"ablation\.resources_per_trial"),
    ],
)
def test_bad_study_settings_are_refused_at_load_naming_the_key(tmp_path, ablation, message):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"ablation": ablation}))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_overrides_that_break_a_cross_key_rule_are_refused_before_any_run(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    cfg = config_from_dict({"ablation": {"overrides": {"model.embed_dim": 30}}})
    with pytest.raises(ConfigError, match=r"ablation\.overrides: invalid for arm V1: .*embed"):
        check_runs(cfg)  # 30 is a valid width, but not divisible by model.num_heads (4)
    assert main(["ablate", "--params", str(PARAMS), "--set", "ablation.seeds=[]"]) == 2
    assert "ablation.seeds" in capsys.readouterr().err
    assert not Path(study_path(cfg.ablation)).exists()
    assert not (tmp_path / "mlflow.db").exists()


def test_single_task_v4_trains_and_is_scored_on_its_own_task_only(tiny_data):
    tree = tiny_tree(tiny_data)
    tree["model"] = {**tree["model"], "variant": "V4", "single_task": "snow"}
    cfg = config_from_dict(tree)
    for split in ("train", "val", "test"):
        assert set(PairedImageDataset.from_config(cfg, split).labels) == {1}
    scores = evaluate(build_model(cfg), cfg, "test", progress=False).scores
    assert scores and {score.task for score in scores} == {"snow"}


# --- tables and files (no Ray) -----------------------------------------------------------


def _score(arm: str, seed: int, task: str, psnr_y: float, **rest: float) -> report.Score:
    values = {"psnr": psnr_y - 1.0, "ssim": 0.8, "ssim_y": 0.9, **rest}
    return report.Score(arm, seed, "synthetic", task, psnr_y=psnr_y, **values)


def test_spread_is_the_mean_and_sample_standard_deviation():
    assert report.spread([1.0, 2.0, 3.0]) == report.Spread(2.0, 1.0, 3)
    single = report.spread([30.25])
    assert (single.mean, single.std, single.text(2)) == (30.25, None, "30.25")
    assert report.spread([30.0, 31.0]).text(2) == "30.50 ± 0.71"
    with pytest.raises(ValueError):
        report.spread([])


def test_scores_of_a_run_come_from_its_per_dataset_and_task_test_metrics():
    metrics: dict[str, Any] = {
        f"test/{d}/{t}/{m}": 1.0
        for d in ("a", "b")
        for t in ("rain", "snow")
        for m in report.METRICS
    }
    metrics.update({"test/rain/psnr_y": 9.0, "test/psnr_y_mean": 9.0, "epoch": 3})
    metrics["test/b/snow/psnr_y"] = 31.5
    scores = report.scores_of_run("V2", 4, metrics, trial_id="t1", mlflow_run_id="r1")
    assert [(s.dataset, s.task) for s in scores] == [
        ("a", "rain"),
        ("a", "snow"),
        ("b", "rain"),
        ("b", "snow"),
    ]
    assert scores[-1].psnr_y == 31.5 and scores[-1].seed == 4 and scores[-1].trial_id == "t1"


@pytest.fixture
def study_scores() -> tuple[list[report.Score], tuple]:
    arms = study_arms([Variant.V1, Variant.V4, Variant.V6, Variant.K1, Variant.K2])
    scores = []
    for seed, shift in ((0, 0.0), (1, 1.0)):
        for task in ("rain", "snow"):
            scores += [
                _score("V1", seed, task, 28.0 + shift),
                _score("V6", seed, task, 30.0 + shift),
                _score("K1", seed, task, 25.0 + shift),
                _score("K2", seed, task, 26.0 + shift),
            ]
        scores += [_score("V4-rain", seed, "rain", 27.0), _score("V4-snow", seed, "snow", 29.0)]
    return scores, arms


def test_tables_hold_mean_and_spread_with_v4_per_task(study_scores):
    scores, arms = study_scores
    text = report.tables_markdown(report.aggregate(scores), arms, [0, 1], {"train.epochs": 2})
    table3, table4 = text.split("## Table 4")
    assert "| dataset | task | V1 | V4 | V6 |" in table3
    rain = next(line for line in table3.splitlines() if line.startswith("| synthetic | rain"))
    assert rain == (
        "| synthetic | rain | 28.50 ± 0.71 / 0.9000 ± 0.0000 | 27.00 ± 0.00 / 0.9000 ± 0.0000 "
        "| **30.50 ± 0.71 / 0.9000 ± 0.0000** |"
    )
    snow = next(line for line in table3.splitlines() if line.startswith("| synthetic | snow"))
    assert "| 29.00 ± 0.00 / 0.9000 ± 0.0000 |" in snow  # the snow model on the snow row
    assert "| dataset | task | K1 | K2 | V6 (ours) |" in table4
    assert "25.50 ± 0.71" in table4 and "**30.50 ± 0.71" in table4
    assert "29.50 ± 0.71 / 0.8000" in text.split("On RGB")[1]  # RGB: psnr, ssim
    assert "`train.epochs=2`" in text


def _knowledge(arm: str, seed: int, separation: float, drm: bool) -> report.KnowledgeScore:
    """A run's last result holding the knowledge numbers an arm has, read back."""
    metrics = {
        "knowledge/separation_atoms": separation,
        "knowledge/atoms_rain_led": 3 + seed,
        "knowledge/atoms_shared": 5,
        "knowledge/atoms_snow_led": 2,
        "knowledge/atoms_closed": 0,
        "knowledge/images_rain": 12,  # not a number the report shows
        "test/psnr_y_mean": 30.0,
    }
    if drm:
        metrics["knowledge/separation_drm"] = separation + 0.5
    return report.knowledge_of_run(arm, seed, metrics)


def test_report_files_metrics_and_plot(study_scores, tmp_path):
    scores, arms = study_scores
    knowledge = [
        _knowledge(arm, seed, 0.1 * seed + (0.2 if arm == "V6" else 0.0), drm=arm != "V1")
        for arm in ("V1", "V6")
        for seed in (0, 1)
    ]
    out = report.write_report(
        scores,
        tmp_path / "ablate",
        arms=arms,
        seeds=[0, 1],
        overrides={},
        metric="psnr_y",
        knowledge=knowledge,
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "ablation.png",
        "knowledge.csv",
        "metrics.json",
        "runs.csv",
        "tables.md",
    ]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seeds"] == 2
    assert metrics["V6"]["synthetic"]["rain"]["psnr_y"] == {"mean": 30.5, "std": 0.7071}
    assert "snow" not in metrics["V4-rain"]["synthetic"]
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == len(scores)
    assert {r["arm"] for r in rows} == {"V1", "V4-rain", "V4-snow", "V6", "K1", "K2"}
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    flat = report.flat_metrics(report.aggregate(scores), report.aggregate_knowledge(knowledge))
    assert flat["K2/synthetic/snow/psnr_y"] == pytest.approx(26.5)
    assert flat["K2/synthetic/snow/psnr_y_std"] == pytest.approx(0.5**0.5)
    assert flat["V6/knowledge/separation_drm"] == pytest.approx(0.75)

    # the knowledge assignment per arm: V1 (no DRM) and V6 side by side, over the seeds
    assert metrics["V6"]["knowledge"]["separation_atoms"] == {"mean": 0.25, "std": 0.0707}
    assert metrics["V1"]["knowledge"]["atoms_rain_led"] == {"mean": 3.5, "std": 0.7071}
    assert "separation_drm" not in metrics["V1"]["knowledge"]
    tables = (out / "tables.md").read_text().split("## Knowledge assignment per arm")[1]
    rows = {line.split(" | ")[0]: line for line in tables.splitlines() if line.startswith("| ")}
    assert (
        rows["| V1"] == "| V1 | 0.050 ± 0.071 | - | 3.5 ± 0.7 | 5.0 ± 0.0 | 2.0 ± 0.0 | 0.0 ± 0.0 |"
    )
    assert rows["| V6"].startswith("| V6 | 0.250 ± 0.071 | 0.750 ± 0.071 |")
    assert rows["| K1"] == "| K1 | - | - | - | - | - | - |"
    lines = list(csv.DictReader((out / "knowledge.csv").open()))
    assert [(r["arm"], r["seed"], r["separation_drm"]) for r in lines] == [
        ("V1", "0", ""),
        ("V1", "1", ""),
        ("V6", "0", "0.7"),
        ("V6", "1", "0.8"),
    ]


# --- a study on the shared Ray instance --------------------------------------------------


class InterruptAfterFirstRun(tune.Callback):
    """Ctrl+C once, as soon as the first run has finished (the marker keeps it to once)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if not self.marker.exists():
            self.marker.write_text(trial.config["arm"])
            os.kill(os.getpid(), signal.SIGINT)


def _encoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(("veil.", "encoder.", "gkfm."))}


@pytest.mark.slow
def test_interrupted_study_resumes_and_k1_trains_on_the_v6_backbone(
    ray_session, tiny_data, tmp_path, mlflow_store, monkeypatch, capsys
):
    from smartassign.ablation.study import ablate

    monkeypatch.chdir(tmp_path)
    tree = tiny_tree(tiny_data)
    tree["ablation"] = {
        "name": "resume",
        "variants": ["V5", "V6", "K1"],
        "seeds": [0],
        "overrides": {"train.epochs": 1, "train.ema_decay": 0.5},
        "max_concurrent": 1,
        "storage_path": str(tmp_path / "ray"),
        "out_dir": str(tmp_path / "ablate"),
    }
    marker = tmp_path / "interrupted"
    first = ablate(config_from_dict(tree), callbacks=[InterruptAfterFirstRun(marker)])
    assert first.interrupted
    assert not (tmp_path / "ablate").exists()
    client = tracking.client()
    experiment = client.get_run(first.parent_run_id).info.experiment_id
    (finished,) = client.search_runs(
        [experiment], f"attributes.run_name = '{marker.read_text()} seed 0'"
    )
    before = client.get_metric_history(finished.info.run_id, "val/psnr_y_mean")

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tree))
    assert main(["ablate", "--params", str(params)]) == 0
    printed = capsys.readouterr().out
    assert "resuming the interrupted ablation study" in printed
    assert "## Table 4" in printed

    after = client.get_metric_history(finished.info.run_id, "val/psnr_y_mean")
    assert [(m.step, m.timestamp) for m in after] == [(m.step, m.timestamp) for m in before]
    children = client.search_runs([experiment], f"tags.`{PARENT_TAG}` = '{first.parent_run_id}'")
    by_name = {run.info.run_name: run for run in children}
    assert sorted(by_name) == ["K1 seed 0", "V5 seed 0", "V6 seed 0"]  # none ran twice
    assert all(run.info.status == "FINISHED" for run in children)
    assert "test/synthetic/rain/psnr_y" in by_name["K1 seed 0"].data.metrics
    assert "knowledge/separation_atoms" in by_name["K1 seed 0"].data.metrics
    # arms with D_re are scored with the threshold calibrated as training's export sets it
    assert "calibration/shift" in by_name["V6 seed 0"].data.metrics
    assert "calibration/shift" not in by_name["V5 seed 0"].data.metrics  # no D_re
    v6_run = by_name["V6 seed 0"].info.run_id
    assert by_name["K1 seed 0"].data.tags[BACKBONE_TAG] == v6_run

    states, configs = {}, {}
    for state_file in (tmp_path / "ray" / "resume").rglob("state.pt"):
        run = yaml.safe_load((state_file.parent / "config.yaml").read_text())
        states[run["model"]["variant"]] = inference_weights(load_state(state_file.parent))
        configs[run["model"]["variant"]] = config_from_dict(run)
    v6, k1 = _encoder(states["V6"]), _encoder(states["K1"])
    assert v6.keys() == k1.keys()
    # K1 starts from the weights V6 was evaluated with (its EMA), then keeps them frozen
    assert all(torch.equal(v6[key], k1[key]) for key in v6)
    seed_everything(0)  # what K1 would have started from without V6's backbone
    untrained = _encoder(build_model(configs["K1"]).state_dict())
    assert not torch.equal(untrained["encoder.project.weight"], k1["encoder.project.weight"])

    parent = client.get_run(first.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert "K1/synthetic/snow/psnr_y" in parent.data.metrics
    artifacts = {a.path for a in client.list_artifacts(first.parent_run_id, "ablation")}
    assert {"ablation/tables.md", "ablation/metrics.json", "ablation/ablation.png"} <= artifacts
    metrics = json.loads((tmp_path / "ablate" / "metrics.json").read_text())
    assert set(metrics) == {"seeds", "V5", "V6", "K1"}
    assert "separation_drm" in metrics["V6"]["knowledge"]  # K1 has no DRM
    assert set(metrics["K1"]["knowledge"]) == set(report.KNOWLEDGE) - {"separation_drm"}
