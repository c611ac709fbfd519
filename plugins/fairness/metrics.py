"""Discriminatory behaviour (F) metrics: group-fairness measurements taken on a model.

These metrics consume a model directly (``Input = LabelOnlyAccess``: only predicted labels are
needed, so they apply to every model a defense can output). The resolver therefore makes them
*measurements*: cells with the attack ``none``, taken on the baseline and on every defense. Each
metric predicts the labels of the task's ``test`` split and returns one
:class:`~interplay.artifacts.MetricValue` per sensitive attribute of that split, named
``<metric>[<attribute>]`` (``demographic_parity_difference[race]``, ``p_rule[sex]``, ...).

A prediction is *positive* when it equals ``positive_label`` (1 by default; for a multi-class task,
one class against the rest). For a group ``g`` of an attribute (the rows holding one of its values):

- selection rate ``SR_g = P(y_hat = pos | A = g)``;
- true positive rate ``TPR_g = P(y_hat = pos | y = pos, A = g)``;
- false positive rate ``FPR_g = P(y_hat = pos | y != pos, A = g)``.

The metrics (the definitions and names of Fairlearn, whose implementations the tests compare with):

- ``demographic_parity_difference``: ``max_g SR_g - min_g SR_g`` (Fairlearn's
  ``demographic_parity_difference``; AMULET's ``demographic_parity``);
- ``tpr_difference``: ``max_g TPR_g - min_g TPR_g`` (AMULET's ``true_positive_parity``; Fairlearn's
  ``MetricFrame(metrics=true_positive_rate).difference()``);
- ``fpr_difference``: ``max_g FPR_g - min_g FPR_g`` (AMULET's ``false_positive_parity``);
- ``equalized_odds_difference``: ``max(tpr_difference, fpr_difference)`` (Fairlearn's
  ``equalized_odds_difference``, its default ``agg="worst_case"``; AMULET adds the two instead);
- ``p_rule``: ``100 * min_g SR_g / max_g SR_g``, **a percentage** (Zafar et al.'s p%-rule, as AMULET
  reports it; 100 times Fairlearn's ``demographic_parity_ratio``). 80 is the "four-fifths rule".

The four differences are in ``[0, 1]`` and higher is riskier; for ``p_rule`` (in ``[0, 100]``) lower is
riskier. A group with no row in a rate's condition (no positive label, say) is left out of that rate's
spread; with a single group left the spread is 0. When no group receives a positive prediction, every
group is treated alike and ``p_rule`` is 100 (Fairlearn's ratio is undefined there). Each value's
``details`` hold ``n`` (test rows), ``positive_label`` and the per-group ``rates`` and ``counts``
(keyed by the attribute's value).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import Field

from interplay import Metric, MetricValue, Params
from interplay.artifacts import LabeledData, LabelOnlyAccess, TaskData
from interplay.errors import ArtifactError

if TYPE_CHECKING:
    from interplay.context import RunContext

__all__ = [
    "DemographicParityDifference",
    "EqualizedOddsDifference",
    "FPRDifference",
    "PRule",
    "TPRDifference",
    "group_rates",
]


def group_rates(
    positive: torch.Tensor, condition: torch.Tensor, groups: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-group rate of ``positive`` among the rows where ``condition`` holds.

    Args:
        positive: Bool ``(N,)``: the event counted (a positive prediction).
        condition: Bool ``(N,)``: the rows the rate is taken over (all rows, or those of one true label).
        groups: Int64 ``(N,)``: the attribute's values.

    Returns:
        ``(values, rates, counts)``: the attribute values present in ``groups`` (sorted), each
        value's rate (float64; 0 where ``counts`` is 0) and its number of rows satisfying ``condition``.
    """
    values, codes = torch.unique(groups, sorted=True, return_inverse=True)
    counts = torch.bincount(codes, weights=condition.double(), minlength=len(values))
    hits = torch.bincount(codes, weights=(condition & positive).double(), minlength=len(values))
    rates = torch.where(counts > 0, hits / counts.clamp(min=1), torch.zeros_like(hits))
    return values, rates, counts


def _spread(rates: torch.Tensor, counts: torch.Tensor) -> float:
    """``max - min`` of the rates of the groups that have rows (0 with fewer than two such groups)."""
    present = rates[counts > 0]
    return float(present.max() - present.min()) if present.numel() > 1 else 0.0


