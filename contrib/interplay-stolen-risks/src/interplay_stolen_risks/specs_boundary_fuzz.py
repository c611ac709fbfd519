"""Declarations of the BoundaryFuzz privacy-property defense and its constraint accuracy (data only)."""

from __future__ import annotations

from interplay.registry import PluginSpec

SPECS: list[PluginSpec] = [
    PluginSpec(
        name="boundary_fuzz",
        kind="defense",
        target="interplay_stolen_risks.boundary_fuzz:BoundaryFuzz",
        risks=("S3",),
        input="TaskData",
        output="TrainedModel",
        summary="BoundaryFuzz privacy property trained with DL2 along with a security property (Stolen Risks)",
    ),
    PluginSpec(
        name="boundary_fuzz_trees",
        kind="defense",
        target="interplay_stolen_risks.boundary_fuzz_trees:TreeBoundaryFuzz",
        risks=("S3",),
        input="TaskData",
        output="QueryAccess",
        summary="BoundaryFuzz privacy property verified on XGBoost along with SmallNeighborhood or Monotonicity",
    ),
    PluginSpec(
        name="boundary_fuzz_accuracy",
        kind="metric",
        target="interplay_stolen_risks.fuzz_metrics:BoundaryFuzzAccuracy",
        risks=("S3",),
        input="TrainedModel",
        higher_is_riskier=False,
        summary="share of test rows satisfying the BoundaryFuzz privacy property under the strongest violation found",
    ),
]
