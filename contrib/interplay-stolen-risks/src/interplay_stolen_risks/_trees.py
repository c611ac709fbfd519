"""Gradient-boosted trees behind a ``torch.nn.Module``: XGBoost training and the SmallNeighborhood bound.

Kept apart from :mod:`interplay_stolen_risks.trees` (the defenses) so that the substitutes of the
stealing attacks can train XGBoost without importing the defenses.

A :class:`TreeModule` is an additive ensemble: ``margin(x) = bias + sum_k scale_k * trees_k(x)``,
each ``trees_k`` an XGBoost booster read without its own intercept. A plain XGBoost model is one
booster of scale 1; the SmallNeighborhood fixer keeps one booster per boosting round, each scaled
down until the verified bound holds (:func:`neighborhood_bound`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "XGB_DEFAULTS",
    "TreeModule",
    "booster_splits",
    "feature_window_maxima",
    "fit_xgboost",
    "intercept",
    "neighborhood_bound",
    "train_round",
    "window_max",
]

#: XGBoost's published defaults (``XGBClassifier``: 100 trees; ``xgboost.train`` parameters).
XGB_DEFAULTS: dict[str, Any] = {
    "n_estimators": 100,
    "max_depth": 6,
    "learning_rate": 0.3,
    "min_child_weight": 1.0,
    "reg_lambda": 1.0,
    "gamma": 0.0,
}
_PROB_FLOOR = 1e-7


def _xgb() -> Any:
    import xgboost

    return xgboost


def _native(params: dict[str, Any], num_classes: int, seed: int) -> dict[str, Any]:
    """XGBoost's native parameter names for :data:`XGB_DEFAULTS`-style parameters."""
    native: dict[str, Any] = {
        "max_depth": int(params["max_depth"]),
        "eta": float(params["learning_rate"]),
        "min_child_weight": float(params["min_child_weight"]),
        "lambda": float(params["reg_lambda"]),
        "gamma": float(params["gamma"]),
        "tree_method": "hist",
        "seed": int(seed) % (2**31),
        "verbosity": 0,
    }
    if num_classes == 2:
        native["objective"] = "binary:logistic"
    else:
        native.update(objective="multi:softprob", num_class=num_classes)
    return native


def intercept(posteriors: np.ndarray) -> np.ndarray:
    """The constant margin of the class frequencies: ``logit(p_1)`` for two classes, ``log p`` otherwise."""
    prior = np.clip(posteriors.mean(axis=0), _PROB_FLOOR, 1.0)
    prior = prior / prior.sum()
    if len(prior) == 2:
        return np.array([math.log(prior[1] / prior[0])])
    return np.log(prior)


