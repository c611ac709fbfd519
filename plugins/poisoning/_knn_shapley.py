"""Exact KNN-Shapley values (Jia et al., 2019, Theorem 1), vectorised over training points, batched over test points.

For one test point ``(x, y)`` sort the ``N`` training points by distance to ``x``, nearest first
(``alpha_1, ..., alpha_N``), and let ``m_i = 1[y_{alpha_i} == y]``. The Shapley value of each training
point for the K-nearest-neighbour utility ``U(S) = (1/K) * sum_{k <= min(K, |S|)} 1[y_{alpha_k(S)} == y]``
is given by the recursion

    s_{alpha_N} = m_N / N
    s_{alpha_i} = s_{alpha_{i+1}} + (m_i - m_{i+1}) / K * min(K, i) / i        (i = N-1, ..., 1)

Unrolled, ``s_{alpha_i} = m_N / N + sum_{l=i}^{N-1} (m_l - m_{l+1}) * min(K, l) / (K * l)``: a reversed
cumulative sum, so a whole batch of test points costs one ``cdist``, one ``argsort`` and one ``cumsum``.
The value of a training point for a set of test points is the mean of its per-test-point values
(the Shapley value of the averaged utility, by linearity). Theorem 1 assumes ``N >= K``; with fewer
training points than neighbours the utility is additive and every value is ``m_i / K``, which the same
recursion gives when its first term is ``m_N / max(N, K)``.

Reference:
    Ruoxi Jia, David Dao, Boxin Wang, Frances Ann Hubis, Nezihe Merve Gurel, Bo Li, Ce Zhang, Costas Spanos
    and Dawn Song. "Efficient Task-Specific Data Valuation for Nearest Neighbor Algorithms". PVLDB 12(11),
    2019. https://arxiv.org/abs/1908.08619 (reference code: https://github.com/AI-secure/KNN-shapley).
"""

from __future__ import annotations

import torch

__all__ = ["knn_shapley"]

_ELEMENTS_PER_BATCH = 1 << 22
"""Distance-matrix entries per test batch (about 32 MiB in float64): bounds memory on large training sets."""


def knn_shapley(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    k: int = 5,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Exact KNN-Shapley value of every training point, averaged over the test points.

    Args:
        train_x: Training features ``(N, ...)``; flattened to ``(N, D)``.
        train_y: Training labels ``(N,)``.
        test_x: Test (validation) features ``(M, ...)``, flattened to ``(M, D)``.
        test_y: Test labels ``(M,)``.
        k: Number of neighbours of the KNN classifier the values are defined for.
        batch_size: Test points per batch (default: as many as fit :data:`_ELEMENTS_PER_BATCH`
            distance entries).

    Returns:
        Float64 tensor ``(N,)`` on ``train_x``'s device: the mean over test points of each training
        point's Shapley value. Distance ties are broken by training-row order.

    Raises:
        ValueError: On empty inputs, mismatched shapes or ``k < 1``.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    n, m = int(train_x.shape[0]), int(test_x.shape[0])
    if n == 0 or m == 0:
        raise ValueError(f"need at least one training and one test point, got {n} and {m}")
    if train_y.shape != (n,) or test_y.shape != (m,):
        shapes = f"{tuple(train_y.shape)} and {tuple(test_y.shape)}"
        raise ValueError(f"labels must have shapes ({n},) and ({m},), got {shapes}")
    device = train_x.device
    train = train_x.reshape(n, -1).to(torch.float64)
    test = test_x.reshape(m, -1).to(device=device, dtype=torch.float64)
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train and test features differ in size: {train.shape[1]} and {test.shape[1]}")
    train_labels, test_labels = train_y.to(device), test_y.to(device)

    ranks = torch.arange(1, n, device=device, dtype=torch.float64)  # l = 1 .. N-1
    weight = torch.clamp(ranks, max=k) / (k * ranks)  # min(K, l) / (K * l)
    total = torch.zeros(n, dtype=torch.float64, device=device)
    step = batch_size or max(1, _ELEMENTS_PER_BATCH // n)
    for start in range(0, m, step):
        x, y = test[start : start + step], test_labels[start : start + step]
        order = torch.cdist(x, train).argsort(dim=1, stable=True)  # (B, N): alpha_1 .. alpha_N per test point
        match = (train_labels[order] == y[:, None]).to(torch.float64)
        steps = (match[:, :-1] - match[:, 1:]) * weight  # (m_l - m_{l+1}) * min(K, l) / (K l), l < N
        tail = steps.flip(1).cumsum(1).flip(1)  # sum over l >= i
        values = torch.cat([tail, torch.zeros_like(match[:, :1])], dim=1) + match[:, -1:] / max(n, k)
        total.scatter_add_(0, order.reshape(-1), values.reshape(-1))
    return total / m
