"""Model-access artifacts: white-box, black-box (posteriors) and label-only.

Access only narrows: a :class:`TrainedModel` can give a :class:`QueryAccess`, which can
give a :class:`LabelOnlyAccess`; nothing gives back more than it holds. A black-box
artifact keeps the model behind a private function and exposes only its outputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Literal, TypeVar

import torch
from pydantic import Field, PrivateAttr

from ..errors import ArtifactError
from ..recipe import TrainingRecipe
from ._tensors import LongTensor
from .base import Artifact

__all__ = ["AccessLevel", "LabelOnlyAccess", "ModelAccess", "QueryAccess", "TrainedModel", "can_narrow"]

AccessLevel = Literal["label-only", "black-box", "white-box"]
_A = TypeVar("_A", bound="ModelAccess")
_INFERENCE_BATCH = 2048


def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    if x.shape[0] <= _INFERENCE_BATCH:
        return fn(x)
    return torch.cat([fn(chunk) for chunk in torch.split(x, _INFERENCE_BATCH)])


class ModelAccess(Artifact):
    """What an attacker or evaluator can do with a target model.

    Attributes:
        num_classes: Number of output classes.
        input_shape: Shape of one input, without the batch dimension.
        info: Facts recorded with the model (e.g. the privacy budget a defense spent).
        train_indices: Rows of the task's partitioned split the model was trained on, when known.
            This is evaluation ground truth (membership labels): it survives narrowing so that a
            black-box membership attack can *label* its candidates, and an attack must never use
            it to *decide* membership.
    """

    level: ClassVar[int] = -1
    access: ClassVar[AccessLevel]

    num_classes: int = Field(ge=1)
    input_shape: tuple[int, ...]
    info: dict[str, float | int | str | bool] = Field(default_factory=dict)
    train_indices: LongTensor | None = None

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted labels, int64 of shape ``(N,)``."""
        raise NotImplementedError

    def narrow(self, to: type[_A]) -> _A:
        """Return this model behind a narrower (or the same) access level.

        Args:
            to: :class:`TrainedModel`, :class:`QueryAccess` or :class:`LabelOnlyAccess`.

        Raises:
            ArtifactError: When ``to`` would widen access.
        """
        if isinstance(self, to):
            return self
        if not can_narrow(type(self), to):
            raise ArtifactError(f"cannot widen {type(self).__name__} to {to.__name__}: access only narrows")
        if to is LabelOnlyAccess:
            return LabelOnlyAccess.from_function(  # type: ignore[return-value]
                _closure(self.predict),
                num_classes=self.num_classes,
                input_shape=self.input_shape,
                info=self.info,
                train_indices=self.train_indices,
            )
        if to is QueryAccess and isinstance(self, TrainedModel):
            return QueryAccess.from_function(  # type: ignore[return-value]
                _closure(self.query),
                num_classes=self.num_classes,
                input_shape=self.input_shape,
                info=self.info,
                train_indices=self.train_indices,
            )
        raise ArtifactError(f"no adapter from {type(self).__name__} to {to.__name__}")

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`ArtifactError` unless ``x`` is a tensor of shape ``(N, *input_shape)``."""
        if not isinstance(x, torch.Tensor):
            raise ArtifactError(f"model input must be a tensor, got {type(x).__name__}")
        if tuple(x.shape[1:]) != self.input_shape:
            expected = ", ".join(["N", *(str(d) for d in self.input_shape)])
            raise ArtifactError(f"model input must have shape ({expected}), got {tuple(x.shape)}")


def _closure(method: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap a bound method in a plain function, so the narrower artifact holds no attribute path back."""

    def call(x: torch.Tensor) -> torch.Tensor:
        return method(x)

    return call


def can_narrow(source: type[Any], target: type[Any]) -> bool:
    """Whether a ``source`` access artifact can provide ``target`` access (same or narrower)."""
    if not (isinstance(source, type) and isinstance(target, type)):
        return False
    if not (issubclass(source, ModelAccess) and issubclass(target, ModelAccess)):
        return False
    if issubclass(source, target):
        return True
    return target in (QueryAccess, LabelOnlyAccess) and source.level > target.level >= 0


