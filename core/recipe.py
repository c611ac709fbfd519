"""The training recipe shared by every module that trains a model."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TrainingRecipe"]


class TrainingRecipe(BaseModel):
    """How a classifier is trained: optimizer, learning rate, epochs, batch size, weight decay.

    The defaults follow AMULET's examples (Adam, learning rate 1e-3, batch size 256);
    AMULET's paper trains for 100 epochs, its examples for 10, which is our default.

    Attributes:
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        lr: Learning rate.
        epochs: Passes over the training data.
        batch_size: Mini-batch size.
        weight_decay: L2 penalty (decoupled for AdamW).
        momentum: Momentum, used by SGD only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(default=1e-3, gt=0)
    epochs: int = Field(default=10, ge=0)
    batch_size: int = Field(default=256, ge=1)
    weight_decay: float = Field(default=0.0, ge=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)

    def overridden(self, **changes: Any) -> TrainingRecipe:
        """A copy with the given fields changed; a ``None`` value leaves its field as it is.

        Modules whose parameters may override the scenario's recipe (``epochs=None`` meaning "the
        scenario's") use it as ``context.recipe.overridden(epochs=self.params.epochs, ...)``.
        """
        updates = {key: value for key, value in changes.items() if value is not None}
        return self.model_copy(update=updates) if updates else self

    def overridden_by(self, params: object) -> TrainingRecipe:
        """A copy overridden by the recipe fields a module's parameters carry (``epochs``, ``lr``, ...).

        Every attribute of ``params`` named like a recipe field and not ``None`` replaces that field.
        """
        return self.overridden(**{name: getattr(params, name, None) for name in type(self).model_fields})
