"""One typed configuration object, loaded from ``params.yaml``.

Every hyper-parameter of the project lives in ``params.yaml`` under nine sections
(``model``, ``loss``, ``data``, ``train``, ``tune``, ``ablation``, ``registry``,
``inference``, ``evaluate``).
:func:`load_config` reads the file into :class:`Config`; unknown keys and out-of-range
values are refused with a :class:`ConfigError` that names the offending key, e.g.
``model.channels``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

CharbonnierForm = Literal["image", "pixel"]

QUALITY_METRICS = ("psnr", "psnr_y", "ssim", "ssim_y")
"""Image-quality metrics scored per task (all grow with quality)."""


def _quality_metric(value: str, split: str, means: tuple[str, ...], per_dataset: bool) -> str:
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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ModelConfig(_Section):
    """Network of paper Sec. 3.2."""

    channels: int = Field(32, ge=4, description="C: knowledge atoms in F_wk (channels)")
    sam_hidden: int = Field(16, ge=1, description="width of the SAM convolutions (Eq. 5)")
    patch_size: int = Field(4, ge=1, le=16, description="GLSF-ViT patch size p")
    embed_dim: int = Field(64, ge=8, description="token width d of GLSF-ViT")
    num_blocks: int = Field(2, ge=1, description="N GLSF-ViT blocks (Eq. 6)")
    num_heads: int = Field(4, ge=1)
    mlp_ratio: float = Field(2.0, gt=0)
    window_size: int = Field(8, ge=0, description="attention window in tokens; 0 = global")
    shift_windows: bool = Field(True, description="shift windows by half in every other block")
    gate: Literal["silu", "sigmoid"] = Field("silu", description="gate of Eq. 9 and Eq. 11")
    gate_reduction: int = Field(4, ge=1, description="FC bottleneck ratio of the channel gate")
    gkfm_hidden: int = Field(24, ge=1, description="GKFM hidden width (Eq. 11)")
    gkfm_out: int = Field(24, ge=1, description="GKFM output width (Eq. 11)")
    decoder_hidden: int = Field(24, ge=1, description="width of D_dr / D_ds / D_re (Eq. 12)")
    recognition_pool: Literal["max", "mean"] = Field(
        "max", description="global Pool of D_re (Eq. 12): max or mean over the image"
    )
    recognition_window: int = Field(
        32,
        ge=0,
        description="D_re pools windows of this side (pixels; data.crop_size, the side it "
        "learnt on) and averages their logits; 0 = one pool over the whole image",
    )
    residual: bool = Field(True, description="D_dr / D_ds predict a residual on the input")
    drm_grid: int = Field(4, ge=1, description="DRM pools each atom to a grid x grid map")
    drm_dim: int = Field(16, ge=1, description="F: row length of the DRM matrices")
    veil_removal: bool = Field(
        False,
        description="estimate the veil of the whole image and invert it before the encoder "
        "(an addition to the paper; smartassign/model/veil.py)",
    )
    veil_width: int = Field(24, ge=1, description="width of the veil-removal CNN")
    variant: Variant = Variant.V6
    single_task: Literal["rain", "snow"] = Field("rain", description="task of variant V4")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"model.embed_dim ({self.embed_dim}) must be divisible by "
                f"model.num_heads ({self.num_heads})"
            )
        return self


class LossConfig(_Section):
    """Losses of paper Sec. 3.3 (Eq. 13-19)."""

    charbonnier: CharbonnierForm = Field(
        "image", description="Eq. 13 over the whole image (as printed) or per pixel"
    )
    charbonnier_eps: float = Field(1e-3, gt=0, description="epsilon of Eq. 13")
    grad_weight: float = Field(1.0, ge=0, description="weight of Eq. 14")
    recog_weight: float = Field(0.2, ge=0, description="weight of Eq. 16 (paper: 1)")
    lambda1: float = Field(0.01, ge=0, description="weight of the quasi-sparsity loss, Eq. 15")
    lambda2: float = Field(0.001, ge=0, description="weight of the knowledge contrast, Eq. 17-18")
    contrast_temperature: float = Field(0.5, gt=0, description="tau of the contrast similarity")


class SplitSizes(_Section):
    """One count per split."""

    train: int = Field(0, ge=0)
    val: int = Field(0, ge=0)
    test: int = Field(0, ge=0)


class _Ranges(_Section):
    """A section of ``(low, high)`` ranges: ordered, and non-negative except for angles."""

    @model_validator(mode="after")
    def _ordered(self) -> _Ranges:
        for name, value in self:
            if not isinstance(value, tuple):
                continue
            low, high = value
            if low > high:
                raise ValueError(f"{name}: low end {low} exceeds high end {high}")
            if low < 0 and name != "angle":
                raise ValueError(f"{name}: must not be negative, got {low}")
        return self


class RainSynthesis(_Ranges):
    """Synthetic rain streaks; every ``(low, high)`` range is sampled once per image (per
    layer for length, width and brightness), density and length log-uniformly. The
    defaults are fitted to real benchmark pairs (docs/data.md, "Rain and snow statistics")."""

    layers: tuple[int, int] = Field((1, 3), description="streak layers (depth planes)")
    density: tuple[float, float] = Field(
        (0.03, 0.6), description="streak length per pixel, all layers (log-uniform)"
    )
    angle: tuple[float, float] = Field((-20.0, 20.0), description="degrees from vertical")
    angle_jitter: float = Field(4.0, ge=0, description="angle spread between layers (degrees)")
    length: tuple[float, float] = Field(
        (10.0, 100.0), description="streak length (pixels, log-uniform)"
    )
    width: tuple[float, float] = Field(
        (0.3, 1.2), description="streak width (Gaussian sigma, pixels)"
    )
    brightness: tuple[float, float] = Field((0.1, 0.8), description="streak peak intensity")
    blend: Literal["add", "screen"] = Field(
        "add",
        description="add (clipped; grey residuals, as in Rain100L/H and Rain12) or screen",
    )
    haze: tuple[float, float] = Field((0.0, 0.25), description="veiling haze strength")
    haze_probability: float = Field(0.3, ge=0, le=1, description="share of images with haze")

    @model_validator(mode="after")
    def _positive_log_ranges(self) -> RainSynthesis:
        for name in ("density", "length"):
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"{name}: sampled log-uniformly, so the low end must be > 0")
        return self


class SnowSynthesis(_Ranges):
    """Synthetic snow; every ``(low, high)`` range is sampled once per image."""

    density: tuple[float, float] = Field((20.0, 60.0), description="flakes per 10 000 pixels")
    size: tuple[float, float] = Field(
        (0.7, 4.5), description="flake radius (pixels), power-law: many small, few large"
    )
    opacity: tuple[float, float] = Field((0.55, 0.95), description="flake opacity")
    motion: tuple[float, float] = Field((0.0, 6.0), description="motion blur length (pixels)")
    angle: tuple[float, float] = Field((-40.0, 40.0), description="fall direction from vertical")
    haze: tuple[float, float] = Field((0.0, 0.3), description="veiling (snow haze) strength")
    haze_probability: float = Field(0.6, ge=0, le=1, description="share of images with veiling")


class SyntheticData(_Section):
    """The embedded default data set: synthetic rain and snow over clean photographs."""

    enabled: bool = True
    photos: str = Field(
        "builtin", description="'builtin' or a folder of clean photographs (split by photo)"
    )
    train_photos: str = Field(
        "builtin", description="'builtin', 'none' or a folder of photos used for training only"
    )
    dead_leaves: int = Field(
        24, ge=0, description="procedural dead-leaves scenes added to the training split"
    )
    size: int = Field(256, ge=32, description="side of the square crops (pixels)")
    min_scale: float = Field(
        0.5, gt=0, le=1, description="photos are downscaled by a factor in [min_scale, 1]"
    )
    val_photos: int = Field(1, ge=0, description="source photos reserved for validation")
    test_photos: int = Field(1, ge=0, description="source photos reserved for testing")
    crops_per_photo: SplitSizes = Field(
        default_factory=lambda: SplitSizes(train=24, val=12, test=12),
        description="crops per photo and task, per split",
    )
    rain: RainSynthesis = Field(default_factory=RainSynthesis)
    snow: SnowSynthesis = Field(default_factory=SnowSynthesis)


class DatasetSpec(_Section):
    """A benchmark data set in its published folder layout (see docs/data.md)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="key in reports")
    layout: Literal["rain_streak", "rain1200", "spa", "snow100k", "srrs", "csd", "paired"]
    root: str = Field(min_length=1)
    task: Literal["rain", "snow"] | None = Field(None, description="paired layout only")
    input_dir: str = Field("", description="paired layout: degraded images, under root")
    target_dir: str = Field("", description="paired layout: clean images, under root")
    match: Literal["auto", "exact", "prefix", "many_to_one", "regex"] = Field(
        "auto", description="paired layout: file-name rule pairing inputs with targets"
    )
    input_regex: str = Field("", description="match=regex: input stem, with (?P<key>...)")
    target_regex: str = Field("", description="match=regex: target stem, with (?P<key>...)")
    split: Literal["auto", "train", "val", "test"] = Field(
        "auto", description="paired layout: the split of the whole folder; auto = hold out"
    )
    val_fraction: float = Field(0.05, ge=0, lt=1, description="held out for val if no val split")
    test_fraction: float = Field(0.1, ge=0, lt=1, description="held out for test if no test split")
    max_pairs: SplitSizes = Field(
        default_factory=SplitSizes, description="keep at most this many pairs; 0 = all"
    )

    @model_validator(mode="after")
    def _layout_options(self) -> DatasetSpec:
        paired_only = {
            "task",
            "input_dir",
            "target_dir",
            "match",
            "input_regex",
            "target_regex",
            "split",
        }
        if self.layout != "paired":
            fields = type(self).model_fields
            extra = sorted(f for f in paired_only if getattr(self, f) != fields[f].default)
            if extra:
                raise ValueError(f"{', '.join(extra)}: only for layout 'paired'")
        elif self.task is None or not self.input_dir or not self.target_dir:
            raise ValueError("layout 'paired' needs task, input_dir and target_dir")
        if self.match == "regex":
            for key in ("input_regex", "target_regex"):
                value = getattr(self, key)
                try:
                    groups = re.compile(value).groupindex if value else {}
                except re.error as error:
                    raise ValueError(f"{key}: {error}") from None
                if "key" not in groups:
                    raise ValueError(f"{key}: match=regex needs a named group (?P<key>...)")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must stay below 1")
        return self


