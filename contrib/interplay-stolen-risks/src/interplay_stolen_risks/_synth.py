"""The base attacks' synthesis steps, as MaskedThief (Algorithm 1 of Stolen Risks) and the MixMatch baseline call them.

Each synthesiser gives a seed set ``X_seed`` and, once per round, one synthesised input per labelled
input (``x' = SYNTHESIZE(x, F_S, ...)`` for ``x`` in ``X_T``), reusing the base attacks' own code:

- ``uniform`` / ``gaussian``: fresh random inputs (:func:`~interplay_stolen_risks._substitute.sample_queries`);
- ``line_search``: Tramer et al.'s bisection between inputs of different labels
  (``query_attacks.boundary_pairs`` and ``query_attacks.search_steps``):
  the midpoints of the unfinished searches first, then random inputs, which pair up for new searches;
- ``jba``: I-FGSM steps on the substitute away from each input's label
  (:meth:`~interplay_stolen_risks.jba.JacobianAugmentation` with its seed sets JBA(P) / JBA(X)).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch

from ._substitute import Distribution, sample_queries
from .jba import JacobianAugmentation
from .query_attacks import boundary_pairs, search_steps

if TYPE_CHECKING:
    from interplay import RunContext
    from interplay.artifacts import TaskData

__all__ = ["Base", "Synthesiser", "synthesiser"]

Base = Literal["uniform", "gaussian", "line_search", "jba"]


class Synthesiser:
    """Random inputs: the seed set and every round's inputs are drawn afresh (``uniform``/``gaussian``).

    Args:
        n_seed: Size of the seed set.
        shape: Shape of one input.
        distribution: ``uniform`` or ``gaussian`` (truncated to ``[-radius, radius]``).
        radius: Half-width of the query box.
        std: Standard deviation of the Gaussian.
        generator: Source of randomness.
    """

    #: Whether :meth:`synthesise` uses the substitute (the attack trains one before every round).
    needs_substitute = False

    def __init__(
        self,
        n_seed: int,
        shape: tuple[int, ...],
        *,
        distribution: Distribution,
        radius: float,
        std: float,
        generator: torch.Generator,
    ) -> None:
        self.n_seed, self.shape, self.generator = n_seed, shape, generator
        self.distribution, self.radius, self.std = distribution, radius, std

    def _random(self, n: int) -> torch.Tensor:
        return sample_queries(
            n,
            self.shape,
            distribution=self.distribution,
            radius=self.radius,
            std=self.std,
            generator=self.generator,
        )

    def seed(self) -> torch.Tensor:
        """The seed set ``X_seed``."""
        return self._random(self.n_seed)

    def synthesise(self, x: torch.Tensor, labels: torch.Tensor, module: torch.nn.Module | None) -> torch.Tensor:
        """One synthesised input per labelled input ``x`` (labels: the labelled set's, queried or inferred)."""
        return self._random(len(x))

    def learn_seed(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        """Learn the target's labels of the seed set."""

    def update(self, x_new: torch.Tensor, labels_new: torch.Tensor) -> None:
        """Learn the labels of the inputs :meth:`synthesise` returned (queried or inferred), in order."""


class LineSearchSynthesiser(Synthesiser):
    """Tramer et al.'s line search: midpoints of unfinished searches first, then random inputs that pair up.

    Args:
        tolerance: A search stops once its ends are closer than this in normalised distance.
        (the others as :class:`Synthesiser`)
    """

    def __init__(self, *args: object, tolerance: float, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.tolerance = tolerance
        self.scale = math.sqrt(math.prod(self.shape))
        self.random_x: list[torch.Tensor] = []
        self.random_labels: list[torch.Tensor] = []
        self.a = torch.zeros(0, *self.shape)
        self.b = torch.zeros(0, *self.shape)
        self.label_a = torch.zeros(0, dtype=torch.long)
        self.left = torch.zeros(0, dtype=torch.long)  # midpoints still to query per search
        self._pending: tuple[int, int] = (0, 0)  # (midpoints, random inputs) of the last synthesis

    def synthesise(self, x: torch.Tensor, labels: torch.Tensor, module: torch.nn.Module | None) -> torch.Tensor:
        active = (self.left > 0).nonzero().squeeze(1)[: len(x)]
        mid = 0.5 * (self.a[active] + self.b[active])
        self._active = active
        random = self._random(len(x) - len(active))
        self._pending = (len(active), len(random))
        return torch.cat([mid, random])

    def update(self, x_new: torch.Tensor, labels_new: torch.Tensor) -> None:
        n_mid, n_random = self._pending
        n_mid, n_random = min(n_mid, len(x_new)), max(0, min(n_random, len(x_new) - n_mid))
        active = self._active[:n_mid]
        mid, label_mid = x_new[:n_mid], labels_new[:n_mid]
        same = label_mid == self.label_a[active]
        self.a[active[same]] = mid[same]
        self.b[active[~same]] = mid[~same]
        self.left[active] -= 1
        self.record_random(x_new[n_mid : n_mid + n_random], labels_new[n_mid : n_mid + n_random])

    def learn_seed(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        self.record_random(x, labels)

    def record_random(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        """Queue random inputs by label; pairs of different labels start new searches (first come, first paired)."""
        before = sum(len(r) for r in self.random_x)
        self.random_x.append(x)
        self.random_labels.append(labels)
        all_x, all_labels = torch.cat(self.random_x), torch.cat(self.random_labels)
        first, second = boundary_pairs(all_labels)
        new = second >= before  # pairing a prefix is stable: the pairs completed by the new inputs
        first, second = first[new], second[new]
        distance = (all_x[first] - all_x[second]).flatten(1).norm(dim=1) / self.scale
        self.a = torch.cat([self.a, all_x[first]])
        self.b = torch.cat([self.b, all_x[second]])
        self.label_a = torch.cat([self.label_a, all_labels[first]])
        self.left = torch.cat([self.left, search_steps(distance, tolerance=self.tolerance)])


class JBASynthesiser(Synthesiser):
    """JBA's augmentation: the seed set from the defender's or the adversary's rows, I-FGSM on the substitute.

    Args:
        jba: The JBA attack whose seed set and augmentation step are used.
        data: The partitioned task.
        context: The run's context (seeds the seed set as JBA does).
        num_classes: Number of classes.
        generator: Source of randomness.
    """

    needs_substitute = True

    def __init__(
        self,
        jba: JacobianAugmentation,
        data: TaskData | None,
        context: RunContext,
        num_classes: int,
        generator: torch.Generator,
    ) -> None:
        self.jba, self.context, self.num_classes, self.generator = jba, context, num_classes, generator
        self.indices = jba._seed_indices(data, context)
        assert data is not None and data.partition is not None  # checked by _seed_indices
        self.seed_x = data.splits[data.partition.split].x[self.indices].to(torch.float32)

    def seed(self) -> torch.Tensor:
        seed_x: torch.Tensor = self.seed_x
        return seed_x

    def synthesise(self, x: torch.Tensor, labels: torch.Tensor, module: torch.nn.Module | None) -> torch.Tensor:
        assert module is not None
        out: torch.Tensor = self.jba._augment(
            module, x, labels, self.num_classes, self.generator, device=self.context.device
        )
        return out


def synthesiser(
    base: Base,
    *,
    n_seed: int,
    shape: tuple[int, ...],
    num_classes: int,
    radius: float,
    std: float,
    tolerance: float,
    jba: JacobianAugmentation,
    data: TaskData | None,
    context: RunContext,
    generator: torch.Generator,
) -> Synthesiser:
    """The synthesiser of ``base`` (``uniform``, ``gaussian``, ``line_search`` or ``jba``)."""
    if base == "jba":
        return JBASynthesiser(jba, data, context, num_classes, generator)
    distribution: Distribution = "gaussian" if base == "gaussian" else "uniform"
    if base == "line_search":
        return LineSearchSynthesiser(
            n_seed, shape, distribution=distribution, radius=radius, std=std, generator=generator, tolerance=tolerance
        )
    return Synthesiser(n_seed, shape, distribution=distribution, radius=radius, std=std, generator=generator)
