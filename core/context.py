"""The run context handed to attacks, defenses and metrics."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from ._seeding import derive_seed, seeded
from .artifacts import LabeledData, TrainedModel
from .errors import ConfigError
from .modules import ModelFactory
from .recipe import TrainingRecipe
from .training import LossFn, fit

__all__ = ["RunContext", "resolve_device"]


def resolve_device(device: str = "auto") -> str:
    """Map ``auto`` to ``cuda`` when a GPU is present, else ``cpu``; check explicit choices.

    Raises:
        ConfigError: When CUDA is asked for but not available.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("CUDA was requested but torch reports no CUDA device", path="device")
    return device


class RunContext(BaseModel):
    """Seed, device and the scenario's architecture and training recipe.

    Attacks that train models (shadow models, surrogates) and defenses that retrain the
    target use :meth:`build_model` and :meth:`train`, so every model in a study shares
    one architecture and recipe unless a module's parameters say otherwise.

    Attributes:
        seed: The run's seed; modules derive their own seeds from it with :meth:`derive_seed`.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        model: The scenario's model factory (the target's architecture).
        recipe: The scenario's training recipe.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True, extra="forbid")

    seed: int = 0
    device: str = "cpu"
    model: ModelFactory | None = None
    recipe: TrainingRecipe = Field(default_factory=TrainingRecipe)

    def derive_seed(self, *salt: object) -> int:
        """A seed derived from the run's seed and labels (stable across runs and platforms)."""
        return derive_seed(self.seed, *salt)

    def generator(self, *salt: object) -> torch.Generator:
        """A CPU ``torch.Generator`` seeded with :meth:`derive_seed`."""
        return torch.Generator().manual_seed(self.derive_seed(*salt))

    def build_model(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        seed: int | None = None,
        factory: ModelFactory | None = None,
    ) -> torch.nn.Module:
        """Build an untrained module of the scenario's (or ``factory``'s) architecture, seeded.

        Raises:
            ConfigError: When neither the context nor the call names a model factory.
        """
        chosen = factory or self.model
        if chosen is None:
            raise ConfigError("no model factory: set RunContext.model or pass factory=", path="context.model")
        with seeded(seed if seed is not None else self.derive_seed("init")):
            module = chosen.build(input_shape=input_shape, num_classes=num_classes)
        return module.to(self.device)

    def train(
        self,
        data: LabeledData,
        *,
        seed: int | None = None,
        recipe: TrainingRecipe | None = None,
        module: torch.nn.Module | None = None,
        factory: ModelFactory | None = None,
        loss_fn: LossFn | None = None,
        train_indices: torch.Tensor | None = None,
        info: dict[str, Any] | None = None,
    ) -> TrainedModel:
        """Train a classifier on ``data`` and wrap it as a :class:`TrainedModel`.

        Args:
            data: Training rows.
            seed: Seed for initialisation and training (default: derived from the context's seed).
            recipe: Overrides the context's recipe.
            module: An already-built module to train (default: :meth:`build_model`).
            factory: Overrides the context's model factory.
            loss_fn: Custom loss ``loss(module, x, y)``.
            train_indices: Row indices recorded with the model (for membership ground truth).
            info: Facts to record with the model.
        """
        seed = self.derive_seed("train") if seed is None else seed
        recipe = recipe or self.recipe
        chosen = factory or self.model
        if module is None:
            module = self.build_model(
                data.input_shape, data.num_classes, seed=derive_seed(seed, "init"), factory=chosen
            )
        fit(module, data.x, data.y, recipe, seed=seed, device=self.device, loss_fn=loss_fn)
        return TrainedModel(
            module=module,
            num_classes=data.num_classes,
            input_shape=data.input_shape,
            recipe=recipe,
            train_indices=train_indices,
            architecture=chosen.name if chosen is not None else None,
            architecture_params=chosen.get_params() if chosen is not None else {},
            info=dict(info or {}),
        )
