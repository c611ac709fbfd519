"""The adversary of adversarial debiasing and the projected predictor update (Zhang et al., 2018).

:func:`train_debiased` trains a predictor and one adversary per sensitive attribute jointly. Each step
takes one forward pass of the mini-batch, then:

- the adversaries descend ``grad_U L_A`` (they learn to predict the attribute from the prediction);
- the predictor descends ``grad_W L_P - proj_{grad_W L_A} grad_W L_P - alpha * grad_W L_A`` (Zhang et
  al.'s update): the projection removes the part of the task gradient that would help the adversary,
  and the last term actively hurts it.

The gradients are assigned to ``.grad`` and applied by the recipe's optimizer, one for the predictor
and one for the adversaries (AIF360 uses Adam, with one learning rate, for both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from interplay._seeding import derive_seed, seeded
from interplay.recipe import TrainingRecipe
from interplay.training import iterate_minibatches, make_optimizer

__all__ = ["Fairness", "ZhangAdversary", "log_odds", "train_debiased"]

Fairness = Literal["demographic_parity", "equalized_odds"]

_TINY = float(torch.finfo(torch.float32).tiny)


def log_odds(logits: torch.Tensor) -> torch.Tensor:
    """The predictor's output as log-odds, the adversary's input.

    For two classes, the single column ``logit(P(y = 1)) = z_1 - z_0`` (Zhang et al.'s ``logit(y_hat)``);
    for ``K > 2`` classes, one column per class, ``logit(P(y = k)) = z_k - logsumexp_{j != k} z_j``.
    """
    n, k = logits.shape
    if k == 2:
        return (logits[:, 1] - logits[:, 0]).unsqueeze(1)
    others = logits.unsqueeze(1).expand(n, k, k)
    eye = torch.eye(k, dtype=torch.bool, device=logits.device)
    return logits - torch.logsumexp(others.masked_fill(eye, float("-inf")), dim=2)


class ZhangAdversary(nn.Module):
    """Zhang et al.'s adversary: ``z_hat = w . [s, s*y, s*(1-y)] + b`` with ``s = sigmoid((1 + |c|) logit(y_hat))``.

    With ``with_label=False`` (demographic parity) the adversary sees ``s`` only; with ``True``
    (equalized odds) it also sees ``s`` times the one-hot true label, which for two classes is
    Zhang et al.'s ``[s, s*y, s*(1-y)]`` (columns reordered). ``c`` starts at 1 and ``w`` is
    Glorot-uniform with a zero bias, as in AIF360. A binary attribute gets one logit (binary
    cross-entropy, as in the paper); an attribute with ``V > 2`` values gets ``V`` (cross-entropy).

    Args:
        n_outputs: Columns of the predictor's log-odds (1 for a binary task, else the class count).
        num_classes: Classes of the task (for the one-hot label).
        n_values: Values the sensitive attribute takes.
        with_label: Whether the adversary also sees the true label (equalized odds).
    """

    def __init__(self, n_outputs: int, num_classes: int, n_values: int, *, with_label: bool) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.with_label = with_label
        self.binary = n_values == 2
        in_features = n_outputs * (1 + num_classes) if with_label else n_outputs
        self.c = nn.Parameter(torch.tensor(1.0))
        self.linear = nn.Linear(in_features, 1 if self.binary else n_values)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, odds: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The adversary's logits for the attribute, from the predictor's log-odds and the true labels."""
        s = torch.sigmoid((1 + self.c.abs()) * odds)
        if self.with_label:
            onehot = F.one_hot(y, self.num_classes).to(s.dtype)
            s = torch.cat([s, (s.unsqueeze(2) * onehot.unsqueeze(1)).flatten(1)], dim=1)
        out: torch.Tensor = self.linear(s)
        return out

    def loss(self, odds: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``L_A``: cross-entropy of the adversary's guess of the attribute codes ``z``."""
        out = self(odds, y)
        if self.binary:
            return F.binary_cross_entropy_with_logits(out.squeeze(1), z.to(out.dtype))
        return F.cross_entropy(out, z)


@dataclass(frozen=True)
class DebiasedTraining:
    """What :func:`train_debiased` produced.

    Attributes:
        module: The trained predictor, in evaluation mode.
        predictor_loss: Mean task loss ``L_P`` over the last epoch.
        adversary_loss: Mean adversary loss ``L_A`` over the last epoch (averaged over the attributes).
        steps: Optimizer steps taken.
    """

    module: nn.Module
    predictor_loss: float
    adversary_loss: float
    steps: int


def _dense(weights: list[nn.Parameter], grads: tuple[torch.Tensor | None, ...]) -> list[torch.Tensor]:
    """The gradients, with zeros for weights the loss does not depend on."""
    return [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads, strict=True)]


def _project(task: list[torch.Tensor], adversary: list[torch.Tensor], alpha: float) -> list[torch.Tensor]:
    """``g_P - (g_P . u) u - alpha g_A`` with ``u = g_A / |g_A|``, over all predictor weights as one vector."""
    norm = torch.sqrt(sum((a * a).sum() for a in adversary))  # type: ignore[arg-type]
    unit = [a / (norm + _TINY) for a in adversary]
    dot = sum((g * u).sum() for g, u in zip(task, unit, strict=True))
    return [g - dot * u - alpha * a for g, u, a in zip(task, unit, adversary, strict=True)]


def train_debiased(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    codes: list[tuple[torch.Tensor, int]],
    recipe: TrainingRecipe,
    *,
    num_classes: int,
    fairness: Fairness,
    alpha: float,
    adversary_lr: float | None = None,
    seed: int,
    device: torch.device | str = "cpu",
) -> DebiasedTraining:
    """Train ``module`` on ``(x, y)`` against one adversary per sensitive attribute.

    Args:
        module: The predictor; ``module(x)`` returns logits. Trained in place.
        x: Training inputs.
        y: Int64 labels.
        codes: Per attribute, its values coded ``0 .. V-1`` (int64 ``(N,)``) and ``V``.
        recipe: Optimizer, learning rate, epochs and batch size, for the predictor and the adversaries.
        num_classes: Classes of the task (the width of ``module``'s output).
        fairness: ``demographic_parity`` (the adversary sees the prediction) or ``equalized_odds``
            (the prediction and the true label).
        alpha: Weight of the ``- alpha * grad_W L_A`` term of the predictor's update.
        adversary_lr: The adversaries' learning rate; ``None`` uses the recipe's.
        seed: Seeds the mini-batch order, the adversaries' initialisation and the global RNGs (dropout);
            the order is the one :func:`interplay.training.fit` draws from the same seed.
        device: Where to train.

    Returns:
        The trained predictor and its last epoch's losses.
    """
    module.to(device).train()
    n_outputs = 1 if num_classes == 2 else num_classes
    with seeded(derive_seed(seed, "adversary")):
        adversaries = [
            ZhangAdversary(n_outputs, num_classes, v, with_label=fairness == "equalized_odds").to(device)
            for _, v in codes
        ]
    weights = [p for p in module.parameters() if p.requires_grad]
    adversary_params = [p for adversary in adversaries for p in adversary.parameters()]
    predictor_opt = make_optimizer(weights, recipe)
    adversary_opt = make_optimizer(adversary_params, recipe.overridden(lr=adversary_lr))
    x_dev, y_dev = x.to(device), y.to(device)
    z_dev = [z.to(device) for z, _ in codes]
    generator = torch.Generator().manual_seed(derive_seed(seed, "minibatches"))
    steps = 0
    losses_p: list[torch.Tensor] = []
    losses_a: list[torch.Tensor] = []
    with seeded(derive_seed(seed, "fit")):
        for _ in range(recipe.epochs):
            losses_p, losses_a = [], []
            for index in iterate_minibatches(len(x_dev), recipe.batch_size, generator=generator, device=device):
                yb = y_dev[index]
                logits = module(x_dev[index])
                loss_p = F.cross_entropy(logits, yb)
                odds = log_odds(logits)
                loss_a = torch.stack(
                    [adv.loss(odds, yb, z[index]) for adv, z in zip(adversaries, z_dev, strict=True)]
                ).mean()
                grad_p = torch.autograd.grad(loss_p, weights, retain_graph=True, allow_unused=True)
                grad_a = torch.autograd.grad(loss_a, weights + adversary_params, allow_unused=True)
                task, against = _dense(weights, grad_p), _dense(weights, grad_a[: len(weights)])
                for weight, grad in zip(weights, _project(task, against, alpha), strict=True):
                    weight.grad = grad
                for param, grad in zip(adversary_params, grad_a[len(weights) :], strict=True):
                    param.grad = grad
                predictor_opt.step()
                adversary_opt.step()
                steps += 1
                losses_p.append(loss_p.detach() * len(index))
                losses_a.append(loss_a.detach() * len(index))
    for param in weights:
        param.grad = None  # leave no gradients behind on the trained module
    n = max(len(x_dev), 1)
    return DebiasedTraining(
        module=module.eval(),
        predictor_loss=float(torch.stack(losses_p).sum()) / n if losses_p else 0.0,
        adversary_loss=float(torch.stack(losses_a).sum()) / n if losses_a else 0.0,
        steps=steps,
    )
