"""The five module kinds: :class:`Attack`, :class:`Defense`, :class:`Metric`, :class:`Dataset`, :class:`ModelFactory`.

Each concrete subclass implements one method (``run``, ``apply``, ``compute``, ``load``,
``build``). The base class wraps it so that every call, from a pipeline or from plain
Python, checks the declared input and output types, narrows a wider model access to
the declared one, and runs with the global random generators seeded from the context.
"""

from __future__ import annotations

import functools
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ..errors import ArtifactError, ConfigError, PluginError
from .base import Module, _require

if TYPE_CHECKING:
    import torch

    from ..artifacts import Artifact, MetricValue, TaskData
    from ..context import RunContext

__all__ = ["Access", "Attack", "Dataset", "Defense", "Knowledge", "Metric", "ModelFactory", "as_metric_list"]

Access = Literal["white-box", "black-box", "label-only", "data"]
Knowledge = Literal["partial", "shadow", "none"]
_ACCESS_BY_INPUT = {"TrainedModel": "white-box", "QueryAccess": "black-box", "LabelOnlyAccess": "label-only"}


def _artifact_type(cls: type, attribute: str) -> type:
    from ..artifacts import Artifact

    value = getattr(cls, attribute, None)
    _require(cls, value is not None, f"missing class attribute {attribute!r} (an artifact type)")
    _require(
        cls,
        isinstance(value, type) and issubclass(value, Artifact),
        f"{attribute} must be an interplay artifact type, got {value!r}",
    )
    assert isinstance(value, type)
    return value


def _access_of(artifact: type) -> str:
    from ..artifacts import ModelAccess, TaskData

    if issubclass(artifact, ModelAccess):
        return artifact.access
    if issubclass(artifact, TaskData):
        return "data"
    return "artifact"


def _coerce_target(module: Module, target: Any, expected: type) -> Any:
    from ..artifacts import ModelAccess, can_narrow

    if isinstance(target, expected):
        return target
    if isinstance(target, ModelAccess) and can_narrow(type(target), expected):
        return target.narrow(expected)
    raise ArtifactError(
        f"{module.kind} {module.name!r} needs {expected.__name__}, got {type(target).__name__}"
        + (" (access only narrows)" if isinstance(target, ModelAccess) else "")
    )


def _check_data(module: Module, data: Any) -> None:
    from ..artifacts import TaskData

    if data is not None and not isinstance(data, TaskData):
        raise ArtifactError(f"{module.kind} {module.name!r}: data must be TaskData, got {type(data).__name__}")


def _check_output(module: Module, result: Any, expected: type) -> None:
    if not isinstance(result, expected):
        raise PluginError(
            f"returned {type(result).__name__}, but declares Output = {expected.__name__}", plugin=module.name
        )


def _seed_for(module: Module, context: RunContext | None) -> int:
    from .._seeding import derive_seed

    return derive_seed(context.seed if context is not None else 0, module.kind, module.name)


def _guarded(method: Callable[..., Any], *, output_attr: str | None) -> Callable[..., Any]:
    """Wrap an ``(self, target, *, data, context, ...)`` entry point with type checks and seeding."""

    @functools.wraps(method)
    def wrapper(self: Any, target: Any, /, *args: Any, **kwargs: Any) -> Any:
        from .._seeding import seeded

        target = _coerce_target(self, target, type(self).Input)
        _check_data(self, kwargs.get("data"))
        with seeded(_seed_for(self, kwargs.get("context"))):
            result = method(self, target, *args, **kwargs)
        if output_attr is not None:
            _check_output(self, result, getattr(type(self), output_attr))
        return result

    return wrapper


class _Guarded(Module):
    __abstract__ = True
    _output_attr: ClassVar[str | None] = "Output"

    @classmethod
    def _guard(cls, method: Callable[..., Any]) -> Callable[..., Any]:
        return _guarded(method, output_attr=cls._output_attr)