class Precrop(_Section):
    """Optional tiling of benchmark training pairs into smaller files."""

    size: int = Field(0, ge=0, description="tile side (pixels); 0 = off")
    stride: int = Field(0, ge=0, description="step between tiles; 0 = size (no overlap)")

    @model_validator(mode="after")
    def _sizes(self) -> Precrop:
        if 0 < self.size < 16:
            raise ValueError(f"size: 0 (off) or at least 16, got {self.size}")
        return self


class DataConfig(_Section):
    """Data preparation and loading (see ``smartassign.data`` and docs/data.md)."""

    root: str = Field("data", description="folder the prepare stage writes to")
    seed: int = Field(0, ge=0)
    crop_size: int = Field(32, ge=16, description="training crop (pixels)")
    num_workers: int = Field(2, ge=0, description="DataLoader workers per training worker")
    cache_mb: int = Field(
        900,
        ge=0,
        description="decoded training pairs and their veil thumbnails kept in memory per "
        "loader worker (MB)",
    )
    small_images: Literal["pad", "refuse"] = Field(
        "pad", description="training images smaller than crop_size: reflect-pad or refuse"
    )
    balance_tasks: bool = Field(True, description="draw rain and snow equally in training")
    samples_per_epoch: int = Field(
        3840, ge=0, description="training samples per epoch; 0 = size of the training manifest"
    )
    quality_pairs: int = Field(64, ge=0, description="pairs scored per report cell; 0 = all")
    prepare_workers: int = Field(2, ge=1, description="threads checking files in prepare")
    synthetic: SyntheticData = Field(default_factory=SyntheticData)
    datasets: tuple[DatasetSpec, ...] = ()
    precrop: Precrop = Field(default_factory=Precrop)

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        names = [spec.name for spec in self.datasets]
        if self.synthetic.enabled:
            names.append("synthetic")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"datasets: duplicate names {duplicates} ('synthetic' is reserved)")
        if 0 < self.precrop.size < self.crop_size:
            raise ValueError(
                f"precrop.size ({self.precrop.size}) must be 0 or at least crop_size "
                f"({self.crop_size})"
            )
        small = self.synthetic.enabled and self.synthetic.size < self.crop_size
        if small and self.small_images == "refuse":
            raise ValueError(
                f"synthetic.size ({self.synthetic.size}) < crop_size ({self.crop_size}) "
                "with small_images: refuse would refuse every synthetic image"
            )
        return self


