"""Data-free model-stealing (S3) attacks: random query and line search (Tramer et al., 2016).

"Stolen Risks of Models with Security Properties" (Qin et al., CCS 2023, section 3.2) steals
models with security properties by substitute-model training under a query budget ``Q = 200``.
Two of its attacks need no data at all; both come from Tramer et al., "Stealing Machine Learning
Models via Prediction APIs" (USENIX Security 2016, section 6):

- **Random query**: "samples Q points x at random following a given distribution", uniform or
  Gaussian, "from the interval [-r, r]";
- **Line search**: "samples random points in the feature space and generates additional data
  using line search between the random points. The line search algorithm generates adaptive
  queries as the mean between two samples crossing the decision boundary."

Each attack queries the black-box target exactly ``query_budget`` times, then trains a substitute
of the scenario's architecture (the attacker "knows the category of the target ML model") on the
target's posteriors for those queries, and returns it as a
:class:`~interplay.artifacts.SurrogateModel`, the artifact interplay's S3 metrics consume.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from interplay import Attack, Params, RunContext
from interplay.artifacts import QueryAccess, SurrogateModel, TaskData, TrainedModel

from ._substitute import Distribution, SubstituteChoice, SubstituteLoss, fit_substitute, sample_queries, substitute_kind

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["LineSearch", "RandomQuery", "boundary_pairs", "search_steps"]


class _QueryStealing(Attack):
    """Shared declaration, parameters and substitute training of the data-free query attacks."""

    __abstract__ = True
    risks = ("S3",)
    Input = QueryAccess
    Output = SurrogateModel
    access = "black-box"
    knowledge = "none"
    conformance_params = {"epochs": 2}

    class Params(Params):
        """Hyper-parameters shared by the data-free query attacks.

        Attributes:
            query_budget: Inputs sent to the target, exactly (the paper's ``Q = 200``).
            distribution: ``uniform`` on ``[-radius, radius]`` per coordinate, or ``gaussian``:
                normal with mean 0 and standard deviation ``std``, truncated to that interval.
            radius: Half-width ``r`` of the query box. The paper searches ``r`` from 1 to 5 in
                steps of 0.5 for each victim; 1 is the bottom of that grid and the ``[-1, 1]`` box
                of Tramer et al.'s query generator. Sweep it in a pipeline to reproduce the search.
            std: Standard deviation of the Gaussian before truncation (Tramer et al. draw standard
                normal queries).
            loss: The substitute's loss on the target's answers: ``kl`` (soft-label cross-entropy,
                as Tramer et al. train extracted networks), ``mse`` or ``ce`` (arg-max labels only).
            substitute: The substitute's family: ``network`` (the factory below), ``xgboost``
                (XGBoost with its defaults, for tree targets), or ``auto``: ``xgboost`` when the
                target's ``model_family`` fact is ``xgboost``, else ``network``.
            architecture: Model factory of the substitute; ``None`` uses the scenario's.
            architecture_params: Parameters of that factory (with ``architecture=None`` they
                override the scenario factory's).
            epochs: Training epochs of the substitute; ``None`` uses the scenario recipe's.
            lr: Learning rate; ``None`` uses the scenario recipe's.
            batch_size: Mini-batch size; ``None`` uses the scenario recipe's.
        """

        query_budget: int = Field(default=200, ge=1)
        distribution: Distribution = "uniform"
        radius: float = Field(default=1.0, gt=0, allow_inf_nan=False)
        std: float = Field(default=1.0, gt=0, allow_inf_nan=False)
        loss: SubstituteLoss = "kl"
        substitute: SubstituteChoice = "auto"
        architecture: str | None = None
        architecture_params: dict[str, Any] = Field(default_factory=dict)
        epochs: int | None = Field(default=100, ge=1)
        lr: float | None = Field(default=None, gt=0)
        batch_size: int | None = Field(default=32, ge=1)

    params: _QueryStealing.Params

    def run(
        self, target: QueryAccess, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> SurrogateModel:
        """Query ``target`` ``query_budget`` times and train a substitute on its posteriors.

        Args:
            target: Black-box access to the target (a wider access is narrowed to this).
            data: Unused: the attack needs no data.
            context: Seed, device, the scenario's architecture and training recipe.

        Returns:
            The substitute (no ``train_indices``: it saw no row of the task) and the number of queries.

        Raises:
            ConfigError: When no model factory is available for the substitute.
            ArtifactError: When the target returns malformed posteriors.
        """
        context = context if context is not None else RunContext()
        path = f"{self.name}.params.architecture"  # configuration errors before any query is spent
        factory = None
        if substitute_kind(self.params.substitute, target) == "network":
            factory = context.model_factory(self.params.architecture, self.params.architecture_params, path=path)
        generator = context.generator(self.name, "queries")

        def ask(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return target.query(x).detach().to(device="cpu", dtype=torch.float32)

        x, posteriors, facts = self._collect(ask, target.input_shape, generator)
        recipe = context.recipe.overridden_by(self.params)
        module = fit_substitute(context, target, x, posteriors, params=self.params, name=self.name, factory=factory)
        substitute = TrainedModel(
            module=module,
            num_classes=target.num_classes,
            input_shape=target.input_shape,
            recipe=recipe if factory is not None else None,
            architecture=factory.name if factory is not None else "xgboost",
            architecture_params=factory.get_params() if factory is not None else {},
            info={"attack": self.name, "queries": len(x), "substitute_loss": self.params.loss, **facts},
        )
        return SurrogateModel(model=substitute, queries=len(x))

    def _sample(self, n: int, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        p = self.params
        return sample_queries(n, shape, distribution=p.distribution, radius=p.radius, std=p.std, generator=generator)

    def _collect(
        self, ask: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
        """Spend the budget: the queried inputs, the target's posteriors and facts to record."""
        raise NotImplementedError


class RandomQuery(_QueryStealing):
    """Random query attack: a substitute trained on the target's answers to random inputs (Tramer et al.).

    The baseline of "Stolen Risks of Models with Security Properties" (Qin et al., CCS 2023,
    section 3.2), after the retraining attacks of Tramer et al. (USENIX Security 2016, section
    6.1): draw ``Q`` inputs at random (uniform on ``[-r, r]^d`` or a truncated Gaussian), ask the
    target for its posteriors, and fit the substitute to them.

    Examples:
        With ``target`` a black-box model and ``context`` naming the scenario's architecture::

            stolen = RandomQuery(distribution="gaussian").run(target, context=context)
            assert stolen.queries == 200
    """

    name = "random_query"
    summary = "substitute trained on the target's posteriors for Q random inputs (Tramer et al., 2016)"

    def _collect(
        self, ask: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
        x = self._sample(self.params.query_budget, shape, generator)
        return x, ask(x), {"random_queries": len(x)}


class LineSearch(_QueryStealing):
    """Line-search attack: random queries, and bisection between inputs the target labels differently.

    Tramer et al.'s line-search retraining (USENIX Security 2016, section 6.1, "a model-agnostic
    generalization of the Lowd-Meek attack"), as their extraction code runs it against binary
    classifiers (``collect_up_to_budget`` and ``push_to_b`` in ``binary-classifiers/algorithms/
    OnlineBase.py``), which "Stolen Risks of Models with Security Properties" (Qin et al., CCS
    2023, section 3.2) uses as its Line Search attack ("generates adaptive queries as the mean
    between two samples crossing the decision boundary"):

    1. Query random inputs one after the other. Each one waits in a queue of its predicted
       label until an input of another label arrives; the two then form a pair (first come,
       first paired, so every input is in at most one pair).
    2. As soon as a pair forms, search the line between its ends: query the midpoint and
       replace the end whose label it shares (the second end when it shares neither), until the
       ends are closer than ``tolerance`` in Tramer et al.'s normalised distance
       ``|a - b| / sqrt(d)``. Then go back to step 1, until ``query_budget`` queries are spent;
       a search the budget cuts short keeps the midpoints it got.
    3. Train the substitute on every answered query: the random inputs and all midpoints
       (Tramer et al. keep only each search's final pair; with posteriors every answer is a
       labelled example, the "additional data" of Qin et al.).

    A search between ends at normalised distance ``D >= tolerance`` takes
    ``floor(log2(D / tolerance)) + 1`` midpoints whatever the answers, so the schedule is
    known from the random inputs' labels alone. The attack therefore queries the random inputs
    in chunks no larger than the sequential procedure is certain to reach, and runs all
    searches side by side, one midpoint per unfinished search per batch: it sends exactly the
    queries of the sequential procedure, in fewer calls. When the target gives every random
    input one label, there is nothing to search and the budget goes to random inputs.

    Examples:
        With ``target`` a black-box model and ``context`` naming the scenario's architecture::

            stolen = LineSearch().run(target, context=context)
            assert stolen.queries == 200
    """

    name = "line_search"
    summary = "random queries refined by bisection across the target's decision boundary (Tramer et al., 2016)"

    class Params(_QueryStealing.Params):
        """Hyper-parameters of :class:`LineSearch` (the shared ones, plus the search's precision).

        Attributes:
            tolerance: A search stops once its ends are closer than this in normalised distance
                ``|a - b| / sqrt(d)``, ``d`` the number of input features (Tramer et al.'s ``e``,
                0.1 in their experiments).
        """

        tolerance: float = Field(default=0.1, gt=0, allow_inf_nan=False)

    params: LineSearch.Params

    def _collect(
        self, ask: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
        budget, tolerance = self.params.query_budget, self.params.tolerance
        scale = math.sqrt(math.prod(shape))
        # No two inputs of the box are further apart than its normalised diagonal 2r.
        most_steps = search_steps(torch.tensor([2.0 * self.params.radius]), tolerance=tolerance)[0]
        inputs: list[torch.Tensor] = []
        answers: list[torch.Tensor] = []
        spent = 0  # queries of the sequential procedure up to the last random input held
        while spent < budget:  # runs at least once: the budget is positive
            # Each further random input costs at most 1 + most_steps, so the sequential procedure
            # surely queries all of the next `chunk` ones (it goes on while less than the budget is spent).
            chunk = (budget - spent - 1) // (1 + int(most_steps)) + 1
            inputs.append(self._sample(chunk, shape, generator))
            answers.append(ask(inputs[-1]))
            x, posteriors = torch.cat(inputs), torch.cat(answers)
            first, second = boundary_pairs(posteriors.argmax(dim=1))
            distance = (x[first] - x[second]).flatten(1).norm(dim=1) / scale
            steps = search_steps(distance, tolerance=tolerance)
            spent = len(x) + int(steps.sum())
        n_random = len(x)
        # The searches in the order their pairs formed; the budget cuts the last one short.
        allowed = torch.clamp(budget - n_random - (torch.cumsum(steps, 0) - steps), min=0)
        steps = torch.minimum(steps, allowed)
        x_mid, p_mid = _bisect(ask, x, posteriors, first, second, steps)
        facts = {"random_queries": n_random, "line_search_queries": len(x_mid), "line_searches": int((steps > 0).sum())}
        return torch.cat([x, x_mid]), torch.cat([posteriors, p_mid]), facts


def boundary_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair inputs of different predicted labels, first come first paired (Tramer et al.'s queues).

    Inputs are taken in query order. An input waits in the queue of its label until an input
    of another label arrives; the newcomer is paired with the longest-waiting input of the other
    labels. With two labels this is Tramer et al.'s pairing of a negative and a positive queue.

    Args:
        labels: Predicted labels ``(N,)`` in query order.

    Returns:
        ``(first, second)`` index tensors in the order the pairs formed: ``first[k]`` waited,
        ``second[k]`` arrived, and their labels differ. Every input is in at most one pair.
    """
    queues: dict[int, list[int]] = {}
    first: list[int] = []
    second: list[int] = []
    for i, label in enumerate(labels.tolist()):
        waiting = [(queue[0], other) for other, queue in queues.items() if other != label and queue]
        if waiting:
            j, other = min(waiting)
            queues[other].pop(0)
            first.append(j)
            second.append(i)
        else:
            queues.setdefault(label, []).append(i)
    return torch.tensor(first, dtype=torch.long), torch.tensor(second, dtype=torch.long)


def search_steps(distance: torch.Tensor, *, tolerance: float) -> torch.Tensor:
    """Midpoints a line search queries before its ends are closer than ``tolerance``.

    Each midpoint halves the distance, so ends at distance ``D`` take ``floor(log2(D / tolerance)) + 1``
    midpoints when ``D >= tolerance`` and none otherwise.
    """
    ratio = distance.double() / tolerance
    steps = torch.floor(torch.log2(ratio.clamp(min=1.0))).long() + 1
    return torch.where(ratio >= 1.0, steps, torch.zeros_like(steps))


def _bisect(
    ask: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    posteriors: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor,
    steps: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``steps[k]`` bisections between ``x[first[k]]`` and ``x[second[k]]``, all pairs side by side.

    Returns:
        The midpoints queried and the target's answers, round by round.
    """
    a, b = x[first].clone(), x[second].clone()
    label_a = posteriors[first].argmax(dim=1)
    queried, answers = [x[:0]], [posteriors[:0]]
    for step in range(int(steps.max()) if len(steps) else 0):
        active = (steps > step).nonzero().squeeze(1)
        mid = 0.5 * (a[active] + b[active])
        answer = ask(mid)
        same = answer.argmax(dim=1) == label_a[active]
        a[active[same]] = mid[same]
        b[active[~same]] = mid[~same]
        queried.append(mid)
        answers.append(answer)
    return torch.cat(queried), torch.cat(answers)
