"""BoundaryFuzz on gradient-boosted trees, trained booster-fixer style along with a LogicEnsemble property.

Stolen Risks (Qin et al., CCS 2023, section 5.2) trains its privacy property with SmallNeighborhood
and Monotonicity in LogicEnsemble's global form ("high generalizability"): for all inputs,

    argmax f(x) != argmax f(x' + Delta e_i)  =>  ||F(x)||_2 < b  and  ||F(x')||_2 < b,
    b = sqrt(e^epsilon / (e^epsilon + 1)),

read as the axis probes of Property 5 (``x'`` is ``x`` moved by ``Delta`` along one feature).
With two classes and margin ``m`` (``F = (1 - sigmoid(m), sigmoid(m))``) the conclusion is
``|m| < tau(epsilon)`` (:func:`~interplay_stolen_risks._fixer.fuzz_margin`), and a verified bound
``U`` on ``|m(x) - m(x + s e_i)|`` for ``|s| <= Delta`` (:func:`~interplay_stolen_risks._fixer.axis_bound`)
below ``tau`` proves it for *every* input: the two margins have opposite signs, so each is at most
their difference. :class:`TreeBoundaryFuzz` boosts with the property's booster and fixes each
round's trees so that both the security property's bound (SmallNeighborhood) and this one hold;
Monotonicity keeps XGBoost's monotone constraints, which positive scales preserve.
``docs/boundary_fuzz.md`` documents the gap to LogicEnsemble's solver.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
import torch
from pydantic import Field, model_validator

from interplay import Defense, Params, RunContext
from interplay.artifacts import LabeledData, QueryAccess, TaskData, TrainedModel
from interplay.errors import ArtifactError

from ._fixer import Budget, axis_bound, fuzz_margin
from ._fuzz import EpsilonSchedule, check_constants, select_parameters
from .trees import Monotonicity, NaturalXGBoost, SmallNeighborhood, TreeDefense, fix_trees

if TYPE_CHECKING:
    from ._trees import TreeModule

__all__ = ["TREE_PROPERTIES", "TreeBoundaryFuzz"]

#: The tree properties BoundaryFuzz trains with (``none``: natural XGBoost's parameters only).
TREE_PROPERTIES: dict[str, type[TreeDefense]] = {
    "small_neighborhood": SmallNeighborhood,
    "monotonicity": Monotonicity,
    "none": NaturalXGBoost,
}
#: Settings of the fixer, set on this defense rather than in ``property_params``.
_FIXER = ("jitter", "min_scale", "calibrate_intercept")


class TreeBoundaryFuzz(Defense):
    """BoundaryFuzz (Property 5) on XGBoost with SmallNeighborhood, Monotonicity or no security property.

    Booster-fixer training (:func:`~interplay_stolen_risks.trees.fix_trees`): each round's trees
    are scaled until the verified BoundaryFuzz bound (and SmallNeighborhood's) holds on the whole
    ensemble, so the property holds for every input (its constraint accuracy is 1 by
    construction, the paper's Table 6 "CA 100.00" for the tree rows). ``Delta`` is in the
    inputs' units, as for :class:`~interplay_stolen_risks.boundary_fuzz.BoundaryFuzz`.
    ``delta="auto"`` / ``epsilon="auto"`` select them by the paper's rule
    (:func:`~interplay_stolen_risks._fuzz.select_parameters`); a trial is successfully trained
    when its accuracy on ``validation_fraction`` of the defender's rows, held out, is at most
    ``max_accuracy_drop`` below the security property's trees alone (the reference). Two-class
    tasks only.

    Examples:
        ``TreeBoundaryFuzz(property="monotonicity", property_params={"increasing": ["bmi", "smoker"]},
        delta=0.1, epsilon=0.001).apply(task)``
    """

    name = "boundary_fuzz_trees"
    risks = ("S3",)
    Input = TaskData
    Output = QueryAccess
    summary = "BoundaryFuzz privacy property verified on XGBoost along with SmallNeighborhood or Monotonicity"
    conformance_params = {"property_params": {"n_estimators": 3}, "max_trainings": 2}

    class Params(Params):
        """Hyper-parameters of :class:`TreeBoundaryFuzz`.

        Attributes:
            property: The security property trained along: ``small_neighborhood``, ``monotonicity`` or ``none``.
            property_params: That property's defense parameters (its constants, monotone features
                and XGBoost's parameters), the fixer's settings excepted.
            delta: Probe length ``Delta`` (inputs' units), or ``"auto"`` (selected; starts at 0.1).
            epsilon: Privacy level, or ``"auto"`` (selected; starts at 0.001).
            jitter: Per-round input noise of the booster, in standard deviations (SmallNeighborhood's).
            min_scale: The fixer stops boosting when a round's trees would be scaled below this.
            calibrate_intercept: Move the constant margin to the training accuracy's best (ours, as
                SmallNeighborhood; neither bound depends on it).
            epsilon_schedule: ``multiply`` (x10 up to 0.1) or ``add`` (+1).
            max_trainings: The most BoundaryFuzz trainings the selection tries.
            validation_fraction: Share of the defender's rows held out to judge a trial.
            max_accuracy_drop: Held-out accuracy a successful trial may lose against the reference.
        """

        property: Literal["small_neighborhood", "monotonicity", "none"] = "small_neighborhood"
        property_params: dict[str, Any] = Field(default_factory=dict)
        delta: float | Literal["auto"] = "auto"
        epsilon: float | Literal["auto"] = "auto"
        jitter: float = Field(default=0.5, ge=0, allow_inf_nan=False)
        min_scale: float = Field(default=1e-6, gt=0, le=1)
        calibrate_intercept: bool = True
        epsilon_schedule: EpsilonSchedule = "multiply"
        max_trainings: int = Field(default=4, ge=1)
        validation_fraction: float = Field(default=0.2, gt=0, lt=1)
        max_accuracy_drop: float = Field(default=0.01, ge=0, le=1)

        @model_validator(mode="after")
        def _check(self) -> Self:
            check_constants(self.delta, self.epsilon)
            misplaced = sorted(set(self.property_params) & set(_FIXER))
            if misplaced:
                raise ValueError(f"set {', '.join(misplaced)} on boundary_fuzz_trees itself, not in property_params")
            TREE_PROPERTIES[self.property].Params.model_validate(self.property_params)
            return self

    params: TreeBoundaryFuzz.Params

    @classmethod
    def conformance_example(cls, task: TaskData, model: TrainedModel, context: RunContext) -> TaskData:
        """The synthetic task made binary, as for Monotonicity."""
        return Monotonicity.conformance_example(task, model, context)

    def security_property(self) -> TreeDefense:
        """The property's defense, configured with ``property_params``."""
        return TREE_PROPERTIES[self.params.property](**self.params.property_params)

    def apply(
        self, target: TaskData, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> QueryAccess:
        """Train the trees on the defender's rows with the property and BoundaryFuzz; black-box access.

        Args:
            target: The task; the trees train on the defender's rows.
            data: Unused (the task is ``target``).
            context: Gives the seeds.

        Returns:
            Black-box access. ``info`` holds the property's facts (``model_family``,
            ``tree_property``, ``tree_<parameter>``), ``boundary_fuzz_delta``,
            ``boundary_fuzz_epsilon``, ``boundary_fuzz_bound`` (the verified margin bound) and
            ``boundary_fuzz_margin`` (``tau``), ``boundary_fuzz_rounds`` (rounds kept); for a
            selection also ``boundary_fuzz_selected``, ``boundary_fuzz_trials`` (JSON) and
            ``boundary_fuzz_reference_accuracy``.

        Raises:
            ArtifactError: When the task does not have two classes.
            ConfigError: When the property's parameters do not fit the task.
        """
        context = context or RunContext()
        p = self.params
        rows = target.defender_train
        if rows.num_classes != 2:
            raise ArtifactError(f"defense {self.name!r} needs a two-class task, got {rows.num_classes} classes")
        seed = context.derive_seed("defense", self.name)
        prop = self.security_property()
        facts = prop.facts()
        indices = target.partition.defender if target.partition is not None else None
        delta = None if p.delta == "auto" else float(p.delta)
        epsilon = None if p.epsilon == "auto" else float(p.epsilon)
        if delta is not None and epsilon is not None:
            module = self._fit(prop, rows, seed, delta, epsilon)
            return self._access(prop, target, module, indices, {**facts, **self._facts(module, delta, epsilon)})

        order = torch.randperm(len(rows), generator=context.generator("defense", self.name, "validation"))
        n_val = max(1, round(p.validation_fraction * len(rows)))
        fit, val = rows.subset(order[n_val:].sort().values), rows.subset(order[:n_val])
        reference = _accuracy(prop.fit(fit, seed=seed), val)
        records: list[dict[str, Any]] = []

        def trial(d: float, e: float) -> bool:
            module = self._fit(prop, fit, seed, d, e)
            accuracy = _accuracy(module, val)
            success = accuracy >= reference - p.max_accuracy_drop
            records.append({"delta": d, "epsilon": e, "success": success, "accuracy": accuracy})
            return success

        selection = select_parameters(
            trial, delta=delta, epsilon=epsilon, schedule=p.epsilon_schedule, max_trainings=p.max_trainings
        )
        chosen = selection.chosen or selection.trials[-1]
        module = self._fit(prop, rows, seed, chosen.delta, chosen.epsilon)  # the chosen constants on every defender row
        info = {
            **facts,
            **self._facts(module, chosen.delta, chosen.epsilon),
            "boundary_fuzz_selected": selection.chosen is not None,
            "boundary_fuzz_trials": json.dumps(records),
            "boundary_fuzz_reference_accuracy": reference,
        }
        return self._access(prop, target, module, indices, info)

    def _fit(self, prop: TreeDefense, rows: LabeledData, seed: int, delta: float, epsilon: float) -> TreeModule:
        """Booster-fixer rounds keeping BoundaryFuzz's bound (and SmallNeighborhood's); Monotonicity's constraints."""
        p = self.params
        budgets = [prop.budget(rows)] if isinstance(prop, SmallNeighborhood) else []
        monotone = prop.constraints(rows) if isinstance(prop, Monotonicity) else None
        width = np.full(int(rows.x.reshape(len(rows.x), -1).shape[1]), delta)
        budgets.append(Budget("boundary_fuzz", lambda trees: axis_bound(trees, width), fuzz_margin(epsilon)))
        return fix_trees(
            rows,
            params=prop.tree_params(),
            seed=seed,
            budgets=budgets,
            jitter=p.jitter,
            min_scale=p.min_scale,
            calibrate_intercept=p.calibrate_intercept,
            monotone=monotone,
        )

    @staticmethod
    def _facts(module: TreeModule, delta: float, epsilon: float) -> dict[str, Any]:
        return {
            "boundary_fuzz_delta": delta,
            "boundary_fuzz_epsilon": epsilon,
            "boundary_fuzz_bound": module.verified_bounds["boundary_fuzz"],
            "boundary_fuzz_margin": fuzz_margin(epsilon),
            "boundary_fuzz_rounds": len(module.boosters),
        }

    @staticmethod
    def _access(
        prop: TreeDefense, task: TaskData, module: TreeModule, indices: torch.Tensor | None, info: dict[str, Any]
    ) -> QueryAccess:
        model = TrainedModel(
            module=module,
            num_classes=task.num_classes,
            input_shape=task.input_shape,
            architecture="xgboost",
            architecture_params=prop.tree_params(),
            train_indices=indices,
            info=info,
        )
        return model.narrow(QueryAccess)


def _accuracy(module: TreeModule, rows: LabeledData) -> float:
    return float((module(rows.x).argmax(dim=1) == rows.y).float().mean())
