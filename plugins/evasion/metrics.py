"""Evasion (S1) metrics on :class:`~interplay.artifacts.AdversarialExamples`."""

from __future__ import annotations

from typing import Any

from interplay import Metric, MetricValue
from interplay.artifacts import AdversarialExamples

__all__ = ["CleanAccuracy", "EvasionSuccessRate", "RobustAccuracy"]


class RobustAccuracy(Metric):
    """Accuracy of the target on the adversarial examples (lower means more susceptible to evasion)."""

    name = "robust_accuracy"
    risks = ("S1",)
    Input = AdversarialExamples
    higher_is_riskier = False

    def compute(self, output: AdversarialExamples, /, **_: Any) -> MetricValue:
        """Share of adversarial inputs still classified as their true label."""
        value = float((output.predictions == output.y).float().mean()) if len(output.y) else 0.0
        return MetricValue(
            name=self.name,
            value=value,
            higher_is_riskier=False,
            risk="S1",
            details={"eps": output.eps, "norm": output.norm, "n": len(output.y)},
        )


class EvasionSuccessRate(Metric):
    """Share of correctly classified inputs that the attack turns into misclassifications."""

    name = "evasion_success_rate"
    risks = ("S1",)
    Input = AdversarialExamples
    higher_is_riskier = True

    def compute(self, output: AdversarialExamples, /, **_: Any) -> MetricValue:
        """Of the inputs the target got right, the share it gets wrong after the attack."""
        correct = output.clean_predictions == output.y
        flipped = correct & (output.predictions != output.y)
        n = int(correct.sum())
        value = float(flipped.sum()) / n if n else 0.0
        return MetricValue(
            name=self.name,
            value=value,
            higher_is_riskier=True,
            risk="S1",
            details={"eps": output.eps, "norm": output.norm, "n_correct": n},
        )


class CleanAccuracy(Metric):
    """Accuracy of the target on the clean versions of the attacked inputs (the utility reference).

    It is the reference for :class:`RobustAccuracy`, measured on the same inputs: the rows the
    attack perturbed, before perturbation (AMULET's ``Acc_te`` beside ``Acc_rob``). The gap between
    the two is what the attack costs; a defense that raises robust accuracy while lowering this one
    trades utility for robustness. A utility measure, not a susceptibility: higher is not riskier.
    """

    name = "clean_accuracy"
    risks = ("S1",)
    Input = AdversarialExamples
    higher_is_riskier = False
    utility = True

    def compute(self, output: AdversarialExamples, /, **_: Any) -> MetricValue:
        """Share of the clean inputs classified as their true label."""
        value = float((output.clean_predictions == output.y).float().mean()) if len(output.y) else 0.0
        return MetricValue(
            name=self.name,
            value=value,
            higher_is_riskier=False,
            risk="S1",
            details={"n": len(output.y)},
        )
