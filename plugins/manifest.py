"""Declarations of interplay's built-in risks and plugins.

This module is the target of interplay's own ``interplay`` entry point: built-ins are
discovered exactly like third-party plugins. It holds data only and imports no
implementation, so listing plugins stays cheap.
"""

from __future__ import annotations

from interplay.registry import PluginSpec, RiskSpec, hookimpl

from .datasets import specs as datasets
from .evasion import specs as evasion
from .fairness import specs as fairness
from .models import specs as models
from .ownership import specs as ownership
from .poisoning import specs as poisoning
from .privacy import specs as privacy

RISKS = [
    RiskSpec(
        id="S1",
        name="evasion",
        family="security",
        description="Small input perturbations that change the model's prediction.",
    ),
    RiskSpec(
        id="S2",
        name="poisoning",
        family="security",
        description="Manipulated training data that implants a backdoor or degrades the model.",
    ),
    RiskSpec(
        id="S3",
        name="unauthorized model ownership",
        family="security",
        description="An adversary obtains a functional copy of the model through its outputs.",
    ),
    RiskSpec(
        id="P1",
        name="membership inference",
        family="privacy",
        description="Inferring whether a record was in the training data.",
    ),
    RiskSpec(
        id="P2",
        name="attribute inference",
        family="privacy",
        description="Inferring a sensitive attribute of a record from the model's behaviour.",
    ),
    RiskSpec(
        id="P3",
        name="data reconstruction",
        family="privacy",
        description="Reconstructing representative training inputs from the model.",
    ),
    RiskSpec(
        id="P4",
        name="distribution inference",
        family="privacy",
        description="Inferring properties of the training distribution, such as an attribute's ratio.",
    ),
    RiskSpec(
        id="F",
        name="discriminatory behaviour",
        family="fairness",
        description="Different outcomes or error rates across groups defined by a sensitive attribute.",
    ),
]

PLUGINS = [
    *datasets.SPECS,
    *models.SPECS,
    *evasion.SPECS,
    *poisoning.SPECS,
    *ownership.SPECS,
    *privacy.SPECS,
    *fairness.SPECS,
]


@hookimpl
def interplay_risks() -> list[RiskSpec]:
    """The risk ids of DESIGN's vocabulary."""
    return RISKS


@hookimpl
def interplay_plugins() -> list[PluginSpec]:
    """The built-in plugins."""
    return PLUGINS
