"""Distance-to-decision-boundary embeddings of dataset inference (Maini et al., ICLR 2021), batched.

Two ways of estimating, for every sample, how far it lies from the model's decision boundaries,
each measured in the L-infinity, L2 and L1 norms (in that order, as the reference code stacks them):

* :func:`mingd_distances` (white-box, the paper's "MinGD"): for every sample and every class
  ``t``, gradient steps on the input until the model predicts ``t``; the size of the perturbation
  is the distance to class ``t``. The loss is the reference code's ``loss_mingd``, the margin
  ``max_j f_j(x + delta) - f_t(x + delta)``; steps are signed gradients (L-infinity), gradients
  normalised to unit L2 norm (L2), or the signs of the ``k`` largest gradient coordinates that can
  still move inside the valid box (L1, the reference's ``l1_dir_topk``), and ``x + delta`` is clipped
  to the valid box after every step. A row stops as soon as it is classified as ``t``.
* :func:`blind_walk_distances` (label-only, the paper's "Blind Walk"): for every sample, random
  directions ``delta_0`` (uniform noise for L-infinity, Gaussian for L2, Laplace for L1); the walk
  queries ``x + j * delta_0`` for ``j = 1, 2, ...`` until the label changes, and the size of the
  last perturbation is the distance in that direction.

All samples, classes (or random starts) and steps are processed as one batch: the rows of the
batch are ``(sample, class)`` pairs, and each iteration runs the model once on the rows that have
not yet crossed a boundary. Reference: ``src/attacks.py`` (``mingd``, ``rand_steps``, ``l1_dir_topk``)
and ``src/generate_features.py`` of github.com/cleverhans-lab/dataset-inference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

__all__ = ["NORMS", "BoundaryNorm", "blind_walk_distances", "lp_norms", "mingd_distances"]

BoundaryNorm = Literal["linf", "l2", "l1"]
NORMS: tuple[BoundaryNorm, ...] = ("linf", "l2", "l1")
"""The norms of the embedding, in the reference code's order (``["linf", "l2", "l1"]``)."""

_L2_FLOOR = 1e-12
"""Added to the gradient before normalising it (the reference's ``grads / norms(grads + 1e-12)``)."""

_ROWS_PER_CHUNK = 16384
"""Rows (sample-class pairs) processed together, bounding memory on large inputs."""


def lp_norms(delta: torch.Tensor, norm: BoundaryNorm) -> torch.Tensor:
    """Per-row norm of ``delta`` flattened: ``(N, ...) -> (N,)``."""
    flat = delta.reshape(delta.shape[0], -1)
    if norm == "linf":
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
    if norm == "l2":
        return flat.norm(dim=1)
    return flat.abs().sum(dim=1)


def _clip(delta: torch.Tensor, x: torch.Tensor, clip_min: float | None, clip_max: float | None) -> torch.Tensor:
    """Clip ``x + delta`` to ``[clip_min, clip_max]`` by adjusting ``delta``."""
    if clip_min is not None:
        delta = torch.maximum(delta, clip_min - x)
    if clip_max is not None:
        delta = torch.minimum(delta, clip_max - x)
    return delta


def _l1_direction(
    grad: torch.Tensor,
    x_adv: torch.Tensor,
    *,
    k: int,
    gap: float,
    clip_min: float | None,
    clip_max: float | None,
) -> torch.Tensor:
    """Signs of the ``k`` largest gradient coordinates that can still move (the reference's ``l1_dir_topk``).

    A coordinate is frozen when it sits at (or within ``gap`` of) the bound its gradient pushes it
    towards, or outside the valid box.
    """
    flat = grad.reshape(grad.shape[0], -1).clone()
    point = x_adv.reshape(x_adv.shape[0], -1)
    if clip_min is not None:
        flat[((flat < 0) & (point <= clip_min + gap)) | (point <= clip_min)] = 0
    if clip_max is not None:
        flat[((flat > 0) & (point >= clip_max - gap)) | (point >= clip_max)] = 0
    k = min(k, flat.shape[1])
    kth = flat.abs().topk(k, dim=1).values[:, -1:]
    return ((flat.abs() >= kth).to(flat.dtype) * flat.sign()).reshape(grad.shape)


def _mingd_chunk(
    module: torch.nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    *,
    norm: BoundaryNorm,
    step: float,
    iterations: int,
    l1_k: int,
    l1_gap: float,
    clip_min: float | None,
    clip_max: float | None,
) -> torch.Tensor:
    """MinGD on rows ``x`` towards ``targets``; returns the final perturbations."""
    delta = torch.zeros_like(x)
    active = torch.arange(x.shape[0], device=x.device)
    for _ in range(iterations):
        if active.numel() == 0:
            break
        x_rows = x[active]
        d_rows = delta[active].requires_grad_(True)
        logits = module(x_rows + d_rows)
        target_rows = targets[active]
        moving = logits.argmax(dim=1) != target_rows
        if not bool(moving.any()):
            break
        margin = logits.max(dim=1).values - logits.gather(1, target_rows[:, None]).squeeze(1)
        (grad,) = torch.autograd.grad(-(margin * moving).sum(), d_rows)
        active, x_rows, grad = active[moving], x_rows[moving], grad[moving]
        d_rows = d_rows.detach()[moving]
        with torch.no_grad():
            if norm == "linf":
                d_rows = d_rows + step * grad.sign()
            elif norm == "l2":
                shifted = grad + _L2_FLOOR
                scale = lp_norms(shifted, "l2").reshape(-1, *([1] * (grad.ndim - 1)))
                d_rows = d_rows + step * grad / scale
            else:
                direction = _l1_direction(
                    grad, x_rows + d_rows, k=l1_k, gap=l1_gap, clip_min=clip_min, clip_max=clip_max
                )
                d_rows = d_rows + (step / min(l1_k, grad[0].numel())) * direction
            delta[active] = _clip(d_rows, x_rows, clip_min, clip_max)
    return delta