class _FairnessMetric(Metric):
    """One value per sensitive attribute of the test split; subclasses compute it from the groups' rates."""

    __abstract__ = True
    risks = ("F",)
    Input = LabelOnlyAccess
    higher_is_riskier = True
    #: Which rates a subclass needs: "selection", "tpr", "fpr".
    rates_needed: ClassVar[tuple[str, ...]] = ()

    class Params(Params):
        """Hyper-parameters of the fairness metrics.

        Attributes:
            positive_label: The class counted as the favourable (positive) outcome; the others are negative.
            attributes: Sensitive attributes to measure; ``None`` measures every one the test split holds.
        """

        positive_label: int = Field(default=1, ge=0)
        attributes: tuple[str, ...] | None = None

    params: _FairnessMetric.Params

    def _value(self, rates: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> float:
        raise NotImplementedError

    def _test_split(self, data: TaskData | None) -> LabeledData:
        if data is None:
            raise ArtifactError(f"metric {self.name!r} needs data= (a TaskData; it is measured on its test split)")
        test = data.test
        if len(test) == 0:
            raise ArtifactError(f"metric {self.name!r}: the test split is empty")
        if not test.sensitive:
            raise ArtifactError(
                f"metric {self.name!r}: the test split has no sensitive attributes (LabeledData.sensitive is empty)"
            )
        return test

    def _attributes(self, test: LabeledData) -> tuple[str, ...]:
        names = self.params.attributes if self.params.attributes is not None else tuple(test.sensitive)
        missing = [name for name in names if name not in test.sensitive]
        if missing:
            raise ArtifactError(
                f"metric {self.name!r}: params.attributes names {missing}, not sensitive attributes of the test "
                f"split (it has {sorted(test.sensitive)})"
            )
        return names

    def compute(
        self,
        output: LabelOnlyAccess,
        /,
        *,
        target: Any = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> list[MetricValue]:
        """One value per sensitive attribute, from the model's predictions on the test split.

        Args:
            output: The model measured (any access; only its predicted labels are used).
            target: Unused.
            data: The task; the metric is measured on its ``test`` split.
            context: Unused.

        Raises:
            ArtifactError: When ``data`` is missing, its test split is empty or has no sensitive
                attributes, ``params.attributes`` names an attribute it lacks, or (true and false
                positive rates) the test split has no row of the label the rate is conditioned on.
        """
        test = self._test_split(data)
        label = self.params.positive_label
        truth = test.y.detach().cpu() == label
        positive = output.predict(test.x).detach().cpu() == label
        everyone = torch.ones_like(truth)
        conditions = {"selection": everyone, "tpr": truth, "fpr": ~truth}
        for rate in self.rates_needed:
            if rate != "selection" and not bool(conditions[rate].any()):
                side = "positive" if rate == "tpr" else "negative"
                raise ArtifactError(
                    f"metric {self.name!r}: the test split has no row whose true label is {side} "
                    f"(positive_label={label}), so its {rate.upper()} is undefined"
                )
        values = []
        for name in self._attributes(test):
            groups = test.sensitive[name].detach().cpu()
            computed: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
            details: dict[str, Any] = {"n": len(test), "positive_label": label}
            for rate in self.rates_needed:
                keys, rates, counts = group_rates(positive, conditions[rate], groups)
                computed[rate] = (rates, counts)
                details[f"{rate}_rates"] = {str(int(k)): float(r) for k, r in zip(keys, rates, strict=True)}
                details[f"{rate}_counts"] = {str(int(k)): int(c) for k, c in zip(keys, counts, strict=True)}
            values.append(
                MetricValue(
                    name=f"{self.name}[{name}]",
                    value=self._value(computed),
                    higher_is_riskier=type(self).higher_is_riskier,
                    risk="F",
                    details=details,
                )
            )
        return values


class DemographicParityDifference(_FairnessMetric):
    """Largest gap in selection rate ``P(y_hat = pos | A = g)`` between groups (Fairlearn's definition).

    0 is parity; 1 means one group always gets the positive outcome and another never does.
    """

    name = "demographic_parity_difference"
    rates_needed = ("selection",)

    def _value(self, rates: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> float:
        return _spread(*rates["selection"])


class TPRDifference(_FairnessMetric):
    """Largest gap in true positive rate ``P(y_hat = pos | y = pos, A = g)`` between groups (TPR parity)."""

    name = "tpr_difference"
    rates_needed = ("tpr",)

    def _value(self, rates: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> float:
        return _spread(*rates["tpr"])


class FPRDifference(_FairnessMetric):
    """Largest gap in false positive rate ``P(y_hat = pos | y != pos, A = g)`` between groups (FPR parity)."""

    name = "fpr_difference"
    rates_needed = ("fpr",)

    def _value(self, rates: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> float:
        return _spread(*rates["fpr"])


class EqualizedOddsDifference(_FairnessMetric):
    """The larger of the TPR and FPR differences (Fairlearn's ``equalized_odds_difference``, worst case).

    0 means equalized odds (Hardt et al., 2016): the same true and false positive rates in every group.
    AMULET reports the sum of the two differences instead; see docs/fairness.md.
    """

    name = "equalized_odds_difference"
    rates_needed = ("tpr", "fpr")

    def _value(self, rates: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> float:
        return max(_spread(*rates["tpr"]), _spread(*rates["fpr"]))


class PRule(_FairnessMetric):
    """p%-rule: 100 times the lowest over the highest group selection rate, a percentage (lower is riskier).

    Zafar et al. (2017)'s p%-rule, as AMULET's ``p_rule`` reports it (in percent); it equals 100 times
    Fairlearn's ``demographic_parity_ratio``. 100 is parity; US hiring guidance flags values under 80.
    When no group receives a positive prediction the value is 100 (all groups are treated alike).
    """

    name = "p_rule"
    higher_is_riskier = False
    rates_needed = ("selection",)

    def _value(self, rates: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> float:
        selection, counts = rates["selection"]
        present = selection[counts > 0]
        highest = float(present.max())
        return 100.0 if highest == 0.0 else 100.0 * float(present.min()) / highest
