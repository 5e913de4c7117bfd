"""Loading a trained SmartAssign model from wherever it lives.

``load_model(source)`` accepts
- a model directory written by training (``model.pt`` + ``config.yaml``),
- a training checkpoint directory (``state.pt`` + ``config.yaml``; EMA weights if kept),
- an MLflow model URI: ``models:/<name>@<alias>``, ``models:/<name>/<version>``,
  ``runs:/<run_id>/model`` or ``models:/m-...``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from smartassign.builder import build_model
from smartassign.config import Config, config_from_dict
from smartassign.engine.checkpoint import CONFIG_FILE, STATE_FILE, inference_weights, load_state
from smartassign.model import SmartAssign

MODEL_FILE = "model.pt"


def save_model_dir(model: SmartAssign, directory: Path, config_text: str) -> None:
    """Write ``model.pt`` (weights) and ``config.yaml`` (the training config)."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / MODEL_FILE)
    (directory / CONFIG_FILE).write_text(config_text)


def _with_recognition_window(tree: object) -> object:
    """A saved config from before ``model.recognition_window``: windows of its crop size."""
    if isinstance(tree, dict):
        model, data = tree.get("model"), tree.get("data")
        if isinstance(model, dict) and isinstance(data, dict) and "crop_size" in data:
            model.setdefault("recognition_window", data["crop_size"])
    return tree


def _with_veil_removal_flag(tree: object) -> object:
    """A saved config from before ``model.veil_removal``: a model without it."""
    if isinstance(tree, dict) and isinstance(tree.get("model"), dict):
        tree["model"].setdefault("veil_removal", False)
    return tree


def load_model_config(directory: Path) -> Config:
    """The configuration a model folder or checkpoint was trained with (its ``config.yaml``)."""
    config_path = Path(directory) / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory}: no {CONFIG_FILE}; not a SmartAssign model folder")
    tree = yaml.safe_load(config_path.read_text())
    tree = _with_veil_removal_flag(_with_recognition_window(tree))
    return config_from_dict(tree, source=str(config_path))


def _from_directory(directory: Path) -> SmartAssign:
    model = build_model(load_model_config(directory))
    if (directory / MODEL_FILE).is_file():
        weights = torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=True)
    elif (directory / STATE_FILE).is_file():
        weights = inference_weights(load_state(directory))
    else:
        raise FileNotFoundError(f"{directory}: neither {MODEL_FILE} nor {STATE_FILE} found")
    model.load_state_dict(weights)
    return model.eval()


def load_model(source: str | Path, device: str | torch.device = "cpu") -> SmartAssign:
    """The model at ``source`` (folder or MLflow URI), in eval mode on ``device``."""
    text = str(source)
    if "://" in text or text.startswith(("models:/", "runs:/")):
        import mlflow
        import mlflow.pytorch

        from smartassign.engine import tracking

        mlflow.set_tracking_uri(tracking.tracking_uri())
        try:
            model = mlflow.pytorch.load_model(text, map_location=torch.device(device))
        except Exception as error:  # MLflow raises several types for a missing model
            raise FileNotFoundError(f"cannot load model {text}: {error}") from error
        if not isinstance(model, SmartAssign):
            raise ValueError(f"{text} is a {type(model).__name__}, not a SmartAssign model")
        return model.eval()
    directory = Path(source)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: model folder not found")
    return _from_directory(directory).to(device)
