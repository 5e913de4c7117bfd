"""``analysis:``: the knowledge-assignment analysis (``smartassign analyze``, paper Fig. 3)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from smartassign.config.base import Section


class AnalysisConfig(Section):
    """What ``smartassign analyze`` (DVC stage ``analyze``) measures and where it writes."""

    split: Literal["val", "test"] = Field("test", description="split whose images are analysed")
    lead_margin: float = Field(
        0.1,
        ge=0.0,
        description="an atom is rain-led (snow-led) when its rk (sk) gate exceeds the other "
        "two kinds' gates by at least this",
    )
    closed_below: float = Field(
        0.05,
        ge=0.0,
        lt=1.0,
        description="an atom is closed when all its gates are below this (below 1, the value "
        "of an open gate)",
    )
    max_images: int = Field(0, ge=0, description="images per task analysed (0 = all)")
    tsne_perplexity: float = Field(20.0, gt=1.0, description="t-SNE perplexity (Fig. 3)")
    tsne_points: int = Field(
        3000, ge=10, description="at most this many rows in the whole-split t-SNE"
    )
    seed: int = Field(0, description="seeds the t-SNE and its row subsample")
    out_dir: str = Field("outputs/analyze", min_length=1, description="output folder")