def _rows(x: np.ndarray, posteriors: np.ndarray, soft: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Training rows, labels and weights: soft binary labels, or each row once per class weighted by its posterior."""
    num_classes = posteriors.shape[1]
    if not soft:
        return x, posteriors.argmax(axis=1).astype(np.float32), None
    if num_classes == 2:
        return x, posteriors[:, 1].astype(np.float32), None
    n = len(x)
    return (
        np.repeat(x, num_classes, axis=0),
        np.tile(np.arange(num_classes, dtype=np.float32), n),
        posteriors.reshape(-1).astype(np.float32),
    )


def _margin_rows(bias: np.ndarray, margin: np.ndarray | None, n: int, num_classes: int, repeat: int) -> np.ndarray:
    base = np.broadcast_to(bias, (n, len(bias))).astype(np.float32) if margin is None else margin.astype(np.float32)
    if repeat > 1:
        base = np.repeat(base, repeat, axis=0)
    return base.reshape(-1) if base.shape[1] == 1 else base


def train_round(
    x: np.ndarray,
    posteriors: np.ndarray,
    *,
    params: dict[str, Any],
    seed: int,
    rounds: int,
    bias: np.ndarray,
    margin: np.ndarray | None = None,
    soft: bool = True,
    monotone: Sequence[int] | None = None,
) -> Any:
    """Boost ``rounds`` rounds of XGBoost from the margin ``bias`` (or ``margin``, per row).

    Args:
        x: Inputs ``(N, d)``.
        posteriors: Targets ``(N, C)``: one-hot labels or a model's posteriors.
        params: Tree parameters named as in :data:`XGB_DEFAULTS` (``n_estimators`` is ignored).
        seed: XGBoost's seed.
        rounds: Boosting rounds.
        bias: The constant starting margin (:func:`intercept`).
        margin: Per-row starting margins ``(N, 1 or C)`` instead of ``bias``.
        soft: Fit the posteriors (cross-entropy to soft labels); ``False``: their arg-max.
        monotone: XGBoost's ``monotone_constraints``: ``+1``, ``-1`` or ``0`` per feature.

    Returns:
        The booster; read it with ``output_margin=True`` and a zero base margin for the trees alone.
    """
    xgb = _xgb()
    num_classes = posteriors.shape[1]
    rows, labels, weights = _rows(x, posteriors, soft)
    repeat = num_classes if (soft and num_classes > 2) else 1
    native = _native(params, num_classes, seed)
    if monotone is not None:
        native["monotone_constraints"] = "(" + ",".join(str(int(m)) for m in monotone) + ")"
    dtrain = xgb.DMatrix(rows, label=labels, weight=weights)
    dtrain.set_base_margin(_margin_rows(bias, margin, len(x), num_classes, repeat))
    return xgb.train(native, dtrain, num_boost_round=rounds)


def tree_margins(booster: Any, x: np.ndarray, num_classes: int) -> np.ndarray:
    """The trees' summed outputs ``(N, 1 or C)``, without any intercept."""
    xgb = _xgb()
    width = 1 if num_classes == 2 else num_classes
    data = xgb.DMatrix(x)
    data.set_base_margin(np.zeros(len(x) * width, dtype=np.float32))
    out = np.asarray(booster.predict(data, output_margin=True), dtype=np.float64)
    return out.reshape(len(x), width)


class TreeModule(torch.nn.Module):
    """A fitted tree ensemble as a module: ``forward(x)`` returns log-probabilities, without gradients.

    Args:
        boosters: XGBoost boosters, each read as its trees' summed output (no intercept).
        scales: One factor per booster (1 for plain XGBoost).
        bias: The constant margin: one value for two classes (the positive class' logit), ``C`` otherwise.
        num_classes: Number of classes.
    """

    def __init__(self, boosters: Sequence[Any], scales: Sequence[float], bias: np.ndarray, num_classes: int) -> None:
        super().__init__()
        self.boosters = list(boosters)
        self.scales = [float(s) for s in scales]
        self.bias = np.asarray(bias, dtype=np.float64)
        self.num_classes = int(num_classes)
        #: Verified bounds the booster-fixer kept (:func:`~interplay_stolen_risks._fixer.boost_and_fix`), by name.
        self.verified_bounds: dict[str, float] = {}

    def margin(self, x: torch.Tensor) -> np.ndarray:
        """The ensemble's margin ``(N, 1 or C)`` in float64."""
        data = x.detach().to("cpu", torch.float32).reshape(len(x), -1).numpy()
        total = np.broadcast_to(self.bias, (len(data), len(self.bias))).copy()
        for booster, scale in zip(self.boosters, self.scales, strict=True):
            total += scale * tree_margins(booster, data, self.num_classes)
        return total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the predicted probabilities ``(N, C)`` (float32), each probability at least ``1e-7``."""
        with torch.no_grad():
            margin = torch.from_numpy(self.margin(x))
            logits = torch.cat([torch.zeros_like(margin), margin], dim=1) if self.num_classes == 2 else margin
            probs = torch.softmax(logits, dim=1).clamp_min(_PROB_FLOOR)
            return torch.log(probs).to(device=x.device, dtype=torch.float32)


def fit_xgboost(
    x: torch.Tensor,
    posteriors: torch.Tensor,
    *,
    params: dict[str, Any] | None = None,
    seed: int,
    soft: bool = True,
    monotone: Sequence[int] | None = None,
) -> TreeModule:
    """Fit XGBoost (``n_estimators`` rounds from the class-frequency intercept) as a :class:`TreeModule`.

    Args:
        x: Inputs ``(N, ...)``, flattened to features.
        posteriors: Targets ``(N, C)``: one-hot labels or a target's posteriors.
        params: Overrides of :data:`XGB_DEFAULTS`.
        seed: XGBoost's seed.
        soft: Fit the posteriors themselves (``True``) or their arg-max.
        monotone: Monotone constraint per feature (``+1``, ``-1``, ``0``).
    """
    chosen = {**XGB_DEFAULTS, **(params or {})}
    data = x.detach().to("cpu", torch.float32).reshape(len(x), -1).numpy()
    target = posteriors.detach().to("cpu", torch.float64).numpy()
    bias = intercept(target if soft else np.eye(target.shape[1])[target.argmax(axis=1)])
    booster = train_round(
        data,
        target,
        params=chosen,
        seed=seed,
        rounds=int(chosen["n_estimators"]),
        bias=bias,
        soft=soft,
        monotone=monotone,
    )
    return TreeModule([booster], [1.0], bias, target.shape[1])


def booster_splits(booster: Any) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each tree's splits: features, thresholds and the leaf range ``max - min`` of the subtree each one roots.

    Moving an input across a split changes the tree's output by at most that range: the two inputs
    share the path down to the first split that separates them and end in leaves below it. XGBoost
    names features ``f0, f1, ...`` when trained on arrays; a tree without splits has none.
    """
    frame = booster.trees_to_dataframe()
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for _, tree in frame.groupby("Tree", sort=True):
        rows = {str(r.ID): r for r in tree.itertuples(index=False)}
        spans: dict[str, tuple[float, float]] = {}

        def span(
            node: str, rows: dict[str, Any] = rows, spans: dict[str, tuple[float, float]] = spans
        ) -> tuple[float, float]:
            if node not in spans:
                row = rows[node]
                if row.Feature == "Leaf":
                    spans[node] = (float(row.Gain), float(row.Gain))
                else:
                    (a, b), (c, d) = span(str(row.Yes)), span(str(row.No))
                    spans[node] = (min(a, c), max(b, d))
            return spans[node]

        splits = [r for r in rows.values() if r.Feature != "Leaf"]
        features = np.array([int(str(r.Feature).lstrip("f")) for r in splits], dtype=np.int64)
        thresholds = np.array([float(r.Split) for r in splits], dtype=np.float64)
        ranges = np.array([span(str(r.ID))[1] - span(str(r.ID))[0] for r in splits], dtype=np.float64)
        out.append((features, thresholds, ranges))
    return out


def neighborhood_bound(
    trees: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, int]], radius: np.ndarray, num_classes: int
) -> float:
    """A verified upper bound on ``||F(x) - F(x')||_2`` over all ``x, x'`` with ``|x_i - x'_i| < radius_i``.

    A tree's output differs at ``x`` and ``x'`` only when a split ``(i, t)`` separates them, so ``t``
    lies in a window of width ``radius_i`` on feature ``i``, and by at most the range of the subtree
    that split roots (:func:`booster_splits`). Summing, per feature, the largest total range of the
    splits in one window, and over features, bounds each class margin's change ``U_c``. The
    posterior changes by at most ``sqrt(2) / 4 * U`` with two classes (one logistic margin) and
    ``sqrt(sum_c U_c^2) / 2`` otherwise (the softmax is 1/2-Lipschitz in the L2 norm).

    Args:
        trees: ``(features, thresholds, scaled subtree ranges, class)`` per tree.
        radius: ``eps * sigma_i`` per feature.
        num_classes: Number of classes.

    Returns:
        The bound on the posterior's L2 change.
    """
    width = 1 if num_classes == 2 else num_classes
    per_class = np.zeros(width)
    for c in range(width):
        per_class[c] = sum(feature_window_maxima(trees, radius, c))
    if num_classes == 2:
        return math.sqrt(2.0) / 4.0 * float(per_class[0])
    return 0.5 * float(np.sqrt((per_class**2).sum()))


