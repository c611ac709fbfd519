"""Black-box constraint accuracy of the trees' global properties (Monotonicity, SmallNeighborhood, BoundaryFuzz).

:class:`~interplay_stolen_risks.property_metrics.ConstraintAccuracy` searches violations with
gradients; tree models have none and are served as :class:`~interplay.artifacts.QueryAccess`. This
metric checks each test row against sampled neighbours instead, from the posteriors alone:

- ``monotonicity``: row ``x`` holds when, for every constrained feature ``j`` and every probe
  ``x'`` (``x`` with ``x_j`` set to each of ``grid`` values spread over the training range of
  feature ``j``, one standard deviation beyond it on each side), the positive posterior moves the
  constrained way: ``(x'_j - x_j) * (F(x')_1 - F(x)_1) >= 0`` (reversed for ``decreasing``).
- ``small_neighborhood``: row ``x`` holds when ``||F(x) - F(x')||_2 < L * eps`` for ``samples``
  neighbours ``x'`` drawn uniformly from ``d(x, x') < eps`` (``d`` the L-infinity distance in
  standard deviations of the defender's training features), plus the ``2 d`` points one step short
  of the ball's faces along each axis.
- ``boundary_fuzz`` (Stolen Risks' Property 5 in LogicEnsemble's global form): at the row and at
  ``samples`` points ``z`` of the same ball, every axis probe ``z' = z +- delta e_i`` whose class
  differs from ``z``'s needs ``||F(z)||_2 < b`` and ``||F(z')||_2 < b``,
  ``b = sqrt(e^epsilon / (e^epsilon + 1))``.

As with the DL2 metric, the constants are the metric's own parameters, so the baseline and the
defended models are measured alike; the model's ``tree_property`` only enters ``details``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from interplay import Metric, MetricValue, Params, RunContext
from interplay.artifacts import QueryAccess, TaskData
from interplay.errors import ArtifactError, ConfigError

from ._fuzz import fuzz_bound
from .trees import feature_indices, feature_scale

__all__ = ["TreeConstraintAccuracy"]


class TreeConstraintAccuracy(Metric):
    """Share of test rows on which a global property holds against sampled neighbours (black-box).

    One :class:`~interplay.artifacts.MetricValue` named ``tree_constraint_accuracy[<property>]``
    in ``[0, 1]``; lower is riskier. Monotone XGBoost scores 1 on ``monotonicity`` by construction.
    """

    name = "tree_constraint_accuracy"
    risks = ("S1",)
    Input = QueryAccess
    higher_is_riskier = False
    summary = "share of test rows where Monotonicity, SmallNeighborhood or BoundaryFuzz holds at sampled points"
    conformance_params = {"samples": 4, "rows": 20}

    class Params(Params):
        """Hyper-parameters of :class:`TreeConstraintAccuracy`.

        Attributes:
            property: ``small_neighborhood``, ``monotonicity`` or ``boundary_fuzz``.
            increasing: Features (names or indices) whose positive posterior must not fall as they grow.
            decreasing: Features whose positive posterior must not grow as they grow.
            eps: SmallNeighborhood's radius in standard deviations (the defense's default).
            L: SmallNeighborhood's constant (the defense's default).
            delta: BoundaryFuzz's probe length (inputs' units).
            epsilon: BoundaryFuzz's privacy level.
            samples: Random neighbours per row (SmallNeighborhood, BoundaryFuzz).
            grid: Probe values per constrained feature (Monotonicity).
            rows: Test rows checked (the first ``rows``); ``None``: all.
        """

        property: Literal["small_neighborhood", "monotonicity", "boundary_fuzz"] = "small_neighborhood"
        increasing: list[str | int] = Field(default_factory=list)
        decreasing: list[str | int] = Field(default_factory=list)
        eps: float = Field(default=0.1, gt=0, allow_inf_nan=False)
        L: float = Field(default=2.0, gt=0, allow_inf_nan=False)
        delta: float = Field(default=0.1, gt=0, allow_inf_nan=False)
        epsilon: float = Field(default=0.001, gt=0, allow_inf_nan=False)
        samples: int = Field(default=64, ge=1)
        grid: int = Field(default=32, ge=2)
        rows: int | None = Field(default=None, ge=1)

    params: TreeConstraintAccuracy.Params

    def compute(
        self,
        output: QueryAccess,
        /,
        *,
        target: Any = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """Check the property on the test rows of ``data``.

        Args:
            output: Black-box access to the model measured.
            target: Unused.
            data: The task: test rows checked, defender rows give the features' scale and range.
            context: Seeds the sampled neighbours.

        Returns:
            The share of rows that hold; ``details`` hold ``n``, the constants and ``trained_with``.

        Raises:
            ArtifactError: When ``data`` is missing or its test split is empty.
            ConfigError: When ``monotonicity`` names no feature, or a feature is unknown.
        """
        if data is None or len(data.test) == 0:
            raise ArtifactError(f"metric {self.name!r} needs data= with a non-empty test split")
        context = context or RunContext()
        p = self.params
        x = data.test.x[: p.rows].to(torch.float32)
        if p.property == "monotonicity":
            holds = self._monotone(output, x, data)
            constants: dict[str, Any] = {"increasing": p.increasing, "decreasing": p.decreasing, "grid": p.grid}
        elif p.property == "boundary_fuzz":
            generator = context.generator("metric", self.name, "neighbours")
            holds = self._fuzz(output, x, data, generator)
            constants = {"delta": p.delta, "epsilon": p.epsilon, "eps": p.eps, "samples": p.samples}
        else:
            generator = context.generator("metric", self.name, "neighbours")
            holds = self._neighbourhood(output, x, data, generator)
            constants = {"eps": p.eps, "L": p.L, "samples": p.samples}
        details = {"n": len(x), "property": p.property, "constants": constants}
        details["trained_with"] = output.info.get("tree_property")
        return MetricValue(
            name=f"{self.name}[{p.property}]",
            value=float(holds.float().mean()),
            higher_is_riskier=False,
            risk="S1",
            details=details,
        )

    def _monotone(self, model: QueryAccess, x: torch.Tensor, data: TaskData) -> torch.Tensor:
        p = self.params
        base = f"{self.name}.params"
        if not p.increasing and not p.decreasing:
            raise ConfigError("name at least one feature in increasing or decreasing", path=f"{base}.increasing")
        train = data.defender_train
        features = [(j, 1.0) for j in feature_indices(p.increasing, train, path=f"{base}.increasing")]
        features += [(j, -1.0) for j in feature_indices(p.decreasing, train, path=f"{base}.decreasing")]
        positive = model.num_classes - 1
        here = model.query(x)[:, positive].double()
        holds = torch.ones(len(x), dtype=torch.bool)
        flat = train.x.reshape(len(train.x), -1).double()
        sigma = torch.from_numpy(feature_scale(train))
        for j, sign in features:
            low, high = float(flat[:, j].min() - sigma[j]), float(flat[:, j].max() + sigma[j])
            values = torch.linspace(low, high, p.grid, dtype=torch.float64)
            probes = x.repeat(p.grid, 1)  # (grid * n, d): value g for every row
            probes[:, j] = values.repeat_interleave(len(x)).to(probes.dtype)
            there = model.query(probes)[:, positive].double().reshape(p.grid, len(x))
            moved = (probes[:, j].double().reshape(p.grid, len(x)) - x[:, j].double()) * sign
            holds &= ((moved * (there - here)) >= 0).all(dim=0)
        return holds

    def _shifts(self, n: int, d: int, data: TaskData, generator: torch.Generator) -> torch.Tensor:
        """``samples`` uniform moves in the ball and the ``2 d`` axis moves just inside it: ``(S, n, d)``."""
        radius = self.params.eps * torch.from_numpy(feature_scale(data.defender_train)).to(torch.float32)
        shift = (2.0 * torch.rand(self.params.samples, n, d, generator=generator) - 1.0) * radius
        axis = torch.eye(d) * radius * (1.0 - 1e-3)
        return torch.cat([shift, axis[:, None].expand(d, n, d), -axis[:, None].expand(d, n, d)])

    def _fuzz(self, model: QueryAccess, x: torch.Tensor, data: TaskData, generator: torch.Generator) -> torch.Tensor:
        p = self.params
        n, d = len(x), x.shape[1]
        points = torch.cat([x[None], x[None] + self._shifts(n, d, data, generator)]).reshape(-1, d)
        probe = torch.eye(d) * p.delta
        holds = torch.ones(len(points), dtype=torch.bool)
        bound = fuzz_bound(p.epsilon)
        here = model.query(points)
        for move in torch.cat([probe, -probe]):
            there = model.query(points + move)
            crossed = there.argmax(dim=1) != here.argmax(dim=1)
            holds &= ~crossed | ((here.norm(dim=1) < bound) & (there.norm(dim=1) < bound))
        return holds.reshape(-1, n).all(dim=0)

    def _neighbourhood(
        self, model: QueryAccess, x: torch.Tensor, data: TaskData, generator: torch.Generator
    ) -> torch.Tensor:
        p = self.params
        n, d = len(x), x.shape[1]
        shift = self._shifts(n, d, data, generator)
        here = model.query(x)
        there = model.query((x[None] + shift).reshape(-1, d)).reshape(len(shift), n, -1)
        distance = (there - here[None]).norm(dim=2)
        return (distance < p.L * p.eps).all(dim=0)
