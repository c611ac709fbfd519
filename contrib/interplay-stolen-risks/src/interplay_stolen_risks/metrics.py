"""Model-stealing (S3) metrics of "Stolen Risks of Models with Security Properties" on a substitute.

Qin et al. (CCS 2023, section 3.1, "Metrics") report three numbers per attack, on the testing
set ``D_ts``:

- *agreement* between the predictions of substitute and target, "equivalent to measure the
  accuracy of the predictions of the substitute models when taking the predictions of the target
  models as groundtruth labels". interplay's built-in ``fidelity`` metric computes exactly this
  (the share of test inputs on which the two arg-max labels are equal), so this distribution
  does not add a second name for it: read ``fidelity`` as the paper's agreement;
- :class:`PosteriorMSE`: the mean squared error between the two models' posteriors, "a smaller
  MSE indicates that the substitute models have more similar posterior with the victim models";
- :class:`SubstituteF1Minority`: the substitute's F1 score "taking the class with minority
  samples as positive class", because some datasets are unbalanced.

The formulas are scikit-learn's (``mean_squared_error``, ``f1_score``).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from interplay import Metric, MetricValue, Params, RunContext
from interplay.artifacts import LabeledData, QueryAccess, SurrogateModel, TaskData
from interplay.errors import ArtifactError

__all__ = ["PosteriorMSE", "SubstituteF1Minority", "evaluation_split", "minority_class"]


def evaluation_split(metric: Metric, data: TaskData | None) -> LabeledData:
    """The test split ``metric`` is computed on; an ArtifactError naming the metric when absent or empty."""
    if data is None:
        raise ArtifactError(f"metric {metric.name!r} needs data= (a TaskData; it is computed on its test split)")
    if len(data.test) == 0:
        raise ArtifactError(f"metric {metric.name!r}: the test split is empty")
    return data.test


def minority_class(y: torch.Tensor, num_classes: int) -> int:
    """The class with the fewest samples among those present in ``y``; ties go to the higher index.

    In a binary task with as many samples of each class, the minority class is therefore 1.
    """
    counts = torch.bincount(y.cpu(), minlength=num_classes)
    present = (counts > 0).nonzero().squeeze(1)
    if len(present) == 0:
        raise ArtifactError("cannot name a minority class: the labels are empty")
    fewest = counts[present].min()
    return int(present[counts[present] == fewest].max())


class PosteriorMSE(Metric):
    """Mean squared error between the substitute's and the target's posteriors on the test split.

    ``MSE = mean over test inputs x and classes c of (F_S(x)_c - F_T(x)_c)^2``
    (scikit-learn's ``mean_squared_error`` of the two ``(N, C)`` posterior matrices). With two
    classes it equals the mean of ``(F_S(x)_1 - F_T(x)_1)^2``. Lower means the substitute copies
    the target more closely, i.e. the theft succeeded better (Qin et al., CCS 2023, section 3.1).
    """

    name = "posterior_mse"
    risks = ("S3",)
    Input = SurrogateModel
    Target = QueryAccess
    higher_is_riskier = False
    summary = "mean squared error between substitute and target posteriors on the test split (Stolen Risks)"

    def compute(
        self,
        output: SurrogateModel,
        /,
        *,
        target: QueryAccess | None = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """Squared error of the posteriors, averaged over test inputs and classes.

        Args:
            output: The attack's substitute.
            target: The model it was stolen from (any access with posteriors).
            data: The task; the metric uses its ``test`` split.
            context: Unused.

        Raises:
            ArtifactError: When ``data`` or ``target`` is missing, or the test split is empty.
        """
        from sklearn.metrics import mean_squared_error

        test = evaluation_split(self, data)
        if target is None:
            raise ArtifactError(
                f"metric {self.name!r} needs target= (the model the substitute was stolen from, at least QueryAccess)"
            )
        target_posteriors = target.query(test.x).detach().cpu().double().numpy()
        substitute_posteriors = output.model.query(test.x).detach().cpu().double().numpy()
        value = float(mean_squared_error(target_posteriors, substitute_posteriors))
        return MetricValue(
            name=self.name,
            value=value,
            higher_is_riskier=False,
            risk="S3",
            details={"n": len(test), "queries": output.queries},
        )


class SubstituteF1Minority(Metric):
    """F1 score of the substitute on the test split, the minority class being the positive one.

    Qin et al. (CCS 2023, section 3.1): "we use F1 score taking the class with minority samples
    as positive class instead of accuracy". The minority class is the least frequent label of the
    test split (ties: the higher class index); ``positive_class`` names another. With more than
    two classes it is that class's one-against-the-rest F1. Higher means a more useful stolen model.
    """

    name = "substitute_f1_minority"
    risks = ("S3",)
    Input = SurrogateModel
    higher_is_riskier = True
    summary = "test F1 of the substitute with the minority class as positive (Stolen Risks)"

    class Params(Params):
        """Hyper-parameters of :class:`SubstituteF1Minority`.

        Attributes:
            positive_class: The positive class; ``None`` takes the test split's minority class.
        """

        positive_class: int | None = Field(default=None, ge=0)

    params: SubstituteF1Minority.Params

    def compute(
        self,
        output: SurrogateModel,
        /,
        *,
        target: Any = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """F1 of the substitute's test predictions for the positive class.

        Args:
            output: The attack's substitute.
            target: Unused.
            data: The task; the metric uses its ``test`` split and true labels.
            context: Unused.

        Raises:
            ArtifactError: When ``data`` is missing, the test split is empty, or ``positive_class``
                is not a class of the task.
        """
        from sklearn.metrics import f1_score

        test = evaluation_split(self, data)
        positive = self.params.positive_class
        if positive is None:
            positive = minority_class(test.y, test.num_classes)
        elif positive >= test.num_classes:
            raise ArtifactError(
                f"metric {self.name!r}: positive_class {positive} is not a class of the task "
                f"({test.num_classes} classes)"
            )
        truth = test.y.cpu().numpy()
        predicted = output.model.predict(test.x).cpu().numpy()
        value = float(f1_score(truth, predicted, labels=[positive], average="macro", zero_division=0.0))
        return MetricValue(
            name=self.name,
            value=value,
            higher_is_riskier=True,
            risk="S3",
            details={"n": len(test), "positive_class": positive, "queries": output.queries},
        )
