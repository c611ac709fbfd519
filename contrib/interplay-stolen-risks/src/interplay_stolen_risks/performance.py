"""The defended target's own test performance: accuracy and minority-class F1 (a utility reference).

Qin et al. (CCS 2023) report, beside every model-stealing defense, "the test accuracy and test F1
of the defended target model to compare the performance drop in classification caused by
different defense methods" (section 5.2, Table 6's "Test Performance" columns). A defense that
perturbs posteriors (prediction poisoning, adaptive misinformation) only shows its cost through
the answers it gives, so the measurement reads the target through black-box access: the arg-max of
the posteriors it returns on the test split. The F1 takes the test split's minority class as the
positive class, as the paper's F1 of substitutes does (:mod:`interplay_stolen_risks.metrics`).
"""

from __future__ import annotations

from typing import Any

import torch

from interplay import Metric, MetricValue, RunContext
from interplay.artifacts import QueryAccess, TaskData

from .metrics import evaluation_split, minority_class

__all__ = ["TargetPerformance"]


class TargetPerformance(Metric):
    """Test accuracy and minority-class F1 of the target as its answers show them.

    A measurement: it consumes the target model itself, so every defense row gets it (with the
    attack ``none``). Its values are a utility reference, not a susceptibility.
    """

    name = "target_performance"
    risks = ("S3",)
    Input = QueryAccess
    higher_is_riskier = False
    utility = True
    summary = "test accuracy and minority-class F1 of the target's answers (utility reference, Stolen Risks)"

    def compute(
        self,
        output: QueryAccess,
        /,
        *,
        target: Any = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> list[MetricValue]:
        """Accuracy and F1 of ``output``'s arg-max answers on the test split.

        Args:
            output: Black-box access to the (defended) target.
            target: Unused (the target is ``output``).
            data: The task; its ``test`` split and true labels.
            context: Unused.

        Returns:
            ``target_accuracy`` and ``target_f1_minority``.

        Raises:
            ArtifactError: When ``data`` is missing or its test split is empty.
        """
        from sklearn.metrics import f1_score

        test = evaluation_split(self, data)
        with torch.no_grad():
            predicted = output.query(test.x).argmax(dim=1).cpu()
        truth = test.y.cpu()
        positive = minority_class(truth, test.num_classes)
        accuracy = float((predicted == truth).float().mean())
        f1 = float(f1_score(truth.numpy(), predicted.numpy(), labels=[positive], average="macro", zero_division=0.0))
        details = {"n": len(test), "positive_class": positive}
        return [
            MetricValue(name="target_accuracy", value=accuracy, higher_is_riskier=False, risk="S3", details=details),
            MetricValue(name="target_f1_minority", value=f1, higher_is_riskier=False, risk="S3", details=details),
        ]
