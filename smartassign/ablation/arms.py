"""The arms of the ablation study (paper Tables 3 and 4) and the configuration of each run.

========  =========================================================================
arm       what :func:`~smartassign.builder.routing_for` removes
========  =========================================================================
V1        the knowledge contrast (Eq. 17-18) and its DRM
V2        GKFM and TKFF: conventional multi-task learning, every head reads F_wk
V3        the gated CNN branch of GLSF-ViT (Eq. 9)
V4-rain   the snow task: a single-task deraining model (the paper's V4^r)
V4-snow   the rain task: a single-task desnowing model (V4^s)
V5        the recognition task D_re (Eq. 16)
V6        nothing: full SmartAssign
K1        encoder + GKFMs frozen from V6; D_dr and D_ds read only F_ck (Table 4)
K2        encoder + GKFMs frozen from V6; D_dr reads only F_rk, D_ds only F_sk (Table 4)
========  =========================================================================

Every run gets the base configuration, ``ablation.overrides`` (the budget all arms share),
its arm's variant, the seed as ``train.seed`` and ``data.seed``, and the settings of a Ray
Tune trial (the loop runs in the trial's own process and checkpoints every epoch).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from smartassign.config import Config, Variant, override_in


@dataclass(frozen=True)
class Arm:
    """One column of Table 3 or 4: a variant (and, for V4, the task it is trained on)."""

    name: str
    variant: Variant
    task: str | None = None  # V4 only: rain or snow

    @property
    def from_v6(self) -> bool:
        """K1 / K2 start from the trained V6 encoder and GKFMs of the same seed (Table 4)."""
        return self.variant in (Variant.K1, Variant.K2)


def study_arms(variants: Iterable[Variant]) -> tuple[Arm, ...]:
    """The arms of ``variants`` in the paper's order; V4 gives two single-task arms."""
    wanted = set(variants)
    arms: list[Arm] = []
    for variant in Variant:
        if variant not in wanted:
            continue
        if variant is Variant.V4:
            arms += [Arm(f"V4-{task}", variant, task) for task in ("rain", "snow")]
        else:
            arms.append(Arm(variant.value, variant))
    return tuple(arms)


def arm_named(name: str) -> Arm:
    """The arm called ``name`` (``V1``, ``V4-rain``, ``K2``, ...)."""
    for arm in study_arms(Variant):
        if arm.name == name:
            return arm
    raise ValueError(f"unknown ablation arm {name!r}")


def run_config(base: Config, arm: Arm, seed: int) -> Config:
    """The configuration of one run: ``arm`` trained with ``seed`` on the shared budget.

    Raises :class:`~smartassign.config.ConfigError` naming ``ablation.overrides`` when the
    overrides do not fit the rest of the configuration (cross-key rules).
    """
    study = base.ablation
    updates: dict[str, Any] = {
        **study.overrides,
        "model.variant": arm.variant.value,
        "train.seed": seed,
        "data.seed": seed,
        "train.num_workers": 0,
        "train.resources_per_worker": dict(study.resources_per_trial),
        "train.checkpoint_every_steps": 0,
        "train.tuned_params": "",
    }
    if arm.task is not None:
        updates["model.single_task"] = arm.task
    return override_in(base, updates, f"ablation.overrides: invalid for arm {arm.name}")
