"""Declarations of the gradient-boosted-tree targets and their black-box measurement (data only)."""

from __future__ import annotations

from interplay.registry import PluginSpec

_T = "interplay_stolen_risks.trees"


def _defense(name: str, cls: str, summary: str) -> PluginSpec:
    return PluginSpec(
        name=name,
        kind="defense",
        target=f"{_T}:{cls}",
        risks=("S1",),
        input="TaskData",
        output="QueryAccess",
        summary=summary,
    )


SPECS: list[PluginSpec] = [
    _defense("xgb", "NaturalXGBoost", "natural XGBoost target (the paper's XGB row); black-box access"),
    _defense(
        "monotonicity",
        "Monotonicity",
        "XGBoost with monotone constraints: positive posterior monotone in named features (LogicEnsemble)",
    ),
    _defense(
        "small_neighborhood",
        "SmallNeighborhood",
        "XGBoost whose posterior moves < L*eps within eps std devs, verified globally (LogicEnsemble)",
    ),
    PluginSpec(
        name="tree_constraint_accuracy",
        kind="metric",
        target="interplay_stolen_risks.tree_metrics:TreeConstraintAccuracy",
        risks=("S1",),
        input="QueryAccess",
        higher_is_riskier=False,
        summary="share of test rows where Monotonicity, SmallNeighborhood or BoundaryFuzz holds at sampled points",
    ),
]
