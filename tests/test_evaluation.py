"""Test-set evaluation: per-image scores, summaries and the files DVC tracks."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
import torch

from smartassign.cli import main
from smartassign.config import config_from_dict
from smartassign.data.manifest import manifest_path, read_manifest
from smartassign.evaluation import evaluate, write_evaluation
from smartassign.model import SmartAssign
from smartassign.model_io import save_model_dir

from .engine_fixtures import tiny_tree


@pytest.fixture
def tiny_eval(tiny_data):
    cfg = config_from_dict(tiny_tree(tiny_data))
    torch.manual_seed(0)
    return cfg, SmartAssign.from_config(cfg)


def test_untrained_model_scores_exactly_the_input(tiny_eval):
    cfg, _ = tiny_eval
    torch.manual_seed(0)  # without veil removal, which starts near (not at) the identity
    model = SmartAssign.from_config(cfg.override({"model.veil_removal": False}))
    evaluation = evaluate(model, cfg, "test", progress=False)
    assert {s.task for s in evaluation.scores} == {"rain", "snow"}
    for score in evaluation.scores:  # residual decoders start at zero: output == input
        assert score.psnr_y == pytest.approx(score.input_psnr_y, abs=1e-9)
        assert score.recognised in {"rain", "snow"}
    metrics = evaluation.metrics
    for task in ("rain", "snow"):
        assert metrics[f"test/synthetic/{task}/psnr_y"] == pytest.approx(
            metrics[f"test/synthetic/{task}/input_psnr_y"]
        )
    expected = (metrics["test/rain/psnr_y"] + metrics["test/snow/psnr_y"]) / 2
    assert metrics["test/psnr_y_mean"] == pytest.approx(expected)
    assert 0 <= metrics["test/recognition_acc"] <= 1
    manifest = manifest_path(Path(cfg.data.root), "test")
    assert evaluation.manifest_sha256 == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert [s.name for s in evaluation.scores] == [r.name for r in read_manifest(manifest)]


def test_evaluation_files(tiny_eval, tmp_path):
    cfg, model = tiny_eval
    evaluation = evaluate(model, cfg, "test", progress=False)
    write_evaluation(evaluation, tmp_path)
    rows = list(csv.DictReader((tmp_path / "per_image.csv").open()))
    assert len(rows) == len(evaluation.scores)
    assert set(rows[0]) >= {"dataset", "task", "name", "psnr", "psnr_y", "ssim", "ssim_y"}
    summary = (tmp_path / "summary.md").read_text()
    assert "| synthetic | rain |" in summary and "| synthetic | snow |" in summary
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["manifest_sha256"] == evaluation.manifest_sha256
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "synthetic_rain.png",
        "synthetic_snow.png",
    ]


def test_cli_evaluate_a_model_folder(tiny_eval, tmp_path, capsys):
    cfg, model = tiny_eval
    import yaml

    save_model_dir(model, tmp_path / "model", yaml.safe_dump(cfg.to_dict()))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(cfg.to_dict()))
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "--params",
            str(params),
            "--model",
            str(tmp_path / "model"),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    assert "| synthetic | rain |" in capsys.readouterr().out
    assert (out / "metrics.json").is_file()
    assert main(["evaluate", "--params", str(params), "--model", str(tmp_path / "nope")]) == 2
    assert "model folder not found" in capsys.readouterr().err
