"""The paper's protocol (experiments/paper.yaml) on a real benchmark folder at a tiny
budget, and its Tables 1 and 2 beside ours (smartassign.paper_report)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from smartassign.cli import main
from smartassign.config import config_from_dict, load_config
from smartassign.data.prepare import prepare
from smartassign.engine.run import train
from smartassign.paper_report import PUBLISHED, paper_report

from .engine_fixtures import _tree
from .test_finetune import rain_train_h

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "experiments" / "paper.yaml"


def test_the_paper_experiment_trains_on_a_real_benchmark_and_reports_table_1(
    tiny_data, mlflow_store, real_data_dir, tmp_path, capsys
):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(_tree(tiny_data, tmp_path, "paper")))
    cfg = load_config(params, experiment=str(PAPER))
    protocol = (cfg.data.crop_size, cfg.train.batch_size, cfg.train.lr, cfg.loss.recog_weight)
    assert protocol == (256, 4, 4e-4, 1.0)
    cfg = cfg.override(
        {
            "data.root": str(tmp_path / "data"),
            "data.datasets": [rain_train_h(real_data_dir)],  # Rain-streak's training split
            "data.num_workers": 0,
            "train.epochs": 2,
        }
    )
    prepare(cfg, progress=False)
    result = train(cfg)
    assert len(result.history) == 2 and "val/rain/psnr_y" in result.history[-1]

    tree = cfg.to_dict()
    tree["experiment"] = ""  # the file as trained, without laying paper.yaml over it again
    trained = tmp_path / "trained.yaml"
    trained.write_text(yaml.safe_dump(tree))
    out = tmp_path / "evaluate"
    args = ["--params", str(trained), "--model", str(result.model_dir), "--no-real"]
    assert main(["evaluate", *args, "--out", str(out), "--quiet"]) == 0
    assert f"{out}/paper_report.md" in capsys.readouterr().out
    report = (out / "paper_report.md").read_text()
    assert "## Table 1: deraining" in report and "Table 2" not in report
    assert "| Rain-streak (`rain_train_h`) | 3 | 33.16 / 0.931 |" in report


def test_the_report_lays_out_both_tables_from_the_metrics():
    datasets = [
        {"name": "r1200", "layout": "rain1200", "root": "/r"},
        {"name": "csd", "layout": "csd", "root": "/c"},
        {"name": "mine", "layout": "paired", "root": "/m", "task": "rain"}
        | {"input_dir": "a", "target_dir": "b"},
    ]
    cfg = config_from_dict({"data": {"datasets": datasets}})
    metrics = {}
    for name, task, psnr in (("r1200", "rain", 31.07), ("csd", "snow", 33.0), ("mine", "rain", 1)):
        key = f"test/{name}/{task}"
        metrics |= {f"{key}/psnr": psnr, f"{key}/ssim": 0.9, f"{key}/count": 5}
        metrics |= {f"{key}/psnr_y": psnr + 1, f"{key}/ssim_y": 0.91}
    report = paper_report(cfg, metrics)
    assert "| Rain1200 (`r1200`) | 5 | 33.07 / 0.927 | 31.07 / 0.900 | 32.07 / 0.910 | -2.00 |" in (
        report
    )
    assert "| CSD (`csd`) | 5 | 32.50 / 0.957 | 33.00 / 0.900 | 34.00 / 0.910 | +0.50 |" in report
    assert "mine" not in report  # not a benchmark of the paper
    assert paper_report(config_from_dict({}), metrics) is None
    assert {p.name for p in PUBLISHED.values()} == {
        "Rain-streak",
        "Rain1200",
        "Real-rain",
        "Snow100K-L",
        "SRRS",
        "CSD",
    }


@pytest.mark.parametrize("layout", sorted(PUBLISHED))
def test_every_published_row_names_a_layout_the_data_config_knows(layout):
    config_from_dict({"data": {"datasets": [{"name": "x", "layout": layout, "root": "/x"}]}})
