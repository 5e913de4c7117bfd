"""`dvc repro` end to end in a temporary copy of the repository, on a toy config."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from smartassign.config import config_from_dict
from smartassign.engine import tracking
from smartassign.tuning.best import write_best_params
from smartassign.tuning.runs import PARENT_TAG

from .engine_fixtures import tiny_tree

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _run(command: list[str], cwd: Path, env: dict[str, str], *, stdout_only: bool = False) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout if stdout_only else done.stdout + done.stderr


def test_dvc_repro_runs_every_stage_then_nothing(tmp_path):
    """The default DAG, then the ablation stage of sweeps/dvc.yaml (kept out of it)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    repo = tmp_path / "repo"
    for name in files:
        if (REPO / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)
    tree = tiny_tree(Path("data"))
    tree["data"]["num_workers"] = 0
    tree["train"].update(epochs=1, num_workers=1)
    # one arm: the study's arms, tables and K1 backbone have tests of their own (test_ablation)
    tree["ablation"] = {"seeds": [0], "variants": ["V6"], "overrides": {"train.epochs": 1}}
    params = config_from_dict(tree).to_dict()
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # no PYTHONPATH: the stages run as modules and import the copy's own smartassign
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PYTHONPATH"}
    }
    env.update(DVC_NO_ANALYTICS="1")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    _run([*git, "init", "-q"], repo, env)
    _run([*git, "add", "-A"], repo, env)
    _run([*git, "commit", "-qm", "copy"], repo, env)

    first = _run(["dvc", "repro"], repo, env)
    for stage in ("prepare", "train", "evaluate", "analyze", "register", "promote"):
        assert f"Running stage '{stage}'" in first, stage
    assert "tune" not in first
    decision = json.loads((repo / "outputs/promote/decision.json").read_text())
    assert decision["promoted"] is True and decision["candidate"] == 1
    assert "| synthetic | rain |" in (repo / "outputs/evaluate/summary.md").read_text()
    analysis = json.loads((repo / "outputs/analyze/metrics.json").read_text())
    assert analysis["atoms"] == tree["model"]["channels"] and "separation_drm" in analysis
    assert (repo / "outputs/analyze/tsne.png").read_bytes()[:4] == b"\x89PNG"

    second = _run(["dvc", "repro"], repo, env)
    assert "Running stage" not in second
    assert "up to date" in second
    _check_remote(repo, tmp_path, env, git)
    assert "ablate" not in first + second
    assert not (repo / "outputs/ablate/report").exists()

    ablation = _run(["dvc", "repro", "sweeps/dvc.yaml:ablate"], repo, env)
    assert "Running stage 'sweeps/dvc.yaml:ablate'" in ablation
    assert "Running stage 'train'" not in ablation
    _check_ablation(repo, env)
    again = _run(["dvc", "repro", "sweeps/dvc.yaml:ablate"], repo, env)
    assert "Running stage" not in again

    # sweep, then train with the best values: what the tune stage writes, as DVC arguments
    write_best_params(repo / "outputs/tune/best_params.yaml", {"loss.lambda1": 0.0234})
    tuned = _run(["smartassign", "tuned-args"], repo, env, stdout_only=True).split()
    assert tuned == ["-S", "loss.lambda1=0.0234"]
    # the train stage as target: the stages after it ran above, on the same outputs
    experiment = _run(
        ["dvc", "exp", "run", "train", "-S", "train.epochs=3", "-S", "train.val_every=2", *tuned],
        repo,
        env,
    )
    assert "Running stage 'train'" in experiment
    assert "Running stage 'prepare'" not in experiment
    trained = yaml.safe_load((repo / "models/smartassign/config.yaml").read_text())
    assert trained["loss"]["lambda1"] == 0.0234
    history = json.loads((repo / "outputs/train/history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    validation = json.loads((repo / "outputs/train/validation.json").read_text())
    assert [row["epoch"] for row in validation] == [2, 3]
    plots = json.loads(_run(["dvc", "plots", "show", "--json"], repo, env, stdout_only=True))
    assert "errors" not in plots, plots.get("errors")
    assert all(plots["data"].values()), plots["data"]


def _check_remote(repo: Path, tmp_path: Path, env: dict[str, str], git: list[str]) -> None:
    """``dvc push`` to a remote, then a fresh clone with the lock file pulls everything the
    DAG made (metrics and plots too): nothing is left to rerun there."""
    remote = tmp_path / "dvc-remote"
    _run(["dvc", "remote", "add", "--local", "-d", "shared", str(remote)], repo, env)
    _run(["dvc", "push"], repo, env)
    clone = tmp_path / "clone"
    _run([*git, "clone", "-q", str(repo), str(clone)], tmp_path, env)
    shutil.copy2(repo / "dvc.lock", clone / "dvc.lock")
    _run(["dvc", "remote", "add", "--local", "-d", "shared", str(remote)], clone, env)
    _run(["dvc", "pull", "dvc.yaml"], clone, env)
    stages = ["prepare", "train", "evaluate", "analyze", "register", "promote"]
    assert "up to date" in _run(["dvc", "status", *stages], clone, env)
    assert (clone / "outputs/evaluate/metrics.json").is_file()
    assert (clone / "outputs/train/history.json").is_file()
    assert (clone / "outputs/analyze/gates.png").is_file()
    assert (clone / "models/smartassign/model.pt").is_file()


def _check_ablation(repo: Path, env: dict[str, str]) -> None:
    """The stage's report folder, its metrics through DVC and its runs in MLflow."""
    out = repo / "outputs/ablate/report"
    assert sorted(p.name for p in out.iterdir()) == [
        "ablation.png",
        "knowledge.csv",
        "metrics.json",
        "runs.csv",
        "tables.md",
    ]
    assert [row["arm"] for row in csv.DictReader((out / "runs.csv").open())] == ["V6", "V6"]
    tables = (out / "tables.md").read_text()
    assert "## Table 3" in tables and "| synthetic | snow |" in tables
    shown = json.loads(_run(["dvc", "metrics", "show", "--json"], repo, env, stdout_only=True))
    metrics = shown[""]["data"]["outputs/ablate/report/metrics.json"]["data"]
    assert set(metrics) == {"seeds", "V6"}
    assert metrics["V6"]["synthetic"]["snow"]["psnr_y"]["mean"] > 0

    client = tracking.client(f"sqlite:///{repo / 'mlflow.db'}")
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("smartassign").experiment_id],
        "tags.`smartassign.ablation` != ''",
    )
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'"
    )
    assert [run.info.run_name for run in children] == ["V6 seed 0"]
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "ablation")} >= {
        "ablation/tables.md",
        "ablation/ablation.png",
    }