class Attack(_Guarded):
    """An attack that exploits one or more risks.

    Class attributes (besides those of :class:`Module`):
        Input: The artifact the attack needs: :class:`TrainedModel` (white-box),
            :class:`QueryAccess` (black-box), :class:`LabelOnlyAccess` (label-only), or
            :class:`TaskData` for attacks on the data (poisoning).
        Output: The artifact it produces (:class:`AdversarialExamples`, :class:`PoisonedData`, ...).
        access: Threat model: ``white-box``, ``black-box``, ``label-only`` or ``data``; must agree with ``Input``.
        knowledge: The adversary's auxiliary data: ``partial`` (part of the target's training
            data), ``shadow`` (disjoint data from the same distribution) or ``none``.
    """

    __abstract__ = True
    kind: ClassVar[Literal["attack"]] = "attack"  # type: ignore[misc]
    _entry_point: ClassVar[str] = "run"
    Input: ClassVar[type[Artifact]]
    Output: ClassVar[type[Artifact]]
    access: ClassVar[Access]
    knowledge: ClassVar[Knowledge] = "none"

    @abstractmethod
    def run(self, target: Any, /, *, data: TaskData | None = None, context: RunContext | None = None) -> Any:
        """Run the attack on ``target`` (of type ``Input``) and return an ``Output`` artifact.

        Args:
            target: The model access (or task, for data attacks) under attack.
            data: The task: its splits and defender/adversary partition.
            context: Seed, device, and the target's architecture and training recipe.
        """

    @classmethod
    def _check_declaration(cls) -> None:
        super()._check_declaration()
        _require(cls, len(cls.risks) >= 1, "an attack must declare at least one risk id in 'risks'")
        input_type = _artifact_type(cls, "Input")
        _artifact_type(cls, "Output")
        expected = _access_of(input_type)
        _require(
            cls, expected != "artifact", f"Input must be a model-access type or TaskData, got {input_type.__name__}"
        )
        access = getattr(cls, "access", None)
        _require(
            cls,
            access == expected,
            f"access is {access!r} but Input {input_type.__name__} implies {expected!r}",
        )
        _require(cls, cls.knowledge in ("partial", "shadow", "none"), f"invalid knowledge {cls.knowledge!r}")


class Defense(_Guarded):
    """A defense against one or more risks.

    Class attributes (besides those of :class:`Module`):
        risks: The risks the defense targets: its *intended* interactions.
        Input: :class:`TaskData` for defenses that train or clean data, :class:`TrainedModel`
            for defenses applied to a trained model.
        Output: :class:`TrainedModel`, :class:`QueryAccess` / :class:`LabelOnlyAccess` (the
            model is only reachable through a perturbing interface), or :class:`TaskData`
            (a data defense that chains into any training defense).
    """

    __abstract__ = True
    kind: ClassVar[Literal["defense"]] = "defense"  # type: ignore[misc]
    _entry_point: ClassVar[str] = "apply"
    Input: ClassVar[type[Artifact]]
    Output: ClassVar[type[Artifact]]

    @abstractmethod
    def apply(self, target: Any, /, *, data: TaskData | None = None, context: RunContext | None = None) -> Any:
        """Apply the defense to ``target`` (of type ``Input``) and return an ``Output`` artifact.

        Args:
            target: The training task, or the trained model for post-hoc defenses.
            data: The task, for post-hoc defenses that need data.
            context: Seed, device, architecture and training recipe.
        """

    def require_training_context(self, context: RunContext | None) -> RunContext:
        """Return ``context`` when it can train the scenario's architecture; raise a clear error otherwise.

        For defenses that train a model: ``context`` must name a model factory.

        Raises:
            ConfigError: When ``context`` is missing or has no model factory (field ``context.model``).
        """
        if context is None or context.model is None:
            raise ConfigError(
                f"defense {self.name!r} trains the scenario's architecture: pass a RunContext with a model "
                "factory, e.g. RunContext(model=interplay.get_registry().create('mlp'))",
                path="context.model",
            )
        return context

    @classmethod
    def rebuild(cls, module: torch.nn.Module, info: dict[str, Any]) -> torch.nn.Module:
        """Reshape a freshly built module the way this defense reshaped the one it trained.

        The runner caches trained models as state dicts and rebuilds them from the model factory;
        a defense that replaces layers (DP-SGD swaps BatchNorm for GroupNorm) overrides this so the
        cached weights fit again. ``info`` is the trained model's ``info``. The default returns
        ``module`` unchanged.
        """
        del info
        return module

    @classmethod
    def _check_declaration(cls) -> None:
        super()._check_declaration()
        _require(cls, len(cls.risks) >= 1, "a defense must declare the risk ids it targets in 'risks'")
        for attribute in ("Input", "Output"):
            artifact = _artifact_type(cls, attribute)
            _require(
                cls,
                _access_of(artifact) != "artifact",
                f"{attribute} must be a model-access type or TaskData, got {artifact.__name__}",
            )


