"""MLflow runs of a sweep and its summary table.

The driver opens one parent run per sweep (the ablation study of :mod:`smartassign.ablation`
uses the same parent and child helpers); each trial opens (or, resumed, finds again by its
Ray trial id) a child run tagged ``mlflow.parentRunId`` holding the trial's full
configuration as params and its per-epoch metrics. At the end the summary table of all
trials, sorted by the objective, goes to the parent run as artifacts and the best trial is
recorded there (``best/objective``, tags ``best_trial_id`` / ``best_run_id``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from smartassign.config import Config
from smartassign.engine import tracking
from smartassign.engine.run import manifest_hash

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from ray.tune import ResultGrid

PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "smartassign.trial_id"
SWEEP_TAG = "smartassign.sweep"
STATUS_TAG = "smartassign.trial_status"
FINISHED, STOPPED, ERROR = "finished", "stopped early", "error"
_MLFLOW_STATUS = {FINISHED: "FINISHED", STOPPED: "FINISHED", ERROR: "FAILED"}
_PARAMS_PER_BATCH = 100


@dataclass
class TrialRow:
    """One line of the summary table."""

    trial_id: str
    status: str  # finished | stopped early | error
    epochs: int
    objective: float | None  # at the trial's last reported epoch
    params: dict[str, Any]  # the sampled values
    run_id: str | None = None  # the trial's MLflow run
    error: str = ""
    history: list[float] = field(default_factory=list)  # objective per epoch


def log_params(mlflow_client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log params as JSON strings (as the training runs do), in batches."""
    from mlflow.entities import Param

    items = [Param(key, json.dumps(value)[:6000]) for key, value in params.items()]
    for start in range(0, len(items), _PARAMS_PER_BATCH):
        mlflow_client.log_batch(run_id, params=items[start : start + _PARAMS_PER_BATCH])


def open_parent(
    mlflow_client: MlflowClient,
    cfg: Config,
    *,
    run_name: str,
    section: str,
    tags: Mapping[str, str],
) -> str:
    """Start the parent run of a sweep or study (params: the config ``section``, e.g.
    ``tune``; tags: git commit, data-manifest hash and ``tags``); return its id."""
    experiment = tracking.experiment_id(mlflow_client, cfg.registry.experiment)
    run = mlflow_client.create_run(
        experiment,
        run_name=run_name,
        tags={
            "git_commit": tracking.git_commit(),
            "data_manifest_sha256": manifest_hash(cfg),
            **tags,
        },
    )
    params = {k: v for k, v in cfg.flat().items() if k.startswith(f"{section}.")}
    log_params(mlflow_client, run.info.run_id, params)
    return run.info.run_id


def children(mlflow_client: MlflowClient, parent_run_id: str, trial_id: str = "") -> list[Any]:
    """Child runs of a parent run (of one trial if ``trial_id`` is given)."""
    parent = mlflow_client.get_run(parent_run_id)
    query = f"tags.`{PARENT_TAG}` = '{parent_run_id}'"
    if trial_id:
        query += f" and tags.`{TRIAL_TAG}` = '{trial_id}'"
    return mlflow_client.search_runs([parent.info.experiment_id], query, max_results=10_000)


def trial_run(
    mlflow_client: MlflowClient,
    parent_run_id: str,
    *,
    trial_id: str,
    trial_name: str,
    cfg: Config,
    sampled: Mapping[str, Any],
) -> str:
    """The child run of a trial: found again when the trial resumes, else created."""
    found = children(mlflow_client, parent_run_id, trial_id)
    if found:
        return found[0].info.run_id
    experiment = mlflow_client.get_run(parent_run_id).info.experiment_id
    run = mlflow_client.create_run(
        experiment,
        run_name=trial_name,
        tags={
            PARENT_TAG: parent_run_id,
            TRIAL_TAG: trial_id,
            "sampled": json.dumps(dict(sampled), default=float),
        },
    )
    log_params(mlflow_client, run.info.run_id, cfg.flat())
    return run.info.run_id


