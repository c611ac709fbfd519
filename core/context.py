"""The run context handed to attacks, defenses and metrics."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from ._seeding import derive_seed, seeded
from .artifacts import LabeledData, ModelAccess, TaskData, TrainedModel
from .errors import ConfigError
from .modules import ModelFactory
from .recipe import TrainingRecipe
from .training import LossFn, fit

__all__ = ["Memo", "RunContext", "TargetProcedure", "resolve_device"]

_T = TypeVar("_T")

TargetProcedure = Callable[[TaskData, int], ModelAccess]
"""``procedure(task, seed) -> model``: produce a model from ``task`` the way the target was produced."""


class Memo:
    """Results shared by the modules of one run and seed, each computed once.

    Attacks that need the same expensive artifact (the shadow models of LiRA and of the
    membership attacks, say) compute it through :meth:`get_or_compute` with a key naming
    everything that determines it; the second attack with the same key gets the first one's
    result. The runner gives every seed a fresh memo, so nothing leaks between seeds.

    Examples:
        >>> memo = Memo()
        >>> memo.get_or_compute(Memo.key("shadows", 16), lambda: [1, 2])
        [1, 2]
        >>> memo.get_or_compute(Memo.key("shadows", 16), lambda: [3])
        [1, 2]
    """

    def __init__(self) -> None:
        self._items: dict[str, Any] = {}

    @staticmethod
    def key(*parts: Any) -> str:
        """A stable key from JSON-serialisable parts (pydantic models are dumped first)."""
        plain = [part.model_dump(mode="json") if isinstance(part, BaseModel) else part for part in parts]
        return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()

    def get_or_compute(self, key: str, compute: Callable[[], _T]) -> _T:
        """The value stored under ``key``, computing and storing it on first use."""
        if key not in self._items:
            self._items[key] = compute()
        return self._items[key]  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


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
        memo: Results shared between the modules of this seed (see :class:`Memo`).
        target_procedure: How the model under attack was produced (standard training followed by
            the defenses of its cell), for attacks that need more models made the same way, such
            as the victims of distribution inference; see :meth:`train_like_target`.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True, extra="forbid")

    seed: int = 0
    device: str = "cpu"
    model: ModelFactory | None = None
    recipe: TrainingRecipe = Field(default_factory=TrainingRecipe)
    memo: Memo = Field(default_factory=Memo)
    target_procedure: TargetProcedure | None = None

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

    def model_factory(
        self, architecture: str | None = None, params: dict[str, Any] | None = None, *, path: str = "architecture"
    ) -> ModelFactory:
        """The factory a module's ``architecture`` / ``architecture_params`` parameters name.

        ``architecture=None`` means the scenario's factory (:attr:`model`), with ``params`` overriding
        its parameters; a name is looked up in the plugin registry.

        Raises:
            ConfigError: At ``path`` when the name is unknown, or when no name is given and the context
                has no model factory.
        """
        from .errors import UnknownPluginError
        from .registry import get_registry

        if architecture is None:
            if self.model is None:
                raise ConfigError(f"no model factory: set RunContext.model or {path}", path=path)
            if not params:
                return self.model
            changed = self.model.with_params(**params)
            assert isinstance(changed, ModelFactory)
            return changed
        try:
            factory = get_registry().create(architecture, "model", **(params or {}))
        except UnknownPluginError as exc:
            raise ConfigError(str(exc), path=path) from None
        assert isinstance(factory, ModelFactory)
        return factory

    def train_like_target(self, task: TaskData, *, seed: int) -> ModelAccess:
        """Produce a model from ``task``'s defender rows the way the target was produced.

        With :attr:`target_procedure` set (the runner sets it to the cell's defense chain) the
        model goes through the same defenses as the target; without it, this is standard
        training with the scenario's architecture and recipe.

        Args:
            task: The data; the model trains on ``task.defender_train``.
            seed: Seed of this model (initialisation, shuffling, the defense's randomness).
        """
        if self.target_procedure is not None:
            return self.target_procedure(task, seed)
        indices = task.partition.defender if task.partition is not None else None
        return self.train(task.defender_train, seed=seed, train_indices=indices)
