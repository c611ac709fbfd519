"""The machinery shared by every module kind: parameter schemas and declaration checks.

A module class declares, as class attributes, a unique ``name``, its ``risks`` and a
pydantic ``Params`` schema whose fields all have defaults. Construction only validates
parameters (keyword-only), never does work. Declarations are checked when the class
is created, so a plugin that forgets an attribute fails at import with a clear message.
"""

from __future__ import annotations

import re
from abc import ABCMeta
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticUndefined

from ..errors import ConfigError, PluginDeclarationError

__all__ = ["NAME_PATTERN", "RISK_PATTERN", "Kind", "Module", "ModuleMeta", "Params", "format_validation_error"]

Kind = Literal["attack", "defense", "metric", "dataset", "model"]
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
RISK_PATTERN = re.compile(r"^[A-Z][A-Za-z0-9_]*$")
RESERVED_NAMES = frozenset({"none", "baseline"})


class Params(BaseModel):
    """Base class of every module's hyper-parameter schema.

    Subclasses declare fields with the papers' defaults. Unknown parameters are
    rejected, values are validated on construction and the object is immutable.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def format_validation_error(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """Turn a pydantic error into ``(dotted field path, message)`` pairs.

    Args:
        exc: The validation error.
        prefix: Path of the validated object inside a larger document, e.g. ``attacks[0].params``.

    Returns:
        One pair per error, e.g. ``("attacks[0].params.eps", "Input should be a valid number")``.
    """
    items = []
    for error in exc.errors():
        located = (error.get("ctx") or {}).get("error")
        if isinstance(located, ValueError) and isinstance(getattr(located, "path", None), str):
            where = f"{prefix}.{located.path}" if prefix else located.path  # type: ignore[attr-defined]
            items.append((where, str(getattr(located, "message", located))))
            continue
        path = prefix
        for part in error["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path = f"{path}.{part}" if path else str(part)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required field is missing"
        items.append((path or "<root>", message))
    return items


def config_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    """Return a :class:`ConfigError` that names the first offending field of ``exc`` (and lists the rest)."""
    items = format_validation_error(exc, prefix)
    path, message = items[0]
    if len(items) > 1:
        message += "".join(f"\n  {p}: {m}" for p, m in items[1:])
    return ConfigError(message, path=path)


class ModuleMeta(ABCMeta):
    """Checks a concrete module class's declaration as soon as the class is created."""

    def __init__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, bases, namespace, **kwargs)
        if namespace.get("__abstract__", False) or getattr(cls, "__abstractmethods__", None):
            return
        checker: Callable[[], None] | None = getattr(cls, "_check_declaration", None)
        if checker is not None:
            checker()
        _wrap_entry_point(cls)


def _wrap_entry_point(cls: type) -> None:
    """Guard the kind's entry point (``run``, ``apply``, ...) of a concrete class, inherited or not."""
    name: str | None = getattr(cls, "_entry_point", None)
    guard: Callable[[Callable[..., Any]], Callable[..., Any]] | None = getattr(cls, "_guard", None)
    if name is None or guard is None:
        return
    method = getattr(cls, name)
    if getattr(method, "__interplay_guarded__", False):
        return
    wrapped = guard(method)
    wrapped.__interplay_guarded__ = True  # type: ignore[attr-defined]
    setattr(cls, name, wrapped)


