"""Gradient-boosted-tree targets: natural XGBoost, Monotonicity and SmallNeighborhood (LogicEnsemble's properties).

"Stolen Risks of Models with Security Properties" (Qin et al., CCS 2023, sections 2 and 3.1) trains
XGBoost (Chen and Guestrin, KDD 2016) with two *global* security properties, following LogicEnsemble
(Chen et al., "Learning Security Classifiers with Verified Global Robustness Properties", CCS 2021).
``F`` is the posterior:

- ``monotonicity`` (Property 4): along each named feature ``j``, with all others fixed, the positive
  class' posterior ``F(x)_1`` is non-decreasing (``increasing``) or non-increasing (``decreasing``).
  XGBoost's ``monotone_constraints`` guarantee it by construction, for every input.
- ``small_neighborhood`` (Property 3): ``d(x, x') < eps  =>  ||F(x) - F(x')||_2 < L * eps`` for all
  inputs, with ``d(x, x') = max_i |x_i - x'_i| / sigma_i`` (``sigma`` the training features'
  standard deviations). Trained booster-fixer style: each round boosts one XGBoost tree per class
  (the booster); the fixer scales the new trees down until a verified bound on the whole ensemble
  (:func:`~interplay_stolen_risks._trees.neighborhood_bound`) holds.
- ``xgb``: natural XGBoost, the paper's "XGB" target.

Trees have no input gradients, so the defenses give black-box access
(:class:`~interplay.artifacts.QueryAccess`): white-box attacks are not offered them. Their ``info``
records ``model_family: "xgboost"`` (so the stealing attacks train XGBoost substitutes),
``tree_property`` and every parameter as ``tree_<name>``. ``docs/trees.md`` lists the defaults'
sources and the gaps to LogicEnsemble.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from interplay import Defense, Params, RunContext
from interplay.artifacts import LabeledData, QueryAccess, TaskData, TrainedModel
from interplay.errors import ArtifactError, ConfigError

from ._fixer import Budget, boost_and_fix
from ._trees import XGB_DEFAULTS, TreeModule, fit_xgboost, neighborhood_bound

__all__ = [
    "Monotonicity",
    "NaturalXGBoost",
    "SmallNeighborhood",
    "TreeDefense",
    "best_intercept",
    "feature_indices",
    "feature_scale",
    "fix_trees",
]


def feature_indices(names: Sequence[str | int], data: LabeledData, *, path: str) -> list[int]:
    """Column indices of features given by name (``data.feature_names``) or index.

    Raises:
        ConfigError: At ``path`` for an unknown name or an index out of range.
    """
    width = int(data.x.reshape(len(data.x), -1).shape[1])
    known = list(data.feature_names or ())
    out: list[int] = []
    for name in names:
        if isinstance(name, int):
            if not 0 <= name < width:
                raise ConfigError(f"feature index {name} is outside 0..{width - 1}", path=path)
            out.append(name)
        elif name in known:
            out.append(known.index(name))
        else:
            raise ConfigError(f"unknown feature {name!r}; the task's features are {known}", path=path)
    return out


def feature_scale(data: LabeledData) -> np.ndarray:
    """Each feature's standard deviation on ``data`` (1 where a feature is constant): LogicEnsemble's ``sigma``."""
    sigma = data.x.reshape(len(data.x), -1).double().std(dim=0).numpy()
    return np.where(sigma > 0, sigma, 1.0)


class TreeDefense(Defense):
    """Train a gradient-boosted-tree target on the defender's rows and serve its posteriors (shared mechanics)."""

    __abstract__ = True
    risks = ("S1",)
    Input = TaskData
    Output = QueryAccess
    #: The ``tree_property`` fact.
    property_name: ClassVar[str] = "none"

    class Params(Params):
        """XGBoost's hyper-parameters, with XGBoost's published defaults.

        Attributes:
            n_estimators: Boosting rounds (``XGBClassifier``'s 100).
            max_depth: Maximum tree depth (6).
            learning_rate: Shrinkage ``eta`` (0.3).
            min_child_weight: Minimum hessian sum in a leaf (1).
            reg_lambda: L2 regularisation of leaf values (1).
            gamma: Minimum loss reduction to split (0).
        """

        n_estimators: int = Field(default=XGB_DEFAULTS["n_estimators"], ge=1)
        max_depth: int = Field(default=XGB_DEFAULTS["max_depth"], ge=1)
        learning_rate: float = Field(default=XGB_DEFAULTS["learning_rate"], gt=0, le=1)
        min_child_weight: float = Field(default=XGB_DEFAULTS["min_child_weight"], ge=0)
        reg_lambda: float = Field(default=XGB_DEFAULTS["reg_lambda"], ge=0)
        gamma: float = Field(default=XGB_DEFAULTS["gamma"], ge=0)

    params: TreeDefense.Params

    def tree_params(self) -> dict[str, Any]:
        """The XGBoost parameters (the names of :data:`~interplay_stolen_risks._trees.XGB_DEFAULTS`)."""
        return {k: getattr(self.params, k) for k in XGB_DEFAULTS}

    def facts(self) -> dict[str, Any]:
        """``model_family``, ``tree_property`` and every parameter as ``tree_<name>`` (lists comma-joined)."""
        params = {
            f"tree_{k}": ",".join(str(v) for v in value) if isinstance(value, list) else value
            for k, value in self.get_params().items()
            if value is not None
        }
        return {"model_family": "xgboost", "tree_property": self.property_name, **params}

    def apply(
        self, target: TaskData, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> QueryAccess:
        """Train on ``target.defender_train`` and return black-box access to the trees' posteriors.

        Args:
            target: The task; the model trains on the defender's rows (all training rows without a partition).
            data: Unused (the task is ``target``).
            context: Gives the seed.

        Returns:
            Black-box access; ``info`` records the facts of :meth:`facts`, ``train_indices`` the defender's rows.

        Raises:
            ConfigError: When a parameter does not fit the task.
            ArtifactError: When the task does not fit the property.
        """
        context = context or RunContext()
        train = target.defender_train
        module = self.fit(train, seed=context.derive_seed("defense", self.name))
        indices = target.partition.defender if target.partition is not None else None
        model = TrainedModel(
            module=module,
            num_classes=target.num_classes,
            input_shape=target.input_shape,
            architecture="xgboost",
            architecture_params=self.tree_params(),
            train_indices=indices,
            info=self.facts(),
        )
        return model.narrow(QueryAccess)

    def fit(self, train: LabeledData, *, seed: int) -> TreeModule:
        """The fitted trees."""
        raise NotImplementedError


def _one_hot(data: LabeledData) -> torch.Tensor:
    return torch.nn.functional.one_hot(data.y, data.num_classes).double()


class NaturalXGBoost(TreeDefense):
    """Natural XGBoost (the paper's "XGB" target): no property, XGBoost's defaults.

    Examples:
        ``NaturalXGBoost().apply(task)`` gives black-box access to XGBoost trained on ``task``'s
        defender rows; the stealing attacks read its ``model_family`` and train XGBoost substitutes.
    """

    name = "xgb"
    summary = "natural XGBoost target (the paper's XGB row); black-box access"
    property_name = "none"

    def fit(self, train: LabeledData, *, seed: int) -> TreeModule:
        """XGBoost on the labels."""
        return fit_xgboost(train.x, _one_hot(train), params=self.tree_params(), seed=seed, soft=False)


class Monotonicity(TreeDefense):
    """Monotonicity (Property 4, LogicEnsemble): XGBoost with monotone constraints on named features.

    The positive class' posterior is non-decreasing along every ``increasing`` feature and
    non-increasing along every ``decreasing`` one, everywhere, by construction (each tree is
    monotone in the margin, and so is their sum and the logistic link). Two-class tasks only: with
    more classes a monotone margin per class does not make any posterior monotone.

    Examples:
        Medical Insurance's property (high charges with higher BMI and smoking)::

            access = Monotonicity(increasing=["bmi", "smoker"]).apply(task)
    """

    name = "monotonicity"
    summary = "XGBoost with monotone constraints: positive posterior monotone in named features (LogicEnsemble)"
    property_name = "monotonicity"
    conformance_params = {"increasing": [0], "decreasing": [1], "n_estimators": 5}

    class Params(TreeDefense.Params):
        """Hyper-parameters of :class:`Monotonicity`: the constrained features, and XGBoost's.

        Attributes:
            increasing: Features (names from the task's ``feature_names``, or column indices) along
                which the positive posterior may only grow. Medical Insurance's are ``bmi`` and ``smoker``.
            decreasing: Features along which it may only shrink.
        """

        increasing: list[str | int] = Field(default_factory=list)
        decreasing: list[str | int] = Field(default_factory=list)

    params: Monotonicity.Params

    @classmethod
    def conformance_example(cls, task: TaskData, model: TrainedModel, context: RunContext) -> TaskData:
        """The synthetic task made binary (class 0 against the rest): the property needs two classes."""
        splits = {
            name: split.model_copy(update={"y": (split.y != 0).long(), "num_classes": 2, "class_names": None})
            for name, split in task.splits.items()
        }
        return task.model_copy(update={"splits": splits})

    def constraints(self, train: LabeledData) -> list[int]:
        """XGBoost's ``monotone_constraints``: ``+1`` / ``-1`` / ``0`` per feature.

        Raises:
            ConfigError: When no feature is named, a name is unknown, or a feature is named twice.
            ArtifactError: When the task does not have two classes.
        """
        base = f"{self.name}.params"
        if not self.params.increasing and not self.params.decreasing:
            raise ConfigError(
                "name at least one feature in increasing or decreasing (Medical Insurance: increasing: [bmi, smoker])",
                path=f"{base}.increasing",
            )
        if train.num_classes != 2:
            raise ArtifactError(f"defense {self.name!r} needs a two-class task, got {train.num_classes} classes")
        up = feature_indices(self.params.increasing, train, path=f"{base}.increasing")
        down = feature_indices(self.params.decreasing, train, path=f"{base}.decreasing")
        if set(up) & set(down) or len(set(up)) < len(up) or len(set(down)) < len(down):
            raise ConfigError("a feature is named twice", path=f"{base}.decreasing")
        signs = [0] * int(train.x.reshape(len(train.x), -1).shape[1])
        for j in up:
            signs[j] = 1
        for j in down:
            signs[j] = -1
        return signs

    def fit(self, train: LabeledData, *, seed: int) -> TreeModule:
        """XGBoost on the labels with the monotone constraints."""
        signs = self.constraints(train)
        return fit_xgboost(train.x, _one_hot(train), params=self.tree_params(), seed=seed, soft=False, monotone=signs)


def best_intercept(scores: np.ndarray, positive: np.ndarray) -> float:
    """The constant ``b`` maximising the accuracy of ``scores + b > 0`` against ``positive`` (ties: the first).

    Candidates put the decision threshold midway between consecutive distinct scores, or below or
    above all of them.
    """
    values = np.unique(scores)
    cuts = np.concatenate([[values[0] - 1.0], (values[:-1] + values[1:]) / 2.0, [values[-1] + 1.0]])
    order = np.argsort(scores, kind="stable")
    ranked, truth = scores[order], positive[order].astype(np.int64)
    below = np.searchsorted(ranked, cuts, side="right")  # rows predicted negative for each cut
    negatives_below = np.concatenate([[0], np.cumsum(1 - truth)])[below]
    positives_above = int(truth.sum()) - np.concatenate([[0], np.cumsum(truth)])[below]
    best = int(np.argmax(negatives_below + positives_above))
    return float(-cuts[best])


class SmallNeighborhood(TreeDefense):
    """SmallNeighborhood (Property 3, LogicEnsemble): ``d(x, x') < eps => ||F(x) - F(x')||_2 < L * eps``, globally.

    Booster-fixer training after LogicEnsemble: round ``r`` boosts one XGBoost tree per class from
    the current ensemble's margin (the booster); the fixer scales the new trees by the largest
    factor in ``[0, 1]`` (bisection) for which the verified bound of
    :func:`~interplay_stolen_risks._trees.neighborhood_bound` on the whole ensemble stays below
    ``L * eps * (r + 1) / n_estimators`` (the budget spread over the rounds), so below ``L * eps``.
    Training stops after ``n_estimators`` rounds, or when a round's trees would have to
    be scaled below ``min_scale``. The property then holds for every pair of inputs, not only the
    training rows. ``sigma`` is the defender's training features' standard deviation.

    Examples:
        ``SmallNeighborhood(eps=0.1, L=2.0).apply(task)`` trains trees whose posterior moves by less
        than 0.2 (L2) between any inputs closer than 0.1 standard deviation in every feature.
    """

    name = "small_neighborhood"
    summary = "XGBoost whose posterior moves < L*eps within eps std devs, verified globally (LogicEnsemble)"
    property_name = "small_neighborhood"
    conformance_params = {"n_estimators": 3}

    class Params(TreeDefense.Params):
        """Hyper-parameters of :class:`SmallNeighborhood`: the property's constants, the fixer's, and XGBoost's.

        Attributes:
            eps: Neighbourhood radius in standard deviations of each feature.
            L: The constant: the posterior moves by less than ``L * eps`` (L2) within the neighbourhood.
            min_scale: The fixer stops boosting when a round's trees would be scaled below this.
            jitter: Each round's booster sees the training inputs moved uniformly by up to
                ``jitter`` standard deviations per feature, so that successive trees split at
                different thresholds and their jumps do not add up in one neighbourhood (ours; 0
                boosts on the rows themselves).
            calibrate_intercept: With two classes, move the constant margin, after the last round,
                to the value with the highest training accuracy (ours). The verified bound does not
                depend on the constant, so the property still holds; without it the scaled-down
                trees cannot lift a rare class's posterior over 0.5 and every row gets the majority
                label.
        """

        eps: float = Field(default=0.1, gt=0, allow_inf_nan=False)
        L: float = Field(default=2.0, gt=0, allow_inf_nan=False)
        min_scale: float = Field(default=1e-6, gt=0, le=1)
        jitter: float = Field(default=0.5, ge=0, allow_inf_nan=False)
        calibrate_intercept: bool = True

    params: SmallNeighborhood.Params

    def budget(self, train: LabeledData) -> Budget:
        """The verified bound of :func:`~interplay_stolen_risks._trees.neighborhood_bound` below ``L * eps``."""
        radius, c = self.params.eps * feature_scale(train), train.num_classes
        return Budget(
            "small_neighborhood", lambda trees: neighborhood_bound(trees, radius, c), self.params.L * self.params.eps
        )

    def fit(self, train: LabeledData, *, seed: int) -> TreeModule:
        """Booster-fixer rounds: one tree per class, scaled until the verified bound holds."""
        p = self.params
        return fix_trees(
            train,
            params=self.tree_params(),
            seed=seed,
            budgets=[self.budget(train)],
            jitter=p.jitter,
            min_scale=p.min_scale,
            calibrate_intercept=p.calibrate_intercept,
        )


def fix_trees(
    train: LabeledData,
    *,
    params: dict[str, Any],
    seed: int,
    budgets: Sequence[Budget],
    jitter: float,
    min_scale: float,
    calibrate_intercept: bool,
    monotone: Sequence[int] | None = None,
) -> TreeModule:
    """:func:`~interplay_stolen_risks._fixer.boost_and_fix` on ``train``, then (two classes) the best constant.

    ``jitter`` is in standard deviations of the training features. The bounds' values are
    recorded on the module as ``verified_bounds``.
    """
    x = train.x.reshape(len(train.x), -1).to(torch.float32).numpy()
    labels = _one_hot(train).numpy()
    fixed = boost_and_fix(
        x,
        labels,
        params=params,
        seed=seed,
        n_estimators=int(params["n_estimators"]),
        budgets=budgets,
        jitter=jitter * feature_scale(train),
        min_scale=min_scale,
        monotone=monotone,
    )
    bias = fixed.bias
    if train.num_classes == 2 and calibrate_intercept:
        bias = np.array([best_intercept(fixed.margin[:, 0] - bias[0], labels[:, 1] > 0.5)])
    module = TreeModule(fixed.boosters, fixed.scales, bias, train.num_classes)
    module.verified_bounds = fixed.bounds
    return module