def collect(
    grid: ResultGrid, mlflow_client: MlflowClient, parent_run_id: str, epochs: int
) -> list[TrialRow]:
    """Every trial of a finished sweep, best objective first (trials without one last)."""
    run_ids = {
        r.data.tags[TRIAL_TAG]: r.info.run_id for r in children(mlflow_client, parent_run_id)
    }
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        trial_id = str(metrics.get("trial_id", ""))
        done = int(metrics.get("epoch", 0))
        status = ERROR if result.error else FINISHED if done >= epochs else STOPPED
        value = metrics.get("objective")
        history = []
        if run_ids.get(trial_id):
            steps = mlflow_client.get_metric_history(run_ids[trial_id], "objective")
            history = [m.value for m in sorted(steps, key=lambda m: m.step)]
        rows.append(
            TrialRow(
                trial_id=trial_id,
                status=status,
                epochs=done,
                objective=float(value) if value is not None and math.isfinite(value) else None,
                params=dict(result.config or {}),
                run_id=run_ids.get(trial_id),
                error=str(result.error).strip().splitlines()[-1] if result.error else "",
                history=history,
            )
        )
    rows.sort(key=lambda row: (row.objective is None, -(row.objective or 0.0)))
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(rows: Iterable[TrialRow], keys: Iterable[str]) -> str:
    """The summary as aligned text, one trial per line, in the given order."""
    keys = list(keys)
    header = ["rank", "trial", "status", "epochs", "objective", *keys, "mlflow run"]
    lines = [header]
    for rank, row in enumerate(rows, 1):
        objective = "-" if row.objective is None else f"{row.objective:.3f}"
        lines.append(
            [
                str(rank),
                row.trial_id,
                row.status,
                str(row.epochs),
                objective,
                *(_cell(row.params.get(key, "")) for key in keys),
                row.run_id or "-",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def summary(rows: list[TrialRow], cfg: Config, parent_run_id: str) -> dict[str, Any]:
    """The sweep summary (DVC metrics file and MLflow artifact)."""
    best = rows[0] if rows and rows[0].objective is not None else None
    return {
        "sweep": cfg.tune.name,
        "mlflow_parent_run_id": parent_run_id,
        "objective": {"metric": cfg.tune.metric, "task_weights": dict(cfg.tune.task_weights)},
        "best": asdict(best) if best else None,
        "trials": len(rows),
        "finished": sum(row.status == FINISHED for row in rows),
        "stopped_early": sum(row.status == STOPPED for row in rows),
        "errors": sum(row.status == ERROR for row in rows),
        "table": [asdict(row) for row in rows],
    }


def log_summary(
    mlflow_client: MlflowClient,
    parent_run_id: str,
    rows: list[TrialRow],
    sweep_summary: dict[str, Any],
    text: str,
) -> None:
    """Summary artifacts and the best trial on the parent run; close every run."""
    mlflow_client.log_dict(parent_run_id, sweep_summary, "sweep/summary.json")
    mlflow_client.log_text(parent_run_id, text + "\n", "sweep/summary.txt")
    counts = {f"trials/{k}": sweep_summary[k] for k in ("finished", "stopped_early", "errors")}
    best = sweep_summary["best"]
    if best is not None:
        counts["best/objective"] = best["objective"]
        mlflow_client.set_tag(parent_run_id, "best_trial_id", best["trial_id"])
        mlflow_client.set_tag(parent_run_id, "best_run_id", best["run_id"] or "")
    tracking.log_metrics(mlflow_client, parent_run_id, counts, step=0)
    for row in rows:
        if row.run_id:
            mlflow_client.set_tag(row.run_id, STATUS_TAG, row.status)
            mlflow_client.set_terminated(row.run_id, _MLFLOW_STATUS[row.status])
    mlflow_client.set_terminated(parent_run_id)
