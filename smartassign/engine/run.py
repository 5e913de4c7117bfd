"""The training driver: Ray cluster, MLflow run, TorchTrainer, and the trained model.

``train(cfg)`` joins the Ray cluster at ``$RAY_ADDRESS`` or starts a local Ray sized to the
machine, opens (or reopens) the MLflow run, runs :func:`train_loop_per_worker` on
``train.num_workers`` workers and writes the model directory for DVC.

A run is identified by ``train.storage_path / train.run_name``. Started again after an
interruption (driver killed, out of retries) it resumes from its latest checkpoint and
the same MLflow run; a run that finished is started afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from smartassign.config import Config, ConfigError
from smartassign.engine import tracking
from smartassign.engine.checkpoint import inference_weights, load_state
from smartassign.engine.devices import BACKENDS, check_device
from smartassign.engine.loop import train_loop_per_worker
from smartassign.engine.step import NonFiniteLossError
from smartassign.model import SmartAssign
from smartassign.model_io import save_model_dir

MLFLOW_RUN_FILE = "mlflow_run_id"
COMPLETED_FILE = "COMPLETED"
WORKER_ENV = {
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
}


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_id: str | None
    model_dir: Path
    metrics: dict[str, float]
    history: list[dict[str, float]]
    checkpoint_dir: Path


def init_ray() -> None:
    """Join ``$RAY_ADDRESS`` if set, else start a local Ray using every core here."""
    import ray

    if ray.is_initialized():
        return
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env={"env_vars": WORKER_ENV})
    else:
        ray.init(num_cpus=os.cpu_count() or 1, runtime_env={"env_vars": WORKER_ENV})


def manifest_hash(cfg: Config) -> str:
    """sha256 over the data manifests (tags a run with the exact data it saw)."""
    digest = hashlib.sha256()
    manifests = Path(cfg.data.root) / "manifests"
    for path in sorted(manifests.glob("*")) if manifests.is_dir() else []:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _absolute_paths(cfg: Config) -> Config:
    """Local paths resolved against the driver's working directory (workers may run
    elsewhere)."""
    updates = {}
    for key in ("data.root", "train.model_dir"):
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if "://" not in value:
            updates[key] = str(Path(value).resolve())
    return cfg.override(updates)


def _storage(cfg: Config) -> str:
    path = cfg.train.storage_path
    return path if "://" in path else str(Path(path).resolve())


def _open_mlflow_run(cfg: Config, run_dir: Path) -> str:
    """Reopen the MLflow run of an interrupted Ray run, or start a new one."""
    mlflow_client = tracking.client()
    run_file = run_dir / MLFLOW_RUN_FILE
    if run_file.is_file():
        return run_file.read_text().strip()
    experiment = tracking.experiment_id(mlflow_client, cfg.registry.experiment)
    run = mlflow_client.create_run(
        experiment,
        run_name=cfg.train.run_name,
        tags={
            "git_commit": tracking.git_commit(),
            "data_manifest_sha256": manifest_hash(cfg),
            "variant": cfg.model.variant.value,
        },
    )
    for key, value in cfg.flat().items():
        mlflow_client.log_param(run.info.run_id, key, json.dumps(value)[:6000])
    run_dir.mkdir(parents=True, exist_ok=True)
    run_file.write_text(run.info.run_id)
    return run.info.run_id


def _scaling(cfg: Config) -> Any:
    import ray.train

    resources = dict(cfg.train.resources_per_worker)
    if cfg.train.device == "cuda":
        resources.setdefault("GPU", 1.0)
    if cfg.train.device == "npu":
        resources.setdefault("NPU", 1.0)
    return ray.train.ScalingConfig(
        num_workers=cfg.train.num_workers,
        use_gpu=cfg.train.device == "cuda",
        resources_per_worker=resources,
    )


def fit(cfg: Config, *, fault: dict[str, Any] | None = None, track: bool = True) -> Any:
    """Run the TorchTrainer for ``cfg``; returns Ray's ``Result`` and the MLflow run id."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    if cfg.train.num_workers < 1:
        raise ConfigError(
            "train.num_workers: 0 is only for `smartassign tune` trials; use 1 or more to train"
        )
    check_device(cfg.train.device)
    cfg = _absolute_paths(cfg)
    init_ray()
    storage = _storage(cfg)
    run_dir = Path(storage) / cfg.train.run_name
    if (run_dir / COMPLETED_FILE).exists():
        shutil.rmtree(run_dir)
    run_id = _open_mlflow_run(cfg, run_dir) if track else None
    if not track:
        run_dir.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": cfg.to_dict(),
            "mlflow_run_id": run_id,
            "tracking_uri": tracking.tracking_uri(),
            "fault": fault,
        },
        torch_config=TorchConfig(backend=BACKENDS[cfg.train.device]),
        scaling_config=_scaling(cfg),
        run_config=ray.train.RunConfig(
            name=cfg.train.run_name,
            storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),
            worker_runtime_env={"env_vars": WORKER_ENV},
        ),
    )
    result = trainer.fit()
    status = result.return_value or {}
    if status.get("status") == "nonfinite":
        raise NonFiniteLossError(status["message"])
    (run_dir / COMPLETED_FILE).write_text("finished\n")
    return result, run_id


def export_model_dir(checkpoint_dir: Path, model_dir: Path) -> SmartAssign:
    """Write ``model.pt`` (inference weights) and ``config.yaml`` for DVC; return the model."""
    state = load_state(checkpoint_dir)
    cfg_text = (checkpoint_dir / "config.yaml").read_text()
    cfg = Config.model_validate(yaml.safe_load(cfg_text))
    model = SmartAssign.from_config(cfg)
    model.load_state_dict(inference_weights(state))
    model.eval()
    if model_dir.exists():
        shutil.rmtree(model_dir)
    save_model_dir(model, model_dir, cfg_text)
    (model_dir / "history.json").write_text(
        json.dumps(state["progress"]["history"], indent=2) + "\n"
    )
    return model


def log_model(model: SmartAssign, run_id: str) -> str:
    """Log the model to MLflow with a dynamic-size input signature.

    No input example: MLflow checks one by serving it through the pyfunc flavour, which
    needs a model returning one tensor, while SmartAssign returns all its heads
    (:class:`~smartassign.model.SmartAssignOutput`), so the check could only warn. The model
    is served by ``smartassign restore`` (``models:/`` URIs) or as an ONNX / TorchScript
    export.
    """
    import mlflow
    import mlflow.pytorch
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    mlflow.set_tracking_uri(tracking.tracking_uri())
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1), "image")]),
    )
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            signature=signature,
            serialization_format="pickle",
        )
    return info.model_uri


def train(cfg: Config, *, fault: dict[str, Any] | None = None, track: bool = True) -> TrainResult:
    """Train, export the model directory, and log the final model to MLflow."""
    result, run_id = fit(cfg, fault=fault, track=track)
    if result.checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    with result.checkpoint.as_directory() as directory:
        checkpoint_dir = Path(directory)
        model = export_model_dir(checkpoint_dir, Path(cfg.train.model_dir))
    history = json.loads((Path(cfg.train.model_dir) / "history.json").read_text())
    if run_id is not None:
        model_uri = log_model(model, run_id)
        (Path(cfg.train.model_dir) / "mlflow_model_uri").write_text(model_uri + "\n")
        tracking.client().set_terminated(run_id)
    return TrainResult(
        run_id=run_id,
        model_dir=Path(cfg.train.model_dir),
        metrics=history[-1] if history else {},
        history=history,
        checkpoint_dir=Path(result.checkpoint.path),
    )
