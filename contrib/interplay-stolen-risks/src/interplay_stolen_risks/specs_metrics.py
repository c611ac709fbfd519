"""Declarations of the model-stealing (S3) metrics (data only).

The paper's *agreement* is interplay's built-in ``fidelity`` (see :mod:`interplay_stolen_risks.metrics`).
"""

from __future__ import annotations

from interplay.registry import PluginSpec

_M = "interplay_stolen_risks.metrics"

SPECS: list[PluginSpec] = [
    PluginSpec(
        name="posterior_mse",
        kind="metric",
        target=f"{_M}:PosteriorMSE",
        risks=("S3",),
        input="SurrogateModel",
        target_access="QueryAccess",
        higher_is_riskier=False,
        summary="mean squared error between substitute and target posteriors on the test split (Stolen Risks)",
    ),
    PluginSpec(
        name="substitute_f1_minority",
        kind="metric",
        target=f"{_M}:SubstituteF1Minority",
        risks=("S3",),
        input="SurrogateModel",
        higher_is_riskier=True,
        summary="test F1 of the substitute with the minority class as positive (Stolen Risks)",
    ),
    PluginSpec(
        name="target_performance",
        kind="metric",
        target="interplay_stolen_risks.performance:TargetPerformance",
        risks=("S3",),
        input="QueryAccess",
        higher_is_riskier=False,
        utility=True,
        summary="test accuracy and minority-class F1 of the target's answers (utility reference, Stolen Risks)",
    ),
]
