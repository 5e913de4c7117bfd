"""Training checkpoints: everything needed to resume a run where it stopped.

A checkpoint is one directory holding ``state.pt`` (model, EMA, optimizer, scheduler and
grad-scaler states, epoch and step counters, RNG states, per-epoch history) and
``config.yaml`` (the full configuration the run was started with).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from smartassign.config import Config

STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"


def rng_state() -> dict[str, Any]:
    """RNG states of Python, NumPy and torch (CPU, and CUDA when present)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Progress:
    """Where a run is: ``epoch`` epochs are complete, plus ``step_in_epoch`` steps of the next.

    ``history`` holds one dict of validation metrics per completed epoch; ``resumes``
    counts the restarts from a checkpoint.
    """

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    resumes: int = 0


def save_checkpoint(
    directory: Path, *, cfg: Config, progress: Progress, parts: dict[str, Any]
) -> Path:
    """Write a checkpoint directory (created if needed) and return it; ``parts`` are the
    training state dicts (``Optimisation.state_dicts``)."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {**parts, "progress": progress.__dict__, "rng": rng_state()}
    torch.save(state, directory / STATE_FILE)
    (directory / CONFIG_FILE).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return directory


def load_state(directory: Path) -> dict[str, Any]:
    """The raw state dict of a checkpoint directory."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a SmartAssign checkpoint (no {STATE_FILE})")
    return torch.load(path, map_location="cpu", weights_only=False)


def inference_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights to deploy: the EMA average when the run kept one, else the raw model."""
    if state.get("ema") is not None:
        return {
            key.removeprefix("module."): value
            for key, value in state["ema"].items()
            if key.startswith("module.")
        }
    return state["model"]
