"""`dvc repro` end to end in a temporary copy of the repository, on a toy config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from smartassign.config import config_from_dict

from .engine_fixtures import tiny_tree

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout + done.stderr


def test_dvc_repro_runs_every_stage_then_nothing(tmp_path):
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    repo = tmp_path / "repo"
    for name in files:
        if (REPO / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)
    tree = tiny_tree(Path("data"))
    tree["data"]["num_workers"] = 0
    tree["train"].update(epochs=1, num_workers=1)
    params = config_from_dict(tree).to_dict()
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"MLFLOW_TRACKING_URI", "RAY_ADDRESS"}
    }
    env.update(DVC_NO_ANALYTICS="1", PYTHONPATH=str(repo))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    _run([*git, "init", "-q"], repo, env)
    _run([*git, "add", "-A"], repo, env)
    _run([*git, "commit", "-qm", "copy"], repo, env)

    first = _run(["dvc", "repro"], repo, env)
    for stage in ("prepare", "train", "evaluate", "register", "promote"):
        assert f"Running stage '{stage}'" in first, stage
    assert "tune" not in first
    decision = json.loads((repo / "outputs/promote/decision.json").read_text())
    assert decision["promoted"] is True and decision["candidate"] == 1
    assert "| synthetic | rain |" in (repo / "outputs/evaluate/summary.md").read_text()

    second = _run(["dvc", "repro"], repo, env)
    assert "Running stage" not in second
    assert "up to date" in second
