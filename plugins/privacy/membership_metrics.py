"""Membership inference (P1) metrics on :class:`~interplay.artifacts.MembershipScores`.

All three read the ROC curve of the scores against the ground truth (higher score = member),
as Carlini et al. and AMULET do (``sklearn.metrics.roc_curve``):

- ``mia_auc``: the area under the curve;
- ``mia_balanced_accuracy``: the best balanced accuracy over the curve's thresholds,
  ``max(1 - (FPR + (1 - TPR)) / 2)`` (the reference ``plot.py``'s ``acc``; AMULET's ``balanced_acc``);
- ``mia_tpr_at_fpr``: the true-positive rate at fixed low false-positive rates (1 % and 0.1 %
  by default), the largest TPR among the curve's points with ``FPR <= rate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, field_validator

from interplay.artifacts import MembershipScores, MetricValue, TaskData
from interplay.errors import ArtifactError
from interplay.modules import Metric, Params

if TYPE_CHECKING:
    from interplay.context import RunContext

__all__ = ["Curve", "MembershipAUC", "MembershipBalancedAccuracy", "MembershipTPRAtFPR", "downsample_curve", "roc"]


@dataclass(frozen=True)
class Curve:
    """The ROC curve of membership scores, every threshold kept.

    Attributes:
        truth: Ground truth as a bool array.
        scores: The scores as a float64 array.
        fpr: False-positive rates, non-decreasing, from 0 to 1.
        tpr: True-positive rates at the same thresholds.
        thresholds: Score thresholds (``score >= threshold`` is called a member); the first is ``inf``.
        counts: ``n_members`` and ``n_nonmembers``.
    """

    truth: np.ndarray
    scores: np.ndarray
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    counts: dict[str, int]


def roc(output: MembershipScores, *, metric: str) -> Curve:
    """The full ROC curve of ``output`` (higher score = member) and its class counts.

    Args:
        output: Scores and ground truth.
        metric: The calling metric's name, for error messages.

    Raises:
        ArtifactError: When ``output.is_member`` lacks members or non-members (the curve is undefined).
    """
    from sklearn.metrics import roc_curve

    truth = output.is_member.detach().cpu().numpy().astype(bool)
    counts = {"n_members": int(truth.sum()), "n_nonmembers": int((~truth).sum())}
    if counts["n_members"] == 0 or counts["n_nonmembers"] == 0:
        raise ArtifactError(
            f"metric {metric!r}: MembershipScores.is_member needs both members and non-members, got {counts}"
        )
    scores = output.scores.detach().cpu().numpy().astype(np.float64)
    fpr, tpr, thresholds = roc_curve(truth, scores, drop_intermediate=False)
    return Curve(truth=truth, scores=scores, fpr=fpr, tpr=tpr, thresholds=thresholds, counts=counts)


def _threshold(value: float) -> float | None:
    """A threshold for JSON details: ``None`` for the curve's ``inf`` starting point."""
    return float(value) if np.isfinite(value) else None


