"""Declarations of the built-in evasion (S1) modules (data only: importing this module imports no implementation)."""

from __future__ import annotations

from interplay.registry import PluginSpec

_P = "interplay.plugins"

SPECS = [
    PluginSpec(
        name="pgd",
        kind="attack",
        target=f"{_P}.evasion.attacks:PGD",
        risks=("S1",),
        input="TrainedModel",
        output="AdversarialExamples",
        access="white-box",
        knowledge="none",
        summary="projected gradient descent, L-inf or L2 (Madry et al., 2018)",
    ),
    PluginSpec(
        name="adversarial_training",
        kind="defense",
        target=f"{_P}.evasion.defenses:AdversarialTraining",
        risks=("S1",),
        input="TaskData",
        output="TrainedModel",
        summary="PGD adversarial training (Madry et al., 2018)",
    ),
    PluginSpec(
        name="robust_accuracy",
        kind="metric",
        target=f"{_P}.evasion.metrics:RobustAccuracy",
        risks=("S1",),
        input="AdversarialExamples",
        higher_is_riskier=False,
        summary="accuracy on adversarial examples",
    ),
    PluginSpec(
        name="evasion_success_rate",
        kind="metric",
        target=f"{_P}.evasion.metrics:EvasionSuccessRate",
        risks=("S1",),
        input="AdversarialExamples",
        higher_is_riskier=True,
        summary="share of correct predictions the attack flips",
    ),
    PluginSpec(
        name="clean_accuracy",
        kind="metric",
        target=f"{_P}.evasion.metrics:CleanAccuracy",
        risks=("S1",),
        input="AdversarialExamples",
        higher_is_riskier=False,
        utility=True,
        summary="accuracy on the clean versions of the attacked inputs (utility reference)",
    ),
]
