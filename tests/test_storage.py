"""Run folders and their state files, local paths and URIs alike (engine.storage)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartassign.config import Config
from smartassign.engine.storage import (
    absolute_paths,
    absolute_storage,
    fingerprint,
    read_state,
    remove,
    write_state,
)


@pytest.mark.parametrize("as_uri", [False, True])
def test_state_is_written_read_and_removed_with_its_folder(tmp_path: Path, as_uri: bool):
    folder = tmp_path / "runs" / "one"
    location = folder.as_uri() if as_uri else str(folder)
    assert read_state(location, "state.json") is None
    write_state(location, "state.json", {"completed": False, "n": 1})
    assert (folder / "state.json").is_file()
    assert read_state(location, "state.json") == {"completed": False, "n": 1}
    (folder / "checkpoint_0").mkdir()
    remove(location)
    assert not folder.exists()
    remove(location)  # nothing there: no error


def test_local_paths_are_made_absolute_and_uris_kept(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_storage("outputs/ray") == str(tmp_path / "outputs" / "ray")
    assert absolute_storage("s3://bucket/runs/") == "s3://bucket/runs"
    cfg = absolute_paths(
        Config().override({"data.root": "s3://bucket/data"}), ("data.root", "train.model_dir")
    )
    assert cfg.data.root == "s3://bucket/data"
    assert cfg.train.model_dir == str(tmp_path / "models" / "smartassign")


def test_fingerprint_changes_with_any_parameter():
    cfg = Config()
    assert fingerprint(cfg) == fingerprint(Config())
    assert fingerprint(cfg) != fingerprint(cfg.override({"train.lr": 0.005}))
    registry_edit = cfg.override({"registry.metric": "test/ssim_mean"})
    assert fingerprint(registry_edit, ("model", "train")) == fingerprint(cfg, ("model", "train"))
    assert fingerprint(registry_edit) != fingerprint(cfg)


@pytest.mark.parametrize(
    ("change", "track", "resumes"),
    [
        ({}, True, True),
        ({"registry.metric": "test/ssim_mean"}, True, True),
        ({"train.lr": 0.005}, True, False),
        ({}, False, False),
    ],
    ids=["same", "registry-edit", "lr-edit", "untracked-rerun"],
)
def test_unfinished_training_run_resumes_only_with_its_params_and_tracking(
    tmp_path: Path, mlflow_store: str, change: dict, track: bool, resumes: bool
):
    """The training driver's decision (engine.run.TrainingRun.open): resume the folder and
    MLflow run, or clear the folder, start a new run and mark the old one killed."""
    from smartassign.engine import tracking
    from smartassign.engine.run import TrainingRun

    cfg = Config().override(
        {
            "data.root": str(tmp_path / "data"),
            "train.storage_path": str(tmp_path / "ray"),
            "train.run_name": "run",
        }
    )
    first = TrainingRun.open(cfg, track=True).mlflow_run_id
    checkpoint = tmp_path / "ray" / "run" / "checkpoint_000000"
    checkpoint.mkdir()
    again = TrainingRun.open(cfg.override(change), track=track).mlflow_run_id
    assert (again == first) is resumes
    assert checkpoint.exists() is resumes
    assert (again is None) is (not track)
    status = tracking.client().get_run(first).info.status
    assert (status == "KILLED") is (not resumes and track)