def downsample_curve(fpr: np.ndarray, tpr: np.ndarray, points: int) -> dict[str, list[float]]:
    """At most ``points`` points of a ROC curve, as JSON-ready lists.

    Half the budget is spread evenly along the curve, half at log-spaced false-positive rates
    (the last point at or below each), so a log-log plot keeps its low-FPR region. The first
    and last points are always kept.
    """
    n = len(fpr)
    if n <= points:
        chosen = np.arange(n)
    else:
        even = np.linspace(0, n - 1, points - points // 2).round().astype(int)
        smallest = max(float(fpr[fpr > 0].min()), 1e-12)
        grid = np.geomspace(smallest, 1.0, points // 2)
        logged = np.searchsorted(fpr, grid, side="right") - 1
        chosen = np.unique(np.concatenate([even, logged.clip(0, n - 1)]))
    return {"fpr": [float(v) for v in fpr[chosen]], "tpr": [float(v) for v in tpr[chosen]]}


def _value(name: str, value: float, details: dict[str, Any]) -> MetricValue:
    return MetricValue(name=name, value=float(value), higher_is_riskier=True, risk="P1", details=details)


class MembershipAUC(Metric):
    """Area under the ROC curve of the membership scores (0.5 is chance; 1 perfect separation).

    ``sklearn.metrics.roc_auc_score``, as AMULET (``metrics.auc`` of ``roc_curve``) and the
    reference ``plot.py``. The value's ``details["roc"]`` holds the curve, down-sampled to at
    most ``roc_points`` points, for plots.
    """

    name = "mia_auc"
    risks = ("P1",)
    Input = MembershipScores
    higher_is_riskier = True

    class Params(Params):
        """Hyper-parameters of :class:`MembershipAUC`.

        Attributes:
            roc_points: At most this many points of the ROC curve are kept in ``details["roc"]``.
        """

        roc_points: int = Field(default=200, ge=2)

    params: MembershipAUC.Params

    def compute(
        self,
        output: MembershipScores,
        /,
        *,
        target: Any = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """The AUC of ``output``'s scores against its ground truth.

        Raises:
            ArtifactError: When the ground truth lacks members or non-members.
        """
        from sklearn.metrics import roc_auc_score

        curve = roc(output, metric=self.name)
        auc = roc_auc_score(curve.truth, curve.scores)
        details = {**curve.counts, "roc": downsample_curve(curve.fpr, curve.tpr, self.params.roc_points)}
        return _value(self.name, auc, details)


class MembershipBalancedAccuracy(Metric):
    """Best balanced accuracy ``(TPR + 1 - FPR) / 2`` over the thresholds of the ROC curve.

    The attack's accuracy on a balanced set at its best threshold: ``max(1 - (FPR + (1 - TPR)) / 2)``,
    the reference ``plot.py``'s ``acc`` and AMULET's ``balanced_acc``. 0.5 is chance. The threshold is
    chosen with the ground truth, so it is an upper bound on what an adversary calibrating its
    threshold blindly achieves (as in both references).
    """

    name = "mia_balanced_accuracy"
    risks = ("P1",)
    Input = MembershipScores
    higher_is_riskier = True

    def compute(
        self,
        output: MembershipScores,
        /,
        *,
        target: Any = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """The best balanced accuracy of ``output``'s scores.

        Raises:
            ArtifactError: When the ground truth lacks members or non-members.
        """
        curve = roc(output, metric=self.name)
        accuracy = 1 - (curve.fpr + (1 - curve.tpr)) / 2
        best = int(np.argmax(accuracy))
        details = {
            **curve.counts,
            "threshold": _threshold(curve.thresholds[best]),
            "tpr": float(curve.tpr[best]),
            "fpr": float(curve.fpr[best]),
        }
        return _value(self.name, accuracy[best], details)


class MembershipTPRAtFPR(Metric):
    """True-positive rate at fixed low false-positive rates (Carlini et al.'s headline metric).

    For each rate, the largest TPR among the ROC curve's points with ``FPR <= rate`` (AMULET's
    ``tpr_at_fpr``; the reference ``plot.py`` uses ``FPR < rate``). With ``n`` non-members the
    curve moves in steps of ``1 / n`` in FPR, so a rate below ``1 / n`` measures the TPR at zero
    false positives; ``details["fpr_resolution"]`` records ``1 / n``.
    One value per rate, named ``mia_tpr_at_fpr[<rate>]``.
    """

    name = "mia_tpr_at_fpr"
    risks = ("P1",)
    Input = MembershipScores
    higher_is_riskier = True

    class Params(Params):
        """Hyper-parameters of :class:`MembershipTPRAtFPR`.

        Attributes:
            fprs: The false-positive rates (AMULET reports 1 %; Carlini et al. 0.1 % and 0.001 %).
        """

        fprs: tuple[float, ...] = Field(default=(0.01, 0.001), min_length=1)

        @field_validator("fprs")
        @classmethod
        def _rates(cls, fprs: tuple[float, ...]) -> tuple[float, ...]:
            bad = [rate for rate in fprs if not 0 < rate <= 1]
            if bad:
                raise ValueError(f"false-positive rates must be in (0, 1], got {bad}")
            if len(set(fprs)) != len(fprs):
                raise ValueError(f"false-positive rates must be distinct, got {list(fprs)}")
            return fprs

    params: MembershipTPRAtFPR.Params

    def compute(
        self,
        output: MembershipScores,
        /,
        *,
        target: Any = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> list[MetricValue]:
        """The TPR of ``output``'s scores at each of ``fprs``.

        Raises:
            ArtifactError: When the ground truth lacks members or non-members.
        """
        curve = roc(output, metric=self.name)
        values = []
        for rate in self.params.fprs:
            at = int(np.nonzero(curve.fpr <= rate)[0][-1])  # fpr[0] == 0, so some point qualifies
            details = {
                **curve.counts,
                "fpr": rate,
                "achieved_fpr": float(curve.fpr[at]),
                "threshold": _threshold(curve.thresholds[at]),
                "fpr_resolution": 1 / curve.counts["n_nonmembers"],
            }
            values.append(_value(f"{self.name}[{rate:g}]", curve.tpr[at], details))
        return values
