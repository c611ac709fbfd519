"""torch.optim over a stack of ``S`` models' parameters: one parameter per model, a row of the ``(S, P)`` stack.

Each row is an :class:`torch.nn.Parameter` sharing the stack's memory, so the optimizer that
:func:`~interplay.training.make_optimizer` builds for the recipe updates the stack in place, with
its own state per model (Adam's moments and step counter, SGD's momentum buffer). A model that
sits out a step gets no gradient, and torch.optim leaves a parameter without a gradient, and its
state, untouched. torch's fused kernels do all rows in one pass where the device has them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from interplay.recipe import TrainingRecipe
from interplay.training import make_optimizer

__all__ = ["RowOptimizer"]


class RowOptimizer:
    """The recipe's torch.optim optimizer with one parameter per row of ``flat``.

    Args:
        flat: The ``(S, P)`` stack, updated in place by :meth:`step`.
        recipe: Optimizer, learning rate, momentum and weight decay, as for one model.
    """

    def __init__(self, flat: torch.Tensor, recipe: TrainingRecipe) -> None:
        self.rows = [nn.Parameter(row) for row in flat.unbind(0)]  # views: they share the stack's memory
        try:
            self.optimizer = make_optimizer(self.rows, recipe, fused=True)
        except RuntimeError:  # no fused kernel on this device: torch.optim's default implementation
            self.optimizer = make_optimizer(self.rows, recipe)

    def step(self, grads: torch.Tensor, active: Sequence[bool] | None = None) -> None:
        """One optimizer step with row ``s`` of ``grads`` for model ``s``; only ``active`` models step."""
        for s, row in enumerate(self.rows):
            row.grad = grads[s] if active is None or active[s] else None
        self.optimizer.step()
        for row in self.rows:
            row.grad = None
