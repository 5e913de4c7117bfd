"""A logged model's evaluation metrics in MLflow 3: written by ``evaluate``, read by the
registry.

``smartassign evaluate`` of a model that training logged to MLflow opens an MLflow run
(``evaluate``) whose input is the test set as a dataset (its manifest; the dataset digest
is the start of the manifest's sha256) and logs the metrics linked to the logged model and
that dataset, so the MLflow UI shows them on the model's page and
``mlflow.search_logged_models`` filters and orders by them. The real check sets are a
second dataset (``real-checks``). The registry reads a version's metrics back for the test
set it was registered with (:func:`metrics_of`).
"""

from __future__ import annotations

from pathlib import Path

from smartassign.engine import tracking

DIGEST_LENGTH = 32
"""Characters of a manifest's sha256 kept as the dataset digest (MLflow stores 36)."""

TEST_DATASET = "test"
REAL_DATASET = "real-checks"


def logged_model_uri(source: str | Path) -> str | None:
    """The MLflow logged model of a model source: a ``models:/`` URI itself, or the one
    training logged for a model folder (its ``mlflow_model_uri`` file); else ``None``."""
    text = str(source)
    if text.startswith("models:/"):
        return text
    path = Path(source) / tracking.MODEL_URI_FILE
    return path.read_text().strip() if path.is_file() else None


def model_id_of(model_uri: str) -> str | None:
    """The logged model (``m-...``) behind ``model_uri``: ``models:/m-...`` itself, or the
    source of a registered ``models:/<name>/<version>`` / ``models:/<name>@<alias>``;
    ``None`` for anything else (a folder, ``runs:/``)."""
    if not model_uri.startswith("models:/"):
        return None
    target = model_uri.removeprefix("models:/")
    if target.startswith("m-"):
        return target
    client = tracking.client()
    if "@" in target:
        name, alias = target.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    else:
        name, number = target.rsplit("/", 1)
        version = client.get_model_version(name, number)
    return model_id_of(version.source) if version.source != model_uri else None


def digest(sha256: str) -> str:
    """The dataset digest of a manifest (or check sets) sha256."""
    return sha256[:DIGEST_LENGTH]


def log_evaluation(
    experiment: str,
    model_id: str,
    sets: list[tuple[str, str, Path | str, dict[str, float]]],
) -> str:
    """Open an ``evaluate`` run in ``experiment`` and log, for each ``(dataset name,
    sha256, source path, metrics)``, the dataset as a run input and the metrics linked to
    the logged model ``model_id`` and that dataset. Returns the run id."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    mlflow.set_tracking_uri(tracking.tracking_uri())
    client = tracking.client()
    run = client.create_run(
        tracking.experiment_id(client, experiment),
        run_name="evaluate",
        tags={"model_id": model_id, "git_commit": tracking.git_commit()},
    )
    with mlflow.start_run(run_id=run.info.run_id):
        for name, sha256, source, metrics in sets:
            dataset = MetaDataset(
                source=resolve_dataset_source(str(source)), name=name, digest=digest(sha256)
            )
            mlflow.log_input(dataset, context=name)
            mlflow.log_metrics(metrics, model_id=model_id, dataset=dataset)
    return run.info.run_id


def metrics_of(model_id: str, sha256: str) -> dict[str, float]:
    """The latest value of every metric logged for ``model_id`` on the test set with
    ``sha256`` (empty when it was never evaluated there)."""
    logged = tracking.client().get_logged_model(model_id)
    latest: dict[str, tuple[int, float]] = {}
    for metric in logged.metrics or []:
        if metric.dataset_name != TEST_DATASET or metric.dataset_digest != digest(sha256):
            continue
        if metric.key not in latest or metric.timestamp >= latest[metric.key][0]:
            latest[metric.key] = (metric.timestamp, metric.value)
    return {key: value for key, (_, value) in latest.items()}
