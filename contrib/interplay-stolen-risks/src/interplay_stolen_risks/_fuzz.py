"""BoundaryFuzz, the privacy property of Stolen Risks, as a DL2 constraint, and its parameter selection.

Stolen Risks (Qin et al., CCS 2023, section 5.1, Property 5) asks that a model be uncertain on the
queries near its decision boundary. Its DL2 form (section 5.2, moderate generalizability) is

    for x in X_tr, x~ in B_eps(x):
        argmax f(x~) != argmax f(x~ + s Delta e_i) for some i and s in {-1, +1}
            => ||F(x~)||_2 < sqrt(e^epsilon / (e^epsilon + 1))

where ``f`` is the logits, ``F`` the posterior and ``e_i`` the i-th unit vector (the axis probes of
Zheng et al.'s sensitive queries). DL2 has no ``argmax`` term: its query language writes
``class(N(x)) = c`` as ``and_{k != c} N(x)_k < N(x)_c``. With ``c = argmax f(x~)`` (a constant of
the evaluation, as DL2's labels are), the premise "some probe leaves class c" is
``or_{i, s} or_{k != c} f(x~ + s Delta e_i)_k >= f(x~ + s Delta e_i)_c``, and the implication
``not premise or conclusion`` has the DL2 loss
``[sum_{i, s, k != c} max(f_k - f_c, 0) (+ [f_k = f_c])] * max(||F(x~)||_2 - bound, 0)`` (plus the
equality term of the strict ``<``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch.nn import functional as F

from ._dl2 import _NEGATION, Cmp, Formula, Implication, Op, Search, search
from .properties import evaluation_mode

__all__ = [
    "DELTA_FLOOR",
    "DELTA_START",
    "EPSILON_START",
    "FuzzConstraint",
    "Selection",
    "Trial",
    "check_constants",
    "fuzz_bound",
    "next_epsilon",
    "select_parameters",
]

#: Where the paper's selection starts Delta, and the value at which it stops halving it.
DELTA_START, DELTA_FLOOR = 0.1, 0.01
#: Where each epsilon schedule starts: ``multiply`` (x10 up to 0.1) and ``add`` (the DL2 variant: +1).
EPSILON_START: dict[str, float] = {"multiply": 0.001, "add": 1.0}
EPSILON_CAP_MULTIPLY = 0.1
EpsilonSchedule = Literal["add", "multiply"]


def check_constants(delta: object, epsilon: object) -> None:
    """Raise ``ValueError`` naming ``delta`` or ``epsilon`` unless each is a positive finite number or ``"auto"``."""
    for name, value in (("delta", delta), ("epsilon", epsilon)):
        if value != "auto" and not (isinstance(value, float) and 0 < value < float("inf")):
            raise ValueError(f"{name} must be a positive number or 'auto', got {value!r}")


def fuzz_bound(epsilon: float) -> float:
    """The bound ``sqrt(e^epsilon / (e^epsilon + 1))`` on ``||F(x)||_2`` (Property 5)."""
    return math.sqrt(1.0 / (1.0 + math.exp(-epsilon)))


@dataclass(frozen=True)
class _Every(Formula):
    """``a[:, j] op b[:, j]`` for every column ``j``: a row-wise DL2 conjunction (sum of the losses)."""

    a: torch.Tensor
    op: Op
    b: torch.Tensor

    def loss(self) -> torch.Tensor:
        """Sum over the columns of the comparisons' losses."""
        return Cmp(self.a, self.op, self.b).loss().sum(1)

    def holds(self) -> torch.Tensor:
        """Every column's comparison holds."""
        return Cmp(self.a, self.op, self.b).holds().all(1)

    def violation(self) -> torch.Tensor:
        """The largest violation of a column."""
        return Cmp(self.a, self.op, self.b).violation().amax(1)

    def negate(self) -> Formula:
        """Some column's negated comparison."""
        return _Some(self.a, _NEGATION[self.op], self.b)


@dataclass(frozen=True)
class _Some(Formula):
    """``a[:, j] op b[:, j]`` for some column ``j``: a row-wise DL2 disjunction (product of the losses)."""

    a: torch.Tensor
    op: Op
    b: torch.Tensor

    def loss(self) -> torch.Tensor:
        """Product over the columns of the comparisons' losses."""
        return Cmp(self.a, self.op, self.b).loss().prod(1)

    def holds(self) -> torch.Tensor:
        """Some column's comparison holds."""
        return Cmp(self.a, self.op, self.b).holds().any(1)

    def violation(self) -> torch.Tensor:
        """The smallest violation of a column."""
        return Cmp(self.a, self.op, self.b).violation().amin(1)

    def negate(self) -> Formula:
        """Every column's negated comparison."""
        return _Every(self.a, _NEGATION[self.op], self.b)


def _probes(z: torch.Tensor, delta: float) -> torch.Tensor:
    """``z + s delta e_i`` for every feature ``i`` and sign ``s``: ``(N, 2D, *shape)``."""
    shape = z.shape[1:]
    d = int(torch.tensor(shape).prod()) if shape else 1
    steps = torch.eye(d, dtype=z.dtype, device=z.device) * delta
    steps = torch.cat([steps, -steps]).reshape(2 * d, *shape)
    return z[:, None] + steps[None]


