"""``data:``: preparation and loading, the synthetic generator, benchmark data sets."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from smartassign.config.base import Section


class SplitSizes(Section):
    """One count per split."""

    train: int = Field(0, ge=0)
    val: int = Field(0, ge=0)
    test: int = Field(0, ge=0)


class Ranges(Section):
    """A section of ``(low, high)`` ranges: ordered, and non-negative except for angles."""

    @model_validator(mode="after")
    def _ordered(self) -> Ranges:
        for name, value in self:
            if not isinstance(value, tuple):
                continue
            low, high = value
            if low > high:
                raise ValueError(f"{name}: low end {low} exceeds high end {high}")
            if low < 0 and name != "angle":
                raise ValueError(f"{name}: must not be negative, got {low}")
        return self


class RainSynthesis(Ranges):
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
    haze_light: tuple[float, float] = Field(
        (0.75, 0.95), description="atmospheric light A of the veil (grey level)"
    )

    @model_validator(mode="after")
    def _positive_log_ranges(self) -> RainSynthesis:
        for name in ("density", "length"):
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"{name}: sampled log-uniformly, so the low end must be > 0")
        return self


class SnowSynthesis(Ranges):
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
    haze_light: tuple[float, float] = Field(
        (0.8, 0.97), description="atmospheric light A of the veil (grey level)"
    )


class SyntheticData(Section):
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
    dead_leaves_texture: float = Field(
        0.2,
        ge=0,
        le=1,
        description="largest contrast of the texture filling each dead-leaves shape (0 = flat)",
    )
    size: int = Field(256, ge=32, description="side of the square crops (pixels)")
    min_scale: float = Field(
        0.5, gt=0, le=1, description="photos are downscaled by a factor in [min_scale, 1]"
    )
    turned_scenes: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of training crops turned by 90 degrees before rain or snow is added",
    )
    val_photos: int = Field(1, ge=0, description="source photos reserved for validation")
    test_photos: int = Field(1, ge=0, description="source photos reserved for testing")
    crops_per_photo: SplitSizes = Field(
        default_factory=lambda: SplitSizes(train=24, val=12, test=12),
        description="crops per photo and task, per split",
    )
    rain: RainSynthesis = Field(default_factory=RainSynthesis)
    snow: SnowSynthesis = Field(default_factory=SnowSynthesis)


class DatasetSpec(Section):
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


class Precrop(Section):
    """Optional tiling of benchmark training pairs into smaller files."""

    size: int = Field(0, ge=0, description="tile side (pixels); 0 = off")
    stride: int = Field(0, ge=0, description="step between tiles; 0 = size (no overlap)")

    @model_validator(mode="after")
    def _sizes(self) -> Precrop:
        if 0 < self.size < 16:
            raise ValueError(f"size: 0 (off) or at least 16, got {self.size}")
        return self


class DataConfig(Section):
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
    clean_share: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="share of training samples shown clean: input = target (identity pairs)",
    )
    crop_candidates: int = Field(
        4,
        ge=1,
        description="random crops drawn per training sample; the one whose clean target has "
        "the most detail (mean luma gradient) is kept (1 = a plain random crop)",
    )
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
