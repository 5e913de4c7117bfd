"""One Ray Tune trial: the training worker loop run in the trial's own process.

A trial is a plain function trainable, not a ``TorchTrainer`` per trial: it runs
:func:`~smartassign.engine.loop.train_loop_per_worker` in-process with a
:class:`TuneSession` in place of ``ray.train``, so reports go to ``ray.tune.report`` and
resumption reads ``ray.tune.get_checkpoint``. When ASHA stops a trial Tune ends its actor,
and with it everything the trial held: no worker group or placement group is left behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ray import tune

from smartassign.config import Config, TuneConfig, config_from_dict
from smartassign.engine import tracking
from smartassign.engine.loop import LocalSession, train_loop_per_worker
from smartassign.engine.step import NonFiniteLossError
from smartassign.tuning import runs

if TYPE_CHECKING:
    from mlflow import MlflowClient

#: the key of the sweep objective in every trial report (and MLflow metric of each trial)
OBJECTIVE = "objective"
#: report keys that are counters, not metrics
_COUNTERS = ("epoch", "global_step")


def objective(metrics: Mapping[str, float], tune_cfg: TuneConfig) -> float:
    """Weighted mean over the tasks of ``val/<task>/<tune.metric>`` (tasks absent are skipped)."""
    pairs = [
        (weight, metrics[f"val/{task}/{tune_cfg.metric}"])
        for task, weight in tune_cfg.task_weights.items()
        if weight > 0 and f"val/{task}/{tune_cfg.metric}" in metrics
    ]
    if not pairs:
        raise KeyError(
            f"no val/<task>/{tune_cfg.metric} for the weighted tasks "
            f"{dict(tune_cfg.task_weights)} in the validation metrics"
        )
    return sum(w * v for w, v in pairs) / sum(w for w, _ in pairs)


def trial_config(base: Config, sampled: Mapping[str, Any]) -> Config:
    """The configuration of one trial: the base with the sampled values and trial settings.

    The trial's CPU share (``tune.resources_per_trial``) becomes its worker resources, so
    the loop runs as many torch threads as the trial was given.
    """
    return base.override(
        {
            **sampled,
            "train.epochs": base.tune.epochs,
            "train.checkpoint_every_steps": 0,
            "train.val_every": 1,  # ASHA compares trials on every epoch's objective
            "train.num_workers": 0,
            "train.resources_per_worker": dict(base.tune.resources_per_trial),
        }
    )


class TuneSession(LocalSession):
    """What the worker loop uses of ``ray.train`` (``get_context``, ``get_checkpoint``,
    ``report``, ``Checkpoint``), backed by Ray Tune; a trial is one process, rank 0.

    Each report gets the sweep objective added (unless ``tune_cfg`` is ``None``, as in the
    ablation study), and is logged to the trial's MLflow run *before* it goes to Tune:
    ``tune.report`` blocks until the scheduler has decided, and a trial that ASHA stops
    never returns from it.
    """

    Checkpoint = tune.Checkpoint

    def __init__(
        self, tune_cfg: TuneConfig | None, mlflow_client: MlflowClient, run_id: str
    ) -> None:
        self.tune_cfg = tune_cfg
        self.mlflow = mlflow_client
        self.run_id = run_id

    def get_checkpoint(self) -> tune.Checkpoint | None:
        return tune.get_checkpoint()

    def report(self, metrics: dict[str, Any], checkpoint: tune.Checkpoint | None = None) -> None:
        if self.tune_cfg is not None:
            metrics = {**metrics, OBJECTIVE: objective(metrics, self.tune_cfg)}
        logged = {k: v for k, v in metrics.items() if k not in _COUNTERS}
        tracking.log_metrics(self.mlflow, self.run_id, logged, step=metrics["epoch"])
        tune.report(metrics, checkpoint=checkpoint)


@dataclass(frozen=True)
class SweepContext:
    """What every trial needs from the driver (passed with ``tune.with_parameters``)."""

    base_config: dict[str, Any]  # validated config tree, local paths made absolute
    parent_run_id: str
    tracking_uri: str


def run_trial(config: dict[str, Any], sweep: SweepContext) -> None:
    """Ray Tune function trainable: train one sampled ``config`` (dotted key -> value)."""
    context = tune.get_context()
    cfg = trial_config(config_from_dict(sweep.base_config), config)
    client = tracking.client(sweep.tracking_uri)
    run_id = runs.trial_run(
        client,
        sweep.parent_run_id,
        trial_id=context.get_trial_id(),
        trial_name=context.get_trial_name(),
        cfg=cfg,
        sampled=config,
    )
    status = train_loop_per_worker(
        {
            "config": cfg.to_dict(),
            "mlflow_run_id": run_id,
            "tracking_uri": sweep.tracking_uri,
            "session": TuneSession(cfg.tune, client, run_id),
        }
    )
    if status["status"] == "nonfinite":
        raise NonFiniteLossError(status["message"])