def feature_window_maxima(
    trees: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, int]], widths: np.ndarray, cls: int
) -> list[float]:
    """Per feature ``i``, :func:`window_max` of class ``cls``'s splits on ``i`` with window ``widths[i]``.

    The largest change of that class' margin when only feature ``i`` moves by at most ``widths[i]``;
    all zeros when the class has no tree.
    """
    mine = [(f, t, r) for f, t, r, c in trees if c == cls]
    if not mine:
        return [0.0] * len(widths)
    features = np.concatenate([f for f, _, _ in mine])
    thresholds = np.concatenate([t for _, t, _ in mine])
    ranges = np.concatenate([r for _, _, r in mine])
    return [window_max(thresholds[features == i], ranges[features == i], float(w)) for i, w in enumerate(widths)]


def window_max(thresholds: np.ndarray, ranges: np.ndarray, width: float) -> float:
    """The largest total range of the splits whose thresholds lie in one closed window of ``width``."""
    if len(thresholds) == 0:
        return 0.0
    order = np.argsort(thresholds, kind="stable")
    t, w = thresholds[order], ranges[order]
    cumulative = np.concatenate([[0.0], np.cumsum(w)])
    start = np.searchsorted(t, t - width, side="left")  # windows [t_k - width, t_k]
    return float((cumulative[1:] - cumulative[start]).max())