@dataclass(frozen=True)
class FuzzConstraint:
    """The BoundaryFuzz constraint with its constants and the search for its free variable ``x~``.

    Attributes:
        delta: Probe length ``Delta`` along each axis.
        epsilon: Privacy level; the posterior's L2 norm must stay below :func:`fuzz_bound` of it.
        settings: The search for ``x~`` in the L-infinity ball around each row (DL2's oracle).
    """

    delta: float
    epsilon: float
    settings: Search = field(default_factory=lambda: Search(0.3, 0.01, 50))
    #: The constraint is on single rows, not pairs.
    paired: bool = False

    def formula(self, module: torch.nn.Module, z: torch.Tensor) -> Formula:
        """``premise => ||F(z)||_2 < bound`` at the points ``z``; the returned ``Or``'s parts are its two sides.

        The first part is the negated premise (every probe keeps ``z``'s class), the second the
        conclusion, whose ``a`` is ``||F(z)||_2``.
        """
        logits = module(z)
        c = logits.argmax(1).detach()
        probes = _probes(z, self.delta)
        n, k = probes.shape[:2]
        out = module(probes.reshape(n * k, *z.shape[1:])).reshape(n, k, -1)
        classes = out.shape[-1]
        own = out.gather(2, c[:, None, None].expand(n, k, 1))
        rest = torch.arange(classes - 1, device=z.device)[None, :]
        rest = rest + (rest >= c[:, None]).long()  # the classes other than c, per row
        others = out.gather(2, rest[:, None, :].expand(n, k, classes - 1))
        flips = _Some(others.reshape(n, -1), ">=", own.expand(n, k, classes - 1).reshape(n, -1))
        norm = torch.linalg.vector_norm(F.softmax(logits, dim=1), dim=1)
        return Implication(flips, Cmp(norm, "<", torch.full_like(norm, fuzz_bound(self.epsilon))))

    def constraint(
        self,
        module: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        partner: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Formula:
        """The constraint at the most violating ``x~`` the search finds in each row's ball (``y`` unused).

        The search runs in evaluation mode; the returned formula is evaluated in the module's
        current mode and keeps the gradient with respect to its parameters.
        """

        def at(z: Sequence[torch.Tensor]) -> Formula:
            return self.formula(module, z[0])

        with evaluation_mode(module):
            (worst,) = search(at, (x,), self.settings, generator=generator)
        return self.formula(module, worst)


def next_epsilon(epsilon: float, schedule: EpsilonSchedule) -> float | None:
    """The looser epsilon the selection tries next, or ``None`` when the schedule is exhausted."""
    if schedule == "add":
        return epsilon + 1.0
    raised = epsilon * 10
    return raised if raised <= EPSILON_CAP_MULTIPLY * (1 + 1e-9) else None


@dataclass(frozen=True)
class Trial:
    """One training of the selection: its constants and whether it was successfully trained."""

    delta: float
    epsilon: float
    success: bool


@dataclass(frozen=True)
class Selection:
    """The outcome of :func:`select_parameters`: the chosen trial (``None`` if none succeeded) and every trial."""

    chosen: Trial | None
    trials: tuple[Trial, ...]


def select_parameters(
    train: Callable[[float, float], bool],
    *,
    delta: float | None,
    epsilon: float | None,
    schedule: EpsilonSchedule = "multiply",
    max_trainings: int = 4,
) -> Selection:
    """Stolen Risks' selection of ``Delta`` and ``epsilon`` (section 5.2), capped at ``max_trainings``.

    Start at ``Delta = 0.1`` and the schedule's first epsilon (``0.001`` for ``multiply``, ``1``
    for ``add``). After a success, double ``Delta`` ("to involve more suspicious samples"); after
    a failure, halve it ("to loosen the constraint"), down to ``0.01``. When training fails at
    ``Delta = 0.01``, loosen epsilon (x10 up to 0.1, or +1) and go on. The search stops when a
    doubling fails after a success (the last success is the largest ``Delta`` that trains), when
    nothing is left to loosen, or at the cap. A fixed ``delta`` (or ``epsilon``) is not tuned.

    Args:
        train: Trains with ``(delta, epsilon)`` and says whether it was successfully trained.
        delta: A fixed Delta, or ``None`` to select it.
        epsilon: A fixed epsilon, or ``None`` to select it.
        schedule: How epsilon is loosened.
        max_trainings: The most trainings tried.

    Returns:
        The chosen trial (the last success) and every trial in order.
    """
    d = DELTA_START if delta is None else delta
    e = EPSILON_START[schedule] if epsilon is None else epsilon
    trials: list[Trial] = []
    chosen: Trial | None = None
    while len(trials) < max_trainings:
        trial = Trial(d, e, train(d, e))
        trials.append(trial)
        if trial.success:
            chosen = trial
            if delta is not None:  # only epsilon is tuned: the first success is the tightest
                break
            d = d * 2
            continue
        if chosen is not None and delta is None:  # the doubling failed: keep the last success
            break
        if delta is None and d > DELTA_FLOOR * (1 + 1e-9):
            d = max(d / 2, DELTA_FLOOR)
            continue
        looser = next_epsilon(e, schedule) if epsilon is None else None
        if looser is None:
            break
        e = looser
    return Selection(chosen, tuple(trials))
