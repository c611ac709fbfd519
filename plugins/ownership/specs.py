"""Declarations of the built-in unauthorized-model-ownership (S3) modules (data only)."""

from __future__ import annotations

from interplay.registry import PluginSpec

_P = "interplay.plugins"

SPECS: list[PluginSpec] = [
    PluginSpec(
        name="model_extraction",
        kind="attack",
        target=f"{_P}.ownership.attacks:ModelExtraction",
        risks=("S3",),
        input="QueryAccess",
        output="SurrogateModel",
        access="black-box",
        knowledge="shadow",
        summary="train a surrogate on the target's posteriors for the adversary's data (ML-Doctor)",
    ),
    PluginSpec(
        name="surrogate_accuracy",
        kind="metric",
        target=f"{_P}.ownership.metrics:SurrogateAccuracy",
        risks=("S3",),
        input="SurrogateModel",
        higher_is_riskier=True,
        summary="test accuracy of the extracted surrogate",
    ),
    PluginSpec(
        name="fidelity",
        kind="metric",
        target=f"{_P}.ownership.metrics:Fidelity",
        risks=("S3",),
        input="SurrogateModel",
        target_access="LabelOnlyAccess",
        higher_is_riskier=True,
        summary="share of test inputs where surrogate and target agree",
    ),
    PluginSpec(
        name="correct_fidelity",
        kind="metric",
        target=f"{_P}.ownership.metrics:CorrectFidelity",
        risks=("S3",),
        input="SurrogateModel",
        target_access="LabelOnlyAccess",
        higher_is_riskier=True,
        summary="of the test inputs where they agree, the share both models get right",
    ),
]
