"""``inference:``: restoring images of any size."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from smartassign.config.base import Section


class InferenceConfig(Section):
    """Restoring images of any size (``smartassign restore``, see docs/inference.md)."""

    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|(cuda|npu)(:\d+)?)$",
        description="device of restore, evaluate and promote's re-evaluation: auto (CUDA, "
        "then Ascend NPU, then CPU) | cpu | cuda[:i] | npu[:i]",
    )
    tile_size: int = Field(
        512, ge=16, description="tile side (pixels); larger images are restored in tiles"
    )
    tile_overlap: int = Field(64, ge=0, description="overlap of neighbouring tiles (pixels)")
    batch_tiles: int = Field(1, ge=1, description="tiles per forward pass (raise on a GPU)")
    gate_statistics: Literal["image", "tile"] = Field(
        "tile",
        description="channel-gate means per tile (one pass, within 0.05 dB of the "
        "whole-image pass on the real check pairs) or over the whole image (tiles match the "
        "whole-image pass exactly; one partial pass more per gate level, about 2x the time)",
    )

    @model_validator(mode="after")
    def _overlap_below_tile(self) -> InferenceConfig:
        if self.tile_overlap >= self.tile_size:
            raise ValueError(
                f"tile_overlap ({self.tile_overlap}) must be below tile_size ({self.tile_size})"
            )
        return self
