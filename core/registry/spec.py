"""Declared plugin metadata (read without importing implementations) and the artifact type table."""

from __future__ import annotations

import importlib
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..modules.base import NAME_PATTERN, RISK_PATTERN, Kind

__all__ = ["ACCESS_LEVELS", "CORE_ARTIFACTS", "ArtifactTypes", "PluginSpec", "RiskSpec"]

# Name -> parent name of every core artifact type. Kept here, free of torch, so that listing
# plugins and validating manifests stays cheap; a test checks it against interplay.artifacts.
CORE_ARTIFACTS: dict[str, str | None] = {
    "Artifact": None,
    "LabeledData": "Artifact",
    "TaskData": "Artifact",
    "PoisonedData": "TaskData",
    "ModelAccess": "Artifact",
    "TrainedModel": "ModelAccess",
    "QueryAccess": "ModelAccess",
    "LabelOnlyAccess": "ModelAccess",
    "AdversarialExamples": "Artifact",
    "SurrogateModel": "Artifact",
    "MembershipScores": "Artifact",
    "AttributeGuesses": "Artifact",
    "Reconstructions": "Artifact",
    "PropertyGuesses": "Artifact",
    "OwnershipEvidence": "Artifact",
    "MetricValue": "Artifact",
}
ACCESS_LEVELS = {"LabelOnlyAccess": 0, "QueryAccess": 1, "TrainedModel": 2}
_TYPE_NAME = r"^([A-Za-z_][A-Za-z0-9_]*|[A-Za-z_][\w.]*:[A-Za-z_][\w.]*)$"


def artifact_name(artifact: type) -> str:
    """The name a manifest uses for ``artifact``: its class name for core types, else ``module:Class``."""
    if artifact.__module__.startswith("interplay.artifacts") and artifact.__name__ in CORE_ARTIFACTS:
        return artifact.__name__
    return f"{artifact.__module__}:{artifact.__qualname__}"


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


class ArtifactTypes:
    """Subtype and access-narrowing relations between artifact type names.

    Core types are answered from :data:`CORE_ARTIFACTS`; a plugin's own artifact type,
    named ``package.module:Class``, is imported to read its ancestry.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[str, ...]] = {}

    def ancestry(self, name: str) -> tuple[str, ...]:
        """The names of ``name`` and all its artifact ancestors, nearest first."""
        if name in self._cache:
            return self._cache[name]
        if name in CORE_ARTIFACTS:
            chain: list[str] = []
            current: str | None = name
            while current is not None:
                chain.append(current)
                current = CORE_ARTIFACTS[current]
            result = tuple(chain)
        else:
            module_name, _, qualname = name.partition(":")
            obj: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            result = tuple(
                artifact_name(c)
                for c in obj.__mro__
                if c.__module__.startswith("interplay.artifacts") and c.__name__ in CORE_ARTIFACTS
            )
            result = (name, *(r for r in result if r != name))
        self._cache[name] = result
        return result

    def is_a(self, source: str, target: str) -> bool:
        """Whether an artifact of type ``source`` is an instance of ``target``."""
        return target in self.ancestry(source)

    def access_level(self, name: str) -> int | None:
        """0 label-only, 1 black-box, 2 white-box, or None when ``name`` is no model access."""
        for ancestor in self.ancestry(name):
            if ancestor in ACCESS_LEVELS:
                return ACCESS_LEVELS[ancestor]
        return None

    def provides(self, source: str, target: str) -> bool:
        """Whether ``source`` can be handed to a consumer of ``target``, narrowing access if needed."""
        if self.is_a(source, target):
            return True
        have, need = self.access_level(source), self.access_level(target)
        return have is not None and need is not None and target in ACCESS_LEVELS and have >= need

    def is_model_access(self, name: str) -> bool:
        """Whether ``name`` is a model-access type."""
        return self.is_a(name, "ModelAccess")

    def is_task(self, name: str) -> bool:
        """Whether ``name`` is a task (data) type."""
        return self.is_a(name, "TaskData")


class RiskSpec(BaseModel):
    """A risk id with its name and family.

    Attributes:
        id: Short id used in configs and reports (``S1``, ``P1``, ``F`` or a new one).
        name: Human-readable name.
        family: ``security``, ``privacy``, ``fairness`` or another family a plugin introduces.
        description: One or two sentences.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=RISK_PATTERN.pattern)
    name: str = Field(min_length=1)
    family: str = Field(min_length=1)
    description: str = ""
    distribution: str = ""