class TrainConfig(_Section):
    """Optimisation (paper Sec. 4.1) and the Ray Train run."""

    seed: int = Field(0, ge=0)
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(64, ge=1, description="crops per optimiser step (paper: 4)")
    lr: float = Field(2e-3, gt=0, description="Adam learning rate (paper: 4e-4)")
    lr_schedule: Literal["cosine", "plateau"] = Field(
        "cosine", description="cosine decay over the run, or plateau halving (paper)"
    )
    warmup_steps: int = Field(20, ge=0, description="linear learning-rate warm-up steps")
    lr_factor: float = Field(0.5, gt=0, lt=1, description="plateau decay factor")
    lr_patience: int = Field(2, ge=0, description="validations without improvement before decay")
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 = off")
    ema_decay: float = Field(0.99, ge=0, lt=1, description="EMA of the weights; 0 = off")
    monitor: str = Field(
        "val/psnr_y_mean", description="validation metric driving the plateau schedule"
    )
    val_every: int = Field(
        5, ge=1, description="validate every N epochs and after the last (tune trials: 1)"
    )
    num_workers: int = Field(
        1, ge=0, description="Ray Train workers (DDP); 0 only inside `smartassign tune` trials"
    )
    device: Literal["cpu", "cuda", "npu"] = "cpu"
    resources_per_worker: dict[str, float] = Field(
        default_factory=lambda: {"CPU": 2.0}, description="Ray resources of one worker"
    )
    amp: bool = Field(False, description="autocast on CUDA / NPU (CPU stays float32)")
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    checkpoint_every_steps: int = Field(0, ge=0, description="extra checkpoints; 0 = epochs only")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints Ray keeps")
    max_failures: int = Field(2, ge=0, description="worker-group restarts before giving up")
    run_name: str = Field("smartassign", min_length=1, description="Ray run name")
    storage_path: str = Field("outputs/ray", description="Ray run storage (local or URI)")
    model_dir: str = Field("models/smartassign", description="trained model output folder")
    tuned_params: str = Field(
        "", description="best-params YAML of a sweep to train with; empty = params.yaml as is"
    )

    @field_validator("monitor")
    @classmethod
    def _monitor_is_a_validation_metric(cls, value: str) -> str:
        return _quality_metric(value, "val", ("psnr", "psnr_y"), per_dataset=False)

    @field_validator("resources_per_worker")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        negative = [key for key, amount in value.items() if amount < 0]
        if negative:
            raise ValueError(f"negative amount for {negative}")
        return value


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


