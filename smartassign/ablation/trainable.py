"""One run of the ablation study: an arm trained with one seed, then scored on the test split.

A run is a Ray Tune function trainable, like a sweep trial
(:mod:`smartassign.tuning.trainable`): the training worker loop runs in the trial's own
process through :class:`~smartassign.tuning.trainable.TuneSession`, in an MLflow child run
of the study's parent run, and resumes from the trial's last epoch checkpoint. After the
last epoch the trial restores every test image with the final weights and reports the
test metrics (``test/<dataset>/<task>/<metric>``) and the knowledge-assignment numbers of
:mod:`smartassign.analysis` on the same images (``knowledge/<name>``: atoms per class,
separation) as its last result. K1 / K2 runs load the
trained V6 encoder and GKFMs of their seed before training (paper Table 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from ray import tune

from smartassign.ablation.arms import arm_named, run_config
from smartassign.ablation.report import KNOWLEDGE_PREFIX
from smartassign.analysis.analyze import knowledge_analysis
from smartassign.config import config_from_dict
from smartassign.engine import tracking
from smartassign.engine.calibration import calibrate_recognition
from smartassign.engine.devices import worker_device
from smartassign.engine.loop import train_loop_per_worker
from smartassign.engine.step import NonFiniteLossError
from smartassign.evaluation import evaluate
from smartassign.model_io import load_model
from smartassign.tuning import runs
from smartassign.tuning.trainable import TuneSession

#: the keys of a trial's config: the arm's name and the seed
ARM, SEED = "arm", "seed"
#: tag of a K1 / K2 run: the MLflow run of the V6 its backbone comes from
BACKBONE_TAG = "smartassign.backbone_run_id"


@dataclass(frozen=True)
class StudyContext:
    """What every run needs from the driver (passed with ``tune.with_parameters``)."""

    base_config: dict[str, Any]  # validated config tree, local paths made absolute
    parent_run_id: str
    tracking_uri: str
    #: seed -> encoder + GKFM weights of that seed's trained V6 (second phase only)
    backbones: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    #: seed -> MLflow run id of that V6
    backbone_runs: dict[int, str] = field(default_factory=dict)


def run_arm(config: dict[str, Any], study: StudyContext) -> None:
    """Ray Tune function trainable: train ``config[ARM]`` with ``config[SEED]``, then test."""
    arm, seed = arm_named(config[ARM]), int(config[SEED])
    cfg = run_config(config_from_dict(study.base_config), arm, seed)
    client = tracking.client(study.tracking_uri)
    run_id = runs.trial_run(
        client,
        study.parent_run_id,
        trial_id=tune.get_context().get_trial_id(),
        trial_name=f"{arm.name} seed {seed}",
        cfg=cfg,
        sampled=config,
    )
    if arm.from_v6:
        client.set_tag(run_id, BACKBONE_TAG, study.backbone_runs[seed])
    session = TuneSession(None, client, run_id)
    status = train_loop_per_worker(
        {
            "config": cfg.to_dict(),
            "mlflow_run_id": run_id,
            "tracking_uri": study.tracking_uri,
            "session": session,
            "backbone": study.backbones[seed] if arm.from_v6 else None,
        }
    )
    if status["status"] == "nonfinite":
        raise NonFiniteLossError(status["message"])
    with tune.get_checkpoint().as_directory() as directory:
        model = load_model(directory, worker_device(cfg.train.device))
    calibrated = {}
    if cfg.train.calibration_images:
        calibration = calibrate_recognition(model, cfg, cfg.train.calibration_images)
        if calibration is not None:
            calibrated = {"calibration/shift": calibration.shift}
    print(f"{arm.name} seed {seed}: scoring the test split", flush=True)
    scores = evaluate(model, cfg, "test", progress=False)
    knowledge = knowledge_analysis(model, cfg, cfg, "test")[0].metrics()
    session.report(
        {
            **scores.metrics,
            **calibrated,
            **{f"{KNOWLEDGE_PREFIX}{key}": value for key, value in knowledge.items()},
            "epoch": cfg.train.epochs,
        }
    )
    client.set_terminated(run_id)
