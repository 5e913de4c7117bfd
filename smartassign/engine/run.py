"""The training driver: Ray cluster, MLflow run, TorchTrainer, and the trained model.

``train(cfg)`` joins the Ray cluster at ``$RAY_ADDRESS`` or starts a local Ray sized to the
machine, opens (or reopens) the MLflow run, runs :func:`train_loop_per_worker` on
``train.num_workers`` workers and writes the model directory for DVC.

A run is identified by ``train.storage_path / train.run_name`` (a local folder or an
``s3://`` / ``gs://`` URI). Started again after an interruption (driver killed, out of
retries) with the same ``model`` / ``loss`` / ``data`` / ``train`` params and tracking, it
resumes from its latest checkpoint and the same MLflow run. A run that finished, or an
unfinished one whose params differ (its checkpoints hold another model or optimiser) or
that was tracked differently, is started afresh; the old MLflow run stays, marked killed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smartassign.config import Config, ConfigError
from smartassign.engine import tracking
from smartassign.engine.calibration import calibrate_recognition, write_calibration
from smartassign.engine.checkpoint import CONFIG_FILE, load_state
from smartassign.engine.devices import BACKENDS, check_device, ray_resources
from smartassign.engine.loop import train_loop_per_worker
from smartassign.engine.step import NonFiniteLossError
from smartassign.engine.storage import (
    absolute_paths,
    absolute_storage,
    fingerprint,
    read_state,
    remove,
    write_state,
)
from smartassign.engine.validation import check_monitor_is_measured, check_training_data
from smartassign.model import SmartAssign
from smartassign.model_io import load_trained, log_model, save_model_dir

RUN_STATE_FILE = "smartassign_run.json"
"""Resume state of a training run (config fingerprint, MLflow run, completed), beside Ray's."""
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


TRAINING_SECTIONS = ("model", "loss", "data", "train")
"""Config sections a training run depends on: a change elsewhere (registry, inference,
tune, ablation) does not restart an interrupted run."""


@dataclass
class TrainingRun:
    """One training run's lifecycle: its folder ``train.storage_path / train.run_name`` (Ray's
    checkpoints and :data:`RUN_STATE_FILE`) and its MLflow run.

    :meth:`open` resumes the unfinished run or starts afresh and records it as unfinished;
    :meth:`complete` records it as finished, so the next ``open`` starts a new one.
    """

    cfg: Config
    storage: str
    path: str
    mlflow_run_id: str | None

    @classmethod
    def open(cls, cfg: Config, *, track: bool) -> TrainingRun:
        """Resume the unfinished run when it trains ``cfg``'s model the same way and with
        the same MLflow tracking, else clear its folder and open a new MLflow run (when
        ``track``)."""
        storage = absolute_storage(cfg.train.storage_path)
        path = f"{storage}/{cfg.train.run_name}"
        state = read_state(path, RUN_STATE_FILE)
        if state is not None and not state["completed"]:
            same_params = state["fingerprint"] == fingerprint(cfg, TRAINING_SECTIONS)
            same_tracking = (state["mlflow_run_id"] is not None) == track
            if same_params and same_tracking:
                print(f"resuming the interrupted training run in {path}", flush=True)
                return cls(cfg, storage, path, state["mlflow_run_id"])
            why = (
                "other params" if not same_params else f"MLflow tracking {'off' if track else 'on'}"
            )
            print(
                f"discarding the unfinished training run in {path}: it was started with {why}",
                flush=True,
            )
            if track and state["mlflow_run_id"] is not None:
                tracking.client().set_terminated(state["mlflow_run_id"], status="KILLED")
        remove(path)
        run = cls(cfg, storage, path, _new_mlflow_run(cfg) if track else None)
        run._record(completed=False)
        return run

    def complete(self) -> None:
        """Record that the run finished: its checkpoints hold the trained model."""
        self._record(completed=True)

    def _record(self, *, completed: bool) -> None:
        state = {
            "fingerprint": fingerprint(self.cfg, TRAINING_SECTIONS),
            "mlflow_run_id": self.mlflow_run_id,
            "completed": completed,
        }
        write_state(self.path, RUN_STATE_FILE, state)


def _new_mlflow_run(cfg: Config) -> str:
    """Open the MLflow run of a new training run: tags (with ``parent_model`` when it
    fine-tunes ``train.init``) and the flattened config as params."""
    mlflow_client = tracking.client()
    experiment = tracking.experiment_id(mlflow_client, cfg.registry.experiment)
    tags = {
        "git_commit": tracking.git_commit(),
        "data_manifest_sha256": manifest_hash(cfg),
        "variant": cfg.model.variant.value,
    }
    if cfg.train.init:
        tags["parent_model"] = cfg.train.init
    run = mlflow_client.create_run(experiment, run_name=cfg.train.run_name, tags=tags)
    for key, value in cfg.flat().items():
        mlflow_client.log_param(run.info.run_id, key, json.dumps(value)[:6000])
    return run.info.run_id


