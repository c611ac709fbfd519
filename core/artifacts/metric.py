"""The result of a metric."""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, field_validator

from .base import Artifact

__all__ = ["MetricValue"]


class MetricValue(Artifact):
    """One number a metric computed, with the direction of risk.

    Attributes:
        name: Metric name, e.g. ``robust_accuracy`` or ``tpr_at_1pct_fpr``.
        value: The value (finite).
        higher_is_riskier: Whether a higher value means more susceptibility to the risk; a
            report uses it to say whether a defense raised or lowered susceptibility.
        risk: The risk id the value measures, when the metric declares one.
        details: Extra data for reports (curves, per-class values); JSON-serialisable.
    """

    name: str = Field(min_length=1)
    value: float
    higher_is_riskier: bool
    risk: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"must be finite, got {value}")
        return value
