"""The analysis in MLflow: its files and numbers on the run that trained the model.

For a model folder that training logged (its ``mlflow_model_uri``) and for a logged model
``models:/m-...``, the files go under ``analysis/`` of the training run and the numbers
are logged there as ``analysis/<name>`` metrics. For a registered model
(``models:/<name>/<version>``, ``models:/<name>@<alias>``) they go to a child run of the
training run, ``analyze <uri>``, so analysing a registered version never rewrites what its
training recorded.
"""

from __future__ import annotations

from pathlib import Path

from smartassign.engine import tracking
from smartassign.model_metrics import logged_model_uri, model_id_of

ARTIFACT_PATH = "analysis"


def training_run_of(source: str | Path) -> str | None:
    """The MLflow run that trained the model at ``source``; ``None`` when training did not
    log it to this tracking store."""
    from mlflow.exceptions import MlflowException

    uri = logged_model_uri(source)
    model_id = model_id_of(uri) if uri else None
    if model_id is None:
        return None
    try:
        return tracking.client().get_logged_model(model_id).source_run_id
    except MlflowException:
        return None


def log_analysis(source: str | Path, out_dir: Path, metrics: dict[str, float]) -> str | None:
    """Log ``out_dir`` and ``metrics`` for the model at ``source`` (module docstring);
    returns the run they went to, or ``None`` when the model has no training run here."""
    run_id = training_run_of(source)
    if run_id is None:
        return None
    client = tracking.client()
    registered = str(source).startswith("models:/") and not str(source).startswith("models:/m-")
    if registered:
        parent = client.get_run(run_id)
        run_id = client.create_run(
            parent.info.experiment_id,
            run_name=f"analyze {source}",
            tags={"mlflow.parentRunId": parent.info.run_id, "git_commit": tracking.git_commit()},
        ).info.run_id
    client.log_artifacts(run_id, str(out_dir), ARTIFACT_PATH)
    tracking.log_metrics(
        client, run_id, {f"{ARTIFACT_PATH}/{key}": value for key, value in metrics.items()}, step=0
    )
    if registered:
        client.set_terminated(run_id)
    return run_id
