"""MaskedThief (Algorithm 1 of Stolen Risks): a base attack whose confident synthesised inputs are inferred.

Qin et al. ("Stolen Risks of Models with Security Properties", CCS 2023, section 4) run a base
model-stealing attack (Uniform, Gaussian, LineSearch, JBA(P)/JBA(X)) and, for each synthesised input,
compute INFER's confidence interval (:mod:`interplay_stolen_risks._infer`) from its labelled
neighbours and the target's security property. A valid interval labels the input by inference; an
invalid one sends it to the target. Only real queries count against the budget ``Q``, so the
substitute trains on more labelled inputs for the same budget. ``docs/maskedthief.md`` lists the
choices the paper leaves open and the deviations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Self

import torch
from pydantic import Field, model_validator

from interplay import Attack, Params, RunContext
from interplay.artifacts import QueryAccess, SurrogateModel, TaskData, TrainedModel

from ._infer import _PARAMETERS, Inference, PropertyBound, PropertyForm, grid_search, infer, property_from_info
from ._substitute import SubstituteChoice, SubstituteLoss, fit_substitute, substitute_kind
from ._synth import Base, Synthesiser, synthesiser
from .datasets import PAPER_AUX_SIZE
from .jba import JacobianAugmentation

__all__ = ["Collected", "MaskedThief", "StealingParams", "collect", "wrap_substitute"]


class StealingParams(Params):
    """The base attack's hyper-parameters (shared by MaskedThief and the MixMatch baseline).

    Attributes:
        base: The base attack: ``uniform`` / ``gaussian`` (random query), ``line_search`` or ``jba``.
        query_budget: Real queries sent to the target, exactly (the paper's ``Q = 200``).
        seed_size: Size ``m`` of the seed set (JBA's 50 rows; random inputs for the other bases).
        seed_source: JBA's seed rows: ``partial`` (JBA(P)) or ``external`` (JBA(X), the paper's Figure 6).
        radius: Half-width of the random bases' query box.
        std: Standard deviation of the Gaussian base.
        tolerance: Line search's stopping distance (normalised).
        eps: JBA's L-infinity step radius.
        steps: JBA's I-FGSM steps.
        gradient: JBA's gradient: ``ifgsm`` (autograd) or ``zoo``.
        variant: JBA's ``untargeted`` or ``random_target`` steps.
        zoo_h: ZOO's difference step.
        loss: The substitute's loss on the target's posteriors (and on the inferred ones).
        substitute: The substitute's family: ``network``, ``xgboost`` or ``auto`` (``xgboost`` when the
            target's ``model_family`` fact says so; JBA then takes ZOO's gradient).
        architecture: Model factory of the substitute; ``None`` uses the scenario's.
        architecture_params: Parameters of that factory.
        epochs: Training epochs of the substitute in every round.
        lr: Learning rate; ``None`` uses the scenario recipe's.
        batch_size: Mini-batch size; ``None`` uses the scenario recipe's.
    """

    base: Base = "jba"
    query_budget: int = Field(default=200, ge=1)
    seed_size: int = Field(default=PAPER_AUX_SIZE, ge=1)
    seed_source: Literal["partial", "external"] = "external"
    radius: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    std: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    tolerance: float = Field(default=0.1, gt=0, allow_inf_nan=False)
    eps: float = Field(default=0.1, gt=0, allow_inf_nan=False)
    steps: int = Field(default=5, ge=1)
    gradient: Literal["ifgsm", "zoo"] = "ifgsm"
    variant: Literal["untargeted", "random_target"] = "untargeted"
    zoo_h: float = Field(default=1e-4, gt=0, allow_inf_nan=False)
    loss: SubstituteLoss = "kl"
    substitute: SubstituteChoice = "auto"
    architecture: str | None = None
    architecture_params: dict[str, Any] = Field(default_factory=dict)
    epochs: int | None = Field(default=100, ge=1)
    lr: float | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=32, ge=1)

    @model_validator(mode="after")
    def _seed_within_budget(self) -> Self:
        if self.seed_size > self.query_budget:
            raise ValueError(f"seed_size ({self.seed_size}) exceeds query_budget ({self.query_budget})")
        return self


@dataclass
class Collected:
    """The labelled set an attack gathered: inputs, training targets, which were queried, and facts."""

    x: torch.Tensor
    targets: torch.Tensor  # queried: the target's posteriors; inferred: one-hot labels
    queried: torch.Tensor  # bool mask
    labels: torch.Tensor
    synth: Synthesiser
    train: Any  # train(x, targets, round_) -> module
    rounds: int = 0
    facts: dict[str, Any] = field(default_factory=dict)


Selector = Any  # selector(x_queried, labels_queried) -> (bound, failure) | None


def collect(
    name: str,
    p: StealingParams,
    target: QueryAccess,
    data: TaskData | None,
    context: RunContext,
    *,
    select: Selector | None = None,
    infer_kw: dict[str, Any] | None = None,
    label_bound: int | None = None,
    queried_neighbours: bool = True,
    soft: bool = False,
) -> Collected:
    """Algorithm 1's loop: seed set, then rounds of synthesis; with ``select``, confident inputs are inferred.

    Without ``select`` this is the base attack (every synthesised input is queried). Real queries stop
    at ``query_budget``; inferences stop where the labelled set could no longer take the remaining
    queries within ``label_bound``.
    """
    trees = substitute_kind(p.substitute, target) == "xgboost"
    path = f"{name}.params.architecture"
    factory = None if trees else context.model_factory(p.architecture, p.architecture_params, path=path)
    recipe = None if trees else context.recipe.overridden_by(p)
    generator = context.generator(name, "synthesis")
    shape, classes = target.input_shape, target.num_classes
    jba = JacobianAugmentation(
        seed_source=p.seed_source,
        seed_size=p.seed_size,
        query_budget=p.query_budget,
        eps=p.eps,
        steps=p.steps,
        gradient="zoo" if trees else p.gradient,  # trees have no input gradient: ZOO's estimate
        variant=p.variant,
        zoo_h=p.zoo_h,
    )
    synth = synthesiser(
        p.base,
        n_seed=p.seed_size,
        shape=shape,
        num_classes=classes,
        radius=p.radius,
        std=p.std,
        tolerance=p.tolerance,
        jba=jba,
        data=data,
        context=context,
        generator=generator,
    )

    def ask(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            answer: torch.Tensor = target.query(x).detach().to(device="cpu", dtype=torch.float32)
        return answer

    def train(x: torch.Tensor, targets: torch.Tensor, round_: int) -> torch.nn.Module:
        # Algorithm 1 re-initialises the substitute before every training.
        return fit_substitute(context, target, x, targets, params=p, name=name, round_=round_, factory=factory)

    x = synth.seed()
    targets = ask(x)
    labels, queried = targets.argmax(dim=1), torch.ones(len(x), dtype=torch.bool)
    synth.learn_seed(x, labels)
    out = Collected(x, targets, queried, labels, synth, train, facts={"factory": factory, "recipe": recipe})
    bound = label_bound if label_bound is not None else p.query_budget
    while int(out.queried.sum()) < p.query_budget:
        module = train(out.x, out.targets, out.rounds) if synth.needs_substitute else None
        candidates = synth.synthesise(out.x, out.labels, module)
        chosen = select(out.x[out.queried], (out.targets if soft else out.labels)[out.queried]) if select else None
        pool = out.queried if queried_neighbours else torch.ones_like(out.queried)
        responses = out.targets if soft else out.labels
        result = (
            infer(
                chosen[0],
                candidates,
                out.x[pool],
                responses[pool],
                num_classes=classes,
                failure=chosen[1],
                **(infer_kw or {}),
            )
            if chosen is not None
            else None
        )
        _label_round(out, candidates, result, ask, p.query_budget, bound, classes, soft)
        out.rounds += 1
    return out


def _label_round(
    out: Collected,
    candidates: torch.Tensor,
    result: Inference | None,
    ask: Any,
    budget: int,
    bound: int,
    classes: int,
    soft: bool,
) -> None:
    """Label the round's candidates in order: infer where valid and there is room, else query while budget lasts."""
    spent = int(out.queried.sum())
    room = max(0, bound - len(out.x) - (budget - spent))  # inferences the labelled set can still take
    take: list[int] = []
    ask_mask: list[bool] = []
    for i in range(len(candidates)):
        if result is not None and bool(result.valid[i]) and room > 0:
            take.append(i)
            ask_mask.append(False)
            room -= 1
        elif spent < budget:
            take.append(i)
            ask_mask.append(True)
            spent += 1
        else:
            break
    index = torch.tensor(take, dtype=torch.long)
    new_x, asked = candidates[index], torch.tensor(ask_mask, dtype=torch.bool)
    new_targets = torch.zeros(len(index), classes)
    if bool(asked.any()):
        new_targets[asked] = ask(new_x[asked])
    if result is not None and bool((~asked).any()):
        inferred = result.labels[index[~asked]]
        if soft:
            new_targets[~asked] = result.posteriors[index[~asked]].float()
        else:
            new_targets[~asked] = torch.nn.functional.one_hot(inferred, classes).float()
    new_labels = new_targets.argmax(dim=1)
    if result is not None and bool((~asked).any()):
        new_labels[~asked] = result.labels[index[~asked]]
    out.synth.update(new_x, new_labels)
    out.x = torch.cat([out.x, new_x])
    out.targets = torch.cat([out.targets, new_targets])
    out.queried = torch.cat([out.queried, asked])
    out.labels = torch.cat([out.labels, new_labels])


