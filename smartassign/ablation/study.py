"""The ablation study driver: two Ray Tune grids under one MLflow parent run.

``ablate(cfg)`` checks every run's configuration (before any trial starts), joins
``$RAY_ADDRESS`` or starts a local Ray, opens the MLflow parent run, and runs two grids of
:func:`~smartassign.ablation.trainable.run_arm` trials, ``ablation.max_concurrent`` at a
time with ``ablation.resources_per_trial`` each (on a cluster they spread over its nodes):

1. ``variants``: the arms of Table 3 (V1-V6, V4 as two single-task arms) x seeds;
2. ``knowledge``: K1 and K2 x seeds (Table 4), each loading the encoder and GKFMs of the
   V6 trained with its seed in phase 1 (frozen there).

It then writes the tables, metrics, per-run CSV and bar plot of
:mod:`~smartassign.ablation.report` to ``ablation.out_dir`` and logs them on the parent run.

A study lives in ``ablation.storage_path / ablation.name`` (one Tune experiment per phase).
Run again after an interruption, or after failed runs, with the same configuration it
resumes: finished runs are kept, not retrained; runs that were going on or failed continue
from their last epoch checkpoint, in the same MLflow runs. A study that finished, or whose
configuration changed, starts afresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from smartassign.ablation import report
from smartassign.ablation.arms import Arm, run_config, study_arms
from smartassign.ablation.trainable import ARM, SEED, StudyContext, run_arm
from smartassign.config import AblationConfig, Config
from smartassign.engine import tracking
from smartassign.engine.devices import check_device
from smartassign.engine.storage import absolute_storage
from smartassign.model_io import load_model
from smartassign.tuning import experiment, runs

if TYPE_CHECKING:
    import torch
    from mlflow import MlflowClient
    from ray import tune

STUDY_TAG = "smartassign.ablation"
#: the Tune experiment of each phase, inside the study folder
VARIANTS, KNOWLEDGE = "variants", "knowledge"


@dataclass
class StudyResult:
    """What a study produced. ``interrupted`` and ``failed`` studies wrote no files."""

    path: str  # the study folder (ablation.storage_path/name)
    parent_run_id: str
    interrupted: bool = False
    failed: list[str] = field(default_factory=list)  # "<arm> seed <s>: <error>" per run
    scores: list[report.Score] = field(default_factory=list)
    out_dir: Path | None = None
    tables: str = ""


def study_path(study: AblationConfig) -> str:
    """Where the study lives: ``ablation.storage_path / ablation.name``, made absolute."""
    return f"{absolute_storage(study.storage_path)}/{study.name}"


def check_runs(cfg: Config) -> tuple[Arm, ...]:
    """The arms of the study, after building every run's configuration once (raises
    :class:`~smartassign.config.ConfigError` naming ``ablation.overrides`` if one fails)."""
    arms = study_arms(cfg.ablation.variants)
    for arm in arms:
        run_config(cfg, arm, cfg.ablation.seeds[0])
    return arms


def _run_phase(
    cfg: Config,
    name: str,
    arms: Sequence[Arm],
    context: StudyContext,
    callbacks: Sequence[tune.Callback],
) -> tune.ResultGrid | None:
    """Run (or resume) the grid ``arms`` x ``ablation.seeds``; ``None`` if interrupted."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    study = cfg.ablation
    path = f"{study_path(study)}/{name}"
    trainable = experiment.trainable(
        run_arm, study.resources_per_trial, cfg.train.device, study=context
    )
    runs_wanted = len(arms) * len(study.seeds)
    print(
        f"ablation phase {name}: {', '.join(a.name for a in arms)} x seeds "
        f"{list(study.seeds)} = {runs_wanted} runs, {study.max_concurrent} at a time",
        flush=True,
    )
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={
                ARM: tune.grid_search([arm.name for arm in arms]),
                SEED: tune.grid_search(list(study.seeds)),
            },
            tune_config=tune.TuneConfig(
                search_alg=BasicVariantGenerator(max_concurrent=study.max_concurrent),
                reuse_actors=True,  # one process per concurrent slot: imports once
            ),
            run_config=experiment.run_config(name, study_path(study), callbacks),
        )
    grid = tuner.fit()
    if grid.num_terminated + grid.num_errors < len(grid) or len(grid) < runs_wanted:
        return None
    return grid


def _label(result: tune.Result) -> str:
    return f"{result.config[ARM]} seed {result.config[SEED]}"


def _trial_runs(client: MlflowClient, parent_run_id: str) -> dict[str, str]:
    """Ray trial id -> MLflow run id of every run of the study."""
    return {
        run.data.tags[runs.TRIAL_TAG]: run.info.run_id
        for run in runs.children(client, parent_run_id)
    }


