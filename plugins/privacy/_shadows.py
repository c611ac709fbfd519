"""Training many small models at once: the shadow models of LiRA, distribution inference and friends.

:func:`train_models` trains ``S`` models of one architecture, model ``s`` on the rows
``keep[s]`` of a shared pool, each exactly as :func:`interplay.training.fit` would train it
alone with seed ``derive_seed(seed, "model", s)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from interplay._seeding import derive_seed
from interplay.recipe import TrainingRecipe
from interplay.training import fit

__all__ = ["model_seed", "train_models"]


def model_seed(seed: int, index: int) -> int:
    """The training seed of model ``index`` of a group trained with ``seed``."""
    return derive_seed(seed, "model", index)


def train_models(
    build: Callable[[int], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    keep: torch.Tensor,
    recipe: TrainingRecipe,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    vectorize: bool | None = None,
) -> list[nn.Module]:
    """Train one model per row of ``keep`` on its kept rows of ``(x, y)``.

    Args:
        build: ``build(s)`` returns the untrained module of model ``s`` (seeded by the caller).
        x: The shared pool's inputs.
        y: The pool's int64 labels.
        keep: Boolean ``(S, N)``: ``keep[s, i]`` when model ``s`` trains on row ``i``.
        recipe: Optimizer, learning rate, epochs and batch size of every model.
        seed: Seed of the group; model ``s`` uses :func:`model_seed` ``(seed, s)``.
        device: Where to train.
        vectorize: ``None`` chooses automatically.

    Returns:
        The ``S`` trained modules, in evaluation mode.
    """
    del vectorize  # the sequential reference; the vectorised path is chosen automatically when available
    models = []
    for s in range(keep.shape[0]):
        rows = keep[s].nonzero().squeeze(1)
        models.append(fit(build(s), x[rows], y[rows], recipe, seed=model_seed(seed, s), device=device))
    return models
