"""LogicEnsemble's booster-fixer loop with verified budgets, and the bounds it keeps (SmallNeighborhood, BoundaryFuzz).

Each round boosts one XGBoost tree per class from the ensemble's current margin (the booster);
the fixer scales the new trees by the largest factor in ``[0, 1]`` for which every
:class:`Budget`'s verified bound on the whole ensemble stays below its share of the budget after
round ``r``, ``limit * (r + 1) / n_estimators``, so below ``limit`` at the end. Scaling a
monotone tree by a positive factor keeps it monotone, so XGBoost's monotone constraints survive.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._trees import booster_splits, feature_window_maxima, intercept, train_round, tree_margins

__all__ = ["Budget", "Fixed", "Split", "axis_bound", "boost_and_fix", "fuzz_margin", "largest_scale"]

#: One tree's splits: ``(features, thresholds, scaled subtree ranges, class)``.
Split = tuple[np.ndarray, np.ndarray, np.ndarray, int]


@dataclass(frozen=True)
class Budget:
    """A verified bound on an ensemble's splits and the value it must stay below (strictly).

    Attributes:
        name: What the bound verifies (``small_neighborhood``, ``boundary_fuzz``).
        bound: The bound of a list of :data:`Split`.
        limit: Its budget after the last round.
    """

    name: str
    bound: Callable[[Sequence[Split]], float]
    limit: float


@dataclass
class Fixed:
    """What the loop kept: boosters, their scales, the constant margin and the training rows' margins."""

    boosters: list[Any]
    scales: list[float]
    bias: np.ndarray
    margin: np.ndarray
    bounds: dict[str, float] = field(default_factory=dict)


def axis_bound(trees: Sequence[Split], delta: np.ndarray) -> float:
    """A verified bound on ``|m(x) - m(x + s e_i)|`` over all ``x``, features ``i`` and ``|s| <= delta_i``.

    Only feature ``i`` moves, so only the splits on ``i`` whose thresholds lie in one window of
    width ``delta_i`` can separate the two inputs, each changing its tree by at most the range of
    the subtree it roots (:func:`~interplay_stolen_risks._trees.booster_splits`). Two-class
    ensembles (one margin).
    """
    return max(feature_window_maxima(trees, delta, 0), default=0.0)


def fuzz_margin(epsilon: float) -> float:
    """The margin ``tau`` with ``|m| < tau  <=>  ||F||_2 < sqrt(e^eps / (e^eps + 1))`` for a logistic posterior.

    With ``F = (1 - p, p)`` and ``p = sigmoid(m)``, ``||F||_2^2 = 1/2 + 2 (p - 1/2)^2`` and
    ``p - 1/2 = tanh(m / 2) / 2``, so the bound reads ``|tanh(m / 2)| < sqrt(tanh(eps / 2))``.
    """
    return 2.0 * math.atanh(math.sqrt(math.tanh(epsilon / 2.0)))


def largest_scale(accepted: list[Split], new: list[Split], budgets: Sequence[tuple[Budget, float]]) -> float:
    """The largest factor in ``[0, 1]`` (to 1e-4) keeping every bound below its share (bisection)."""

    def fits(s: float) -> bool:
        trees = accepted + [(f, t, ranges * s, k) for f, t, ranges, k in new]
        return all(budget.bound(trees) < share for budget, share in budgets)

    if fits(1.0):
        return 1.0
    low, high = 0.0, 1.0
    while high - low > 1e-4:
        mid = 0.5 * (low + high)
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def boost_and_fix(
    x: np.ndarray,
    labels: np.ndarray,
    *,
    params: dict[str, Any],
    seed: int,
    n_estimators: int,
    budgets: Sequence[Budget],
    jitter: np.ndarray,
    min_scale: float,
    monotone: Sequence[int] | None = None,
) -> Fixed:
    """Booster-fixer rounds on one-hot ``labels`` until ``n_estimators`` or a scale below ``min_scale``.

    Args:
        x: Training inputs ``(N, d)``.
        labels: One-hot labels ``(N, C)``.
        params: XGBoost's parameters (:data:`~interplay_stolen_risks._trees.XGB_DEFAULTS` names).
        seed: Seeds XGBoost (``seed + r`` in round ``r``) and the jitter.
        n_estimators: The most rounds.
        budgets: The verified bounds to keep.
        jitter: Per-feature half-width of the uniform noise moving each round's booster inputs.
        min_scale: Boosting stops when a round's trees would be scaled below this.
        monotone: XGBoost's monotone constraints per feature, or ``None``.
    """
    c = labels.shape[1]
    width = 1 if c == 2 else c
    bias = intercept(labels)
    margin = np.broadcast_to(bias, (len(x), width)).copy()
    accepted: list[Split] = []
    fixed = Fixed([], [], bias, margin)
    rng = np.random.default_rng(seed)
    limits = [(b, b.limit * (1.0 - 1e-9)) for b in budgets]  # the properties' inequalities are strict
    for r in range(n_estimators):
        shaken = x + (rng.uniform(-1.0, 1.0, size=x.shape) * jitter).astype(np.float32)
        booster = train_round(
            shaken,
            labels,
            params=params,
            seed=seed + r,
            rounds=1,
            bias=bias,
            margin=margin,
            soft=False,
            monotone=monotone,
        )
        new: list[Split] = [(f, t, ranges, k % width) for k, (f, t, ranges) in enumerate(booster_splits(booster))]
        shares = [(b, limit * (r + 1) / n_estimators) for b, limit in limits]
        scale = largest_scale(accepted, new, shares)
        if scale < min_scale:
            break
        accepted += [(f, t, ranges * scale, k) for f, t, ranges, k in new]
        fixed.boosters.append(booster)
        fixed.scales.append(scale)
        margin += scale * tree_margins(booster, x, c)
    fixed.bounds = {b.name: b.bound(accepted) for b in budgets}
    return fixed
