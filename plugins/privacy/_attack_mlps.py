"""Many small attack MLPs trained together: one per sensitive attribute, stacked along a leading axis.

Used by the attribute-inference attacks (:mod:`.attribute`): their weights are stacked along a
leading "attribute" axis and one batched forward/backward pass serves all of them
(:func:`train_stacked`). Each model still has its own initialisation, loss, Adam state and stopping
epoch, so, up to floating-point rounding, the result equals training them one at a time on the
same mini-batch order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import torch
from torch.nn import functional as F

__all__ = ["Layers", "NetSpec", "probability_of_one", "train_stacked"]


@dataclass(frozen=True)
class NetSpec:
    """One attack model per attribute: architecture, initialisation and training.

    Attributes:
        hidden: Hidden ReLU layer widths.
        outputs: 1 for one logistic output unit (scikit-learn's binary MLPClassifier), 2 for two
            logits under a softmax (ML-Doctor).
        init: ``glorot``: scikit-learn's ``U(-b, b)``, ``b = sqrt(6 / (fan_in + fan_out))`` for weights
            and biases; ``torch``: ``nn.Linear``'s default ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
        alpha: L2 penalty ``alpha / 2 * ||W||^2 / batch_rows`` on the weights (scikit-learn's form).
        lr: Adam's learning rate.
        batch_size: Mini-batch size.
        max_epochs: Epochs at most.
        tol: Stop a model after more than ``patience`` consecutive epochs whose mean training loss
            did not improve on the best by ``tol`` (scikit-learn's rule); ``None`` never stops early.
        patience: scikit-learn's ``n_iter_no_change``.
    """

    hidden: tuple[int, ...]
    outputs: Literal[1, 2]
    init: Literal["glorot", "torch"]
    alpha: float
    lr: float
    batch_size: int
    max_epochs: int
    tol: float | None = None
    patience: int = 10


Layers = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: weights (A, fan_in, fan_out), biases (A, 1, fan_out)


def _init_layers(spec: NetSpec, in_features: int, generators: list[torch.Generator], device: str) -> Layers:
    """Initial weights of one model per generator, stacked; model ``a`` depends on ``generators[a]`` only."""
    widths = (in_features, *spec.hidden, spec.outputs)
    per_model = []
    for generator in generators:
        tensors = []
        for fan_in, fan_out in pairwise(widths):
            bound = math.sqrt(6.0 / (fan_in + fan_out)) if spec.init == "glorot" else 1.0 / math.sqrt(fan_in)
            tensors.append((torch.rand(fan_in, fan_out, generator=generator) * 2 - 1) * bound)
            tensors.append((torch.rand(1, fan_out, generator=generator) * 2 - 1) * bound)
        per_model.append(tensors)
    stacked = [torch.stack(parts).to(device).requires_grad_() for parts in zip(*per_model, strict=True)]
    return [(stacked[i], stacked[i + 1]) for i in range(0, len(stacked), 2)]


def _forward(layers: Layers, x: torch.Tensor) -> torch.Tensor:
    """Logits ``(A, N, outputs)`` of the ``A`` stacked models on shared inputs ``x`` ``(N, D)``."""
    h = x.unsqueeze(0).expand(layers[0][0].shape[0], -1, -1)
    for index, (weight, bias) in enumerate(layers):
        h = torch.baddbmm(bias, h, weight)
        if index < len(layers) - 1:
            h = torch.relu(h)
    return h


def _losses(spec: NetSpec, layers: Layers, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Each model's loss on one mini-batch, ``(A,)``; ``z`` holds the targets ``(A, B)``."""
    logits = _forward(layers, x)
    if spec.outputs == 1:
        loss = F.binary_cross_entropy_with_logits(logits[..., 0], z.to(logits.dtype), reduction="none").mean(1)
    else:
        loss = F.cross_entropy(logits.transpose(1, 2), z, reduction="none").mean(1)
    if spec.alpha > 0:
        squares = sum((weight**2).sum(dim=(1, 2)) for weight, _ in layers)
        loss = loss + 0.5 * spec.alpha * squares / x.shape[0]
    return loss


def train_stacked(
    spec: NetSpec,
    x: torch.Tensor,
    z: torch.Tensor,
    *,
    init: list[torch.Generator],
    order: torch.Generator,
    device: str,
) -> Layers:
    """Train one model per row of ``z`` ``(A, N)`` on the shared features ``x`` ``(N, D)``.

    Model ``a`` is initialised from ``init[a]``; all share the mini-batch order drawn from ``order``.
    The loss is the sum of the models' losses, so each one's gradient, Adam moments and update are
    its own: up to floating-point rounding, model ``a`` is what training it alone gives. A model
    that meets the stopping rule is snapshotted and its later updates are discarded, as if it had
    stopped training there.
    """
    n_models, n = z.shape
    layers = _init_layers(spec, x.shape[1], init, device)
    params = [tensor for layer in layers for tensor in layer]
    optimizer = torch.optim.Adam(params, lr=spec.lr)
    x, z = x.to(device), z.to(device)
    batch = min(spec.batch_size, n)  # scikit-learn clips its batch size to the number of rows
    best = torch.full((n_models,), math.inf, dtype=torch.float64)
    stale = torch.zeros(n_models, dtype=torch.int64)
    final: list[list[torch.Tensor] | None] = [None] * n_models
    for _ in range(spec.max_epochs):
        total = torch.zeros(n_models, device=device)
        for index in torch.split(torch.randperm(n, generator=order).to(device), batch):
            optimizer.zero_grad(set_to_none=True)
            losses = _losses(spec, layers, x[index], z[:, index])
            losses.sum().backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += losses.detach() * len(index)
        if spec.tol is None:
            continue
        epoch_loss = (total / n).to("cpu", torch.float64)
        stale = torch.where(epoch_loss > best - spec.tol, stale + 1, 0)
        best = torch.minimum(best, epoch_loss)
        for a in torch.nonzero(stale > spec.patience).flatten().tolist():
            if final[a] is None:
                final[a] = [p.detach()[a].clone() for p in params]
        if all(f is not None for f in final):
            break
    stacked = [p.detach().clone() for p in params]
    for a, snapshot in enumerate(final):
        for tensor, value in zip(stacked, snapshot or [], strict=False):
            tensor[a] = value
    return [(stacked[i], stacked[i + 1]) for i in range(0, len(stacked), 2)]


def probability_of_one(spec: NetSpec, layers: Layers, x: torch.Tensor) -> torch.Tensor:
    """Each model's probability that its attribute is 1, ``(A, N)``."""
    with torch.no_grad():
        logits = _forward(layers, x.to(layers[0][0].device))
    if spec.outputs == 1:
        return torch.sigmoid(logits[..., 0])
    return torch.softmax(logits, dim=2)[..., 1]
