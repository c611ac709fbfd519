"""Declarations of MaskedThief and its MixMatch baseline (data only)."""

from __future__ import annotations

from interplay.registry import PluginSpec

SPECS: list[PluginSpec] = [
    PluginSpec(
        name="masked_thief",
        kind="attack",
        target="interplay_stolen_risks.maskedthief:MaskedThief",
        risks=("S3",),
        input="QueryAccess",
        output="SurrogateModel",
        access="black-box",
        knowledge="partial",
        summary="base attack whose confident synthesised inputs are labelled by property-based inference",
    ),
    PluginSpec(
        name="mixmatch",
        kind="attack",
        target="interplay_stolen_risks.mixmatch:MixMatchStealing",
        risks=("S3",),
        input="QueryAccess",
        output="SurrogateModel",
        access="black-box",
        knowledge="partial",
        summary="base attack, then MixMatch on Q more synthesised unlabelled inputs (Berthelot et al., 2019)",
    ),
]
