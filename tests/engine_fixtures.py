"""Fixtures for Ray / MLflow tests: one Ray instance and one tiny data set per session."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from smartassign.config import Config, config_from_dict

TINY_MODEL = {
    "channels": 8,
    "sam_hidden": 4,
    "patch_size": 2,
    "embed_dim": 16,
    "num_blocks": 1,
    "num_heads": 2,
    "window_size": 4,
    "gkfm_hidden": 8,
    "gkfm_out": 8,
    "decoder_hidden": 8,
    "drm_grid": 2,
    "drm_dim": 4,
    "veil_removal": True,  # off by default; on here so its paths stay covered
}
TINY_SAMPLES_PER_EPOCH = 16
TINY_BATCH = 4


def tiny_tree(data_root: Path) -> dict:
    """A config tree small enough for a Ray run of a few seconds per epoch."""
    return {
        "model": TINY_MODEL,
        "data": {
            "root": str(data_root),
            "crop_size": 32,
            "num_workers": 0,
            "samples_per_epoch": TINY_SAMPLES_PER_EPOCH,
            "quality_pairs": 4,
            "synthetic": {"size": 48, "crops_per_photo": {"train": 2, "val": 1, "test": 1}},
        },
        "train": {
            "batch_size": TINY_BATCH,
            "lr": 0.002,
            "lr_patience": 5,
            "ema_decay": 0.0,  # a few steps: EMA weights would barely leave the start
            "val_every": 1,  # the tests follow the validation metrics epoch by epoch
            "resources_per_worker": {"CPU": 1},
        },
        "evaluate": {"real_data": "none"},  # the real check sets have tests of their own
    }


def steps_per_epoch(num_workers: int) -> int:
    return math.ceil(TINY_SAMPLES_PER_EPOCH / max(num_workers, 1) / TINY_BATCH)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the whole test session (started lazily, stopped at the end)."""
    import ray

    from smartassign.engine.run import init_ray

    init_ray()
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic default at toy size, prepared once per session."""
    from smartassign.data.prepare import prepare

    root = tmp_path_factory.mktemp("tiny_data")
    prepare(config_from_dict(tiny_tree(root)), progress=False)
    return root


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A temporary SQLite MLflow store for this test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def _tree(tiny_data: Path, tmp_path: Path, name: str, **train: object) -> dict:
    tree = tiny_tree(tiny_data)
    tree["train"].update(
        run_name=name,
        storage_path=str(tmp_path / "ray"),
        model_dir=str(tmp_path / "models" / name),
        **train,
    )
    return tree


@pytest.fixture
def tiny_config(ray_session: None, tiny_data: Path, tmp_path: Path) -> Callable[..., Config]:
    """``tiny_config(name, **train_overrides)`` -> a validated tiny :class:`Config`."""

    def make(name: str, **train: object) -> Config:
        return config_from_dict(_tree(tiny_data, tmp_path, name, **train))

    return make


@pytest.fixture
def tiny_config_file(tiny_data: Path, tmp_path: Path) -> Callable[..., Path]:
    """Like ``tiny_config`` but written to a params YAML file (for subprocess runs)."""

    def make(name: str, **train: object) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(_tree(tiny_data, tmp_path, name, **train)))
        return path

    return make


def trained_model_folder(folder: Path, params: Path) -> str:
    """A model folder as training leaves it with MLflow on (untrained weights): weights,
    config and the URI of its logged model, in a run of ``registry.experiment``."""
    from smartassign.builder import build_model
    from smartassign.config import load_config
    from smartassign.engine import tracking
    from smartassign.model_io import log_model, save_model_dir

    cfg = load_config(params)
    save_model_dir(build_model(cfg), folder, yaml.safe_dump(cfg.to_dict()))
    client = tracking.client()
    run = client.create_run(tracking.experiment_id(client, cfg.registry.experiment))
    uri = log_model(folder, run.info.run_id)
    (folder / "mlflow_model_uri").write_text(uri + "\n")
    return uri
