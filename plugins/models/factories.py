"""Built-in model factories: MLP, a two-layer CNN, VGG and ResNet.

Every built module returns logits from ``forward`` and penultimate features from ``embed``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from interplay import ModelFactory, Params

__all__ = ["MLPFactory", "ResNetFactory", "SimpleCNNFactory", "VGGFactory"]


def _image_shape(name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"model {name!r} needs image inputs (C, H, W), got input shape {input_shape}")
    channels, height, width = input_shape
    return channels, height, width


class MLPFactory(ModelFactory):
    """Fully connected network with AMULET's capacity presets (m1-m4); flattens image inputs."""

    name = "mlp"
    modalities = ("tabular", "image")

    class Params(Params):
        """Hyper-parameters of :class:`MLPFactory`.

        Attributes:
            capacity: AMULET's LinearNet preset: m1 (128, 256, 128), m2 (256, 512, 256),
                m3 (512, 1024, 512), m4 (512, 1024, 1024, 512).
            hidden_sizes: Explicit hidden widths; overrides ``capacity`` when given.
            activation: ``relu`` or ``tanh``.
            dropout: Dropout after each hidden activation.
            batch_norm: Batch normalisation in each hidden block.
        """

        capacity: Literal["m1", "m2", "m3", "m4"] = "m1"
        hidden_sizes: tuple[int, ...] | None = None
        activation: Literal["relu", "tanh"] = "relu"
        dropout: float = Field(default=0.0, ge=0, lt=1)
        batch_norm: bool = False

    def build(self, *, input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
        """Build an MLP taking ``prod(input_shape)`` features."""
        from ._nets import MLP, MLP_CAPACITY

        sizes = self.params.hidden_sizes if self.params.hidden_sizes is not None else MLP_CAPACITY[self.params.capacity]
        return MLP(
            in_features=math.prod(input_shape),
            num_classes=num_classes,
            hidden_sizes=sizes,
            activation=self.params.activation,
            dropout=self.params.dropout,
            batch_norm=self.params.batch_norm,
        )


class SimpleCNNFactory(ModelFactory):
    """Two convolutional layers (conv, ReLU, 2x2 max-pool) and a fully connected classifier."""

    name = "simple_cnn"
    modalities = ("image",)

    class Params(Params):
        """Hyper-parameters of :class:`SimpleCNNFactory`.

        Attributes:
            conv_channels: Output channels of each convolution.
            kernel_size: Convolution kernel size (same padding).
            fc_sizes: Widths of the fully connected layers before the output layer.
        """

        conv_channels: tuple[int, ...] = (32, 64)
        kernel_size: int = Field(default=5, ge=1)
        fc_sizes: tuple[int, ...] = (128,)

    def build(self, *, input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
        """Build the CNN for ``(C, H, W)`` inputs."""
        from ._nets import SimpleCNN

        channels, height, width = _image_shape(self.name, input_shape)
        return SimpleCNN(
            in_channels=channels,
            num_classes=num_classes,
            image_size=(height, width),
            conv_channels=self.params.conv_channels,
            kernel_size=self.params.kernel_size,
            fc_sizes=self.params.fc_sizes,
        )


class VGGFactory(ModelFactory):
    """VGG-11/13/16/19 (CIFAR-style head), batch norm on or off, adapted to small inputs."""

    name = "vgg"
    modalities = ("image",)

    class Params(Params):
        """Hyper-parameters of :class:`VGGFactory`.

        Attributes:
            depth: 11, 13, 16 or 19 (AMULET's capacities m1-m4).
            batch_norm: Batch normalisation after each convolution.
            width: Channels of the first stage (64 in the original; later stages scale with it).
        """

        depth: Literal[11, 13, 16, 19] = 11
        batch_norm: bool = True
        width: int = Field(default=64, ge=1)

    def build(self, *, input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
        """Build the VGG for ``(C, H, W)`` inputs."""
        from ._nets import VGG

        channels, height, width = _image_shape(self.name, input_shape)
        return VGG(
            depth=self.params.depth,
            in_channels=channels,
            num_classes=num_classes,
            image_size=(height, width),
            batch_norm=self.params.batch_norm,
            width=self.params.width,
        )


class ResNetFactory(ModelFactory):
    """torchvision's ResNet-18/34/50, untrained, with a 3x3 stem and no max-pool for small inputs."""

    name = "resnet"
    modalities = ("image",)

    class Params(Params):
        """Hyper-parameters of :class:`ResNetFactory`.

        Attributes:
            depth: 18, 34 or 50.
            small_input: Use the CIFAR-style stem (3x3 stride-1 convolution, no max-pool).
        """

        depth: Literal[18, 34, 50] = 18
        small_input: bool = True

    def build(self, *, input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
        """Build the ResNet for ``(C, H, W)`` inputs."""
        from ._nets import ResNet

        channels, _, _ = _image_shape(self.name, input_shape)
        return ResNet(
            depth=self.params.depth,
            in_channels=channels,
            num_classes=num_classes,
            small_input=self.params.small_input,
        )