class MaskedThief(Attack):
    """MaskedThief: a base attack whose synthesised inputs are labelled by INFER where its interval is valid.

    Algorithm 1 of Qin et al. (CCS 2023): query the seed set, then round after round synthesise one
    input per labelled input with the base attack (``base``), and label each by INFER (Algorithm 2)
    when its confidence interval is valid, by a real query otherwise, until ``query_budget`` real
    queries are spent. The property's form comes from ``property`` or the target's facts
    (``dl2_property``, ``tree_property``); its parameters and the failure probability from a grid
    search on the queried inputs (leave-one-out) each round unless given in ``property_values``.

    The surrogate's info records ``queries`` (real ones), ``inferred``, ``inference_rate`` and, as an
    evaluation fact, ``inferred_label_accuracy``: the share of inferred labels equal to the target's
    arg-max, obtained after the attack has finished by asking the target about the inferred inputs
    (``evaluation_queries`` of them; the attack never uses these answers; ``evaluate_inference=False``
    skips it).
    """

    name = "masked_thief"
    summary = "base attack whose confident synthesised inputs are labelled by property-based inference"
    risks = ("S3",)
    Input = QueryAccess
    Output = SurrogateModel
    access = "black-box"
    knowledge = "partial"
    conformance_params = {"epochs": 2, "property": "lipschitz", "base": "uniform"}

    class Params(StealingParams):
        """Hyper-parameters of :class:`MaskedThief` (the base attack's on :class:`StealingParams`).

        Attributes:
            property: Table 4's form: ``lipschitz``, ``local_invariance``, ``small_neighborhood``,
                ``monotonicity``; ``None`` reads it from the target's facts.
            fallback_property: The form assumed when neither ``property`` nor the target's facts name
                one (a natural model); ``None`` makes that a ``ConfigError``. ``lipschitz`` assumes
                only smoothness, its ``L`` then grid searched like any unknown value.
            property_values: Known values (``L``, ``delta``, ``eps``, ``failure``); the others are grid
                searched. Monotonicity's ``increasing`` / ``decreasing`` features (indices or names)
                default to the target's ``tree_increasing`` / ``tree_decreasing`` facts.
            label_bound: ``B``, the most labelled inputs (queried and inferred).
            neighbours: ``K``, the most neighbours of INFER (the paper's 50).
            lam: ``lambda`` of Table 4 (the paper's 2).
            max_width: Widest confidence interval still valid.
            norm: ``p`` of the distance ``||x - x'||_p``.
            min_accuracy: Leave-one-out accuracy a grid point needs to be chosen.
            threshold: ``marginal``: the interval's midpoint against the class marginal of the queried
                set (the paper's); ``argmax``: the arg-max of the midpoints (1/2 with two classes).
            queried_neighbours: INFER's neighbours are the queried inputs only (Hoeffding's bound,
                Equation 1, needs the target's responses); ``False``: every labelled input, inferred
                ones included (Algorithm 1 as printed).
            responses: INFER's ``y_{i,c}``: ``labels`` (the target's arg-max, the paper's Bernoulli
                responses; inferred inputs train on their one-hot label) or ``posteriors`` (the target's
                answers; inferred inputs train on the interval's midpoint as a posterior).
            evaluate_inference: Ask the target about the inferred inputs after the attack, for
                ``inferred_label_accuracy`` (evaluation only).
            infer: ``False`` labels every synthesised input by a query: the base attack, run through
                the same loop with the same seed set, draws and substitute seeds (a paired baseline
                for measuring what the inference adds).
        """

        property: PropertyForm | None = None
        fallback_property: PropertyForm | None = None
        property_values: dict[str, Any] = Field(default_factory=dict)
        label_bound: int = Field(default=1000, ge=1)
        neighbours: int = Field(default=50, ge=1)
        lam: float = Field(default=2.0, ge=0, allow_inf_nan=False)
        max_width: float = Field(default=0.5, gt=0, le=1)
        norm: float = Field(default=2.0, gt=0)
        min_accuracy: float = Field(default=0.98, ge=0, le=1)
        threshold: Literal["marginal", "argmax"] = "marginal"
        evaluate_inference: bool = True
        queried_neighbours: bool = True
        responses: Literal["labels", "posteriors"] = "posteriors"
        infer: bool = True

    params: MaskedThief.Params

    def run(
        self, target: QueryAccess, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> SurrogateModel:
        """Run Algorithm 1 against ``target`` and train the substitute on the queried and inferred inputs.

        Args:
            target: Black-box access to the target; its ``info`` may name the property.
            data: The partitioned task (JBA's seed rows); unused by the random bases.
            context: Seed, device, the scenario's architecture and training recipe.

        Returns:
            The substitute; ``queries`` counts real attack queries only.

        Raises:
            ConfigError: When no property form is known (with ``infer``) or no model factory is available.
            ArtifactError: When JBA's seed set cannot be drawn.
        """
        context = context if context is not None else RunContext()
        p = self.params
        names = None
        if data is not None and data.splits:
            names = tuple(next(iter(data.splits.values())).feature_names or ()) or None
        # Without inference no property is needed (the paired baseline runs against any target).
        fallback = p.fallback_property if p.infer else (p.fallback_property or "lipschitz")
        shape = property_from_info(dict(target.info), p.property, p.property_values, names, fallback=fallback)
        bound = shape.with_values(lam=p.lam, norm=p.norm)
        given = {k: v for k, v in p.property_values.items() if k in ("L", "delta", "eps", "failure")}
        infer_kw = {"neighbours": p.neighbours, "max_width": p.max_width, "threshold": p.threshold}
        choices: list[tuple[PropertyBound, float, float, float] | None] = []

        def select(x: torch.Tensor, labels: torch.Tensor) -> tuple[PropertyBound, float] | None:
            chosen = grid_search(
                bound,
                x,
                labels,
                num_classes=target.num_classes,
                given=given,
                min_accuracy=p.min_accuracy,
                infer_kw=infer_kw,
            )
            choices.append(chosen)
            return None if chosen is None else (chosen[0], chosen[1])

        out = collect(
            self.name,
            p,
            target,
            data,
            context,
            select=select if p.infer else None,
            infer_kw=infer_kw,
            label_bound=p.label_bound,
            queried_neighbours=p.queried_neighbours,
            soft=p.responses == "posteriors",
        )
        module = out.train(out.x, out.targets, out.rounds)
        queries, inferred = int(out.queried.sum()), int((~out.queried).sum())
        synthesised = len(out.x) - min(p.seed_size, len(out.x))
        info: dict[str, Any] = {
            "attack": self.name,
            "base": p.base,
            "property": bound.form if p.infer else "none",
            "queries": queries,
            "inferred": inferred,
            "labelled": len(out.x),
            "inference_rate": inferred / synthesised if synthesised else 0.0,
            "rounds": out.rounds,
            "substitute_loss": p.loss,
        }
        last = next((c for c in reversed(choices) if c is not None), None)
        if last is not None:
            info.update({f"property_{k}": getattr(last[0], k) for k in _PARAMETERS[bound.form]})
            info.update({"failure_probability": last[1], "loo_inference_rate": last[2], "loo_accuracy": last[3]})
        if p.evaluate_inference and inferred:
            # Evaluation only: the target's answers on the inferred inputs, asked after the attack is over.
            with torch.no_grad():
                truth = target.query(out.x[~out.queried]).argmax(dim=1)
            info["inferred_label_accuracy"] = float((truth == out.labels[~out.queried]).double().mean())
            info["evaluation_queries"] = inferred
        substitute = wrap_substitute(out, module, target, info)
        return SurrogateModel(model=substitute, queries=queries)


def wrap_substitute(out: Collected, module: torch.nn.Module, target: QueryAccess, info: dict[str, Any]) -> TrainedModel:
    """Wrap the final substitute with how it was trained (``train_indices``: JBA's seed rows)."""
    factory, recipe = out.facts["factory"], out.facts["recipe"]
    return TrainedModel(
        module=module,
        num_classes=target.num_classes,
        input_shape=target.input_shape,
        recipe=recipe,
        train_indices=getattr(out.synth, "indices", None),
        architecture=factory.name if factory is not None else "xgboost",
        architecture_params=factory.get_params() if factory is not None else {},
        info=info,
    )