def _v6_backbones(
    grid: tune.ResultGrid, trial_runs: dict[str, str]
) -> tuple[dict[int, dict[str, torch.Tensor]], dict[int, str]]:
    """seed -> encoder + GKFM weights of each finished V6 run, and seed -> its MLflow run."""
    backbones, sources = {}, {}
    for result in grid:
        if result.config[ARM] != "V6" or result.error or result.checkpoint is None:
            continue
        seed = int(result.config[SEED])
        with result.checkpoint.as_directory() as directory:
            backbones[seed] = load_model(directory).backbone_state_dict()
        sources[seed] = trial_runs.get(str(result.metrics.get("trial_id")), "")
    return backbones, sources


def ablate(
    cfg: Config, *, fresh: bool = False, callbacks: Sequence[tune.Callback] = ()
) -> StudyResult:
    """Run (or resume) the study of ``cfg.ablation``; see the module docstring.

    ``fresh`` discards an interrupted study instead of resuming it; ``callbacks`` are Ray
    Tune callbacks of both phases (kept when they are resumed).
    """
    check_device(cfg.train.device)
    arms = check_runs(cfg)
    path = study_path(cfg.ablation)
    started = experiment.start(
        cfg,
        path,
        fresh=fresh,
        restore_path=f"{path}/{VARIANTS}",
        run_name=f"ablation {cfg.ablation.name}",
        section="ablation",
        tags={STUDY_TAG: path},
        what="ablation study",
    )
    cfg, client, parent_run_id = started.cfg, started.mlflow, started.parent_run_id
    context = StudyContext(cfg.to_dict(), parent_run_id, tracking.tracking_uri())
    first = _run_phase(cfg, VARIANTS, [a for a in arms if not a.from_v6], context, callbacks)
    if first is None:
        client.set_terminated(parent_run_id, "KILLED")
        return StudyResult(path, parent_run_id, interrupted=True)
    results, failed = list(first), []
    frozen = [arm for arm in arms if arm.from_v6]
    if frozen:
        backbones, sources = _v6_backbones(first, _trial_runs(client, parent_run_id))
        missing = [seed for seed in cfg.ablation.seeds if seed not in backbones]
        if missing:
            failed.append(f"K1 / K2 not trained: no finished V6 run for seeds {missing}")
        else:
            context = replace(context, backbones=backbones, backbone_runs=sources)
            second = _run_phase(cfg, KNOWLEDGE, frozen, context, callbacks)
            if second is None:
                client.set_terminated(parent_run_id, "KILLED")
                return StudyResult(path, parent_run_id, interrupted=True)
            results += list(second)
    return _finish(cfg, arms, results, failed, client, parent_run_id, path)


def _finish(
    cfg: Config,
    arms: Sequence[Arm],
    results: Sequence[tune.Result],
    failed: list[str],
    client: MlflowClient,
    parent_run_id: str,
    path: str,
) -> StudyResult:
    """Scores of every run; the report files and MLflow records when every run finished."""
    trial_runs = _trial_runs(client, parent_run_id)
    scores: list[report.Score] = []
    knowledge: list[report.KnowledgeScore] = []
    for result in results:
        trial_id = str((result.metrics or {}).get("trial_id", ""))
        found = (
            []
            if result.error
            else report.scores_of_run(
                result.config[ARM],
                int(result.config[SEED]),
                result.metrics,
                trial_id=trial_id,
                mlflow_run_id=trial_runs.get(trial_id, ""),
            )
        )
        if not found:
            reason = str(result.error).strip().splitlines()[-1] if result.error else "no scores"
            failed.append(f"{_label(result)}: {reason}")
            if trial_id in trial_runs:
                client.set_terminated(trial_runs[trial_id], "FAILED")
        else:
            arm, seed = result.config[ARM], int(result.config[SEED])
            knowledge.append(report.knowledge_of_run(arm, seed, result.metrics))
        scores += found
    if failed:
        client.set_terminated(parent_run_id, "FAILED")
        return StudyResult(path, parent_run_id, failed=failed)
    study = cfg.ablation
    out = report.write_report(
        scores,
        study.out_dir,
        arms=arms,
        seeds=study.seeds,
        overrides=study.overrides,
        metric=study.metric,
        knowledge=knowledge,
    )
    client.log_artifacts(parent_run_id, str(out), "ablation")
    flat = report.flat_metrics(report.aggregate(scores), report.aggregate_knowledge(knowledge))
    tracking.log_metrics(client, parent_run_id, flat, step=0)
    client.set_terminated(parent_run_id)
    experiment.complete(path, cfg, parent_run_id)
    tables = (out / report.TABLES_FILE).read_text()
    return StudyResult(path, parent_run_id, scores=scores, out_dir=out, tables=tables)
