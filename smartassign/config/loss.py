"""``loss:``: the losses of paper Sec. 3.3 (Eq. 13-19)."""

from __future__ import annotations

from pydantic import Field

from smartassign.config.base import CharbonnierForm, Section


class LossConfig(Section):
    """Losses of paper Sec. 3.3 (Eq. 13-19)."""

    charbonnier: CharbonnierForm = Field(
        "image", description="Eq. 13 over the whole image (as printed) or per pixel"
    )
    charbonnier_eps: float = Field(1e-3, gt=0, description="epsilon of Eq. 13")
    grad_weight: float = Field(
        400.0, ge=0, description="weight of Eq. 14 (the paper's sums at 32 px crops: 55)"
    )
    recog_weight: float = Field(0.05, ge=0, description="weight of Eq. 16 (paper: 1)")
    lambda1: float = Field(0.01, ge=0, description="weight of the quasi-sparsity loss, Eq. 15")
    lambda2: float = Field(0.001, ge=0, description="weight of the knowledge contrast, Eq. 17-18")
    contrast_temperature: float = Field(0.5, gt=0, description="tau of the contrast similarity")
