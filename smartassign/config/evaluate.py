"""``evaluate:``: the evaluation of the trained model on the test split and real pairs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from smartassign.config.base import Section

REAL_CHECK_SETS = ("Rain12", "RainTrainL_10", "RainTrainH_12", "SPA-Data_samples")
"""Real benchmark pairs the evaluation can score besides the test split (folder names
under ``evaluate.real_data``; :mod:`smartassign.data.real_checks` knows their layouts)."""


class EvaluateConfig(Section):
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
