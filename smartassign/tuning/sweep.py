"""The sweep driver: a Ray Tune ``Tuner`` over :func:`~smartassign.tuning.trainable.run_trial`.

``sweep(cfg)`` checks the search space against the configuration (before any trial
starts), joins ``$RAY_ADDRESS`` or starts a local Ray, opens the MLflow parent run and runs
``tune.num_samples`` trials, ``tune.max_concurrent`` at a time with
``tune.resources_per_trial`` each, searched at random or by Optuna's TPE and cut early by
ASHA on the objective. It writes the summary JSON and the best-params YAML.

A sweep is identified by ``tune.storage_path / tune.name``. Run again after an
interruption with the same configuration it resumes (``Tuner.restore``): finished trials
are kept, unfinished ones continue from their last checkpoint, in the same MLflow runs. A
sweep that finished, or whose configuration changed, is started afresh.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smartassign.config import Config, ConfigError, TuneConfig
from smartassign.engine import tracking
from smartassign.engine.devices import check_device
from smartassign.engine.storage import absolute_storage
from smartassign.tuning import experiment, runs
from smartassign.tuning.best import write_best_params
from smartassign.tuning.space import Domain, check_space, param_space

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from ray import tune


@dataclass
class SweepResult:
    """What a sweep produced; ``interrupted`` sweeps have no rows and no files, and
    ``best_params`` is ``None`` when no trial reported the objective (all failed)."""

    path: str  # the Ray Tune experiment (storage_path/name)
    parent_run_id: str
    interrupted: bool
    rows: list[runs.TrialRow] = field(default_factory=list)
    table: str = ""
    best_params: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def storage_path(tune_cfg: TuneConfig) -> str:
    """``tune.storage_path``, a local path made absolute (trials run elsewhere)."""
    return absolute_storage(tune_cfg.storage_path)


def experiment_path(tune_cfg: TuneConfig) -> str:
    """Where the Ray Tune experiment lives: ``tune.storage_path / tune.name``."""
    return f"{storage_path(tune_cfg)}/{tune_cfg.name}"


def search_algorithm(tune_cfg: TuneConfig) -> tune.search.SearchAlgorithm:
    """Random search (``BasicVariantGenerator``, grids included) or Optuna's TPE, running at
    most ``tune.max_concurrent`` trials at a time."""
    if tune_cfg.search == "random":
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(
            max_concurrent=tune_cfg.max_concurrent, random_state=tune_cfg.seed
        )
    if importlib.util.find_spec("optuna") is None:
        raise ConfigError(
            "tune.search: optuna is not installed (pip install optuna), or set tune.search: random"
        )
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    return ConcurrencyLimiter(
        OptunaSearch(seed=tune_cfg.seed), max_concurrent=tune_cfg.max_concurrent
    )


def scheduler(tune_cfg: TuneConfig) -> tune.schedulers.TrialScheduler:
    """ASHA on the objective per epoch, or FIFO (every trial runs ``tune.epochs``)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if tune_cfg.scheduler == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="epoch",
        max_t=tune_cfg.epochs,
        grace_period=tune_cfg.grace_period,
        reduction_factor=tune_cfg.reduction_factor,
    )


def expected_trials(num_samples: int, space: Mapping[str, Domain]) -> int:
    """Trials of a complete sweep: ``num_samples`` times the size of the grid."""
    return num_samples * math.prod(len(d.values) for d in space.values() if d.kind == "grid")


def sweep(
    cfg: Config, *, fresh: bool = False, callbacks: Sequence[tune.Callback] = ()
) -> SweepResult:
    """Run (or resume) the sweep of ``cfg.tune``; see the module docstring.

    ``fresh`` discards an interrupted sweep instead of resuming it; ``callbacks`` are Ray
    Tune callbacks for the run (kept when it is resumed).
    """
    from ray import tune

    from smartassign.tuning.trainable import OBJECTIVE, SweepContext, run_trial

    check_device(cfg.train.device)
    space = check_space(cfg)
    searcher = search_algorithm(cfg.tune)  # here, to refuse a missing optuna up front
    path = experiment_path(cfg.tune)
    started = experiment.start(
        cfg,
        path,
        fresh=fresh,
        restore_path=path,
        run_name=f"sweep {cfg.tune.name}",
        section="tune",
        tags={runs.SWEEP_TAG: path, "variant": cfg.model.variant.value},
        what="sweep",
    )
    cfg, client, parent_run_id = started.cfg, started.mlflow, started.parent_run_id
    context = SweepContext(cfg.to_dict(), parent_run_id, tracking.tracking_uri())
    trainable = experiment.trainable(
        run_trial, cfg.tune.resources_per_trial, cfg.train.device, sweep=context
    )
    if started.resume:
        tuner = tune.Tuner.restore(path, trainable)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(space),
            tune_config=tune.TuneConfig(
                metric=OBJECTIVE,
                mode="max",
                search_alg=searcher,
                scheduler=scheduler(cfg.tune),
                num_samples=cfg.tune.num_samples,
                reuse_actors=False,  # a fresh process per trial: nothing survives a stop
            ),
            run_config=experiment.run_config(cfg.tune.name, storage_path(cfg.tune), callbacks),
        )
    grid = tuner.fit()
    ended = grid.num_terminated + grid.num_errors
    if ended < len(grid) or len(grid) < expected_trials(cfg.tune.num_samples, space):
        client.set_terminated(parent_run_id, "KILLED")
        return SweepResult(path, parent_run_id, interrupted=True)
    return _finish(cfg, grid, client, parent_run_id, path)


def _finish(
    cfg: Config, grid: tune.ResultGrid, client: MlflowClient, parent_run_id: str, path: str
) -> SweepResult:
    """Summary table, summary JSON, best-params file and MLflow records of a finished sweep."""
    rows = runs.collect(grid, client, parent_run_id, cfg.tune.epochs)
    text = runs.table(rows, cfg.tune.search_space)
    summary = runs.summary(rows, cfg, parent_run_id)
    summary_path = Path(cfg.tune.summary)
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    best = summary["best"]
    best_params = None
    if best is not None:
        best_params = write_best_params(
            cfg.tune.best_params,
            best["params"],
            sweep=cfg.tune.name,
            trial_id=best["trial_id"],
            objective=best["objective"],
            metric=f"val/<task>/{cfg.tune.metric}, task weights {dict(cfg.tune.task_weights)}",
            mlflow_run_id=best["run_id"],
            mlflow_parent_run_id=parent_run_id,
        )
        client.log_artifact(parent_run_id, str(best_params), "sweep")
    runs.log_summary(client, parent_run_id, rows, summary, text)
    experiment.complete(path, cfg, parent_run_id)
    return SweepResult(path, parent_run_id, False, rows, text, best_params, summary)