class TuneConfig(_Section):
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
        from smartassign.tuning.space import parse_space

        parse_space(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TuneConfig:
        from smartassign.tuning.space import parse_space

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


class AblationConfig(_Section):
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
        from smartassign.ablation.arms import check_overrides

        check_overrides(value)
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


class RegistryConfig(_Section):
    """MLflow model registry."""

    model_name: str = Field("smartassign", min_length=1)
    experiment: str = Field("smartassign", min_length=1)
    metric: str = Field("test/psnr_y_mean", description="evaluation metric deciding promotion")

    @field_validator("metric")
    @classmethod
    def _metric_is_a_test_metric(cls, value: str) -> str:
        return _quality_metric(value, "test", QUALITY_METRICS, per_dataset=True)


class InferenceConfig(_Section):
    """Restoring images of any size (``smartassign restore``, see docs/inference.md)."""

    tile_size: int = Field(
        512, ge=16, description="tile side (pixels); larger images are restored in tiles"
    )
    tile_overlap: int = Field(64, ge=0, description="overlap of neighbouring tiles (pixels)")
    batch_tiles: int = Field(1, ge=1, description="tiles per forward pass (raise on a GPU)")
    gate_statistics: Literal["image", "tile"] = Field(
        "image",
        description="channel-gate means over the whole image (tiles match the whole-image "
        "pass; one partial pass more per gate level) or per tile (one pass)",
    )

    @model_validator(mode="after")
    def _overlap_below_tile(self) -> InferenceConfig:
        if self.tile_overlap >= self.tile_size:
            raise ValueError(
                f"tile_overlap ({self.tile_overlap}) must be below tile_size ({self.tile_size})"
            )
        return self


REAL_CHECK_SETS = ("Rain12", "RainTrainL_10", "RainTrainH_12", "SPA-Data_samples")
"""Real benchmark pairs the evaluation can score besides the test split (folder names
under ``evaluate.real_data``; :mod:`smartassign.data.real_checks` knows their layouts)."""


class EvaluateConfig(_Section):
    """Evaluation of the trained model (``smartassign evaluate``, DVC stage ``evaluate``)."""

    real_data: str = Field(
        "auto",
        min_length=1,
        description="folder of the real check sets; auto = $SMARTASSIGN_REAL_DATA, else "
        "../shared/data/real; none = test split only",
    )
    real_sets: tuple[Literal[REAL_CHECK_SETS], ...] = Field(  # type: ignore[valid-type]
        REAL_CHECK_SETS, description="real check sets scored when their folder is present"
    )


class Config(_Section):
    """The whole ``params.yaml``."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    ablation: AblationConfig = Field(default_factory=AblationConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)

    @model_validator(mode="after")
    def _recognition_window_is_the_crop(self) -> Config:
        window = self.model.recognition_window
        if window and window != self.data.crop_size:
            raise ValueError(
                f"model.recognition_window ({window}) must be data.crop_size "
                f"({self.data.crop_size}) or 0: the recognition head learns on training crops "
                "and pools windows of the same side at inference; set both together"
            )
        return self

    @model_validator(mode="after")
    def _monitor_is_measured(self) -> Config:
        """``train.monitor`` names a task this variant restores and, for
        ``recognition_acc``, a variant with the recognition head."""
        monitor, variant = self.train.monitor, self.model.variant
        if monitor.endswith("recognition_acc") and variant in (Variant.V4, Variant.V5):
            raise ValueError(
                f"train.monitor: {variant.value} has no recognition head, so {monitor} is never "
                "measured; monitor a restoration metric such as val/psnr_y_mean"
            )
        if variant is Variant.V4:
            other = next(t for t in ("rain", "snow") if t != self.model.single_task)
            if monitor.startswith(f"val/{other}/"):
                raise ValueError(
                    f"train.monitor: the single-task variant V4 restores "
                    f"{self.model.single_task} only, so {monitor} is never measured"
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (enums as strings), suitable for YAML or JSON."""
        return self.model_dump(mode="json")

    def flat(self) -> dict[str, Any]:
        """Flattened ``section.key`` view, for logging as run parameters."""
        return _flatten(self.to_dict())

    def override(self, updates: Mapping[str, Any]) -> Config:
        """A new config with dotted keys (``"loss.lambda1"``) replaced, validated again."""
        tree = self.to_dict()
        for dotted, value in updates.items():
            node = tree
            *parents, leaf = dotted.split(".")
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"{dotted}: unknown configuration key")
                node = node[part]
            if leaf not in node:
                raise ConfigError(f"{dotted}: unknown configuration key")
            node[leaf] = value
        return config_from_dict(tree)


