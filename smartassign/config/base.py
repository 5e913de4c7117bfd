"""What every section shares: the section base class, the error, the variants, metric names."""

from __future__ import annotations

import re
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict

TASKS = ("rain", "snow")
"""The two tasks, in the order of the recognition logits and of every per-task table."""

CharbonnierForm = Literal["image", "pixel"]

QUALITY_METRICS = ("psnr", "psnr_y", "ssim", "ssim_y")
"""Image-quality metrics scored per task (all grow with quality)."""


def quality_metric(value: str, split: str, means: tuple[str, ...], per_dataset: bool) -> str:
    """``value`` if it names a ``split`` metric that grows with quality: per task
    (``<split>/rain/psnr_y``; also ``<split>/<dataset>/rain/psnr_y`` when ``per_dataset``),
    a mean over tasks of ``means`` (``<split>/psnr_y_mean``) or ``<split>/recognition_acc``.
    Input scores (``input_psnr_y``) and counts are refused: no model can move them."""
    names = "|".join(QUALITY_METRICS)
    dataset = r"([^/]+/)?" if per_dataset else ""
    pattern = rf"{split}/({dataset}(rain|snow)/({names})|({'|'.join(means)})_mean|recognition_acc)"
    if re.fullmatch(pattern, value) is None:
        examples = ", ".join(f"{split}/{name}_mean" for name in means)
        raise ValueError(
            f"{value!r} is not a {split} metric that grows with quality; use {examples}, "
            f"{split}/<task>/<metric> (task rain or snow, metric {', '.join(QUALITY_METRICS)})"
            f" or {split}/recognition_acc"
        )
    return value


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


class Variant(str, Enum):
    """Ablation variants of the paper (Tables 3 and 4)."""

    V1 = "V1"  # no knowledge contrast
    V2 = "V2"  # no GKFM / TKFF: conventional multi-task learning, decoders read F_wk
    V3 = "V3"  # no gated CNN branch in GLSF-ViT
    V4 = "V4"  # single task (``model.single_task`` names which)
    V5 = "V5"  # no recognition task
    V6 = "V6"  # full SmartAssign
    K1 = "K1"  # encoder and GKFMs frozen, decoders read only the common knowledge F_ck
    K2 = "K2"  # encoder and GKFMs frozen, decoders read only unique knowledge F_rk / F_sk


class Section(BaseModel):
    """A section of params.yaml: unknown keys refused, frozen, defaults validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