class PluginSpec(BaseModel):
    """What a plugin declares up front: enough to list it and resolve pipelines without importing it.

    Attributes:
        name: Unique plugin name.
        kind: ``attack``, ``defense``, ``metric``, ``dataset`` or ``model``.
        target: Import path of the implementing class, ``package.module:ClassName``.
        risks: Risk ids the plugin attacks (attack), targets (defense) or measures (metric).
        input: Declared input artifact type (attacks, defenses, metrics).
        output: Declared output artifact type (attacks, defenses; ``TaskData`` for datasets).
        access: Attack threat model: ``white-box``, ``black-box``, ``label-only`` or ``data``.
        knowledge: Attack's auxiliary knowledge: ``partial``, ``shadow`` or ``none``.
        target_access: Model access a metric also needs, if any.
        higher_is_riskier: Metric direction.
        utility: Metric is a utility reference, not a susceptibility measure.
        modalities: Data modalities (datasets: one; model factories: those supported).
        summary: One line for listings.
        distribution: The distribution that ships it (filled in by discovery).
        version: That distribution's version (filled in by discovery).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN.pattern)
    kind: Kind
    target: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
    risks: tuple[str, ...] = ()
    input: str | None = Field(default=None, pattern=_TYPE_NAME)
    output: str | None = Field(default=None, pattern=_TYPE_NAME)
    access: Literal["white-box", "black-box", "label-only", "data"] | None = None
    knowledge: Literal["partial", "shadow", "none"] | None = None
    target_access: str | None = Field(default=None, pattern=_TYPE_NAME)
    higher_is_riskier: bool | None = None
    utility: bool | None = None
    modalities: tuple[Literal["tabular", "image"], ...] = ()
    summary: str = ""
    distribution: str = ""
    version: str = ""

    @model_validator(mode="after")
    def _check_kind(self) -> Self:
        for risk in self.risks:
            if not RISK_PATTERN.match(risk):
                raise ValueError(f"risk id {risk!r} must start with an upper-case letter")
        needs: dict[str, tuple[str, ...]] = {
            "attack": ("input", "output", "access"),
            "defense": ("input", "output"),
            "metric": ("input", "higher_is_riskier"),
        }
        for field in needs.get(self.kind, ()):
            if getattr(self, field) is None:
                raise ValueError(f"{_article(self.kind)} {self.kind} must declare {field!r}")
        if self.kind in ("attack", "defense") and not self.risks:
            raise ValueError(f"{_article(self.kind)} {self.kind} must declare at least one risk id")
        for field in ("input", "output", "target_access"):
            value = getattr(self, field)
            if value is not None and ":" not in value and value not in CORE_ARTIFACTS:
                raise ValueError(f"{field} {value!r} is not a core artifact type; name others as 'module:Class'")
        return self

    @classmethod
    def from_class(cls, module_cls: type, *, target: str | None = None, **extra: Any) -> PluginSpec:
        """Derive the declaration of a module class (what its manifest entry should say)."""
        kind = module_cls.kind  # type: ignore[attr-defined]
        fields: dict[str, Any] = {
            "name": module_cls.name,  # type: ignore[attr-defined]
            "kind": kind,
            "target": target or f"{module_cls.__module__}:{module_cls.__qualname__}",
            "risks": tuple(module_cls.risks),  # type: ignore[attr-defined]
            "summary": module_cls.describe(),  # type: ignore[attr-defined]
        }
        if kind in ("attack", "defense", "metric"):
            fields["input"] = artifact_name(module_cls.Input)  # type: ignore[attr-defined]
        if kind in ("attack", "defense"):
            fields["output"] = artifact_name(module_cls.Output)  # type: ignore[attr-defined]
        if kind == "attack":
            fields["access"] = module_cls.access  # type: ignore[attr-defined]
            fields["knowledge"] = module_cls.knowledge  # type: ignore[attr-defined]
        if kind == "metric":
            fields["higher_is_riskier"] = module_cls.higher_is_riskier  # type: ignore[attr-defined]
            fields["utility"] = module_cls.utility  # type: ignore[attr-defined]
            target_type = module_cls.Target  # type: ignore[attr-defined]
            fields["target_access"] = artifact_name(target_type) if target_type is not None else None
        if kind == "dataset":
            fields["output"] = "TaskData"
            fields["modalities"] = (module_cls.modality,)  # type: ignore[attr-defined]
        if kind == "model":
            fields["modalities"] = tuple(module_cls.modalities)  # type: ignore[attr-defined]
        return cls(**{**fields, **extra})

    def mismatches(self, module_cls: type) -> list[str]:
        """Fields where this declaration disagrees with the class it points to (empty when they agree)."""
        actual = PluginSpec.from_class(module_cls, target=self.target)
        ignored = {"summary", "distribution", "version", "target"}
        problems = []
        for field in type(self).model_fields:
            if field in ignored:
                continue
            declared, real = getattr(self, field), getattr(actual, field)
            if declared is None:  # optional and left undeclared
                continue
            if declared != real:
                problems.append(f"{field}: manifest says {declared!r}, class says {real!r}")
        return problems
