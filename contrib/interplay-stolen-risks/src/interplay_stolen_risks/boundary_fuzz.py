"""BoundaryFuzz: the privacy property of Stolen Risks trained with DL2 along with a security property.

Qin et al. ("Stolen Risks of Models with Security Properties", CCS 2023, section 5) defend models
with security properties against model stealing by a *privacy property* trained with them:
queries near the decision boundary (an axis probe of length ``Delta`` changes the predicted class)
get uncertain answers (``||F(x)||_2 < sqrt(e^epsilon / (e^epsilon + 1))``), which makes the model
epsilon-soft-boundary-private (their Theorem 1). :class:`BoundaryFuzz` minimises

    cross_entropy + w_property * DL2 loss of the security property + dl2_weight * DL2 loss of BoundaryFuzz

per mini-batch, the BoundaryFuzz loss taken at the most violating ``x~`` the DL2 search finds in
the L-infinity ball around each row (:class:`interplay_stolen_risks._fuzz.FuzzConstraint`). With
``delta="auto"`` / ``epsilon="auto"`` it selects them as the paper does
(:func:`interplay_stolen_risks._fuzz.select_parameters`), deciding "successfully trained" on
held-out defender rows. ``docs/boundary_fuzz.md`` documents the choices and the gaps.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Self

import torch
from pydantic import Field, model_validator
from torch.nn import functional as F

from interplay import Defense, Params
from interplay.artifacts import LabeledData, TaskData, TrainedModel

from ._dl2 import Search
from ._fuzz import EpsilonSchedule, FuzzConstraint, check_constants, select_parameters
from .properties import (
    Lipschitzness,
    LipschitzTraining,
    LocalInvariance,
    LocalInvarianceTraining,
    PropertyDefense,
    evaluation_mode,
    next_row_partners,
)

if TYPE_CHECKING:
    from interplay import RunContext

__all__ = ["SECURITY_PROPERTIES", "BoundaryFuzz", "constraint_share"]

#: The security properties BoundaryFuzz trains with (their defenses' classes).
SECURITY_PROPERTIES: dict[str, type[PropertyDefense]] = {
    "local_invariance": LocalInvariance,
    "local_invariance_t": LocalInvarianceTraining,
    "lipschitz": Lipschitzness,
    "lipschitz_t": LipschitzTraining,
}
PropertyChoice = Literal["local_invariance", "local_invariance_t", "lipschitz", "lipschitz_t", "none"]
#: DL2's search defaults, for the ball of a property without one (the "(T)" properties, none).
_DL2_SEARCH = {"eps": 0.3, "step": 0.01, "iterations": 50, "clip_min": None, "clip_max": None}
LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def constraint_share(
    checker: Any, module: torch.nn.Module, data: LabeledData, generator: torch.Generator, *, batch_size: int = 256
) -> float:
    """Share of ``data``'s rows on which ``checker``'s constraint holds at the worst points found.

    Paired constraints pair each row with the next one of its batch (cyclically).
    """
    device = next(module.parameters()).device
    holds = []
    with evaluation_mode(module):
        for start in range(0, len(data), batch_size):
            x = data.x[start : start + batch_size].to(device)
            y = data.y[start : start + batch_size].to(device)
            partner = next_row_partners(len(x), device=device)
            formula = checker.constraint(module, x, y, partner, generator=generator)
            holds.append(formula.holds().detach().cpu())
    return float(torch.cat(holds).float().mean())


class BoundaryFuzz(Defense):
    """BoundaryFuzz (Stolen Risks, Property 5) trained with DL2 along with a security property.

    The security property is one of this distribution's DL2 properties (``property``, with its
    own parameters in ``property_params``, its own weight and search) or ``none``. BoundaryFuzz's
    free variable ``x~`` lies in the L-infinity ball of the property (``eps``, ``step``,
    ``iterations`` default to the property's; DL2's defaults for the "(T)" properties and
    ``none``). ``delta`` and ``epsilon`` are numbers, or ``"auto"`` for the paper's selection
    (section 5.2) over at most ``max_trainings`` trainings, plus one reference training of the
    property alone. A trial is *successfully trained* when, on ``validation_fraction`` of the
    defender's rows held out from its training, (1) its accuracy is at most ``max_accuracy_drop``
    below the reference's, (2) the security property's constraint accuracy is at most
    ``max_property_drop`` below the reference's and (3) BoundaryFuzz holds on at least
    ``min_fuzz_accuracy`` of the rows. The model returned is the chosen trial's (trained on the
    remaining defender rows); when no trial succeeds, the last one.
    """

    name = "boundary_fuzz"
    risks = ("S3",)
    Input = TaskData
    Output = TrainedModel
    summary = "BoundaryFuzz privacy property trained with DL2 along with a security property (Stolen Risks)"
    conformance_params = {"iterations": 2, "property_params": {"iterations": 2}, "max_trainings": 2}

    class Params(Params):
        """Hyper-parameters of :class:`BoundaryFuzz`.

        Attributes:
            property: The security property trained along, or ``none``.
            property_params: Parameters of that property's defense (its constants, weight, search).
            delta: Probe length ``Delta`` of the premise, or ``"auto"`` (selected; starts at 0.1).
            epsilon: Privacy level of the conclusion, or ``"auto"`` (selected; starts at the schedule's first value).
            dl2_weight: Weight of BoundaryFuzz's DL2 loss (ours: the paper gives none, and DL2's 0.2
                leaves the model nearly unchanged; ``docs/boundary_fuzz.md``).
            eps: Radius of the ball of ``x~``; ``None``: the property's (0.3 without one).
            step: Search step; ``None``: the property's (0.01 without one).
            iterations: Search steps; ``None``: the property's (50 without one).
            clip_min: Lower bound of valid inputs; ``None``: the property's.
            clip_max: Upper bound of valid inputs; ``None``: the property's.
            epsilon_schedule: ``multiply`` (start at 0.001, x10 up to 0.1: section 5.2's procedure)
                or ``add`` (start at 1, +1: the paper's variant for the DL2 properties).
            max_trainings: The most BoundaryFuzz trainings the selection tries.
            validation_fraction: Share of the defender's rows held out to judge a trial.
            max_accuracy_drop: Accuracy a successful trial may lose against the reference.
            max_property_drop: Constraint accuracy of the security property it may lose.
            min_fuzz_accuracy: Share of held-out rows on which BoundaryFuzz must hold.
        """

        property: PropertyChoice = "local_invariance"
        property_params: dict[str, Any] = Field(default_factory=dict)
        delta: float | Literal["auto"] = "auto"
        epsilon: float | Literal["auto"] = "auto"
        dl2_weight: float = Field(default=10.0, ge=0, allow_inf_nan=False)
        eps: float | None = Field(default=None, ge=0, allow_inf_nan=False)
        step: float | None = Field(default=None, gt=0, allow_inf_nan=False)
        iterations: int | None = Field(default=None, ge=0)
        clip_min: float | None = None
        clip_max: float | None = None
        epsilon_schedule: EpsilonSchedule = "multiply"
        max_trainings: int = Field(default=4, ge=1)
        validation_fraction: float = Field(default=0.2, gt=0, lt=1)
        max_accuracy_drop: float = Field(default=0.01, ge=0, le=1)
        max_property_drop: float = Field(default=0.05, ge=0, le=1)
        min_fuzz_accuracy: float = Field(default=0.9, ge=0, le=1)

        @model_validator(mode="after")
        def _check(self) -> Self:
            check_constants(self.delta, self.epsilon)
            if self.property == "none":
                if self.property_params:
                    raise ValueError("property_params needs a property")
            else:
                SECURITY_PROPERTIES[self.property].Params.model_validate(self.property_params)
            return self

    params: BoundaryFuzz.Params

    def security_property(self) -> PropertyDefense | None:
        """The security property's defense, configured with ``property_params`` (``None`` for ``none``)."""
        if self.params.property == "none":
            return None
        return SECURITY_PROPERTIES[self.params.property](**self.params.property_params)

    def search(self) -> Search:
        """The search for ``x~``: the parameters set here, else the property's, else DL2's defaults."""
        prop = self.security_property()
        inherited = {**_DL2_SEARCH, **({} if prop is None else prop.get_params())}
        own = self.get_params()
        settings = {k: own[k] if own[k] is not None else inherited[k] for k in _DL2_SEARCH}
        return Search(**settings)

    def fuzz(self, delta: float, epsilon: float) -> FuzzConstraint:
        """The BoundaryFuzz constraint with ``delta``, ``epsilon`` and this defense's search."""
        return FuzzConstraint(delta=delta, epsilon=epsilon, settings=self.search())

    def apply(
        self, target: TaskData, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> TrainedModel:
        """Train the scenario's model on the defender's rows with the property's and BoundaryFuzz's DL2 losses.

        Args:
            target: The task; the model trains on the defender's rows (all training rows without a partition).
            data: Unused (the task is ``target``).
            context: Seed, device, model factory and training recipe. Required.

        Returns:
            The trained model. ``info`` records ``dl2_property`` and the property's ``dl2_<parameter>``
            facts (as the property's own defense does), ``boundary_fuzz_delta``,
            ``boundary_fuzz_epsilon``, ``boundary_fuzz_weight``, ``boundary_fuzz_eps`` and, for a
            selection, ``boundary_fuzz_selected``, ``boundary_fuzz_trials`` (every trial as a JSON
            list) and the reference model's ``boundary_fuzz_reference_accuracy`` and
            ``boundary_fuzz_reference_property_accuracy``.

        Raises:
            ConfigError: When ``context`` is missing or names no model factory.
        """
        context = self.require_training_context(context)
        p = self.params
        prop = self.security_property()
        rows = target.defender_train
        indices = target.partition.defender if target.partition is not None else torch.arange(len(rows))
        facts: dict[str, Any] = {} if prop is None else prop.facts()
        facts.update(boundary_fuzz_weight=p.dl2_weight, boundary_fuzz_eps=self.search().eps)
        delta = None if p.delta == "auto" else float(p.delta)
        epsilon = None if p.epsilon == "auto" else float(p.epsilon)
        if delta is not None and epsilon is not None:
            facts.update(boundary_fuzz_delta=delta, boundary_fuzz_epsilon=epsilon)
            recorded = target.partition.defender if target.partition is not None else None
            return self._train(rows, recorded, context, delta, epsilon, facts)

        order = torch.randperm(len(rows), generator=context.generator("defense", self.name, "validation"))
        n_val = max(1, round(p.validation_fraction * len(rows)))
        fit_pos, val_pos = order[n_val:].sort().values, order[:n_val]
        fit, val = rows.subset(fit_pos), rows.subset(val_pos)
        reference = self._train(fit, None, context, None, None, {})
        ref = self._judge(reference, val, context, None)
        models: dict[tuple[float, float], TrainedModel] = {}
        records: list[dict[str, Any]] = []

        def trial(d: float, e: float) -> bool:
            model = self._train(fit, indices[fit_pos], context, d, e, facts)
            outcome = self._judge(model, val, context, self.fuzz(d, e))
            success = (
                outcome["accuracy"] >= ref["accuracy"] - p.max_accuracy_drop
                and outcome["property_accuracy"] >= ref["property_accuracy"] - p.max_property_drop
                and outcome["fuzz_accuracy"] >= p.min_fuzz_accuracy
            )
            models[d, e] = model
            records.append({"delta": d, "epsilon": e, "success": success, **outcome})
            return success

        selection = select_parameters(
            trial, delta=delta, epsilon=epsilon, schedule=p.epsilon_schedule, max_trainings=p.max_trainings
        )
        last = selection.trials[-1]
        chosen = selection.chosen or last
        model = models[chosen.delta, chosen.epsilon]
        info = {
            **model.info,
            "boundary_fuzz_selected": selection.chosen is not None,
            # facts are scalars: the trials as one JSON text, the reference's figures one by one
            "boundary_fuzz_trials": json.dumps(records),
            **{f"boundary_fuzz_reference_{k}": v for k, v in ref.items() if k != "fuzz_accuracy"},
        }
        return model.model_copy(update={"info": info})

    def _judge(
        self, model: TrainedModel, val: LabeledData, context: RunContext, fuzz: FuzzConstraint | None
    ) -> dict[str, float]:
        """Held-out accuracy and constraint accuracies (1.0 for an absent property or constraint)."""
        with model.evaluating() as module, torch.no_grad():
            accuracy = float((module(val.x.to(model.device)).argmax(1).cpu() == val.y).float().mean())
        prop = self.security_property()
        generator = context.generator("defense", self.name, "judge")
        return {
            "accuracy": accuracy,
            "property_accuracy": 1.0 if prop is None else constraint_share(prop, model.module, val, generator),
            "fuzz_accuracy": 1.0 if fuzz is None else constraint_share(fuzz, model.module, val, generator),
        }

    def _train(
        self,
        rows: LabeledData,
        indices: torch.Tensor | None,
        context: RunContext,
        delta: float | None,
        epsilon: float | None,
        facts: dict[str, Any],
    ) -> TrainedModel:
        """Train with the property and, unless ``delta`` is ``None`` (the reference), BoundaryFuzz."""
        fuzz = None if delta is None or epsilon is None else self.fuzz(delta, epsilon)
        generator = context.generator("defense", self.name, "search")
        loss = self._loss(self.security_property(), fuzz, generator)
        info = dict(facts)
        if fuzz is not None:
            info.update(boundary_fuzz_delta=delta, boundary_fuzz_epsilon=epsilon)
        return context.train(rows, loss_fn=loss, train_indices=indices, info=info)

    def _loss(self, prop: PropertyDefense | None, fuzz: FuzzConstraint | None, generator: torch.Generator) -> LossFn:
        prop_weight = 0.0 if prop is None else float(prop.get_params()["dl2_weight"])
        fuzz_weight = 0.0 if fuzz is None else self.params.dl2_weight

        def loss(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            total = F.cross_entropy(module(x), y)
            if prop is not None and prop_weight > 0:
                partner = next_row_partners(len(x), device=x.device)
                total = total + prop_weight * prop.constraint(module, x, y, partner, generator=generator).loss().mean()
            if fuzz is not None and fuzz_weight > 0:
                total = total + fuzz_weight * fuzz.constraint(module, x, y, generator=generator).loss().mean()
            return total

        return loss
