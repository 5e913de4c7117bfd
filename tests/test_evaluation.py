"""Test-set evaluation: per-image scores, summaries and the files DVC tracks."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from smartassign.builder import build_model
from smartassign.cli import main
from smartassign.config import config_from_dict
from smartassign.data.manifest import manifest_path, read_manifest
from smartassign.evaluation import evaluate, write_evaluation
from smartassign.model_io import save_model_dir

from .engine_fixtures import tiny_tree


@pytest.fixture
def tiny_eval(tiny_data):
    cfg = config_from_dict(tiny_tree(tiny_data))
    torch.manual_seed(0)
    return cfg, build_model(cfg)


def test_untrained_model_scores_exactly_the_input(tiny_eval):
    cfg, _ = tiny_eval
    torch.manual_seed(0)  # without veil removal, which starts near (not at) the identity
    model = build_model(cfg.override({"model.veil_removal": False}))
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


def _cli_evaluate(cfg, model, tmp_path, **evaluate_section):
    import yaml

    save_model_dir(model, tmp_path / "model", yaml.safe_dump(cfg.to_dict()))
    tree = cfg.to_dict()
    tree["evaluate"].update(evaluate_section)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tree))
    out = tmp_path / "eval"
    args = ["evaluate", "--params", str(params), "--model", str(tmp_path / "model")]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    return out


def test_real_check_sets_get_one_row_each(tiny_data, real_data_dir, tmp_path, capsys):
    cfg = config_from_dict(tiny_tree(tiny_data)).override({"model.veil_removal": False})
    torch.manual_seed(0)
    model = build_model(cfg)  # residual decoders start at zero: output == input
    out = _cli_evaluate(cfg, model, tmp_path, real_data=str(real_data_dir))
    printed = capsys.readouterr().out
    assert "real check sets skipped" not in printed
    summary = (out / "summary.md").read_text()
    for dataset, count in (
        ("Rain12", 12),
        ("RainTrainL_10", 9),  # pair 6 is byte-identical: left out, with a note
        ("RainTrainH_12", 12),
        ("SPA-Data_samples", 2),
    ):
        assert f"| real | {dataset} | rain | {count} |" in summary
        assert f"| real | {dataset} | rain | {count} |" in printed
    assert "rain-6.png: input and target norain-6.png are identical" in summary
    assert "| test | synthetic | rain |" in summary
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["real/Rain12/rain/input_psnr_y"] == pytest.approx(30.14, abs=0.005)
    for dataset in ("Rain12", "RainTrainL_10", "RainTrainH_12", "SPA-Data_samples"):
        key = f"real/{dataset}/rain"
        assert metrics[f"{key}/psnr_y"] == pytest.approx(metrics[f"{key}/input_psnr_y"], abs=1e-3)
        assert metrics[f"{key}/worse"] == 0
    assert len(metrics["real_sha256"]) == 64
    assert metrics["manifest_sha256"] != metrics["real_sha256"]
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert {row["split"] for row in rows} == {"test", "real"}
    assert (out / "samples" / "real_Rain12_rain.png").is_file()


def test_absent_real_check_sets_are_named_in_one_line(tiny_eval, tmp_path, capsys):
    cfg, model = tiny_eval
    record = read_manifest(manifest_path(Path(cfg.data.root), "test"))[0]
    source, target = record.resolve(Path(cfg.data.root))
    rain12 = tmp_path / "real" / "Rain12"
    for folder, name, path in (("rain", "rain-001", source), ("norain", "norain-001", target)):
        (rain12 / folder).mkdir(parents=True)
        shutil.copy(path, rain12 / folder / f"{name}.png")
    out = _cli_evaluate(cfg, model, tmp_path, real_data=str(tmp_path / "real"))
    lines = [line for line in capsys.readouterr().out.splitlines() if "real check sets" in line]
    assert lines == [
        f"real check sets skipped (not found under {tmp_path / 'real'}): RainTrainL_10, "
        "RainTrainH_12, SPA-Data_samples; set $SMARTASSIGN_REAL_DATA or evaluate.real_data to "
        "the folder that holds them"
    ]
    summary = (out / "summary.md").read_text()
    assert "| real | Rain12 | rain | 1 |" in summary
    assert "RainTrainL_10" not in summary


def test_no_real_data_means_the_test_split_only(tiny_eval, tmp_path, capsys):
    cfg, model = tiny_eval
    out = _cli_evaluate(cfg, model, tmp_path, real_data=str(tmp_path / "nowhere"))
    assert "Rain12, RainTrainL_10, RainTrainH_12, SPA-Data_samples" in capsys.readouterr().out
    assert "| real |" not in (out / "summary.md").read_text()
    assert not any(key.startswith("real") for key in json.loads((out / "metrics.json").read_text()))
