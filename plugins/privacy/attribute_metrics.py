"""Attribute inference (P2) metrics on :class:`~interplay.artifacts.AttributeGuesses`.

Each metric returns one :class:`~interplay.artifacts.MetricValue` per sensitive attribute, named
``<metric>[<attribute>]`` (``attribute_accuracy[race]``, ``attribute_auc[sex]``, ...):

- ``attribute_accuracy``: share of records whose attribute the attack gets right at its threshold;
- ``attribute_balanced_accuracy``: the mean of the per-value recalls at the threshold, what AMULET
  reports as the attack accuracy ``Acc_att`` (``evaluate_attribute_inference`` calls scikit-learn's
  ``balanced_accuracy_score``); 0.5 is chance whatever the attribute's imbalance;
- ``attribute_auc``: area under the ROC curve of the scores (scikit-learn's ``roc_auc_score``, as AMULET).

A record is predicted 1 when its score is at least the attack's threshold for the attribute
(0.5 when the guesses carry none), compared in the scores' precision (a float32 score of 0.65 meets
a threshold of 0.65). Every value's ``details`` hold ``n`` (records), ``majority_rate``
(the share of the more frequent value of the truth: what always guessing it scores in accuracy)
and ``threshold``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from interplay.artifacts import AttributeGuesses, MetricValue, TaskData
from interplay.errors import ArtifactError
from interplay.modules import Metric

if TYPE_CHECKING:
    from interplay.context import RunContext

__all__ = ["DEFAULT_THRESHOLD", "AttributeAUC", "AttributeAccuracy", "AttributeBalancedAccuracy"]

DEFAULT_THRESHOLD = 0.5
"""Decision threshold for an attribute whose guesses carry none."""


def _predicted(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """1 where the score is at least the threshold (rounded to the scores' dtype), else 0."""
    return (scores >= scores.new_tensor(threshold)).long()


class _AttributeMetric(Metric):
    """One value per attribute of the guesses; subclasses compute it from scores, truth and threshold."""

    __abstract__ = True
    risks = ("P2",)
    Input = AttributeGuesses
    higher_is_riskier = True

    def _value(self, name: str, scores: torch.Tensor, truth: torch.Tensor, threshold: float) -> float:
        raise NotImplementedError

    def compute(
        self,
        output: AttributeGuesses,
        /,
        *,
        target: Any = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> list[MetricValue]:
        """One value per attribute of ``output``, in the order the attack produced them.

        Args:
            output: The attack's guesses.
            target: Unused.
            data: Unused.
            context: Unused.

        Raises:
            ArtifactError: When the guesses name no attribute, an attribute has no records or a
                truth that is not 0/1, or (AUC) the truth takes a single value.
        """
        if not output.scores:
            raise ArtifactError(f"metric {self.name!r}: the AttributeGuesses name no attribute")
        values = []
        for name, scores in output.scores.items():
            truth = output.truth[name].detach().cpu()
            if truth.numel() == 0:
                raise ArtifactError(f"metric {self.name!r}: attribute {name!r} has no records")
            if not bool(((truth == 0) | (truth == 1)).all()):
                raise ArtifactError(f"metric {self.name!r}: the truth of attribute {name!r} must be binary (0/1)")
            threshold = float(output.threshold.get(name, DEFAULT_THRESHOLD))
            positive_rate = float(truth.double().mean())
            values.append(
                MetricValue(
                    name=f"{self.name}[{name}]",
                    value=self._value(name, scores.detach().cpu(), truth, threshold),
                    higher_is_riskier=True,
                    risk="P2",
                    details={
                        "n": int(truth.numel()),
                        "majority_rate": max(positive_rate, 1.0 - positive_rate),
                        "threshold": threshold,
                    },
                )
            )
        return values


class AttributeAccuracy(_AttributeMetric):
    """Share of records whose sensitive attribute the attack predicts correctly at its threshold.

    Compare it with ``details["majority_rate"]``: on an imbalanced attribute (Census race is about
    90 % White) always guessing the majority value already scores that much, and the G-mean
    threshold of :class:`~interplay.plugins.privacy.attribute.AttributeInference` trades accuracy
    for balanced accuracy.
    """

    name = "attribute_accuracy"

    def _value(self, name: str, scores: torch.Tensor, truth: torch.Tensor, threshold: float) -> float:
        return float((_predicted(scores, threshold) == truth).double().mean())


class AttributeBalancedAccuracy(_AttributeMetric):
    """Mean of the recalls of the attribute's values at the attack's threshold (AMULET's ``Acc_att``).

    ``(TPR + TNR) / 2`` when both values occur; when the truth takes one value only, the recall of
    that value (scikit-learn's ``balanced_accuracy_score`` averages over the values present).
    """

    name = "attribute_balanced_accuracy"

    def _value(self, name: str, scores: torch.Tensor, truth: torch.Tensor, threshold: float) -> float:
        predicted = _predicted(scores, threshold)
        recalls = [float((predicted[truth == v] == v).double().mean()) for v in (0, 1) if bool((truth == v).any())]
        return sum(recalls) / len(recalls)


class AttributeAUC(_AttributeMetric):
    """Area under the ROC curve of the attack's scores for the attribute (threshold-free; 0.5 is chance)."""

    name = "attribute_auc"

    def _value(self, name: str, scores: torch.Tensor, truth: torch.Tensor, threshold: float) -> float:
        from sklearn.metrics import roc_auc_score

        if int(truth.min()) == int(truth.max()):
            raise ArtifactError(
                f"metric {self.name!r}: the AUC of attribute {name!r} is undefined, its truth takes the single "
                f"value {int(truth[0])}"
            )
        return float(roc_auc_score(truth.numpy(), scores.numpy()))
