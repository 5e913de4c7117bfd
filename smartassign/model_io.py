"""A trained SmartAssign model on disk and in MLflow: one format, weights plus config.

A model is its weights (``model.pt``, a state dict) and the configuration it was trained
with (``config.yaml``); :func:`smartassign.builder.build_model` rebuilds the network from
the config and loads the weights, so renaming an attribute of the network never breaks a
saved or registered model. MLflow holds the same two files as a ``python_function`` model
(:func:`log_model`, loader :func:`_load_pyfunc`), no pickle.

``load_model(source)`` accepts
- a model directory written by training (``model.pt`` + ``config.yaml``),
- a training checkpoint directory (``state.pt`` + ``config.yaml``; EMA weights if kept),
- an MLflow model URI: ``models:/<name>@<alias>``, ``models:/<name>/<version>``,
  ``runs:/<run_id>/model`` or ``models:/m-...``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

from smartassign.builder import build_model
from smartassign.config import Config, config_from_dict
from smartassign.engine import tracking
from smartassign.engine.checkpoint import CONFIG_FILE, STATE_FILE, inference_weights, load_state
from smartassign.model import SmartAssign

MODEL_FILE = "model.pt"
LOGGED_NAME = "model"
"""Name of the logged model in its training run (``runs:/<run_id>/model``)."""
MODEL_PACKAGES = ("smartassign", "torch", "numpy", "mlflow")
"""Packages a logged model needs to load: this one (builder and loader), torch, and what
MLflow's ``python_function`` flavour imports."""


def save_model_dir(model: SmartAssign, directory: Path, config_text: str) -> None:
    """Write ``model.pt`` (weights) and ``config.yaml`` (the training config)."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / MODEL_FILE)
    (directory / CONFIG_FILE).write_text(config_text)


def load_model_config(directory: Path) -> Config:
    """The configuration a model folder or checkpoint was trained with (its ``config.yaml``)."""
    config_path = Path(directory) / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory}: no {CONFIG_FILE}; not a SmartAssign model folder")
    tree = yaml.safe_load(config_path.read_text())
    return config_from_dict(tree, source=str(config_path))


def _from_directory(directory: Path) -> SmartAssign:
    return _trained_from_directory(directory)[0]


def _trained_from_directory(directory: Path) -> tuple[SmartAssign, Config]:
    trained = load_model_config(directory)
    model = build_model(trained)
    if (directory / MODEL_FILE).is_file():
        weights = torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=True)
    elif (directory / STATE_FILE).is_file():
        weights = inference_weights(load_state(directory))
    else:
        raise FileNotFoundError(f"{directory}: neither {MODEL_FILE} nor {STATE_FILE} found")
    model.load_state_dict(weights)
    return model.eval(), trained


def model_requirements() -> list[str]:
    """Pinned pip requirements of a logged model, from the installed versions.

    Given explicitly, so MLflow does not infer them (it loads the model in a subprocess for
    that, several seconds) and pins torch without its local label (``2.13.0``, not
    ``2.13.0+cpu``: the CPU, CUDA and NPU builds serve the same model).
    """
    from importlib.metadata import version

    from packaging.version import Version

    return [f"{name}=={Version(version(name)).public}" for name in MODEL_PACKAGES]


def log_model(model_dir: Path, run_id: str) -> str:
    """Log the model folder's ``model.pt`` and ``config.yaml`` to MLflow run ``run_id`` as
    a ``python_function`` model; returns its ``models:/m-...`` URI.

    The signature gives the input (``B x 3 x H x W`` float32 in [0, 1], any size); no input
    example, so MLflow does not load the model once more to check it.
    """
    import mlflow
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    mlflow.set_tracking_uri(tracking.tracking_uri())
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1))]),
    )
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "smartassign"
        data.mkdir()
        for name in (MODEL_FILE, CONFIG_FILE):
            shutil.copy2(Path(model_dir) / name, data / name)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name=LOGGED_NAME,
                loader_module=__name__,
                data_path=str(data),
                signature=signature,
                pip_requirements=model_requirements(),
            )
    return info.model_uri


class PyfuncModel:
    """What ``mlflow.pyfunc.load_model`` returns for a logged SmartAssign: ``predict`` maps
    ``B x 3 x H x W`` float32 images in [0, 1] to their restorations, each by the decoder of
    the task the recognition head picks (the only decoder for a model without one)."""

    def __init__(self, model: SmartAssign) -> None:
        self.model = model

    def predict(self, model_input: np.ndarray, params: dict | None = None) -> np.ndarray:
        images = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.inference_mode():
            out = self.model(images)
        if out.logits is None:
            only = out.derain if out.derain is not None else out.desnow
            return only.clamp(0, 1).numpy()
        return out.for_tasks(out.logits.argmax(dim=-1)).clamp(0, 1).numpy()


def _load_pyfunc(data_path: str) -> PyfuncModel:
    """MLflow's entry point (``loader_module``) for a logged model's data folder."""
    return PyfuncModel(_from_directory(Path(data_path)))


def _logged_model_folder(uri: str, destination: Path) -> Path:
    """Download the logged model ``uri`` and return its data folder (weights + config)."""
    import mlflow
    from mlflow.models import Model

    mlflow.set_tracking_uri(tracking.tracking_uri())
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=destination))
    except Exception as error:  # MLflow raises several types for a missing model
        raise FileNotFoundError(f"cannot load model {uri}: {error}") from error
    flavor = Model.load(local).flavors.get("python_function", {})
    if flavor.get("loader_module") != __name__:
        raise ValueError(f"{uri} is not a SmartAssign model (weights and config.yaml)")
    return local / flavor["data"]


def load_trained(source: str | Path) -> tuple[SmartAssign, Config]:
    """The model at ``source`` (folder or MLflow URI) on the CPU, in eval mode, and the
    configuration it was trained with."""
    text = str(source)
    if "://" in text or text.startswith(("models:/", "runs:/")):
        with tempfile.TemporaryDirectory() as scratch:
            return _trained_from_directory(_logged_model_folder(text, Path(scratch)))
    directory = Path(source)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: model folder not found")
    return _trained_from_directory(directory)


def load_model(source: str | Path, device: str | torch.device = "cpu") -> SmartAssign:
    """The model at ``source`` (folder or MLflow URI), in eval mode on ``device``."""
    return load_trained(source)[0].to(device)