def mingd_distances(
    module: torch.nn.Module,
    x: torch.Tensor,
    num_classes: int,
    *,
    norm: BoundaryNorm,
    step: float,
    iterations: int,
    l1_k: int = 100,
    l1_gap: float = 0.001,
    clip_min: float | None = 0.0,
    clip_max: float | None = 1.0,
) -> torch.Tensor:
    """Distance of every sample to every class's region, found by MinGD: ``(N, num_classes)``.

    Args:
        module: The model, already in evaluation mode; only input gradients are taken.
        x: Samples ``(N, ...)`` on the module's device.
        num_classes: Number of classes (targets ``0 .. num_classes - 1``).
        norm: ``linf``, ``l2`` or ``l1``: the step's geometry and the distance reported.
        step: Step size (for L1 the total L1 length of a step, spread over ``l1_k`` coordinates:
            the reference's ``alpha_l_1 / k`` per coordinate).
        iterations: At most this many steps per row.
        l1_k: Coordinates moved per L1 step (at most the input's dimension).
        l1_gap: Coordinates closer than this to the bound they are pushed towards are frozen (L1).
        clip_min: Lower bound of valid inputs, or ``None``.
        clip_max: Upper bound of valid inputs, or ``None``.

    Returns:
        The norm of the perturbation that reached each class (0 for the predicted class; the norm
        after ``iterations`` steps for a class not reached).
    """
    n = x.shape[0]
    rows = x.repeat_interleave(num_classes, dim=0)
    targets = torch.arange(num_classes, device=x.device).repeat(n)
    out = torch.empty(rows.shape[0], device=x.device)
    for start in range(0, rows.shape[0], _ROWS_PER_CHUNK):
        end = start + _ROWS_PER_CHUNK
        delta = _mingd_chunk(
            module,
            rows[start:end],
            targets[start:end],
            norm=norm,
            step=step,
            iterations=iterations,
            l1_k=l1_k,
            l1_gap=l1_gap,
            clip_min=clip_min,
            clip_max=clip_max,
        )
        out[start:end] = lp_norms(delta, norm)
    return out.reshape(n, num_classes)


def _walk_noise(shape: torch.Size, norm: BoundaryNorm, scale: float, generator: torch.Generator) -> torch.Tensor:
    """Random direction: uniform in ``[-scale, scale]`` (linf), N(0, scale^2) (l2), Laplace(0, scale) (l1)."""
    if norm == "linf":
        return (torch.rand(shape, generator=generator) * 2 - 1) * scale
    if norm == "l2":
        return torch.randn(shape, generator=generator) * scale
    u = torch.rand(shape, generator=generator) - 0.5  # inverse CDF of the Laplace distribution
    return -scale * u.sign() * torch.log1p(-2 * u.abs())


def blind_walk_distances(
    predict: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: BoundaryNorm,
    scale: float,
    starts: int,
    steps: int,
    generator: torch.Generator,
    clip_min: float | None = 0.0,
    clip_max: float | None = 1.0,
) -> torch.Tensor:
    """Distance of every sample to a label change along random directions (Blind Walk): ``(N, starts)``.

    Args:
        predict: Label queries ``(M, ...) -> (M,)`` on the suspect.
        x: Samples ``(N, ...)``.
        y: Their labels ``(N,)``; a walk stops when the predicted label differs from it.
        norm: Which noise draws the direction and which norm measures the walk.
        scale: Scale of the noise (see :func:`_walk_noise`).
        starts: Random directions per sample.
        steps: The walk queries ``x + j * delta_0`` for ``j = 1 .. steps``.
        generator: Source of the random directions.
        clip_min: Lower bound of valid inputs, or ``None``.
        clip_max: Upper bound of valid inputs, or ``None``.

    Returns:
        The norm of the (clipped) perturbation at which the label first changed, or after ``steps``.
    """
    n = x.shape[0]
    rows = x.repeat_interleave(starts, dim=0)
    labels = y.to(x.device).repeat_interleave(starts)
    base = _walk_noise(rows.shape, norm, scale, generator).to(device=x.device, dtype=x.dtype)
    delta = _clip(base.clone(), rows, clip_min, clip_max)
    active = torch.arange(rows.shape[0], device=x.device)
    for magnitude in range(1, steps + 1):
        if magnitude > 1:
            delta[active] = _clip(base[active] * magnitude, rows[active], clip_min, clip_max)
        still = predict(rows[active] + delta[active]).to(x.device) == labels[active]
        active = active[still]
        if active.numel() == 0:
            break
    return lp_norms(delta, norm).reshape(n, starts)
