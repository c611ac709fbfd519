"""Declarations of the distribution's plugins, read by interplay's registry without importing them.

This module is the target of the distribution's ``interplay`` entry point. It holds data only;
each family's declarations live in its own ``specs_*`` module.
"""

from __future__ import annotations

from interplay.registry import PluginSpec, hookimpl

from . import (
    specs_attacks,
    specs_boundary_fuzz,
    specs_datasets,
    specs_defenses,
    specs_jba,
    specs_maskedthief,
    specs_metrics,
    specs_perturbation,
    specs_trees,
)

__all__ = ["PLUGINS", "interplay_plugins"]

PLUGINS: list[PluginSpec] = [
    *specs_datasets.SPECS,
    *specs_attacks.SPECS,
    *specs_metrics.SPECS,
    *specs_jba.SPECS,
    *specs_maskedthief.SPECS,
    *specs_defenses.SPECS,
    *specs_boundary_fuzz.SPECS,
    *specs_perturbation.SPECS,
    *specs_trees.SPECS,
]


@hookimpl
def interplay_plugins() -> list[PluginSpec]:
    """The plugins this distribution provides."""
    return PLUGINS