class Module(metaclass=ModuleMeta):
    """Base of :class:`Attack`, :class:`Defense`, :class:`Metric`, :class:`Dataset` and :class:`ModelFactory`.

    Class attributes:
        name: Unique lowercase identifier (``pgd``, ``dp_sgd``); ``none`` is reserved for the baseline.
        kind: Set by each kind's base class.
        risks: Risk ids the module attacks, defends against or measures.
        Params: The hyper-parameter schema, a :class:`Params` subclass whose fields all have defaults.
        conformance_params: Cheap parameter overrides the conformance kit runs the module with.
        summary: One line for listings (defaults to the docstring's first line).

    Args:
        **params: Hyper-parameters, keyword-only, validated against ``Params``.

    Raises:
        ConfigError: When a parameter is unknown or invalid; the message names it.
    """

    __abstract__: ClassVar[bool] = True
    name: ClassVar[str]
    kind: ClassVar[Kind]
    risks: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type[Params]] = Params
    conformance_params: ClassVar[Mapping[str, Any]] = {}
    summary: ClassVar[str] = ""

    params: Any
    """The validated hyper-parameters, an instance of ``Params`` (annotate ``params: MyModule.Params`` in a
    subclass for precise static typing)."""

    def __init__(self, **params: Any) -> None:
        try:
            self.params = type(self).Params(**params)
        except ValidationError as exc:
            raise config_error(exc, prefix=f"{self.name}.params") from None

    def get_params(self) -> dict[str, Any]:
        """Return the hyper-parameters as a plain dictionary."""
        params: dict[str, Any] = self.params.model_dump()
        return params

    def with_params(self, **changes: Any) -> Module:
        """Return a new module of the same class with some parameters changed."""
        return type(self)(**{**self.get_params(), **changes})

    def __repr__(self) -> str:
        defaults = type(self).Params()
        changed = {k: v for k, v in self.get_params().items() if getattr(defaults, k) != v}
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{type(self).__name__}({args})"

    @classmethod
    def describe(cls) -> str:
        """One-line description: ``summary`` or the docstring's first line."""
        if cls.summary:
            return cls.summary
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0].strip() if doc else ""

    @classmethod
    def _check_declaration(cls) -> None:
        """Validate the common class attributes (kinds extend this)."""
        _require(cls, isinstance(getattr(cls, "name", None), str), "missing class attribute 'name' (a str)")
        _require(
            cls,
            bool(NAME_PATTERN.match(cls.name)),
            f"name {cls.name!r} must be lowercase letters, digits and underscores, starting with a letter",
        )
        _require(cls, cls.name not in RESERVED_NAMES, f"name {cls.name!r} is reserved")
        risks = getattr(cls, "risks", ())
        _require(
            cls,
            isinstance(risks, tuple) and all(isinstance(r, str) for r in risks),
            "risks must be a tuple of risk ids, e.g. ('S1',)",
        )
        for risk in risks:
            _require(cls, bool(RISK_PATTERN.match(risk)), f"risk id {risk!r} must start with an upper-case letter")
        check_params_schema(cls)
        _require(
            cls, isinstance(cls.conformance_params, Mapping), "conformance_params must be a mapping of parameter names"
        )


def _require(cls: type, condition: bool, message: str) -> None:
    if not condition:
        raise PluginDeclarationError(
            f"{cls.__module__}.{cls.__qualname__}: {message}", plugin=getattr(cls, "name", None)
        )


def check_params_schema(cls: type[Module]) -> None:
    """Check that ``cls.Params`` is a :class:`Params` subclass whose defaults all exist and validate.

    Raises:
        PluginDeclarationError: Naming the class and the offending field.
    """
    schema = getattr(cls, "Params", None)
    _require(
        cls,
        isinstance(schema, type) and issubclass(schema, Params),
        "Params must be a subclass of interplay.Params",
    )
    assert schema is not None
    for field_name, field in schema.model_fields.items():
        has_default = field.default is not PydanticUndefined or field.default_factory is not None
        _require(cls, has_default, f"Params.{field_name} has no default; every hyper-parameter needs one")
    try:
        schema()
    except ValidationError as exc:
        path, message = format_validation_error(exc, "Params")[0]
        _require(cls, False, f"default of {path} is invalid: {message}")
    try:
        schema.model_json_schema()
    except Exception as exc:  # pydantic raises several error types for unserialisable schemas
        _require(cls, False, f"Params has no JSON schema ({type(exc).__name__}: {exc})")
