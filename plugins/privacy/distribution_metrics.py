"""Distribution inference (P4) metric on :class:`~interplay.artifacts.PropertyGuesses`.

Suri and Evans ("Formalizing and Estimating Distribution Inference Risks", PETS 2022) measure a
distribution inference attack by its accuracy at telling the two training distributions apart,
over victim models trained at each ratio in equal numbers, so that 0.5 is chance.
"""

from __future__ import annotations

from typing import Any

from interplay import Metric, MetricValue
from interplay.artifacts import PropertyGuesses

__all__ = ["DistinguishingAccuracy"]


class DistinguishingAccuracy(Metric):
    """Share of trials (victim models) whose training ratio the attack names correctly.

    ``mean(predicted == truth)`` over all trials; with equally many trials per ratio (as both
    built-in attacks produce) 0.5 is chance and 1.0 full leakage. The details give the number of
    trials and the accuracy on each ratio's trials, which shows an attack that always names
    the same ratio (accuracies 1 and 0, mean 0.5).
    """

    name = "distinguishing_accuracy"
    risks = ("P4",)
    Input = PropertyGuesses
    higher_is_riskier = True

    def compute(self, output: PropertyGuesses, /, **_: Any) -> MetricValue:
        """Accuracy over all trials, with per-ratio accuracies in ``details``.

        Args:
            output: The attack's guesses and the true ratio index of each trial.

        Returns:
            The accuracy (0.0 when there are no trials), ``details``: ``n`` (trials),
            ``n_correct``, ``ratios`` and ``per_ratio`` (for each ratio index: the ratio, its ``n`` and ``accuracy``).
        """
        correct = output.predicted == output.truth
        n = int(correct.numel())
        per_ratio = []
        for index, ratio in enumerate(output.ratios):
            mask = output.truth == index
            count = int(mask.sum())
            accuracy = float(correct[mask].float().mean()) if count else 0.0
            per_ratio.append({"index": index, "ratio": ratio, "n": count, "accuracy": accuracy})
        n_correct = int(correct.sum())
        return MetricValue(
            name=self.name,
            value=n_correct / n if n else 0.0,
            higher_is_riskier=True,
            risk="P4",
            details={"n": n, "n_correct": n_correct, "ratios": list(output.ratios), "per_ratio": per_ratio},
        )
