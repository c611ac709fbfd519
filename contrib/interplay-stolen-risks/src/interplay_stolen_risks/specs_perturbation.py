"""Declarations of the posterior-perturbation defenses against model stealing and their measurements (data only)."""

from __future__ import annotations

from interplay.registry import PluginSpec

_D = "interplay_stolen_risks.perturbation"
_M = "interplay_stolen_risks.perturbation_metrics"

SPECS: list[PluginSpec] = [
    PluginSpec(
        name="prediction_poisoning",
        kind="defense",
        target=f"{_D}:PredictionPoisoning",
        risks=("S3",),
        input="QueryAccess",
        output="QueryAccess",
        summary="posteriors mixed with the one-hot point of largest gradient deviation (MAD; Stolen Risks)",
    ),
    PluginSpec(
        name="adaptive_misinformation",
        kind="defense",
        target=f"{_D}:AdaptiveMisinformation",
        risks=("S3",),
        input="QueryAccess",
        output="QueryAccess",
        summary="low-confidence answers mixed with a reverse-trained misinformation model (Kariyappa & Qureshi)",
    ),
    PluginSpec(
        name="id_ood_agreement",
        kind="metric",
        target=f"{_M}:IdOodAgreement",
        risks=("S3",),
        input="QueryAccess",
        higher_is_riskier=False,
        utility=True,
        summary="agreement of defended and undefended predictions on ID and OOD rows, and the gap (Stolen Risks)",
    ),
    PluginSpec(
        name="angular_deviation",
        kind="metric",
        target=f"{_M}:AngularDeviation",
        risks=("S3",),
        input="QueryAccess",
        higher_is_riskier=False,
        summary="angle between substitute gradients from benign and JBA(P)-synthesised queries (Stolen Risks)",
    ),
]
