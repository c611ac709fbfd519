"""Declaration of the ``fgsm`` plugin, read by interplay's registry without importing the attack.

This module is the target of the distribution's ``interplay`` entry point. It holds data
only: the implementation (:mod:`interplay_fgsm.attack`, which imports torch) is imported
the first time the attack is used.
"""

from __future__ import annotations

from interplay.registry import PluginSpec, hookimpl

__all__ = ["PLUGINS", "interplay_plugins"]

PLUGINS = [
    PluginSpec(
        name="fgsm",
        kind="attack",
        target="interplay_fgsm.attack:FGSM",
        risks=("S1",),
        input="TrainedModel",
        output="AdversarialExamples",
        access="white-box",
        knowledge="none",
        summary="Fast Gradient Sign Method, one L-inf step (Goodfellow et al., 2015)",
    ),
]


@hookimpl
def interplay_plugins() -> list[PluginSpec]:
    """The plugins this distribution provides: the ``fgsm`` attack."""
    return PLUGINS
