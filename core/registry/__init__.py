"""Plugin registry: pluggy hook specifications, declared metadata and entry-point discovery."""

from .discovery import ENTRY_POINT_GROUP, PluginLoadError, Registry, get_registry, reset_registry
from .hookspecs import hookimpl, hookspec
from .spec import ACCESS_LEVELS, CORE_ARTIFACTS, ArtifactTypes, PluginSpec, RiskSpec, artifact_name

__all__ = [
    "ACCESS_LEVELS",
    "CORE_ARTIFACTS",
    "ENTRY_POINT_GROUP",
    "ArtifactTypes",
    "PluginLoadError",
    "PluginSpec",
    "Registry",
    "RiskSpec",
    "artifact_name",
    "get_registry",
    "hookimpl",
    "hookspec",
    "reset_registry",
]
