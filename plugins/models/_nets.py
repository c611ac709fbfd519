"""Plain :class:`torch.nn.Module` architectures behind the built-in model factories.

Every network here follows one contract that the rest of the library relies on:

* ``forward(x)`` returns logits of shape ``(N, num_classes)``;
* ``embed(x)`` returns the penultimate-layer features of shape ``(N, D)``;
* ``self.head`` is the final :class:`torch.nn.Linear` layer, and
  ``forward(x) == self.head(self.embed(x))``.

Constructors take keyword-only hyper-parameters. Inputs are float32 tensors; image inputs are
laid out ``(N, C, H, W)``.

Importing this module does not import :mod:`torchvision`; :class:`ResNet` imports it lazily when
it is constructed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover - typing only, never imported at run time
    from torchvision.models import ResNet as _TorchvisionResNet

__all__ = [
    "MLP",
    "MLP_CAPACITY",
    "VGG",
    "VGG_CONFIGS",
    "ResNet",
    "SimpleCNN",
    "count_parameters",
]

#: Hidden-layer sizes of AMULET's ``LinearNet`` capacity presets.
MLP_CAPACITY: dict[str, tuple[int, ...]] = {
    "m1": (128, 256, 128),
    "m2": (256, 512, 256),
    "m3": (512, 1024, 512),
    "m4": (512, 1024, 1024, 512),
}

#: VGG layer configurations at width 64: an ``int`` is a 3x3 conv with that many output channels,
#: ``"M"`` a 2x2 max-pool with stride 2.
VGG_CONFIGS: dict[int, tuple[int | str, ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (
        64, 64, "M",
        128, 128, "M",
        256, 256, 256, 256, "M",
        512, 512, 512, 512, "M",
        512, 512, 512, 512, "M",
    ),
}  # fmt: skip

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}
_RESNET_DEPTHS: tuple[int, ...] = (18, 34, 50)


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Count the scalar parameters of a module.

    Args:
        module: The module to inspect.
        trainable_only: Count only parameters with ``requires_grad=True``.

    Returns:
        The total number of parameter elements; a parameter shared between layers counts once.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _check_positive(name: str, value: int) -> None:
    """Raise :class:`TypeError` unless ``value`` is an ``int``, :class:`ValueError` unless positive."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_sizes(name: str, sizes: Sequence[int]) -> tuple[int, ...]:
    """Validate a sequence of layer sizes and return it as a tuple."""
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise TypeError(f"{name} must be a sequence of positive integers, got {sizes!r}")
    for i, size in enumerate(sizes):
        _check_positive(f"{name}[{i}]", size)
    return tuple(sizes)


def _check_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    """Validate an ``(H, W)`` pair and return it as a tuple."""
    if isinstance(image_size, (str, bytes)) or not isinstance(image_size, Sequence):
        raise TypeError(f"image_size must be a (height, width) pair, got {image_size!r}")
    if len(image_size) != 2:
        raise ValueError(f"image_size must be a (height, width) pair, got {image_size!r}")
    height, width = image_size
    _check_positive("image_size[0]", height)
    _check_positive("image_size[1]", width)
    return height, width