def leaf_field(dotted: str) -> FieldInfo:
    """The field behind a dotted key (``loss.lambda1``); ``ValueError`` naming the key if it is
    unknown or a whole section."""
    model: type[BaseModel] = Config
    *parents, leaf = dotted.split(".")
    for part in parents:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            raise ValueError(f"{dotted}: unknown configuration key")
        model = annotation
    field = model.model_fields.get(leaf)
    if field is None:
        raise ValueError(f"{dotted}: unknown configuration key")
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
        raise ValueError(f"{dotted}: is a section; give one of its keys")
    return field


#: keys a Ray Tune trial (a sweep trial, an ablation run) sets itself, and why
TRIAL_KEYS = {
    "train.checkpoint_every_steps": "trials checkpoint once per epoch",
    "train.num_workers": "a trial runs the loop in its own process (resources_per_trial)",
    "train.resources_per_worker": "a trial runs on its resources_per_trial",
    "train.run_name": "trials are named by Ray Tune",
    "train.storage_path": "trials live under the experiment's storage_path",
    "train.model_dir": "trials write no model directory",
}


def check_settable(
    dotted: str, refused: Mapping[str, str], sections: tuple[str, ...], verb: str
) -> None:
    """``ValueError`` naming ``dotted`` unless a sweep or study may set it per trial: a key
    of params.yaml, not in one of ``sections``, not in ``refused`` (key -> why). ``verb``
    says what is refused (``swept``, ``overridden``)."""
    section = dotted.split(".")[0]
    if section in sections:
        raise ValueError(f"{dotted}: the {section} section cannot be {verb}")
    if dotted in refused:
        raise ValueError(f"{dotted}: cannot be {verb} ({refused[dotted]})")
    leaf_field(dotted)


def check_value(dotted: str, value: Any) -> None:
    """Check ``value`` against the own type and bounds of the field behind ``dotted``
    (cross-field rules need the whole config: :meth:`Config.override`); ``ValueError``
    naming the key."""
    field = leaf_field(dotted)
    try:
        TypeAdapter(Annotated[field.annotation, field]).validate_python(value)
    except ValidationError as error:
        reason = error.errors()[0]["msg"]
        raise ValueError(f"{dotted}: value {value!r} is invalid: {reason}") from None


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against params.yaml's documented keys)"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def config_from_dict(tree: Mapping[str, Any] | None, source: str = "config") -> Config:
    """Validate a nested mapping into a :class:`Config`."""
    if tree is None:
        tree = {}
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(tree).__name__}")
    try:
        return Config.model_validate(dict(tree))
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def load_config(path: str | Path = "params.yaml") -> Config:
    """Read and validate ``params.yaml`` (or any YAML file with the same sections)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return config_from_dict(tree, source=str(path))
