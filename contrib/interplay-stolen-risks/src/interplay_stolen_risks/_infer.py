"""INFER (Algorithm 2 of Stolen Risks): a confidence interval on the target's posterior from labelled neighbours.

Qin et al. ("Stolen Risks of Models with Security Properties", CCS 2023, section 4.1) bound the
target's posterior ``F_T(x')_c`` on a synthesised input ``x'`` from the answers ``y_{i,c}`` of its
``k`` nearest labelled neighbours: with the deviation bound ``xi_phi(x_i, x')`` a security property
``phi`` gives (their Table 4) and Hoeffding's inequality,

    F_T(x')_c in [l_k, r_k] = mean_i y_{i,c} -+ (mean_i xi_phi(x_i, x') + sqrt(ln(2k / (1 - eta)) / (2k)))

and the confidence interval is the intersection over ``k = 1..K`` (clipped to ``[0, 1]``). It is
*invalid* when ``l >= r`` or wider than a threshold; otherwise the inferred label compares the
midpoint with the class marginal ``p`` of the labelled set. Everything here is vectorised over
candidates and classes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from interplay.errors import ConfigError

__all__ = [
    "PROPERTY_FORMS",
    "Inference",
    "PropertyBound",
    "PropertyForm",
    "deviation",
    "grid_search",
    "hoeffding",
    "infer",
    "leave_one_out",
    "property_from_info",
]

PropertyForm = Literal["lipschitz", "local_invariance", "small_neighborhood", "monotonicity"]
PROPERTY_FORMS: tuple[str, ...] = ("lipschitz", "local_invariance", "small_neighborhood", "monotonicity")


@dataclass(frozen=True)
class PropertyBound:
    """A security property's form and the parameter values the attacker assumes for it.

    Attributes:
        form: ``lipschitz``, ``local_invariance``, ``small_neighborhood`` or ``monotonicity``.
        L: Lipschitz constant (Lipschitzness, SmallNeighborhood).
        delta: Posterior slack (LocalInvariance).
        eps: Neighbourhood radius (LocalInvariance, SmallNeighborhood).
        lam: Growth rate ``lambda`` of the bound outside the neighbourhood (the paper's 2).
        features: Monotone feature indices ``j`` (Monotonicity).
        directions: ``+1`` (Monotonicity(I), increasing) or ``-1`` (Monotonicity(D)) per monotone feature.
        norm: The ``p`` of ``||x - x'||_p``.
    """

    form: PropertyForm
    L: float = 1.0
    delta: float = 0.1
    eps: float = 0.1
    lam: float = 2.0
    features: tuple[int, ...] = ()
    directions: tuple[int, ...] = ()
    norm: float = 2.0

    def with_values(self, **values: Any) -> PropertyBound:
        """A copy with other parameter values (the grid search's candidates)."""
        return replace(self, **values)


def deviation(bound: PropertyBound, neighbours: torch.Tensor, x: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """Table 4's ``xi_phi(x_i, x')``: a bound on ``|F_T(x')_c - F_T(x_i)_c|`` for every neighbour and class.

    Args:
        bound: The property and its assumed parameters.
        neighbours: The neighbours ``x_i``, ``(N, K, d)``.
        x: The candidates ``x'``, ``(N, d)``.
        answers: The neighbours' answers ``y_{i,c}`` ``(N, K, C)``, standing in for ``F_T(x_i)_c``
            (used by Monotonicity only).

    Returns:
        ``(N, K, C)`` non-negative deviations.
    """
    diff = neighbours - x[:, None, :]  # x_i - x'
    n, k, c = answers.shape
    if bound.form == "monotonicity":
        mono = list(bound.features)
        others = torch.ones(diff.shape[-1], dtype=torch.bool)
        others[mono] = False
        spread = diff[..., others].abs().sum(-1)  # sum over the other features of |x_i - x'_i|
        if mono:
            sign = torch.tensor(bound.directions, dtype=diff.dtype)
            # (I): x_j - x'_j (x' lower than its neighbour on an increasing feature); (D): x'_j - x_j.
            wrong = (diff[..., mono] * sign).amax(-1)
            spread = torch.maximum(spread, wrong)
        growth = torch.exp(bound.lam * spread.clamp_min(0.0))
        return (1.0 - answers) * growth[..., None]
    distance = torch.linalg.vector_norm(diff, ord=bound.norm, dim=-1)  # (N, K)
    if bound.form == "lipschitz":
        xi = bound.L / math.sqrt(2.0) * distance
    elif bound.form == "local_invariance":
        xi = bound.delta * torch.exp((distance - bound.eps).clamp_min(0.0) * bound.lam)
    elif bound.form == "small_neighborhood":
        xi = bound.eps * bound.L / math.sqrt(2.0) * torch.exp((distance - bound.eps).clamp_min(0.0) * bound.lam)
    else:
        raise ValueError(f"unknown property form {bound.form!r}")
    out: torch.Tensor = xi[..., None].expand(n, k, c)
    return out


def hoeffding(k: torch.Tensor, failure: float) -> torch.Tensor:
    """Algorithm 2's Hoeffding term ``sqrt(ln(2k / (1 - eta)) / (2k))``, ``failure = 1 - eta``."""
    k = k.double()
    return torch.sqrt(torch.log(2.0 * k / failure) / (2.0 * k))


@dataclass
class Inference:
    """INFER's answer for each candidate.

    Attributes:
        valid: Whether the confidence interval is valid (``l < r`` and width within the threshold) for every class.
        labels: The inferred label (meaningful where ``valid``).
        lower: Left end points ``(N, C)``.
        upper: Right end points ``(N, C)``.
        posteriors: The midpoints clipped to ``[0, 1]`` and normalised: the inferred posterior ``(N, C)``.
    """

    valid: torch.Tensor
    labels: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    posteriors: torch.Tensor
    rate: float = field(init=False)

    def __post_init__(self) -> None:
        self.rate = float(self.valid.double().mean()) if len(self.valid) else 0.0


def _intervals(
    bound: PropertyBound,
    x: torch.Tensor,
    known: torch.Tensor,
    answers: torch.Tensor,
    order: torch.Tensor,
    failure: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The intersected interval ``[l, r]`` per candidate and class from the neighbours ``known[order]``."""
    neighbours, y = known[order], answers[order]  # (N, K, d), (N, K, C)
    xi = deviation(bound, neighbours, x, y)
    k = torch.arange(1, order.shape[1] + 1)
    mu = y.cumsum(1) / k[None, :, None]
    sigma = xi.cumsum(1) / k[None, :, None] + hoeffding(k, failure).to(y.dtype)[None, :, None]
    return (mu - sigma).amax(1), (mu + sigma).amin(1)


def _decide(lower: torch.Tensor, upper: torch.Tensor, threshold: torch.Tensor, max_width: float) -> Inference:
    """Validity and label of each candidate's interval.

    Validity from the interval clipped to ``[0, 1]`` (Algorithm 2 starts from ``l = 0, r = 1``); the label
    from the midpoint of the unclipped intersection compared with the threshold (see ``docs/maskedthief.md``).
    """
    low, high = lower.clamp(min=0.0), upper.clamp(max=1.0)
    valid = ((low < high) & (high - low <= max_width)).all(dim=1)
    # Algorithm 2: label c when the midpoint exceeds the threshold p; over classes, the largest excess.
    middle = 0.5 * (lower + upper)
    labels = (middle - threshold[None, :]).argmax(dim=1)
    estimate = middle.clamp(0.0, 1.0)
    estimate = estimate / estimate.sum(1, keepdim=True).clamp_min(1e-12)
    return Inference(valid=valid, labels=labels, lower=low, upper=high, posteriors=estimate)


Threshold = Literal["marginal", "argmax"]


def _threshold(answers: torch.Tensor, threshold: Threshold) -> torch.Tensor:
    """``marginal``: the class marginal of the labelled set (the paper's); ``argmax``: ``1 / C`` for every class."""
    if threshold == "marginal":
        return answers.mean(0)
    return torch.full((answers.shape[1],), 1.0 / answers.shape[1], dtype=answers.dtype)


def _answers(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Responses ``y_{i,c}``: one-hot labels ``(M,)`` -> ``(M, C)``, or posteriors ``(M, C)`` as given."""
    if labels.ndim == 2:
        return labels.double()
    return torch.nn.functional.one_hot(labels, num_classes).double()


def infer(
    bound: PropertyBound,
    x: torch.Tensor,
    known: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int,
    neighbours: int = 50,
    failure: float = 0.1,
    max_width: float = 0.5,
    threshold: Threshold = "marginal",
) -> Inference:
    """Algorithm 2 for every candidate in ``x`` against the labelled set ``(known, labels)``.

    Args:
        bound: The property and its assumed parameters.
        x: Candidates ``(N, d)`` (flattened inputs).
        known: The labelled inputs ``X_T`` ``(M, d)``.
        labels: Their responses: labels ``(M,)`` (the paper's Bernoulli responses ``y_{i,c}``) or the
            target's posteriors ``(M, C)`` (their means ``F_T(x_i)_c``).
        num_classes: Number of classes ``C``.
        neighbours: ``K``, the most neighbours (the paper's 50); at most ``M`` are used.
        failure: ``1 - eta``, the failure probability of the confidence interval.
        max_width: Widest interval still valid.
        threshold: ``marginal``: the midpoint is compared with the class marginal ``p`` of the labelled
            set (the paper's); ``argmax``: the label is the arg-max of the midpoints (with two classes,
            the class-1 midpoint against 1/2).

    Returns:
        Validity, inferred labels and end points per candidate (clipped to ``[0, 1]``).
    """
    x, known = x.double().flatten(1), known.double().flatten(1)
    marginal = _threshold(_answers(labels, num_classes), threshold)
    k = min(neighbours, len(known))
    if len(x) == 0 or k == 0:
        empty = torch.zeros(len(x), num_classes, dtype=torch.float64)
        none = torch.zeros(len(x), dtype=torch.bool)
        return Inference(none, torch.zeros(len(x), dtype=torch.long), empty, empty, empty)
    order = torch.cdist(x, known).topk(k, dim=1, largest=False).indices
    lower, upper = _intervals(bound, x, known, _answers(labels, num_classes), order, failure)
    return _decide(lower, upper, marginal, max_width)


def leave_one_out(
    bound: PropertyBound,
    known: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int,
    neighbours: int = 50,
    failure: float = 0.1,
    max_width: float = 0.5,
    threshold: Threshold = "marginal",
) -> tuple[float, float]:
    """INFER on each labelled input from the others: ``(inference rate, worst per-class accuracy)``.

    The grid search's criterion: how often INFER would label an input the attacker already knows
    the answer to, and, for the class that fares worst, the share of its inputs not given a wrong
    label (1 when nothing is inferred). Taking the worst class keeps a rare class, which a plain
    accuracy would let the inference overwrite with the common one, from being mislabelled.
    """
    known = known.double().flatten(1)
    k = min(neighbours, len(known) - 1)
    if k < 1:
        return 0.0, 1.0
    distances = torch.cdist(known, known)
    distances.fill_diagonal_(math.inf)
    order = distances.topk(k, dim=1, largest=False).indices
    answers = _answers(labels, num_classes)
    lower, upper = _intervals(bound, known, known, answers, order, failure)
    result = _decide(lower, upper, _threshold(answers, threshold), max_width)
    labels = answers.argmax(dim=1)
    wrong = result.valid & (result.labels != labels)
    per_class = [1.0 - float(wrong[labels == c].double().mean()) for c in set(labels.tolist())]
    return result.rate, min(per_class)


#: The grid searched for each property parameter the attacker does not know (section 4.2: "GridSearch").
GRIDS: dict[str, tuple[float, ...]] = {
    "L": (0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
    "delta": (0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
    "eps": (0.1, 0.3, 1.0),
    "failure": (0.01, 0.05, 0.1, 0.2),
}
_PARAMETERS: dict[str, tuple[str, ...]] = {
    "lipschitz": ("L",),
    "local_invariance": ("delta", "eps"),
    "small_neighborhood": ("eps", "L"),
    "monotonicity": (),
}
#: interplay property names (dl2_property / tree_property) -> Table 4's form.
_FORMS = {
    "lipschitz": "lipschitz",
    "lipschitz_t": "lipschitz",
    "local_invariance": "local_invariance",
    "local_invariance_t": "local_invariance",
    "small_neighborhood": "small_neighborhood",
    "monotonicity": "monotonicity",
}


def _tokens(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.replace(";", ",").split(",") if t.strip()]
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _columns(tokens: list[str], feature_names: tuple[str, ...] | None) -> list[int]:
    out = []
    for token in tokens:
        if token.lstrip("-").isdigit():
            out.append(int(token))
        elif feature_names is not None and token in feature_names:
            out.append(feature_names.index(token))
        else:
            raise ConfigError(f"unknown monotone feature {token!r}", path="masked_thief.params.property_values")
    return out


def property_from_info(
    info: dict[str, Any],
    form: str | None,
    values: dict[str, Any],
    feature_names: tuple[str, ...] | None = None,
    *,
    fallback: str | None = None,
) -> PropertyBound:
    """The property's form: ``form``, else the target's ``dl2_property`` / ``tree_property``, else ``fallback``.

    Monotone features come from ``values["increasing"]`` / ``values["decreasing"]`` or the target's
    ``tree_increasing`` / ``tree_decreasing`` facts (comma-separated indices or feature names).

    Raises:
        ConfigError: When no known form is named, or a monotone feature is unknown.
    """
    name = form or info.get("dl2_property") or info.get("tree_property") or fallback
    if name not in _FORMS:
        raise ConfigError(
            f"masked_thief needs the target's property form: set property= (one of {', '.join(PROPERTY_FORMS)}) "
            f"or attack a target whose info records dl2_property/tree_property (got {name!r})",
            path="masked_thief.params.property",
        )
    kind = _FORMS[str(name)]
    increasing = _columns(_tokens(values.get("increasing", info.get("tree_increasing"))), feature_names)
    decreasing = _columns(_tokens(values.get("decreasing", info.get("tree_decreasing"))), feature_names)
    features = tuple(increasing + decreasing)
    directions = tuple([1] * len(increasing) + [-1] * len(decreasing))
    return PropertyBound(form=kind, features=features, directions=directions)  # type: ignore[arg-type]


def grid_search(
    bound: PropertyBound,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int,
    given: dict[str, float],
    min_accuracy: float,
    infer_kw: dict[str, Any],
) -> tuple[PropertyBound, float, float, float] | None:
    """GridSearch on the labelled set: the most inferring parameters whose leave-one-out accuracy is high enough.

    Among the grid points whose worst per-class leave-one-out accuracy (:func:`leave_one_out`)
    reaches ``min_accuracy``, the one with the highest leave-one-out inference rate; ``None`` when no
    grid point infers anything that accurately.

    Returns:
        ``(bound, failure, rate, accuracy)`` of the chosen point.
    """
    names = [n for n in _PARAMETERS[bound.form] if n not in given] + ([] if "failure" in given else ["failure"])
    fixed = {k: float(v) for k, v in given.items() if k in ("L", "delta", "eps", "failure")}
    best: tuple[float, float, PropertyBound, float] | None = None
    for point in itertools.product(*(GRIDS[n] for n in names)):
        values = {**fixed, **dict(zip(names, point, strict=True))}
        failure = values.pop("failure")
        candidate = bound.with_values(**values)
        rate, accuracy = leave_one_out(candidate, x, labels, num_classes=num_classes, failure=failure, **infer_kw)
        if rate > 0 and accuracy >= min_accuracy and (best is None or (rate, accuracy) > best[:2]):
            best = (rate, accuracy, candidate, failure)
    return None if best is None else (best[2], best[3], best[0], best[1])