class MLP(nn.Module):
    """Fully connected network; flattens its input, so image batches work too.

    Each hidden block is ``Linear -> [BatchNorm1d] -> activation -> [Dropout]``. With an empty
    ``hidden_sizes`` the network is a linear (softmax-regression) classifier and :meth:`embed`
    returns the flattened input.

    Args:
        in_features: Number of input features after flattening (e.g. ``C * H * W``).
        num_classes: Number of output logits.
        hidden_sizes: Widths of the hidden layers; see :data:`MLP_CAPACITY` for presets.
        activation: ``"relu"`` or ``"tanh"``.
        dropout: Dropout probability after each hidden activation, in ``[0, 1)``; 0 disables it.
        batch_norm: Insert a ``BatchNorm1d`` between each hidden linear layer and its activation.

    Raises:
        ValueError: On an unknown activation, a dropout outside ``[0, 1)`` or non-positive sizes.
        TypeError: On sizes that are not integers (or sequences of them).
    """

    def __init__(
        self,
        *,
        in_features: int,
        num_classes: int,
        hidden_sizes: Sequence[int] = (128, 256, 128),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        _check_positive("in_features", in_features)
        _check_positive("num_classes", num_classes)
        sizes = _check_sizes("hidden_sizes", hidden_sizes)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(_ACTIVATIONS)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.in_features = in_features
        self.num_classes = num_classes
        self.hidden_sizes = sizes

        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in sizes:
            layers.append(nn.Linear(width, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0.0:
                layers.append(nn.Dropout(dropout))
            width = size
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Return the output of the last hidden block, shape ``(N, hidden_sizes[-1])``."""
        features: torch.Tensor = self.features(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(N, num_classes)``."""
        logits: torch.Tensor = self.head(self.embed(x))
        return logits


class SimpleCNN(nn.Module):
    """Small convolutional network for MNIST-, digits- and CIFAR-sized images.

    Each conv stage is ``Conv2d(kernel_size, padding="same") -> ReLU -> MaxPool2d(2)``; pooling
    rounds odd sizes up (``ceil_mode=True``, like TensorFlow's "same" pooling), so a stage never
    shrinks a side below 1 and 8x8 inputs work as well as 28x28 and 32x32. The flattened size is
    computed from ``image_size``. Fully connected ``Linear -> ReLU`` layers follow, then the head.

    Args:
        in_channels: Number of input channels.
        num_classes: Number of output logits.
        image_size: Input ``(height, width)``.
        conv_channels: Output channels of each conv stage.
        kernel_size: Side of the square conv kernels.
        fc_sizes: Widths of the fully connected hidden layers before the head.

    Raises:
        ValueError: On non-positive sizes.
        TypeError: On sizes that are not integers (or sequences of them).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        conv_channels: Sequence[int] = (32, 64),
        kernel_size: int = 5,
        fc_sizes: Sequence[int] = (128,),
    ) -> None:
        super().__init__()
        _check_positive("in_channels", in_channels)
        _check_positive("num_classes", num_classes)
        _check_positive("kernel_size", kernel_size)
        height, width = _check_image_size(image_size)
        channels = _check_sizes("conv_channels", conv_channels)
        fcs = _check_sizes("fc_sizes", fc_sizes)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.image_size = (height, width)

        conv: list[nn.Module] = []
        prev = in_channels
        for out in channels:
            conv += [
                nn.Conv2d(prev, out, kernel_size, padding="same"),
                nn.ReLU(),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            prev = out
            height, width = -(-height // 2), -(-width // 2)
        self.conv = nn.Sequential(*conv)

        fc: list[nn.Module] = [nn.Flatten()]
        features = prev * height * width
        for size in fcs:
            fc += [nn.Linear(features, size), nn.ReLU()]
            features = size
        self.fc = nn.Sequential(*fc)
        self.head = nn.Linear(features, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last fully connected hidden features, shape ``(N, fc_sizes[-1])``."""
        features: torch.Tensor = self.fc(self.conv(x))
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(N, num_classes)``."""
        logits: torch.Tensor = self.head(self.embed(x))
        return logits


class VGG(nn.Module):
    """CIFAR-style VGG 11/13/16/19 adapted to small inputs.

    The 3x3 conv stacks follow :data:`VGG_CONFIGS` with channel counts scaled by ``width / 64``
    (at least 1). A max-pool is skipped when it would shrink a side below 1, so 8x8 and 28x28
    inputs work. The conv features are average-pooled to 1x1 and fed to a single linear head.
    Convolutions use Kaiming-normal (fan-out) initialisation, as in torchvision.

    Args:
        depth: 11, 13, 16 or 19.
        in_channels: Number of input channels.
        num_classes: Number of output logits.
        image_size: Input ``(height, width)``; decides which max-pools are kept.
        batch_norm: Insert ``BatchNorm2d`` after every conv (the conv then has no bias).
        width: Channel count of the first stage (64 in the original VGG).

    Raises:
        ValueError: On an unsupported depth or non-positive sizes.
        TypeError: On sizes that are not integers.
    """

    def __init__(
        self,
        *,
        depth: int = 11,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: tuple[int, int] = (32, 32),
        batch_norm: bool = True,
        width: int = 64,
    ) -> None:
        super().__init__()
        if depth not in VGG_CONFIGS:
            raise ValueError(f"unsupported VGG depth {depth!r}; expected one of {sorted(VGG_CONFIGS)}")
        _check_positive("in_channels", in_channels)
        _check_positive("num_classes", num_classes)
        _check_positive("width", width)
        height, w = _check_image_size(image_size)
        self.depth = depth
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.image_size = (height, w)

        layers: list[nn.Module] = []
        prev = in_channels
        for item in VGG_CONFIGS[depth]:
            if isinstance(item, str):  # "M"
                if height // 2 >= 1 and w // 2 >= 1:
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                    height, w = height // 2, w // 2
                continue
            out = max(1, item * width // 64)
            layers.append(nn.Conv2d(prev, out, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            prev = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(prev, num_classes)

        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Return the pooled conv features, shape ``(N, channels of the last conv)``."""
        features: torch.Tensor = self.features(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(N, num_classes)``."""
        logits: torch.Tensor = self.head(self.embed(x))
        return logits


def _torchvision_resnet(depth: int, num_classes: int) -> _TorchvisionResNet:
    """Build an untrained torchvision ResNet; torchvision is imported here, not at module level."""
    from torchvision.models import resnet18, resnet34, resnet50

    factories = {18: resnet18, 34: resnet34, 50: resnet50}
    return factories[depth](weights=None, num_classes=num_classes)


class ResNet(nn.Module):
    """Torchvision ResNet-18/34/50 (untrained), optionally adapted to small inputs.

    With ``small_input`` (the usual CIFAR adaptation) the stem is a 3x3 stride-1 conv with no
    initial max-pool, so 8x8, 28x28 and 32x32 inputs keep enough resolution; otherwise the
    ImageNet stem (7x7 stride-2 conv and max-pool) is kept. Either way the first conv accepts
    ``in_channels``. The torchvision network lives in ``self.backbone`` with its ``fc`` replaced by
    an identity; the original ``fc`` layer is ``self.head``.

    Args:
        depth: 18, 34 or 50.
        in_channels: Number of input channels.
        num_classes: Number of output logits.
        small_input: Use the CIFAR-style stem.

    Raises:
        ValueError: On an unsupported depth or non-positive sizes.
        TypeError: On sizes that are not integers.
    """

    def __init__(
        self,
        *,
        depth: int = 18,
        in_channels: int = 3,
        num_classes: int = 10,
        small_input: bool = True,
    ) -> None:
        super().__init__()
        if depth not in _RESNET_DEPTHS:
            raise ValueError(f"unsupported ResNet depth {depth!r}; expected one of {list(_RESNET_DEPTHS)}")
        _check_positive("in_channels", in_channels)
        _check_positive("num_classes", num_classes)
        self.depth = depth
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.small_input = small_input

        backbone = _torchvision_resnet(depth, num_classes)
        stem_out = backbone.conv1.out_channels
        stem: nn.Conv2d | None = None
        if small_input:
            stem = nn.Conv2d(in_channels, stem_out, kernel_size=3, stride=1, padding=1, bias=False)
            backbone.maxpool = nn.Identity()
        elif in_channels != backbone.conv1.in_channels:
            stem = nn.Conv2d(in_channels, stem_out, kernel_size=7, stride=2, padding=3, bias=False)
        if stem is not None:  # initialise a replaced stem the way torchvision initialises its convs
            nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")
            backbone.conv1 = stem
        self.head: nn.Linear = backbone.fc
        backbone.fc = nn.Identity()
        self.backbone = backbone

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Return the globally pooled features before ``fc``, shape ``(N, 512)`` (2048 for depth 50)."""
        features: torch.Tensor = self.backbone(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(N, num_classes)``."""
        logits: torch.Tensor = self.head(self.embed(x))
        return logits
