"""Constraint accuracy of BoundaryFuzz, the "CA" column of Stolen Risks' Table 6.

Stolen Risks (Qin et al., CCS 2023, Tables 6, 7 and 14) reports, for each model trained with
BoundaryFuzz, the constraint accuracy of the privacy property: the share of test rows on which
the constraint holds at the most violating ``x~`` the DL2 search finds in the row's ball (DL2's
measure, as :class:`~interplay_stolen_risks.property_metrics.ConstraintAccuracy` takes it for the
security properties). Like that metric, the constants are the metric's own parameters, so the
values of the undefended baseline and of every defense compare; a model's ``boundary_fuzz_*``
facts enter only the details.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from interplay import Metric, MetricValue, Params, RunContext
from interplay.artifacts import TaskData, TrainedModel
from interplay.errors import ArtifactError

from ._dl2 import Cmp, Or, Search
from ._fuzz import FuzzConstraint, fuzz_bound

__all__ = ["BoundaryFuzzAccuracy"]


class BoundaryFuzzAccuracy(Metric):
    """Share of test rows on which BoundaryFuzz holds under the strongest violation found (DL2).

    One value, ``boundary_fuzz_accuracy``, in ``[0, 1]``; higher means the model answers
    uncertainly near its boundary more often (lower is riskier for model stealing). ``details``
    also give ``sensitive``, the share of rows whose worst point found lies in the
    boundary-sensitive zone (some axis probe of length ``delta`` changes the class), and
    ``sensitive_norm``, the mean ``||F(x~)||_2`` at those points (``None`` when there are none):
    how confident the model's answers near its boundary are.
    """

    name = "boundary_fuzz_accuracy"
    risks = ("S3",)
    Input = TrainedModel
    higher_is_riskier = False
    summary = "share of test rows satisfying the BoundaryFuzz privacy property under the strongest violation found"
    conformance_params = {"iterations": 2}

    class Params(Params):
        """Hyper-parameters of :class:`BoundaryFuzzAccuracy`.

        Attributes:
            delta: Probe length ``Delta``.
            epsilon: Privacy level; the bound on ``||F||_2`` is ``sqrt(e^epsilon / (e^epsilon + 1))``.
            eps: Radius of the L-infinity ball of ``x~``.
            step: Step size of the search.
            iterations: Search steps after the random start.
            clip_min: Lower bound of valid inputs, or ``None``.
            clip_max: Upper bound of valid inputs, or ``None``.
            batch_size: Test rows checked at once.
        """

        delta: float = Field(default=0.1, gt=0, allow_inf_nan=False)
        epsilon: float = Field(default=0.001, gt=0, allow_inf_nan=False)
        eps: float = Field(default=0.3, ge=0, allow_inf_nan=False)
        step: float = Field(default=0.01, gt=0, allow_inf_nan=False)
        iterations: int = Field(default=50, ge=0)
        clip_min: float | None = None
        clip_max: float | None = None
        batch_size: int = Field(default=256, ge=1)

    params: BoundaryFuzzAccuracy.Params

    def checker(self) -> FuzzConstraint:
        """The constraint with this metric's constants and search."""
        p = self.params
        return FuzzConstraint(
            delta=p.delta, epsilon=p.epsilon, settings=Search(p.eps, p.step, p.iterations, p.clip_min, p.clip_max)
        )

    def compute(
        self,
        output: TrainedModel,
        /,
        *,
        target: Any = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """Check BoundaryFuzz on every row of ``data``'s test split.

        Args:
            output: The model measured.
            target: Unused.
            data: The task; its ``test`` split is checked.
            context: Gives the seed of the search's starting points.

        Returns:
            The value; ``details`` hold ``n``, the constants, ``bound``, ``sensitive``,
            ``sensitive_norm``, ``trained_with`` (the model's ``boundary_fuzz_delta`` and
            ``boundary_fuzz_epsilon``, or ``None``) and ``same_constants``.

        Raises:
            ArtifactError: When ``data`` is missing or its test split is empty.
        """
        if data is None or len(data.test) == 0:
            raise ArtifactError(f"metric {self.name!r} needs data= with a non-empty test split")
        test = data.test
        context = context or RunContext()
        generator = context.generator("metric", self.name, "search")
        checker = self.checker()
        holds, sensitive, norms = [], [], []
        with output.evaluating() as module:
            for start in range(0, len(test), self.params.batch_size):
                x = test.x[start : start + self.params.batch_size].to(output.device)
                y = test.y[start : start + self.params.batch_size].to(output.device)
                formula = checker.constraint(module, x, y, generator=generator)
                assert isinstance(formula, Or)
                keeps, conclusion = formula.parts
                assert isinstance(conclusion, Cmp)
                holds.append(formula.holds().detach().cpu())
                sensitive.append(~keeps.holds().detach().cpu())
                norms.append(conclusion.a.detach().cpu())
        held, zone, norm = torch.cat(holds), torch.cat(sensitive), torch.cat(norms)
        p = self.params
        trained = output.info.get("boundary_fuzz_delta"), output.info.get("boundary_fuzz_epsilon")
        details: dict[str, Any] = {
            "n": len(test),
            "constants": {"delta": p.delta, "epsilon": p.epsilon, "eps": p.eps},
            "bound": fuzz_bound(p.epsilon),
            "sensitive": float(zone.float().mean()),
            "sensitive_norm": float(norm[zone].mean()) if zone.any() else None,
            "trained_with": None if trained[0] is None else {"delta": trained[0], "epsilon": trained[1]},
            "same_constants": trained == (p.delta, p.epsilon) and output.info.get("boundary_fuzz_eps") == p.eps,
            "search": {"step": p.step, "iterations": p.iterations, "clip_min": p.clip_min, "clip_max": p.clip_max},
        }
        return MetricValue(
            name=self.name, value=float(held.float().mean()), higher_is_riskier=False, risk="S3", details=details
        )
