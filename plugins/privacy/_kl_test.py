"""The KL-divergence test of Suri et al. (SaTML 2023), the black-box distribution-inference decision rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

__all__ = ["KL_EPS", "kl_test"]

KL_EPS = 1e-6
"""Probabilities are clipped to ``[KL_EPS, 1 - KL_EPS]`` before the logarithms of the KL divergence."""


def _kl_matrix(shadow: torch.Tensor, victim: torch.Tensor) -> torch.Tensor:
    """``KL(shadow_s || victim_v)`` averaged over the queries: ``(V, S)`` from ``(S, Q, C)`` and ``(V, Q, C)``."""
    p = shadow.clamp(KL_EPS, 1 - KL_EPS)
    q = victim.clamp(KL_EPS, 1 - KL_EPS)
    entropy_term = (p * p.log()).sum(dim=2).mean(dim=1)  # (S,)
    cross = torch.einsum("sqc,vqc->vs", p, q.log()) / p.shape[1]  # (V, S)
    return entropy_term.unsqueeze(0) - cross


def kl_test(
    shadow: Sequence[torch.Tensor],
    victim: Sequence[torch.Tensor],
    *,
    pair_fraction: float = 0.8,
    decision: Literal["difference", "vote"] = "difference",
    generator: torch.Generator,
) -> torch.Tensor:
    """The KL-divergence test of Suri et al. (SaTML 2023): which ratio each victim is closer to.

    For the queries drawn from each of the two distributions ``d``, and every victim ``v``, the
    divergences ``KL(P_i^0 || P_v)`` to the ratio-0 shadows and ``KL(P_j^1 || P_v)`` to the ratio-1
    shadows (averaged over the queries) are compared over a random ``pair_fraction`` of the model
    pairs ``i < j`` (the reference's ``kl_frac``, drawn anew for each ``d``). ``difference`` (the
    reference's default, ``kl_voting=False``) takes ``KL_i^0 - KL_j^1``, min-max normalises each
    pair's column over the victims, averages and predicts ratio 1 at 0.5 or more; ``vote``
    (``kl_voting=True``) averages the indicators ``KL_i^0 > KL_j^1`` instead, victim by victim.

    Args:
        shadow: Per distribution, the shadows' posteriors ``(2S, Q, C)``: ``S`` ratio-0 shadows, then ``S`` ratio-1.
        victim: Per distribution, the victims' posteriors ``(V, Q, C)``.
        pair_fraction: Share of the model pairs compared.
        decision: ``difference`` or ``vote``.
        generator: Source of the pair selection.

    Returns:
        Predicted ratio index per victim, int64 ``(V,)``.
    """
    comparisons = []
    for shadow_d, victim_d in zip(shadow, victim, strict=True):
        s = shadow_d.shape[0] // 2
        kl = _kl_matrix(shadow_d, victim_d)
        first, second = torch.triu_indices(s, s, offset=1)
        chosen = torch.randperm(first.numel(), generator=generator)[: max(1, int(pair_fraction * first.numel()))]
        diff = kl[:, :s][:, first[chosen]] - kl[:, s:][:, second[chosen]]
        comparisons.append((diff > 0).to(torch.float32) if decision == "vote" else diff)
    scores = torch.cat(comparisons, dim=1)
    if decision == "difference":
        low, high = scores.min(dim=0).values, scores.max(dim=0).values
        span = high - low
        scores = torch.where(span > 0, (scores - low) / span.clamp_min(torch.finfo(scores.dtype).tiny), 0.5)
    return (scores.mean(dim=1) >= 0.5).to(torch.int64)
