"""Declarations of the built-in model factories (data only: importing this module imports no implementation)."""

from __future__ import annotations

from interplay.registry import PluginSpec

_P = "interplay.plugins"

SPECS = [
    PluginSpec(
        name="mlp",
        kind="model",
        target=f"{_P}.models.factories:MLPFactory",
        modalities=("tabular", "image"),
        summary="fully connected network, AMULET capacity presets m1-m4",
    ),
    PluginSpec(
        name="simple_cnn",
        kind="model",
        target=f"{_P}.models.factories:SimpleCNNFactory",
        modalities=("image",),
        summary="two convolutional layers and a dense classifier",
    ),
    PluginSpec(
        name="vgg",
        kind="model",
        target=f"{_P}.models.factories:VGGFactory",
        modalities=("image",),
        summary="VGG-11/13/16/19 adapted to small inputs",
    ),
    PluginSpec(
        name="resnet",
        kind="model",
        target=f"{_P}.models.factories:ResNetFactory",
        modalities=("image",),
        summary="torchvision ResNet-18/34/50 adapted to small inputs",
    ),
]
