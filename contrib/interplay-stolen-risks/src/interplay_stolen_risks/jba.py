"""Jacobian-based augmentation (JBA): model stealing from a seed set grown by adversarial steps.

"Stolen Risks of Models with Security Properties" (Qin et al., CCS 2023, section 3.2) evaluates the
Jacobian-based augmentation attack of Papernot et al. ("Practical Black-Box Attacks against Machine
Learning", AsiaCCS 2017) in the form PRADA (Juuti et al., EuroS&P 2019) gives it: the attacker "trains
a substitute model using a seed dataset and iteratively generates adversarial examples of the
substitute model. It queries the target model to label the adversarial samples as an augmented
dataset to retrain the substitute model." For differentiable models the adversarial examples come
from I-FGSM (Kurakin et al., 2017) with ``k = 5`` steps; for non-differentiable ones from ZOO (Chen
et al., AISec 2017), whose gradient is a symmetric difference quotient. The seed set is 50 rows,
either part of the target's training set (JBA(P), ``seed_source="partial"``) or an external set of
the same distribution (JBA(X), ``seed_source="external"``), and the budget ``Q = 200`` queries, the
seed's included: ``log2(Q / |D_aux|) = 2`` augmentation rounds, each doubling the labelled set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, Self

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from interplay import Attack, Params, RunContext
from interplay.artifacts import QueryAccess, SurrogateModel, TaskData, TrainedModel
from interplay.errors import ArtifactError, ConfigError

from ._substitute import SubstituteChoice, SubstituteLoss, fit_substitute, substitute_kind
from .datasets import PAPER_AUX_SIZE, partial_seed_indices

__all__ = ["Gradient", "JacobianAugmentation", "ifgsm", "loss_gradient", "zoo_gradient"]

SeedSource = Literal["partial", "external"]
GradientMethod = Literal["ifgsm", "zoo"]
Variant = Literal["untargeted", "random_target"]
#: ``gradient(x, labels)``: the gradient of ``sum_i CE(F_S(x_i), labels_i)`` with respect to ``x``.
Gradient = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``posteriors(x)``: the substitute's class probabilities ``(N, C)``.
Posteriors = Callable[[torch.Tensor], torch.Tensor]


def loss_gradient(module: torch.nn.Module) -> Gradient:
    """The exact input gradient of a differentiable substitute's cross-entropy (autograd).

    Args:
        module: The substitute; ``module(x)`` returns logits.

    Returns:
        ``gradient(x, labels)``, the gradient of the summed cross-entropy to ``labels`` with respect to ``x``.
    """

    def gradient(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(module(x), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        return grad

    return gradient


def zoo_gradient(posteriors: Posteriors, *, h: float, chunk: int = 65_536) -> Gradient:
    """ZOO's gradient estimate: symmetric difference quotients, one coordinate at a time (Chen et al., 2017).

    Coordinate ``j`` of the gradient of ``f(x) = CE(posteriors(x), label)`` is estimated as
    ``(f(x + h e_j) - f(x - h e_j)) / (2h)`` (Chen et al., "ZOO: Zeroth Order Optimization Based
    Black-box Attacks to Deep Neural Networks without Training Substitute Models", equation 6).
    It needs only the model's posteriors, so it applies to models without gradients (trees).
    All coordinates are estimated (tabular inputs have few); ``2 d`` evaluations per input.

    Args:
        posteriors: The model's class probabilities ``(N, C)`` for inputs ``(N, *shape)``.
        h: The difference step (the paper selects it from ``{1e-4, 1e-3, 1e-2, 0.1}``).
        chunk: Most inputs evaluated in one call of ``posteriors``.

    Returns:
        ``gradient(x, labels)``, the estimate for each input, shaped like ``x``.
    """

    def loss(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        p = torch.cat([posteriors(part) for part in torch.split(x, chunk)]) if len(x) else x.new_zeros(0, 1)
        return -torch.log(p.gather(1, labels[:, None]).squeeze(1).double().clamp_min(1e-30))

    def gradient(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        n, shape = x.shape[0], x.shape[1:]
        d = math.prod(shape)
        flat = x.detach().reshape(n, d)
        grad = torch.empty(n, d, dtype=torch.float64, device=x.device)
        step = max(1, chunk // max(1, 2 * n))  # coordinates per batch of evaluations
        with torch.no_grad():
            for start in range(0, d, step):
                coords = torch.arange(start, min(d, start + step), device=x.device)
                k = len(coords)
                offset = torch.zeros(k, d, dtype=flat.dtype, device=x.device)
                offset[torch.arange(k), coords] = h
                probes = torch.cat([flat[None] + offset[:, None], flat[None] - offset[:, None]])  # (2k, n, d)
                values = loss(probes.reshape(-1, *shape), labels.repeat(2 * k)).reshape(2, k, n)
                grad[:, coords] = ((values[0] - values[1]) / (2.0 * h)).T
        return grad.to(x.dtype).reshape(x.shape)

    return gradient


def ifgsm(
    gradient: Gradient, x: torch.Tensor, labels: torch.Tensor, *, eps: float, steps: int, ascend: bool = True
) -> torch.Tensor:
    """Iterative FGSM in the L-infinity ball of radius ``eps`` (Kurakin et al., 2017), step ``eps / steps``.

    Args:
        gradient: The loss gradient with respect to the input (:func:`loss_gradient` or :func:`zoo_gradient`).
        x: Inputs ``(N, *shape)``.
        labels: The class whose cross-entropy each step changes.
        eps: L-infinity radius around ``x``.
        steps: Sign-gradient steps ``k``.
        ascend: ``True``: increase the loss of ``labels`` (untargeted); ``False``: decrease it (targeted).

    Returns:
        The perturbed inputs, each within ``eps`` of its origin in every coordinate.
    """
    step = (eps / steps) if ascend else -(eps / steps)
    x_adv = x.detach().clone()
    for _ in range(steps):
        x_adv = x_adv + step * gradient(x_adv, labels).sign()
        x_adv = torch.minimum(torch.maximum(x_adv, x - eps), x + eps)
    return x_adv.detach()


class JacobianAugmentation(Attack):
    """Jacobian-based augmentation (JBA): a seed set grown by adversarial steps on the substitute.

    The attack of Papernot et al. (AsiaCCS 2017, section 4.2) with the I-FGSM augmentation of PRADA
    (Juuti et al., EuroS&P 2019), as "Stolen Risks of Models with Security Properties" (Qin et al.,
    CCS 2023, section 3.2 and Algorithm 1) runs it under a query budget ``Q``:

    1. Draw the seed set of ``seed_size`` rows: from the defender's training rows (JBA(P),
       ``seed_source="partial"``, the paper's ``D_aux^P``) or from the adversary's rows (JBA(X),
       ``seed_source="external"``, ``D_aux^X``). Query the target on it; its true labels are not used.
    2. Train a freshly initialised substitute on every labelled input (the target's posteriors).
    3. Augment every labelled input once: I-FGSM on the substitute, ``steps`` sign steps of size
       ``eps / steps`` in the L-infinity ball of radius ``eps``, increasing the cross-entropy of the
       target's label (``variant="untargeted"``, the paper's "increasing the classification loss"),
       or decreasing that of a random other class (``variant="random_target"``, PRADA's T-RND-I-FGSM).
       Query the target on the new inputs and add them to the labelled set.
    4. Repeat 2-3 until ``query_budget`` queries are spent, seed included. Each round doubles the
       set, so ``Q = 200`` and 50 seeds give the paper's ``log2(Q / |D_aux|) = 2`` rounds; a round the
       budget cuts short augments a random subset (Papernot et al.'s reservoir sampling). Then train
       the final substitute on everything.

    ``gradient="ifgsm"`` takes the substitute's exact input gradient (autograd); ``gradient="zoo"``
    estimates it from the substitute's posteriors alone by symmetric difference quotients (ZOO, Chen et
    al., AISec 2017), as the paper does for non-differentiable models, and spends no query of the
    target. Both feed the same I-FGSM steps.

    Examples:
        With ``task`` a partitioned task, ``target`` the defender's model and ``context`` naming
        the scenario's architecture::

            stolen = JacobianAugmentation(seed_source="external").run(target, data=task, context=context)
            assert stolen.queries == 200
    """

    name = "jba"
    summary = "seed set grown by I-FGSM steps on the substitute, labelled by the target (Papernot et al., 2017)"
    risks = ("S3",)
    Input = QueryAccess
    Output = SurrogateModel
    access = "black-box"
    knowledge = "partial"  # seed_source="partial" draws the target's training rows; "external" the adversary's
    conformance_params = {"epochs": 2}

    class Params(Params):
        """Hyper-parameters of :class:`JacobianAugmentation`.

        Attributes:
            seed_source: ``partial``: the seed set is drawn from the defender's training rows (JBA(P));
                ``external``: from the adversary's rows (JBA(X)).
            seed_size: Rows in the seed set (the paper's ``|D_aux| = 50``).
            query_budget: Inputs sent to the target, exactly, the seed set's included (``Q = 200``).
            gradient: ``ifgsm``: the substitute's autograd gradient; ``zoo``: ZOO's symmetric difference
                quotients on the substitute's posteriors (for substitutes without gradients).
            variant: ``untargeted``: increase the cross-entropy of the target's label (the paper);
                ``random_target``: decrease that of a class drawn at random among the others (PRADA's
                T-RND-I-FGSM; the same direction with two classes).
            eps: L-infinity radius of the perturbation. The paper selects it per victim from 0.01 to
                0.5; 0.1 is ours (Papernot et al.'s ``lambda = 0.1``), see ``docs/attacks.md``.
            steps: I-FGSM steps ``k`` (the paper's 5), each of size ``eps / steps``.
            zoo_h: ZOO's difference step ``h`` (the paper selects it from ``{1e-4, 1e-3, 1e-2, 0.1}``;
                1e-4 is Chen et al.'s).
            loss: The substitute's loss on the target's answers: ``kl``, ``mse`` or ``ce`` (as the
                data-free attacks of :mod:`interplay_stolen_risks.query_attacks`).
            substitute: The substitute's family: ``network``, ``xgboost`` or ``auto`` (``xgboost``
                when the target's ``model_family`` fact is ``xgboost``). An XGBoost substitute has no
                input gradient, so its augmentation always takes ZOO's estimate (``gradient`` is then
                ``zoo`` whatever it says; ``info["gradient"]`` records the one used).
            architecture: Model factory of the substitute; ``None`` uses the scenario's.
            architecture_params: Parameters of that factory.
            epochs: Training epochs of the substitute in every round; ``None`` uses the scenario recipe's.
            lr: Learning rate; ``None`` uses the scenario recipe's.
            batch_size: Mini-batch size; ``None`` uses the scenario recipe's.
        """

        seed_source: SeedSource = "partial"
        seed_size: int = Field(default=PAPER_AUX_SIZE, ge=1)
        query_budget: int = Field(default=200, ge=1)
        gradient: GradientMethod = "ifgsm"
        variant: Variant = "untargeted"
        eps: float = Field(default=0.1, gt=0, allow_inf_nan=False)
        steps: int = Field(default=5, ge=1)
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
                raise ValueError(
                    f"seed_size ({self.seed_size}) exceeds query_budget ({self.query_budget}): "
                    "querying the seed set is part of the budget"
                )
            return self

    params: JacobianAugmentation.Params

    def run(
        self, target: QueryAccess, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> SurrogateModel:
        """Query ``target`` on the seed set and its augmentations, ``query_budget`` inputs in all.

        Args:
            target: Black-box access to the target (a wider access is narrowed to this).
            data: The partitioned task: the seed set comes from its defender rows (``partial``) or
                its adversary rows (``external``).
            context: Seed, device, the scenario's architecture and training recipe.

        Returns:
            The substitute (``train_indices``: the seed rows of the partitioned split) and the number of queries.

        Raises:
            ConfigError: When no model factory is available for the substitute.
            ArtifactError: When ``data`` is missing, has no partition or too few rows for the seed set,
                or the target returns malformed posteriors.
        """
        context = context if context is not None else RunContext()
        p = self.params
        path = f"{self.name}.params.architecture"  # configuration errors before any query is spent
        trees = substitute_kind(p.substitute, target) == "xgboost"
        factory = None if trees else context.model_factory(p.architecture, p.architecture_params, path=path)
        gradient = "zoo" if trees else p.gradient  # trees have no input gradient: ZOO's estimate
        indices = self._seed_indices(data, context)
        assert data is not None and data.partition is not None  # checked by _seed_indices
        generator = context.generator(self.name, "augmentation")
        recipe = context.recipe.overridden_by(self.params)

        def ask(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return target.query(x).detach().to(device="cpu", dtype=torch.float32)

        def train(x: torch.Tensor, posteriors: torch.Tensor, round_: int) -> torch.nn.Module:
            # Algorithm 1 of the paper re-initialises the substitute before every training.
            return fit_substitute(
                context, target, x, posteriors, params=p, name=self.name, round_=round_, factory=factory
            )

        x = data.splits[data.partition.split].x[indices].to(torch.float32)
        posteriors = ask(x)
        rounds = 0
        while len(x) < p.query_budget:
            module = train(x, posteriors, rounds)
            chosen = torch.arange(len(x))
            if len(x) > p.query_budget - len(x):  # the last round augments a random subset
                chosen = torch.randperm(len(x), generator=generator)[: p.query_budget - len(x)].sort().values
            labels = posteriors[chosen].argmax(dim=1)
            x_new = self._augment(
                module, x[chosen], labels, target.num_classes, generator, device=context.device, gradient=gradient
            )
            x, posteriors = torch.cat([x, x_new]), torch.cat([posteriors, ask(x_new)])
            rounds += 1
        module = train(x, posteriors, rounds)
        substitute = TrainedModel(
            module=module,
            num_classes=target.num_classes,
            input_shape=target.input_shape,
            recipe=recipe if factory is not None else None,
            train_indices=indices,
            architecture=factory.name if factory is not None else "xgboost",
            architecture_params=factory.get_params() if factory is not None else {},
            info={
                "attack": self.name,
                "queries": len(x),
                "substitute_loss": p.loss,
                "seed_source": p.seed_source,
                "seed_queries": len(indices),
                "augmentation_queries": len(x) - len(indices),
                "augmentation_rounds": rounds,
                "gradient": gradient,
                "variant": p.variant,
            },
        )
        return SurrogateModel(model=substitute, queries=len(x))

    def _seed_indices(self, data: TaskData | None, context: RunContext) -> torch.Tensor:
        """Rows of the partitioned split that form the seed set: D_aux^P or D_aux^X."""
        p = self.params
        if data is None or data.partition is None:
            raise ArtifactError(
                f"attack {self.name!r} needs data= (a TaskData with a defender/adversary partition) for its seed set"
            )
        if p.seed_source == "partial":
            return partial_seed_indices(data, size=p.seed_size, seed=context.derive_seed(self.name, "seed_set"))
        adversary = data.partition.adversary
        if len(adversary) < p.seed_size:
            raise ArtifactError(
                f"attack {self.name!r}: cannot draw {p.seed_size} seed rows from {len(adversary)} adversary rows"
            )
        order = torch.randperm(len(adversary), generator=context.generator(self.name, "seed_set"))
        drawn: torch.Tensor = adversary[order[: p.seed_size]].sort().values
        return drawn

    def _augment(
        self,
        module: torch.nn.Module,
        x: torch.Tensor,
        labels: torch.Tensor,
        num_classes: int,
        generator: torch.Generator,
        *,
        device: str,
        gradient: GradientMethod | None = None,
    ) -> torch.Tensor:
        """One augmentation of each input: I-FGSM on the substitute, away from the target's label."""
        p = self.params
        ascend = p.variant == "untargeted"
        if not ascend:  # a class drawn uniformly among the other classes
            shift = torch.randint(1, max(2, num_classes), (len(labels),), generator=generator)
            labels = (labels + shift) % num_classes
        estimate = self._gradient(module, gradient)
        x_adv = ifgsm(estimate, x.to(device), labels.to(device), eps=p.eps, steps=p.steps, ascend=ascend)
        return x_adv.to("cpu")

    def _gradient(self, module: torch.nn.Module, method: GradientMethod | None = None) -> Gradient:
        """The substitute's input gradient: exact (``ifgsm``) or ZOO's estimate from its posteriors (``zoo``)."""
        method = method or self.params.gradient
        if method == "ifgsm":
            return loss_gradient(module)
        if method == "zoo":

            def posteriors(x: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    return torch.softmax(module(x).double(), dim=1)

            return zoo_gradient(posteriors, h=self.params.zoo_h)
        raise ConfigError(f"unknown gradient {method!r}", path=f"{self.name}.params.gradient")
