"""``tune:`` and ``ablation:``: the Ray Tune sweep and the ablation study."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from smartassign.config.base import Section, Variant
from smartassign.config.overrides import check_study_overrides
from smartassign.config.search_space import parse_space


def _check_trial_resources(section: str, resources: Mapping[str, float]) -> None:
    """``<section>.resources_per_trial``: non-negative amounts, at least one positive."""
    amounts = resources.values()
    if any(a < 0 for a in amounts) or not any(a > 0 for a in amounts):
        raise ValueError(
            f"{section}.resources_per_trial: non-negative with one positive amount, got "
            f"{dict(resources)}"
        )


def _default_search_space() -> dict[str, Any]:
    return {
        "loss.lambda1": {"loguniform": [1e-3, 1e-1]},
        "loss.lambda2": {"loguniform": [1e-4, 1e-2]},
        "model.gkfm_hidden": {"choice": [16, 24, 32]},
        "model.gkfm_out": {"choice": [16, 24, 32]},
    }


class TuneConfig(Section):
    """Ray Tune sweep (``smartassign tune``, see docs/tuning.md)."""

    name: str = Field(
        "sweep", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Ray Tune experiment name"
    )
    storage_path: str = Field("outputs/tune/ray", description="Tune storage (local or URI)")
    num_samples: int = Field(4, ge=1, description="trials (times each grid point is run)")
    max_concurrent: int = Field(2, ge=1, description="trials running at the same time")
    epochs: int = Field(10, ge=1, description="epochs per trial (ASHA's max_t)")
    search: Literal["random", "optuna"] = Field("random", description="random | optuna (TPE)")
    seed: int = Field(0, ge=0, description="seed of the search algorithm")
    scheduler: Literal["asha", "fifo"] = Field("asha", description="asha: stop bad trials early")
    grace_period: int = Field(2, ge=1, description="ASHA: epochs before a trial can be stopped")
    reduction_factor: float = Field(2.0, gt=1, description="ASHA: keep 1 / factor per rung")
    metric: Literal["psnr", "psnr_y", "ssim", "ssim_y"] = Field(
        "psnr_y", description="validation metric of the objective, per task"
    )
    task_weights: dict[Literal["rain", "snow"], float] = Field(
        default_factory=lambda: {"rain": 1.0, "snow": 1.0},
        description="objective = weighted mean of the metric over the tasks",
    )
    resources_per_trial: dict[str, float] = Field(
        default_factory=lambda: {"CPU": 1.0}, description="Ray resources of one trial"
    )
    best_params: str = Field("outputs/tune/best_params.yaml", min_length=1)
    summary: str = Field("outputs/tune/summary.json", min_length=1)
    search_space: dict[str, Any] = Field(default_factory=_default_search_space)

    @field_validator("search_space")
    @classmethod
    def _parse_space(cls, value: dict[str, Any]) -> dict[str, Any]:
        parse_space(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TuneConfig:
        if self.scheduler == "asha" and self.grace_period > self.epochs:
            raise ValueError(
                f"tune.grace_period ({self.grace_period}) exceeds tune.epochs ({self.epochs})"
            )
        weights = self.task_weights.values()
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(
                f"tune.task_weights: non-negative with a positive sum, got {self.task_weights}"
            )
        _check_trial_resources("tune", self.resources_per_trial)
        grids = [k for k, d in parse_space(self.search_space).items() if d.kind == "grid"]
        if self.search == "optuna" and grids:
            raise ValueError(
                f"tune.search_space.{grids[0]}: grid is not supported by tune.search: optuna "
                "(use choice)"
            )
        return self


class AblationConfig(Section):
    """Ablation study of paper Tables 3 and 4 (``smartassign ablate``, see docs/ablation.md).

    Every arm (variant, and for V4 its task) is trained once per seed with the same
    ``overrides`` (the shared budget) and scored on the test split.
    """

    name: str = Field("ablation", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="study name")
    variants: tuple[Variant, ...] = Field(
        tuple(Variant), description="arms; V4 trains two single-task models (rain, snow)"
    )
    seeds: tuple[int, ...] = Field((0, 1, 2), description="train.seed and data.seed per run")
    overrides: dict[str, Any] = Field(
        default_factory=lambda: {
            "train.epochs": 4,
            "train.batch_size": 4,
            "data.crop_size": 64,
            "model.recognition_window": 64,
            "data.samples_per_epoch": 240,
        },
        description="dotted config key -> value, applied to every arm (the shared budget)",
    )
    storage_path: str = Field("outputs/ablate/ray", description="Tune storage (local or URI)")
    out_dir: str = Field(
        "outputs/ablate/report", min_length=1, description="tables, metrics, plot (DVC out)"
    )
    max_concurrent: int = Field(2, ge=1, description="trials running at the same time")
    resources_per_trial: dict[str, float] = Field(
        default_factory=lambda: {"CPU": 1.0}, description="Ray resources of one trial"
    )
    metric: Literal["psnr", "psnr_y", "ssim", "ssim_y"] = Field(
        "psnr_y", description="test metric of the bar plot"
    )

    @field_validator("overrides")
    @classmethod
    def _known_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_study_overrides(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AblationConfig:
        if not self.variants or len(set(self.variants)) < len(self.variants):
            raise ValueError(f"ablation.variants: non-empty, no repeats, got {self.variants}")
        frozen = [v.value for v in self.variants if v in (Variant.K1, Variant.K2)]
        if frozen and Variant.V6 not in self.variants:
            raise ValueError(
                f"ablation.variants: {', '.join(frozen)} start from the trained V6 backbone; add V6"
            )
        if not self.seeds or len(set(self.seeds)) < len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(
                f"ablation.seeds: non-negative, non-empty, no repeats, got {self.seeds}"
            )
        _check_trial_resources("ablation", self.resources_per_trial)
        return self
