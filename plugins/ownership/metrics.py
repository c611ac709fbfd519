"""Unauthorized model ownership (S3) metrics on a :class:`~interplay.artifacts.SurrogateModel`.

All three are computed on the task's held-out ``test`` split, as in ML-Doctor ("Target
Testing Dataset ... is also used to evaluate the performance of ... model stealing
attacks") and AMULET (``evaluate_extraction`` on the test loader):

- ``surrogate_accuracy``: the stolen model's test accuracy (AMULET's ``Acc_te(M_stol)``);
- ``fidelity``: agreement between stolen and target model (AMULET's ``Fid``, ML-Doctor's
  "agreement");
- ``correct_fidelity``: agreement conditioned on correctness (AMULET's ``Fid_corr``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from interplay.artifacts import LabeledData, LabelOnlyAccess, MetricValue, SurrogateModel, TaskData
from interplay.errors import ArtifactError
from interplay.modules import Metric

if TYPE_CHECKING:
    from interplay.context import RunContext

__all__ = ["CorrectFidelity", "Fidelity", "SurrogateAccuracy"]


def _test_split(metric: Metric, data: TaskData | None) -> LabeledData:
    if data is None:
        raise ArtifactError(f"metric {metric.name!r} needs data= (a TaskData; it is computed on its test split)")
    return data.test


def _target_labels(metric: Metric, target: LabelOnlyAccess | None, test: LabeledData) -> torch.Tensor:
    if target is None:
        raise ArtifactError(
            f"metric {metric.name!r} needs target= (the model the surrogate was extracted from, "
            "at least LabelOnlyAccess)"
        )
    return target.predict(test.x).to(test.y.device)


def _surrogate_labels(output: SurrogateModel, test: LabeledData) -> torch.Tensor:
    return output.model.predict(test.x).to(test.y.device)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


class SurrogateAccuracy(Metric):
    """Test accuracy of the surrogate (AMULET's ``Acc_te(M_stol)``; higher means a more useful theft)."""

    name = "surrogate_accuracy"
    risks = ("S3",)
    Input = SurrogateModel
    higher_is_riskier = True

    def compute(
        self,
        output: SurrogateModel,
        /,
        *,
        target: Any = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """Share of test inputs the surrogate classifies correctly.

        Args:
            output: The extraction attack's surrogate.
            target: Unused.
            data: The task; the metric uses its ``test`` split.
            context: Unused.

        Raises:
            ArtifactError: When ``data`` is missing.
        """
        test = _test_split(self, data)
        n = len(test)
        n_correct = int((_surrogate_labels(output, test) == test.y).sum()) if n else 0
        return MetricValue(
            name=self.name,
            value=_ratio(n_correct, n),
            higher_is_riskier=True,
            risk="S3",
            details={"n": n, "n_correct": n_correct, "queries": output.queries},
        )


class Fidelity(Metric):
    """Share of test inputs on which surrogate and target predict the same label (AMULET's ``Fid``).

    ``Fid = |{x in test : f_s(x) = f_t(x)}| / |test|``: ML-Doctor's *agreement*, "the
    proportion of samples in the target testing dataset on which the target and the stolen
    models make the same prediction" (Liu et al., section 5.2, "Model Stealing"), which AMULET
    reports as fidelity.
    """

    name = "fidelity"
    risks = ("S3",)
    Input = SurrogateModel
    Target = LabelOnlyAccess
    higher_is_riskier = True

    def compute(
        self,
        output: SurrogateModel,
        /,
        *,
        target: LabelOnlyAccess | None = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """Agreement between surrogate and target on the test split.

        Args:
            output: The extraction attack's surrogate.
            target: The model it was extracted from (any access; narrowed to labels).
            data: The task; the metric uses its ``test`` split.
            context: Unused.

        Raises:
            ArtifactError: When ``data`` or ``target`` is missing.
        """
        test = _test_split(self, data)
        target_labels = _target_labels(self, target, test)
        n = len(test)
        n_agree = int((_surrogate_labels(output, test) == target_labels).sum()) if n else 0
        return MetricValue(
            name=self.name,
            value=_ratio(n_agree, n),
            higher_is_riskier=True,
            risk="S3",
            details={"n": n, "n_agree": n_agree, "queries": output.queries},
        )


class CorrectFidelity(Metric):
    """Of the test inputs where surrogate and target agree, the share they also get right (AMULET's ``Fid_corr``).

    ``Fid_corr = |{x : f_s(x) = f_t(x) = y}| / |{x : f_s(x) = f_t(x)}|`` over the test
    split, and 0 when the two models never agree. AMULET (Waheed et al., section 6.1, "S3 (Unauthorized
    Model Ownership)"):
    "Fid_corr is fidelity conditioned on correctness, that is, when models agree, how often
    are they also correct?"; its code (``evaluate_extraction``) divides the number of inputs
    both models classify correctly by the number on which they agree.
    """

    name = "correct_fidelity"
    risks = ("S3",)
    Input = SurrogateModel
    Target = LabelOnlyAccess
    higher_is_riskier = True

    def compute(
        self,
        output: SurrogateModel,
        /,
        *,
        target: LabelOnlyAccess | None = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """Correctness of the surrogate on the test inputs where it agrees with the target.

        Args:
            output: The extraction attack's surrogate.
            target: The model it was extracted from (any access; narrowed to labels).
            data: The task; the metric uses its ``test`` split.
            context: Unused.

        Raises:
            ArtifactError: When ``data`` or ``target`` is missing.
        """
        test = _test_split(self, data)
        target_labels = _target_labels(self, target, test)
        surrogate_labels = _surrogate_labels(output, test)
        agree = surrogate_labels == target_labels
        n_agree = int(agree.sum())
        n_agree_correct = int((agree & (surrogate_labels == test.y)).sum())
        return MetricValue(
            name=self.name,
            value=_ratio(n_agree_correct, n_agree),
            higher_is_riskier=True,
            risk="S3",
            details={"n": len(test), "n_agree": n_agree, "n_agree_correct": n_agree_correct, "queries": output.queries},
        )
