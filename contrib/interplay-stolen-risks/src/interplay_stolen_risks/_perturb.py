"""Shared parts of the posterior-perturbation defenses and their metrics.

Per-sample Jacobians of a model's log-likelihood with respect to its parameters (Prediction
Poisoning's ``G``), the extreme-point oracle that maximises the angular deviation, Adaptive
Misinformation's reverse cross-entropy and mixing weight, and the grid search of the paper's
"at most 1 % accuracy decrease" rule. Kept apart from :mod:`interplay_stolen_risks.perturbation`
so each module reads in one sitting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch.func import functional_call, jacrev, vmap

from .properties import evaluation_mode

__all__ = [
    "Objective",
    "ParameterSet",
    "adaptive_weight",
    "extreme_point",
    "grid",
    "largest_within_budget",
    "log_likelihood_jacobian",
    "reverse_cross_entropy",
]

#: ``last``: the output layer's weight matrix (MAD's default, ``max_grad_layer=None``); ``all``: every parameter.
ParameterSet = Literal["last", "all"]
#: ``angle``: maximise the angle between ``G^T y`` and ``G^T eta`` (the papers' angular deviation);
#: ``surrogate``: maximise ``||G^T (eta - y)||^2`` (MAD's code default, ``objmax=False``).
Objective = Literal["angle", "surrogate"]
_TINY = 1e-30


def _chosen(module: torch.nn.Module, parameters: ParameterSet) -> list[str]:
    named = [(name, p) for name, p in module.named_parameters()]
    if parameters == "all":
        return [name for name, _ in named]
    weights = [name for name, p in named if p.ndim >= 2]
    if not weights:
        raise ValueError(f"{type(module).__name__} has no weight matrix to differentiate")
    return [weights[-1]]


def log_likelihood_jacobian(
    module: torch.nn.Module, x: torch.Tensor, *, parameters: ParameterSet = "last", chunk: int = 256
) -> torch.Tensor:
    """Per-sample Jacobians ``G`` of the log-posteriors ``log F(x; w)_k`` with respect to parameters ``w``.

    Args:
        module: The model; ``module(x)`` returns logits. Differentiated in evaluation mode.
        x: Inputs ``(N, *shape)``.
        parameters: Which parameters form ``w`` (see :data:`ParameterSet`).
        chunk: Most inputs differentiated at once.

    Returns:
        ``G`` of shape ``(N, K, D)``: row ``k`` of ``G[i]`` is the gradient of ``log F(x_i)_k``,
        ``D`` the number of chosen parameter entries.
    """
    names = _chosen(module, parameters)
    params = {name: p.detach() for name, p in module.named_parameters()}
    buffers = {name: b.detach() for name, b in module.named_buffers()}
    fixed = {name: p for name, p in params.items() if name not in names}

    def log_posteriors(chosen: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        out = functional_call(module, ({**fixed, **chosen}, buffers), (xi.unsqueeze(0),))
        return F.log_softmax(out, dim=1).squeeze(0)

    jacobian = vmap(jacrev(log_posteriors), in_dims=(None, 0))
    chosen = {name: params[name] for name in names}
    parts = []
    with evaluation_mode(module):
        for part in torch.split(x, chunk):
            jac = jacobian(chosen, part)
            parts.append(torch.cat([jac[name].flatten(2) for name in names], dim=2))
    return torch.cat(parts) if parts else x.new_zeros(0, 0, 0)


def extreme_point(g: torch.Tensor, y: torch.Tensor, *, objective: Objective = "angle") -> torch.Tensor:
    """MAD's extreme-point oracle: the one-hot ``eta`` whose gradient ``G^T eta`` deviates most from ``G^T y``.

    Args:
        g: Jacobians ``(N, K, D)`` (:func:`log_likelihood_jacobian`).
        y: The undefended posteriors ``(N, K)``.
        objective: ``angle``: minimise the cosine between ``G^T y`` and ``G^T e_k`` (maximise the
            angular deviation); ``surrogate``: maximise ``||G^T (e_k - y)||^2``.

    Returns:
        One-hot rows ``(N, K)`` in ``y``'s dtype; ties go to the lowest class (MAD's strict ``>``).
    """
    g = g.double()
    u = torch.einsum("nkd,nk->nd", g, y.double())
    if objective == "angle":
        cos = torch.einsum("nkd,nd->nk", g, u) / (g.norm(dim=2) * u.norm(dim=1, keepdim=True)).clamp_min(_TINY)
        k = torch.argmin(cos, dim=1)
    else:
        k = torch.argmax((g - u[:, None, :]).norm(dim=2), dim=1)
    return F.one_hot(k, num_classes=y.shape[1]).to(y.dtype)


def reverse_cross_entropy(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Adaptive Misinformation's loss for the misinformation model: ``mean(-log(1 - F^(x)_y + 1e-7))``.

    Kariyappa & Qureshi's code applies ``CrossEntropyLoss`` to ``log(1 - softmax + 1e-7)``, which
    differs from this by a constant (``log`` of the sum over classes), so the gradients agree.
    """
    p = torch.softmax(module(x), dim=1).gather(1, y[:, None]).squeeze(1)
    return -torch.log(1.0 - p + 1e-7).mean()


def adaptive_weight(confidence: torch.Tensor, *, tau: float, nu: float) -> torch.Tensor:
    """``a = 1 / (1 + exp(nu (max_i F(x)_i - tau)))``: near 1 below the threshold ``tau``, near 0 above it."""
    return torch.sigmoid(nu * (tau - confidence.double()))


def grid(step: float, *, top: float = 1.0) -> list[float]:
    """``step, 2 step, ...`` up to ``top`` (rounded to ten decimals, so 0.07 is 0.07)."""
    count = int(round(top / step, 9))
    return [round(step * k, 10) for k in range(1, count + 1)]


def largest_within_budget(
    values: Sequence[float], correct: Callable[[float], int], *, baseline: int, n: int, budget: float
) -> tuple[float, int]:
    """The paper's rule: walk up ``values`` and stop before the accuracy decrease reaches ``budget``.

    Args:
        values: The grid, smallest perturbation first.
        correct: Correctly classified calibration rows under the perturbation of a grid value.
        baseline: Correctly classified rows without perturbation.
        n: Calibration rows.
        budget: The largest decrease allowed, exclusive (0.01: the first value losing 1 % stops the walk).

    Returns:
        The last value whose decrease stayed below ``budget`` and its count of correct rows;
        ``(0.0, baseline)`` when the first value already loses ``budget``.
    """
    chosen, kept = 0.0, baseline
    for value in values:
        after = correct(value)
        if (baseline - after) >= budget * n - 1e-9:
            break
        chosen, kept = value, after
    return chosen, kept
