"""Plugin discovery through the ``interplay`` entry-point group, with per-plugin error isolation."""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy
from pydantic import ValidationError

from ..errors import DuplicatePluginError, PluginDeclarationError, PluginError, UnknownPluginError
from ..modules.base import Kind, Module, format_validation_error
from . import hookspecs
from .spec import PluginSpec, RiskSpec

__all__ = ["ENTRY_POINT_GROUP", "PluginLoadError", "Registry", "get_registry", "reset_registry"]

ENTRY_POINT_GROUP = "interplay"


@dataclass(frozen=True)
class PluginLoadError:
    """A plugin (or a whole entry point) that could not be made available, and why.

    Attributes:
        distribution: The distribution that ships it.
        entry_point: The entry point's name in the ``interplay`` group.
        error: What went wrong, in one message.
        plugin: The plugin's name, when the problem concerns one plugin.
    """

    distribution: str
    entry_point: str
    error: str
    plugin: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class Registry:
    """The plugins and risks known to this process.

    Use :func:`get_registry` for the one discovered from installed distributions, or
    build one by hand (``Registry()`` then :meth:`add_manifest` / :meth:`register`) in tests.
    Listing (:meth:`specs`) reads declarations only; :meth:`load` imports an implementation.
    """

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._specs: dict[str, PluginSpec] = {}
        self._risks: dict[str, RiskSpec] = {}
        self._classes: dict[str, type[Module]] = {}
        self._errors: list[PluginLoadError] = []
        self._duplicates: dict[str, list[str]] = {}
        self._broken: dict[str, str] = {}
        self._entry_points: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- discovery -------------------------------------------------------------------------
    @classmethod
    def discover(cls, group: str = ENTRY_POINT_GROUP) -> Registry:
        """Build a registry from every installed distribution's ``group`` entry points."""
        registry = cls()
        found = sorted(metadata.entry_points(group=group), key=lambda ep: (_dist_name(ep), ep.name))
        for entry_point in found:
            distribution = _dist_name(entry_point)
            version = entry_point.dist.version if entry_point.dist is not None else ""
            try:
                obj = entry_point.load()
            except Exception as exc:  # any import-time failure of a third-party plugin
                registry._errors.append(
                    PluginLoadError(distribution, entry_point.name, f"import failed: {type(exc).__name__}: {exc}")
                )
                continue
            registry.add_manifest(obj, distribution=distribution, entry_point=entry_point.name, version=version)
        registry.check_risks()
        return registry

    def add_manifest(
        self, obj: ModuleType | object, *, distribution: str, entry_point: str = "", version: str = ""
    ) -> None:
        """Register an object implementing the hooks, reading its declarations now.

        Errors (a hook that raises, an invalid declaration, a duplicate name) are
        recorded in :attr:`errors`; the rest of the manifest is still registered.
        """
        label = entry_point or getattr(obj, "__name__", type(obj).__name__)
        try:
            self._pm.register(obj, name=f"{distribution}:{label}")
        except Exception as exc:  # pluggy validation of hookimpl signatures, double registration
            self._errors.append(PluginLoadError(distribution, label, f"invalid hook implementation: {exc}"))
            return
        known = {"interplay_risks", "interplay_plugins"}
        marked = {
            n for n in dir(obj) if n.startswith("interplay_") and hasattr(getattr(obj, n, None), "interplay_impl")
        }
        if marked - known:
            names = ", ".join(sorted(marked - known))
            self._errors.append(
                PluginLoadError(
                    distribution, label, f"unknown hook(s) {names}; the hooks are {', '.join(sorted(known))}"
                )
            )
        elif not marked:
            self._errors.append(
                PluginLoadError(
                    distribution,
                    label,
                    "no hook implementation: mark interplay_plugins() or interplay_risks() with @interplay.hookimpl",
                )
            )
        for hook_name, model in (("interplay_risks", RiskSpec), ("interplay_plugins", PluginSpec)):
            hook = getattr(self._pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                if impl.plugin is not obj:
                    continue
                try:
                    entries = list(impl.function())
                except Exception as exc:
                    self._errors.append(
                        PluginLoadError(distribution, label, f"{hook_name}() raised {type(exc).__name__}: {exc}")
                    )
                    continue
                for entry in entries:
                    self._add_entry(entry, model, distribution=distribution, entry_point=label, version=version)

    def _add_entry(
        self, entry: Any, model: type[PluginSpec] | type[RiskSpec], *, distribution: str, entry_point: str, version: str
    ) -> None:
        name = entry.get("name") if isinstance(entry, Mapping) else getattr(entry, "name", None)
        if model is RiskSpec:
            name = entry.get("id") if isinstance(entry, Mapping) else getattr(entry, "id", None)
        try:
            data = entry.model_dump() if isinstance(entry, (PluginSpec, RiskSpec)) else dict(entry)
            data["distribution"] = distribution
            if model is PluginSpec:
                data["version"] = version
            spec = model.model_validate(data)
        except (ValidationError, TypeError, ValueError) as exc:
            detail = (
                "; ".join(m if p == "<root>" else f"{p}: {m}" for p, m in format_validation_error(exc))
                if isinstance(exc, ValidationError)
                else str(exc)
            )
            what = "risk" if model is RiskSpec else "plugin"
            self._errors.append(
                PluginLoadError(
                    distribution,
                    entry_point,
                    f"invalid declaration of {what} {name!r}: {detail}",
                    plugin=name if isinstance(name, str) else None,
                )
            )
            return
        if isinstance(spec, RiskSpec):
            known = self._risks.get(spec.id)
            if known is None:
                self._risks[spec.id] = spec
            elif (known.name, known.family) != (spec.name, spec.family):
                self._errors.append(
                    PluginLoadError(
                        distribution,
                        entry_point,
                        f"risk id {spec.id!r} is already declared by distribution {known.distribution!r} as "
                        f"{known.name!r} ({known.family}); this declaration ({spec.name!r}) is ignored",
                    )
                )
        else:
            self._add_spec(spec, entry_point=entry_point)

    def _add_spec(self, spec: PluginSpec, *, entry_point: str) -> None:
        name = spec.name
        if name in self._duplicates:
            self._duplicates[name].append(spec.distribution)
            self._report_duplicate(name, entry_point)
            return
        existing = self._specs.get(name)
        if existing is not None:
            self._duplicates[name] = [existing.distribution, spec.distribution]
            del self._specs[name]
            self._classes.pop(name, None)
            self._report_duplicate(name, entry_point)
            return
        self._specs[name] = spec
        self._entry_points[name] = entry_point

    def _report_duplicate(self, name: str, entry_point: str) -> None:
        dists = self._duplicates[name]
        self._errors = [e for e in self._errors if not (e.plugin == name and e.error.startswith("duplicate"))]
        self._errors.append(
            PluginLoadError(
                dists[-1],
                entry_point,
                f"duplicate plugin name {name!r}: declared by distributions {', '.join(repr(d) for d in dists)}",
                plugin=name,
            )
        )

    def register(self, module_cls: type[Module], *, distribution: str = "__main__") -> PluginSpec:
        """Register a module class directly (no entry point), e.g. in a notebook or a test."""
        spec = PluginSpec.from_class(module_cls, distribution=distribution)
        self._add_spec(spec, entry_point="register")
        if self._specs.get(spec.name) is spec:
            self._classes[spec.name] = module_cls
        return spec

    def check_risks(self) -> None:
        """Move plugins that name undeclared risk ids to :attr:`errors`."""
        for name, spec in list(self._specs.items()):
            unknown = [r for r in spec.risks if r not in self._risks]
            if unknown:
                del self._specs[name]
                self._errors.append(
                    PluginLoadError(
                        spec.distribution,
                        self._entry_points.get(name, ""),
                        f"invalid declaration of plugin {name!r}: unknown risk id(s) {unknown}; "
                        "declare new risks with the interplay_risks hook",
                        plugin=name,
                    )
                )

    # -- queries ---------------------------------------------------------------------------
    @property
    def errors(self) -> list[PluginLoadError]:
        """Plugins or entry points that could not be made available."""
        return list(self._errors)

    @property
    def risks(self) -> dict[str, RiskSpec]:
        """Declared risks by id."""
        return dict(self._risks)

    def specs(self, kind: Kind | None = None) -> list[PluginSpec]:
        """Declarations of the available plugins, optionally of one kind, sorted by kind and name."""
        items = [s for s in self._specs.values() if kind is None or s.kind == kind]
        return sorted(items, key=lambda s: (s.kind, s.name))

    def names(self, kind: Kind | None = None) -> list[str]:
        """Names of the available plugins, optionally of one kind."""
        return [s.name for s in self.specs(kind)]

    def get(self, name: str, kind: Kind | None = None) -> PluginSpec:
        """The declaration of plugin ``name``.

        Raises:
            DuplicatePluginError: When two distributions declare ``name``.
            UnknownPluginError: When no available plugin (of ``kind``) has that name; the
                message suggests close names.
        """
        if name in self._duplicates:
            dists = ", ".join(repr(d) for d in self._duplicates[name])
            raise DuplicatePluginError(f"declared by more than one distribution ({dists}); uninstall one", plugin=name)
        spec = self._specs.get(name)
        if spec is None or (kind is not None and spec.kind != kind):
            what = kind or "plugin"
            broken = [e for e in self._errors if e.plugin == name]
            if broken:
                raise UnknownPluginError(f"{what} {name!r} is not available: {broken[0].error}")
            candidates = self.names(kind)
            close = difflib.get_close_matches(name, candidates, n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            known = f" (known: {', '.join(candidates)})" if candidates and not close and len(candidates) <= 12 else ""
            extra = f" (it is {'an' if spec.kind[0] in 'aeiou' else 'a'} {spec.kind})" if spec is not None else ""
            raise UnknownPluginError(f"unknown {what} {name!r}{extra}{hint}{known}")
        return spec

    def load(self, name: str, kind: Kind | None = None) -> type[Module]:
        """Import and return the class implementing plugin ``name``, checking it against its declaration.

        Raises:
            PluginError: When the import fails or the class disagrees with its declaration;
                the failure is also recorded in :attr:`errors`.
        """
        spec = self.get(name, kind)
        with self._lock:
            if name in self._classes:
                return self._classes[name]
            if name in self._broken:
                raise PluginError(self._broken[name], plugin=name, distribution=spec.distribution)
            try:
                cls = _import_target(spec)
            except PluginError as exc:
                message = str(exc.args[0]) if exc.args else str(exc)
                self._broken[name] = message
                self._errors.append(PluginLoadError(spec.distribution, self._entry_points.get(name, ""), message, name))
                raise PluginError(message, plugin=name, distribution=spec.distribution) from exc
            self._classes[name] = cls
            return cls

    def create(self, name: str, kind: Kind | None = None, **params: Any) -> Module:
        """Instantiate plugin ``name`` with ``params`` (validated against its schema)."""
        return self.load(name, kind)(**params)

    def iter_kinds(self) -> Iterable[tuple[Kind, list[PluginSpec]]]:
        """Pairs of kind and its plugins, in a stable order."""
        kinds: tuple[Kind, ...] = ("dataset", "model", "attack", "defense", "metric")
        for kind in kinds:
            yield kind, self.specs(kind)


def _dist_name(entry_point: metadata.EntryPoint) -> str:
    return entry_point.dist.name if entry_point.dist is not None else "<unknown>"


def _import_target(spec: PluginSpec) -> type[Module]:
    module_name, _, qualname = spec.target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except PluginDeclarationError as exc:
        raise PluginError(f"invalid declaration: {exc}") from exc
    except Exception as exc:
        raise PluginError(f"cannot import {spec.target}: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, Module)):
        raise PluginError(f"{spec.target} is not an interplay module class")
    if obj.kind != spec.kind:
        raise PluginError(f"{spec.target} is a {obj.kind}, but the manifest declares a {spec.kind}")
    problems = spec.mismatches(obj)
    if problems:
        raise PluginError(f"manifest disagrees with {spec.target}: " + "; ".join(problems))
    return obj


_REGISTRY: Registry | None = None
_REGISTRY_LOCK = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry, discovered from installed distributions on first use."""
    global _REGISTRY
    with _REGISTRY_LOCK:
        if _REGISTRY is None:
            _REGISTRY = Registry.discover()
        return _REGISTRY


def reset_registry(registry: Registry | None = None) -> None:
    """Forget the process-wide registry (or replace it), e.g. after installing a plugin."""
    global _REGISTRY
    with _REGISTRY_LOCK:
        _REGISTRY = registry
