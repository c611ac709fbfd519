"""The plugin contract: pluggy hook specifications of the ``interplay`` project.

A distribution exposes an object (usually a module) through the ``interplay``
entry-point group; that object implements one or both hooks below with
:data:`interplay.hookimpl`. Both hooks return plain data, so listing plugins never
imports an implementation: the implementation (``PluginSpec.target``) is imported on
first use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .spec import PluginSpec, RiskSpec

PROJECT = "interplay"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def interplay_plugins() -> Sequence[PluginSpec | Mapping[str, Any]]:  # type: ignore[empty-body]
    """Declare the plugins a distribution provides.

    Returns:
        One :class:`~interplay.registry.PluginSpec` (or a mapping with its fields) per
        attack, defense, metric, dataset or model factory: its name, kind, the import path
        of its class (``target``) and the declared types the resolver works from.
    """


@hookspec
def interplay_risks() -> Sequence[RiskSpec | Mapping[str, Any]]:  # type: ignore[empty-body]
    """Declare risk ids (``S1``, ``P1``, ... or new ones) with their names and families.

    Returns:
        One :class:`~interplay.registry.RiskSpec` (or a mapping with its fields) per risk.
    """