class LabelOnlyAccess(ModelAccess):
    """Label-only access: the predicted class of each query, nothing more."""

    level: ClassVar[int] = 0
    access: ClassVar[AccessLevel] = "label-only"
    _predict: Callable[[torch.Tensor], torch.Tensor] | None = PrivateAttr(default=None)
    _queries: int = PrivateAttr(default=0)

    @classmethod
    def from_function(
        cls,
        predict: Callable[[torch.Tensor], torch.Tensor],
        *,
        num_classes: int,
        input_shape: tuple[int, ...],
        info: dict[str, Any] | None = None,
        train_indices: torch.Tensor | None = None,
    ) -> LabelOnlyAccess:
        """Wrap a function mapping inputs ``(N, ...)`` to labels ``(N,)``."""
        access = cls(
            num_classes=num_classes, input_shape=tuple(input_shape), info=dict(info or {}), train_indices=train_indices
        )
        access._predict = predict
        return access

    @property
    def queries(self) -> int:
        """Number of inputs queried so far."""
        return self._queries

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted labels, int64 of shape ``(N,)``."""
        if self._predict is None:
            raise ArtifactError("this LabelOnlyAccess has no prediction function (build it with from_function)")
        self.check_input(x)
        self._queries += int(x.shape[0])
        return self._predict(x).to(torch.int64)


class QueryAccess(ModelAccess):
    """Black-box access: posterior probabilities ``(N, num_classes)`` for each query."""

    level: ClassVar[int] = 1
    access: ClassVar[AccessLevel] = "black-box"
    _posteriors: Callable[[torch.Tensor], torch.Tensor] | None = PrivateAttr(default=None)
    _queries: int = PrivateAttr(default=0)

    @classmethod
    def from_function(
        cls,
        posteriors: Callable[[torch.Tensor], torch.Tensor],
        *,
        num_classes: int,
        input_shape: tuple[int, ...],
        info: dict[str, Any] | None = None,
        train_indices: torch.Tensor | None = None,
    ) -> QueryAccess:
        """Wrap a function mapping inputs ``(N, ...)`` to probabilities ``(N, num_classes)``."""
        access = cls(
            num_classes=num_classes, input_shape=tuple(input_shape), info=dict(info or {}), train_indices=train_indices
        )
        access._posteriors = posteriors
        return access

    @property
    def queries(self) -> int:
        """Number of inputs queried so far."""
        return self._queries

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior probabilities, float of shape ``(N, num_classes)``.

        Large queries are sent to the posterior function in chunks of 2,048 inputs, and what it
        returns is checked.

        Raises:
            ArtifactError: When the function returns a tensor of another shape, or values that are
                not finite, non-negative probabilities.
        """
        if self._posteriors is None:
            raise ArtifactError("this QueryAccess has no posterior function (build it with from_function)")
        self.check_input(x)
        self._queries += int(x.shape[0])
        posteriors = _batched(self._posteriors, x)
        expected = (int(x.shape[0]), self.num_classes)
        if not isinstance(posteriors, torch.Tensor) or tuple(posteriors.shape) != expected:
            shape = tuple(posteriors.shape) if isinstance(posteriors, torch.Tensor) else type(posteriors).__name__
            raise ArtifactError(f"the model returned posteriors of shape {shape}, expected {expected}")
        if not bool(torch.isfinite(posteriors).all()) or bool((posteriors < 0).any()):
            raise ArtifactError("the model returned posteriors that are not finite, non-negative probabilities")
        return posteriors

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted labels (the arg-max posterior)."""
        return self.query(x).argmax(dim=1)


class TrainedModel(ModelAccess):
    """White-box access: the module itself, how it was trained and on which rows.

    Attributes:
        module: The trained ``torch.nn.Module``; ``module(x)`` returns logits.
        recipe: The training recipe used, when known.
        architecture: Name of the model factory that built the module, when known.
        architecture_params: That factory's parameters.
    """

    level: ClassVar[int] = 2
    access: ClassVar[AccessLevel] = "white-box"

    module: torch.nn.Module
    recipe: TrainingRecipe | None = None
    architecture: str | None = None
    architecture_params: dict[str, Any] = Field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """Device holding the module's parameters (CPU for a parameter-free module)."""
        for parameter in self.module.parameters():
            return parameter.device
        return torch.device("cpu")

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[torch.nn.Module]:
        """Put the module in evaluation mode for a block, restoring its previous mode afterwards.

        White-box attacks that compute their own gradients use it::

            with model.evaluating() as module:
                loss = cross_entropy(module(x), y)
        """
        was_training = self.module.training
        self.module.eval()
        try:
            yield self.module
        finally:
            self.module.train(was_training)

    def _forward(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        with self.evaluating(), torch.no_grad():
            out = _batched(lambda chunk: fn(chunk.to(self.device)), x)
        return out.to(x.device)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` in evaluation mode, without gradients."""
        return self._forward(self.module, x)

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior probabilities (softmax of the logits)."""
        return torch.softmax(self.logits(x), dim=1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted labels."""
        return self.logits(x).argmax(dim=1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features, when the module defines ``embed``.

        Raises:
            ArtifactError: When the module has no ``embed`` method.
        """
        embed = getattr(self.module, "embed", None)
        if not callable(embed):
            raise ArtifactError(f"{type(self.module).__name__} has no embed() method for penultimate features")
        return self._forward(embed, x)