class Metric(_Guarded):
    """A metric: turns an attack's output (or a model, for measurements) into numbers.

    Class attributes (besides those of :class:`Module`):
        Input: The artifact it consumes: an attack's output type, or a model-access type for
            measurements taken on the model directly (fairness metrics, say).
        Target: Optional model-access type the metric also needs (e.g. a model trained on poisoned data).
        higher_is_riskier: Whether a higher value means more susceptibility.
        utility: True for a reference measurement of the model's usefulness (clean accuracy, say):
            reports show its change but never read it as more or less susceptibility.
    """

    __abstract__ = True
    kind: ClassVar[Literal["metric"]] = "metric"  # type: ignore[misc]
    _entry_point: ClassVar[str] = "compute"
    _output_attr: ClassVar[str | None] = None
    Input: ClassVar[type[Artifact]]
    Target: ClassVar[type[Artifact] | None] = None
    higher_is_riskier: ClassVar[bool]
    utility: ClassVar[bool] = False

    @abstractmethod
    def compute(
        self, output: Any, /, *, target: Any = None, data: TaskData | None = None, context: RunContext | None = None
    ) -> MetricValue | Sequence[MetricValue]:
        """Compute the metric on ``output`` (of type ``Input``).

        Args:
            output: The attack's output, or the model for measurements.
            target: The model under evaluation, when the metric declares ``Target``.
            data: The task.
            context: Seed and device.

        Returns:
            One :class:`MetricValue` or several (e.g. one per sensitive attribute).
        """

    @classmethod
    def _check_declaration(cls) -> None:
        super()._check_declaration()
        _artifact_type(cls, "Input")
        if cls.Target is not None:
            target = _artifact_type(cls, "Target")
            _require(cls, _access_of(target) not in ("data", "artifact"), "Target must be a model-access type")
        _require(
            cls,
            isinstance(getattr(cls, "higher_is_riskier", None), bool),
            "missing class attribute 'higher_is_riskier' (a bool)",
        )
        _require(cls, isinstance(cls.utility, bool), "utility must be a bool")

    @classmethod
    def _guard(cls, method: Callable[..., Any]) -> Callable[..., Any]:
        guarded = _guarded(method, output_attr=None)

        @functools.wraps(method)
        def compute(self: Metric, output: Any, /, *args: Any, **kwargs: Any) -> Any:
            declared = type(self).Target
            if declared is not None and kwargs.get("target") is not None:
                kwargs["target"] = _coerce_target(self, kwargs["target"], declared)
            result = guarded(self, output, *args, **kwargs)
            as_metric_list(result, plugin=self.name)
            return result

        return compute


def as_metric_list(result: Any, *, plugin: str = "") -> list[MetricValue]:
    """Normalise a metric's result to a non-empty list of :class:`MetricValue`.

    Raises:
        PluginError: When the result is neither a MetricValue nor a sequence of them.
    """
    from ..artifacts import MetricValue

    values = [result] if isinstance(result, MetricValue) else list(result) if isinstance(result, Sequence) else None
    if not values or not all(isinstance(v, MetricValue) for v in values):
        raise PluginError(
            f"compute() returned {type(result).__name__}; expected a MetricValue or a non-empty list of them",
            plugin=plugin or None,
        )
    return values


class Dataset(Module):
    """A data set: loads a :class:`TaskData` with ``train`` and ``test`` splits.

    Class attributes (besides those of :class:`Module`):
        modality: ``tabular`` or ``image``.
        Output: Always :class:`TaskData`.
    """

    __abstract__ = True
    kind: ClassVar[Literal["dataset"]] = "dataset"  # type: ignore[misc]
    _entry_point: ClassVar[str] = "load"
    modality: ClassVar[str]

    @abstractmethod
    def load(self) -> TaskData:
        """Load the data set (from the data root for files, or a package for embedded ones)."""

    @classmethod
    def _check_declaration(cls) -> None:
        super()._check_declaration()
        _require(cls, getattr(cls, "modality", None) in ("tabular", "image"), "modality must be 'tabular' or 'image'")

    @classmethod
    def _guard(cls, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def load(self: Dataset) -> Any:
            from ..artifacts import TaskData

            result = method(self)
            _check_output(self, result, TaskData)
            return result

        return load


class ModelFactory(Module):
    """A model architecture: builds an untrained ``torch.nn.Module`` for a task's shape.

    A built module maps inputs to logits and, where it can, offers ``embed(x)``: the
    penultimate-layer features that white-box attacks and data valuation use.

    Class attributes (besides those of :class:`Module`):
        modalities: The input modalities it supports.
    """

    __abstract__ = True
    kind: ClassVar[Literal["model"]] = "model"  # type: ignore[misc]
    _entry_point: ClassVar[str] = "build"
    modalities: ClassVar[tuple[str, ...]] = ("tabular", "image")

    @abstractmethod
    def build(self, *, input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
        """Build an untrained module for inputs of ``input_shape`` and ``num_classes`` outputs."""

    @classmethod
    def _check_declaration(cls) -> None:
        super()._check_declaration()
        _require(
            cls,
            bool(cls.modalities) and set(cls.modalities) <= {"tabular", "image"},
            "modalities must be a non-empty tuple of 'tabular' and 'image'",
        )

    @classmethod
    def _guard(cls, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def build(self: ModelFactory, *, input_shape: tuple[int, ...], num_classes: int) -> Any:
            import torch

            module = method(self, input_shape=tuple(input_shape), num_classes=num_classes)
            _check_output(self, module, torch.nn.Module)
            return module

        return build
