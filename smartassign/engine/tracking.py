"""MLflow tracking: where runs go, and the figures SmartAssign logs.

The tracking URI is ``$MLFLOW_TRACKING_URI`` or, by default, an embedded SQLite file
``mlflow.db`` in the working directory with artifacts in ``mlartifacts/`` beside it: no
server is needed. ``mlflow`` is imported lazily; importing it costs seconds.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
MODEL_URI_FILE = "mlflow_model_uri"
"""File of a model folder holding the URI of the MLflow logged model training wrote."""


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def client(uri: str | None = None) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri or tracking_uri())


def experiment_id(mlflow_client: MlflowClient, name: str) -> str:
    """Id of experiment ``name``, created (with local artifacts for a SQLite store) if new."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if mlflow_client.tracking_uri.startswith("sqlite:///"):
        database = Path(mlflow_client.tracking_uri.removeprefix("sqlite:///"))
        location = (database.parent / DEFAULT_ARTIFACTS).resolve().as_uri()
    return mlflow_client.create_experiment(name, artifact_location=location)


def git_commit() -> str:
    """The current git commit of the working directory, or ``unknown``."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def logged_steps(mlflow_client: MlflowClient, run_id: str, key: str) -> set[int]:
    """Steps at which ``key`` was logged in ``run_id`` (to log each epoch exactly once)."""
    return {m.step for m in mlflow_client.get_metric_history(run_id, key)}


def log_metrics(
    mlflow_client: MlflowClient, run_id: str, metrics: dict[str, float], step: int
) -> None:
    """Log a dict of metrics at one step in a single batch request."""
    from mlflow.entities import Metric

    timestamp = int(time.time() * 1000)
    mlflow_client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), timestamp, step) for key, value in metrics.items()],
    )


def sample_grid(
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], size: int = 160
) -> np.ndarray:
    """Stack ``(input, output, target)`` uint8 images into one ``input | output | target`` grid.

    Each image is cropped to its top-left ``size x size`` region (or padded) so rows align.
    """

    def fit(image: np.ndarray) -> np.ndarray:
        canvas = np.zeros((size, size, 3), dtype=np.uint8)
        crop = image[:size, :size]
        canvas[: crop.shape[0], : crop.shape[1]] = crop
        return canvas

    separator = np.full((size, 4, 3), 255, dtype=np.uint8)
    lines = [
        np.concatenate([fit(a), separator, fit(b), separator, fit(c)], axis=1) for a, b, c in rows
    ]
    gap = np.full((4, lines[0].shape[1], 3), 255, dtype=np.uint8)
    stacked = [lines[0]]
    for line in lines[1:]:
        stacked += [gap, line]
    return np.concatenate(stacked, axis=0)


def gate_figure(gates: dict[str, np.ndarray], title: str) -> Figure:
    """Bar plot of the mean GKFM gate per knowledge atom for rk / ck / sk (Eq. 11).

    This is the knowledge assignment the paper learns: an atom with a large gate in
    ``GKFM_rk`` only is unique rain knowledge, one open in both ``rk`` and ``sk`` is shared.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(gates), 1, figsize=(10, 1.8 * len(gates)), sharex=True)
    axes = np.atleast_1d(axes)
    colours = {"rk": "tab:blue", "ck": "tab:green", "sk": "tab:purple"}
    for axis, (kind, values) in zip(axes, gates.items(), strict=True):
        axis.bar(np.arange(len(values)), values, color=colours.get(kind, "tab:gray"))
        axis.axhline(0, color="black", linewidth=0.5)
        axis.set_ylabel(f"GKFM_{kind}")
    axes[-1].set_xlabel("knowledge atom (channel of F_wk)")
    figure.suptitle(title)
    figure.tight_layout()
    return figure
