"""``model:``: the network of paper Sec. 3.2."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from smartassign.config.base import TASKS, Section, Variant


class ModelConfig(Section):
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
    gkfm_hidden: int = Field(32, ge=1, description="GKFM hidden width (Eq. 11)")
    gkfm_out: int = Field(32, ge=1, description="GKFM output width (Eq. 11)")
    decoder_hidden: int = Field(48, ge=1, description="width of D_dr / D_ds / D_re (Eq. 12)")
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

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks this variant restores: both, or ``single_task`` for V4."""
        return (self.single_task,) if self.variant is Variant.V4 else TASKS

    @property
    def recognises(self) -> bool:
        """Whether this variant has the recognition head D_re (all but V4 and V5)."""
        return self.variant not in (Variant.V4, Variant.V5)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"model.embed_dim ({self.embed_dim}) must be divisible by "
                f"model.num_heads ({self.num_heads})"
            )
        return self
