"""Bookkeeping shared by the drivers that run Ray Tune experiments (sweeps, ablation studies).

A driver's experiment lives in a folder (local or ``s3://`` / ``gs://``) with a small state
file beside the Tune data (:mod:`smartassign.engine.storage`): the fingerprint of the
configuration it runs, its MLflow parent run and whether it completed. :func:`start`
decides from that file whether a rerun resumes (unfinished, same configuration, Tune state
present) or starts afresh, and :func:`complete` marks it done, so a later run with the same
configuration starts afresh (code may have changed in between). :func:`trainable` and
:func:`run_config` are the Tune settings both drivers share: resources per trial, storage,
one checkpoint kept per trial.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from smartassign.config import Config
from smartassign.engine import tracking
from smartassign.engine.devices import ray_resources
from smartassign.engine.storage import (
    absolute_paths,
    fingerprint,
    read_state,
    remove,
    write_state,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from ray import tune

STATE_FILE = "smartassign_experiment.json"
"""Resume state of a sweep or an ablation study (config fingerprint, MLflow parent run)."""


@dataclass
class Started:
    """An experiment about to run: its configuration (local data path made absolute), the
    MLflow client, the parent run, and whether it resumes."""

    cfg: Config
    mlflow: MlflowClient
    parent_run_id: str
    resume: bool


def start(
    cfg: Config,
    path: str,
    *,
    fresh: bool,
    restore_path: str,
    run_name: str,
    section: str,
    tags: Mapping[str, str],
    what: str,
) -> Started:
    """Start Ray and resume the unfinished experiment at ``path`` or start it afresh.

    Resumes when not ``fresh``, the state says unfinished, the configuration is the same and
    Tune can restore ``restore_path``: the MLflow parent run is reopened. Otherwise the old
    folder is removed and a new parent run is opened (``run_name``, params: the config
    ``section``, ``tags``). ``what`` names the experiment in the messages.
    """
    from ray import tune

    from smartassign.engine.run import init_ray
    from smartassign.engine.validation import check_monitor_is_measured, check_training_data
    from smartassign.tuning.runs import open_parent

    cfg = absolute_paths(cfg)
    check_monitor_is_measured(cfg)
    check_training_data(cfg)
    init_ray()
    client = tracking.client()
    restorable = tune.Tuner.can_restore(restore_path)
    state = read_state(path, STATE_FILE)
    resume = (
        not fresh
        and state is not None
        and not state["completed"]
        and state["fingerprint"] == fingerprint(cfg)
        and restorable
    )
    if resume:
        client.update_run(state["parent_run_id"], status="RUNNING")
        print(f"resuming the interrupted {what} in {path}", flush=True)
        return Started(cfg, client, state["parent_run_id"], resume=True)
    if state is not None and not state["completed"]:
        print(f"discarding the unfinished {what} in {path} (--fresh or new params)", flush=True)
    if state is not None or restorable:
        remove(path)
    parent_run_id = open_parent(client, cfg, run_name=run_name, section=section, tags=tags)
    _write_state(path, cfg, parent_run_id, completed=False)
    return Started(cfg, client, parent_run_id, resume=False)


def trainable(
    function: Callable[..., None], resources: Mapping[str, float], device: str, **parameters: Any
) -> Any:
    """A function trainable with ``parameters`` put in Ray's object store and the resources
    of one trial."""
    from ray import tune

    return tune.with_resources(
        tune.with_parameters(function, **parameters), ray_resources(resources, device)
    )


def run_config(name: str, storage_path: str, callbacks: Sequence[tune.Callback]) -> tune.RunConfig:
    """Where a Tune experiment lives, with one checkpoint kept per trial."""
    from ray import tune

    return tune.RunConfig(
        name=name,
        storage_path=storage_path,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=list(callbacks),
        verbose=1,
    )


def complete(path: str, cfg: Config, parent_run_id: str) -> None:
    """Mark the experiment at ``path`` finished: a rerun starts afresh."""
    _write_state(path, cfg, parent_run_id, completed=True)


def _write_state(path: str, cfg: Config, parent_run_id: str, *, completed: bool) -> None:
    state = {"fingerprint": fingerprint(cfg), "parent_run_id": parent_run_id}
    write_state(path, STATE_FILE, {**state, "completed": completed})
