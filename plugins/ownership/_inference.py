"""The statistical half of dataset inference: embeddings to features, the confidence regressor, the t-test.

Follows the reference notebooks of Maini et al. (``src/notebooks/CIFAR10_mingd.ipynb`` and
``CIFAR10_rand.ipynb`` of github.com/cleverhans-lab/dataset-inference):

* features: MinGD distances sorted over the classes within each norm (Blind Walk distances are
  left in draw order), standardised with the mean and standard deviation of each norm over the
  victim's private embeddings, flattened to ``3 * K`` numbers per sample;
* confidence regressor: ``Linear(3K, 100) -> ReLU -> Linear(100, 1) -> Tanh`` (or one linear
  layer and Tanh), full-batch SGD with learning rate 0.1 for 1,000 steps on the loss
  ``-mean((2 * y - 1) * score)`` with ``y = 0`` for private and ``y = 1`` for public samples, so a
  *lower* score means "more likely in the victim's training set";
* the test: Welch's one-sided t-test ``H0: mean(public scores) <= mean(private scores)`` on ``m``
  randomly drawn scores of each set, repeated and combined with the harmonic mean (the
  notebooks' ``get_p_values`` + ``hmean``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["Regressor", "TestResult", "features", "norm_statistics", "train_regressor", "welch_greater"]

Regressor = Literal["mlp", "linear"]


def features(distances: torch.Tensor, *, sort: bool, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Distances ``(N, K, 3)`` to regressor inputs ``(N, 3K)``: sorted, standardised per norm, norm-major."""
    values = distances.sort(dim=1).values if sort else distances
    values = (values - mean) / std
    return values.permute(0, 2, 1).reshape(values.shape[0], -1)


def norm_statistics(private: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of each norm over samples and classes (the notebooks' ``dim=(0, 1)``).

    A norm whose distances are all equal gets a standard deviation of 1 instead of 0.
    """
    mean = private.mean(dim=(0, 1))
    std = private.std(dim=(0, 1)) if private.shape[0] * private.shape[1] > 1 else torch.ones_like(mean)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def train_regressor(
    private: torch.Tensor,
    public: torch.Tensor,
    *,
    kind: Regressor,
    hidden: int,
    epochs: int,
    lr: float,
    generator: torch.Generator,
) -> torch.nn.Module:
    """Fit the confidence regressor: low scores for ``private`` rows, high scores for ``public`` rows."""
    inputs = torch.cat([private, public]).cpu()
    target = torch.cat([torch.zeros(len(private)), torch.ones(len(public))])
    order = torch.randperm(len(target), generator=generator)
    inputs, sign = inputs[order], (2 * target[order] - 1)
    width = inputs.shape[1]
    layers: list[torch.nn.Module] = (
        [torch.nn.Linear(width, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)]
        if kind == "mlp"
        else [torch.nn.Linear(width, 1)]
    )
    model = torch.nn.Sequential(*layers, torch.nn.Tanh())
    with torch.no_grad():  # seeded initialisation, independent of the global RNG
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                bound = 1 / width**0.5
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
                width = layer.out_features
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(epochs):
            optimizer.zero_grad()
            loss = -(sign * model(inputs).squeeze(-1)).mean()
            loss.backward()
            optimizer.step()
    return model.eval()


@dataclass(frozen=True)
class TestResult:
    """The outcome of the hypothesis test on one model.

    Attributes:
        p_value: Harmonic mean of the p-values of the repeated tests on ``m`` samples each.
        p_value_all: p-value of one test on every held-out score.
        mean_difference: ``mean(public scores) - mean(private scores)`` (the paper's effect size).
    """

    p_value: float
    p_value_all: float
    mean_difference: float


def _welch(public: torch.Tensor, private: torch.Tensor) -> torch.Tensor:
    """One-sided Welch p-values ``P(T >= t)`` along the last dimension (batched over the leading ones)."""
    import numpy as np
    from scipy import stats

    n1, n2 = public.shape[-1], private.shape[-1]
    v1, v2 = public.var(dim=-1, unbiased=True) / n1, private.var(dim=-1, unbiased=True) / n2
    diff = public.mean(dim=-1) - private.mean(dim=-1)
    se = (v1 + v2).sqrt()
    # No spread at all: any difference is certain (t = +-inf), no difference is no evidence (t = 0).
    degenerate = torch.where(diff == 0, torch.zeros_like(diff), diff.sign() * torch.inf)
    t = torch.where(se > 0, diff / se.clamp_min(1e-300), degenerate)
    denominator = v1.square() / (n1 - 1) + v2.square() / (n2 - 1)
    df = torch.where(denominator > 0, (v1 + v2).square() / denominator.clamp_min(1e-300), float(n1 + n2 - 2))
    return torch.from_numpy(np.asarray(stats.t.sf(t.numpy(), df.numpy()), dtype=np.float64))


def welch_greater(
    private: torch.Tensor, public: torch.Tensor, *, m: int, repetitions: int, generator: torch.Generator
) -> TestResult:
    """Test ``H1: public scores exceed private scores`` (the suspect knows the private samples).

    Args:
        private: Regressor scores of the held-out private samples ``(n_private,)``.
        public: Regressor scores of the held-out public samples ``(n_public,)``.
        m: Samples of each set per test (at most the smaller set's size).
        repetitions: Independent random draws of the ``m`` samples.
        generator: Source of the draws.
    """
    private, public = private.detach().double().cpu(), public.detach().double().cpu()
    m = min(m, len(private), len(public))
    pick_private = torch.rand(repetitions, len(private), generator=generator).argsort(dim=1)[:, :m]
    pick_public = torch.rand(repetitions, len(public), generator=generator).argsort(dim=1)[:, :m]
    p = _welch(public[pick_public], private[pick_private])
    harmonic = 0.0 if bool((p == 0).any()) else float(len(p) / (1 / p).sum())
    return TestResult(
        p_value=harmonic,
        p_value_all=float(_welch(public, private)),
        mean_difference=float(public.mean() - private.mean()),
    )
