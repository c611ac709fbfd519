"""Declarations of the built-in datasets (data only: importing this module imports no implementation)."""

from __future__ import annotations

from interplay.registry import PluginSpec

_P = "interplay.plugins"

SPECS = [
    PluginSpec(
        name="digits",
        kind="dataset",
        target=f"{_P}.datasets.digits:Digits",
        output="TaskData",
        modalities=("image",),
        summary="scikit-learn's bundled 8x8 digits (no download)",
    ),
    PluginSpec(
        name="census",
        kind="dataset",
        target=f"{_P}.datasets.census:Census",
        output="TaskData",
        modalities=("tabular",),
        summary="UCI Adult with AMULET's recipe; race and sex sensitive",
    ),
    PluginSpec(
        name="fmnist",
        kind="dataset",
        target=f"{_P}.datasets.fmnist:FashionMNIST",
        output="TaskData",
        modalities=("image",),
        summary="Fashion-MNIST from its IDX files",
    ),
]
