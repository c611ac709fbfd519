"""Samples of a data pool at a given ratio of a binary attribute: the training sets of distribution inference."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["draw_samples", "max_sample_size"]


def _ones(n: int, ratio: float) -> int:
    """Rows with attribute 1 in a sample of ``n`` rows at ``ratio`` (rounded half up)."""
    return math.floor(ratio * n + 0.5)


def max_sample_size(n0: int, n1: int, ratios: Sequence[float]) -> int:
    """Largest sample size every ratio allows from ``n0`` rows with attribute 0 and ``n1`` with attribute 1.

    Examples:
        >>> max_sample_size(900, 100, (0.1, 0.9))
        111
    """
    best = n0 + n1
    for ratio in ratios:
        limits = [float(n0 + n1)]
        if ratio > 0:
            limits.append(n1 / ratio)
        if ratio < 1:
            limits.append(n0 / (1 - ratio))
        n = min(n0 + n1, math.floor(min(limits)) + 1)  # rounding may admit one row past the real-valued limit
        while n > 0 and (_ones(n, ratio) > n1 or n - _ones(n, ratio) > n0):
            n -= 1
        best = min(best, n)
    return best


def draw_samples(
    groups: tuple[torch.Tensor, torch.Tensor], ratio: float, n: int, count: int, gen: torch.Generator
) -> torch.Tensor:
    """``count`` random samples of ``n`` positions at ``ratio``, shape ``(count, n)``, each row sorted."""
    k1 = _ones(n, ratio)
    picks = []
    for group, k in ((groups[1], k1), (groups[0], n - k1)):
        order = torch.rand(count, len(group), generator=gen).argsort(dim=1)[:, :k]
        picks.append(group[order])
    return torch.cat(picks, dim=1).sort(dim=1).values