def initial_weights(cfg: Config) -> dict[str, Any] | None:
    """The weights of ``train.init`` (``None`` when empty), refused before Ray starts when
    they do not fit ``cfg.model``: the model keys that differ from the ones it was trained
    with are named. The recognition head's ``logit_offset`` is reset to zero: a run
    learns uncalibrated logits and is calibrated when it ends (``export_model_dir``)."""
    if not cfg.train.init:
        return None
    from smartassign.builder import build_model

    try:
        source, trained = load_trained(cfg.train.init)
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(f"train.init: {error}") from None
    if source.recognition is not None:
        source.recognition.logit_offset.zero_()
    weights = source.state_dict()
    try:
        build_model(cfg).load_state_dict(weights)
    except RuntimeError:
        ours, theirs = cfg.flat(), trained.flat()
        differ = [
            f"{key} {theirs[key]!r} there, {ours[key]!r} here"
            for key in sorted(ours)
            if key.startswith("model.") and ours[key] != theirs.get(key)
        ]
        raise ConfigError(
            f"train.init: the weights of {cfg.train.init} do not fit this model "
            f"({'; '.join(differ) or 'other parameter shapes'}); set these model keys as "
            "that model was trained (its config.yaml)"
        ) from None
    return weights


def _scaling(cfg: Config) -> Any:
    import ray.train

    return ray.train.ScalingConfig(
        num_workers=cfg.train.num_workers,
        use_gpu=cfg.train.device == "cuda",
        resources_per_worker=ray_resources(cfg.train.resources_per_worker, cfg.train.device),
    )


def fit(
    cfg: Config, *, fault: dict[str, Any] | None = None, track: bool = True
) -> tuple[Any, str | None]:
    """Run the TorchTrainer for ``cfg``; returns Ray's ``Result`` and the MLflow run id."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    if cfg.train.num_workers < 1:
        raise ConfigError(
            "train.num_workers: 0 is only for `smartassign tune` trials; use 1 or more to train"
        )
    check_device(cfg.train.device)
    cfg = absolute_paths(cfg, ("data.root", "train.model_dir"))
    check_monitor_is_measured(cfg)
    check_training_data(cfg)
    init_weights = initial_weights(cfg)
    init_ray()
    run = TrainingRun.open(cfg, track=track)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": cfg.to_dict(),
            "mlflow_run_id": run.mlflow_run_id,
            "tracking_uri": tracking.tracking_uri(),
            "fault": fault,
            "init": init_weights,
        },
        torch_config=TorchConfig(backend=BACKENDS[cfg.train.device]),
        scaling_config=_scaling(cfg),
        run_config=ray.train.RunConfig(
            name=cfg.train.run_name,
            storage_path=run.storage,
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),
            worker_runtime_env={"env_vars": WORKER_ENV},
        ),
    )
    result = trainer.fit()
    status = result.return_value or {}
    if status.get("status") == "nonfinite":
        raise NonFiniteLossError(status["message"])
    run.complete()
    return result, run.mlflow_run_id


def export_model_dir(checkpoint_dir: Path, model_dir: Path) -> SmartAssign:
    """Write ``model.pt`` (inference weights), ``config.yaml`` and ``history.json`` of a
    checkpoint into ``model_dir`` for DVC; return the model.

    With ``train.calibration_images`` above 0 the recognition head's threshold is first
    calibrated on the validation split (:mod:`smartassign.engine.calibration`) and what
    calibration found goes to ``calibration.json``."""
    model, trained = load_trained(checkpoint_dir)
    calibration = None
    if trained.train.calibration_images and model.recognition is not None:
        calibration = calibrate_recognition(model, trained, trained.train.calibration_images)
        if calibration is None:
            print("recognition threshold left as trained: the validation split lacks rain or snow")
    if model_dir.exists():
        shutil.rmtree(model_dir)
    save_model_dir(model, model_dir, (checkpoint_dir / CONFIG_FILE).read_text())
    history = load_state(checkpoint_dir)["progress"]["history"]
    (model_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    if calibration is not None:
        write_calibration(calibration, model_dir)
        print(calibration.describe())
    return model


def train(cfg: Config, *, fault: dict[str, Any] | None = None, track: bool = True) -> TrainResult:
    """Train, export the model directory, and log the final model to MLflow."""
    result, run_id = fit(cfg, fault=fault, track=track)
    if result.checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    with result.checkpoint.as_directory() as directory:
        checkpoint_dir = Path(directory)
        export_model_dir(checkpoint_dir, Path(cfg.train.model_dir))
    history = json.loads((Path(cfg.train.model_dir) / "history.json").read_text())
    if run_id is not None:
        model_uri = log_model(Path(cfg.train.model_dir), run_id)
        (Path(cfg.train.model_dir) / tracking.MODEL_URI_FILE).write_text(model_uri + "\n")
        tracking.client().set_terminated(run_id)
    return TrainResult(
        run_id=run_id,
        model_dir=Path(cfg.train.model_dir),
        metrics=history[-1] if history else {},
        history=history,
        checkpoint_dir=Path(result.checkpoint.path),
    )
