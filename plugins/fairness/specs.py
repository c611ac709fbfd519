"""Declarations of the built-in fairness (F) modules (data only: importing this module imports no implementation)."""

from __future__ import annotations

from interplay.registry import PluginSpec

_P = "interplay.plugins"


def _metric(name: str, cls: str, summary: str, *, higher_is_riskier: bool = True) -> PluginSpec:
    """A fairness measurement: it consumes the model itself (predicted labels), so its cells have the attack none."""
    return PluginSpec(
        name=name,
        kind="metric",
        target=f"{_P}.fairness.metrics:{cls}",
        risks=("F",),
        input="LabelOnlyAccess",
        higher_is_riskier=higher_is_riskier,
        summary=summary,
    )


SPECS: list[PluginSpec] = [
    PluginSpec(
        name="adversarial_debiasing",
        kind="defense",
        target=f"{_P}.fairness.defenses:AdversarialDebiasing",
        risks=("F",),
        input="TaskData",
        output="TrainedModel",
        summary="adversarial debiasing with the projected gradient update (Zhang et al., 2018)",
    ),
    _metric(
        "demographic_parity_difference",
        "DemographicParityDifference",
        "largest gap in positive-prediction rate between groups, per sensitive attribute (test split)",
    ),
    _metric(
        "equalized_odds_difference",
        "EqualizedOddsDifference",
        "larger of the TPR and FPR gaps between groups, per sensitive attribute (test split)",
    ),
    _metric(
        "tpr_difference",
        "TPRDifference",
        "largest gap in true positive rate between groups, per sensitive attribute (test split)",
    ),
    _metric(
        "fpr_difference",
        "FPRDifference",
        "largest gap in false positive rate between groups, per sensitive attribute (test split)",
    ),
    _metric(
        "p_rule",
        "PRule",
        "p%-rule: 100 x lowest / highest positive-prediction rate of the groups (test split)",
        higher_is_riskier=False,
    ),
]
