"""``registry:``: the MLflow model registry."""

from __future__ import annotations

from pydantic import Field, field_validator

from smartassign.config.base import QUALITY_METRICS, Section, quality_metric


class RegistryConfig(Section):
    """MLflow model registry."""

    model_name: str = Field("smartassign", min_length=1)
    experiment: str = Field("smartassign", min_length=1)
    metric: str = Field("test/psnr_y_mean", description="evaluation metric deciding promotion")

    @field_validator("metric")
    @classmethod
    def _metric_is_a_test_metric(cls, value: str) -> str:
        return quality_metric(value, "test", QUALITY_METRICS, per_dataset=True)
