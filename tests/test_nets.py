"""Tests for the network architectures in ``plugins/models/_nets.py``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import nn

NETS_PATH = Path(__file__).resolve().parents[1] / "plugins" / "models" / "_nets.py"


def _load_nets() -> ModuleType:
    """Load ``_nets.py`` by file path, so the tests need no package install."""
    spec = importlib.util.spec_from_file_location("interplay_test_nets", NETS_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nets = _load_nets()

ImageShape = tuple[int, int, int]
IMAGE_SHAPES: list[ImageShape] = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
NUM_CLASSES = 5

# Tiny configurations of every architecture, keyed by name, built for a (C, H, W) input. The models are
# typed Any because ``nn.Module.__getattr__`` would otherwise hide ``embed`` and ``head`` from mypy.
IMAGE_FACTORIES: dict[str, Callable[[ImageShape], Any]] = {
    "mlp": lambda s: nets.MLP(in_features=s[0] * s[1] * s[2], num_classes=NUM_CLASSES, hidden_sizes=(16, 8)),
    "mlp_bn_dropout": lambda s: nets.MLP(
        in_features=s[0] * s[1] * s[2],
        num_classes=NUM_CLASSES,
        hidden_sizes=(16, 8),
        activation="tanh",
        dropout=0.2,
        batch_norm=True,
    ),
    "cnn": lambda s: nets.SimpleCNN(
        in_channels=s[0],
        num_classes=NUM_CLASSES,
        image_size=(s[1], s[2]),
        conv_channels=(4, 8),
        fc_sizes=(16,),
    ),
    "vgg11": lambda s: nets.VGG(
        depth=11, in_channels=s[0], num_classes=NUM_CLASSES, image_size=(s[1], s[2]), width=8
    ),
    "vgg11_nobn": lambda s: nets.VGG(
        depth=11,
        in_channels=s[0],
        num_classes=NUM_CLASSES,
        image_size=(s[1], s[2]),
        width=8,
        batch_norm=False,
    ),
    "resnet18": lambda s: nets.ResNet(depth=18, in_channels=s[0], num_classes=NUM_CLASSES),
}


def _batch(shape: ImageShape, n: int = 4, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=generator)


# --------------------------------------------------------------------------- shapes and contract


@pytest.mark.parametrize("shape", IMAGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", sorted(IMAGE_FACTORIES))
def test_image_output_shape_and_embed_contract(name: str, shape: ImageShape) -> None:
    torch.manual_seed(0)
    model = IMAGE_FACTORIES[name](shape).eval()
    x = _batch(shape, n=2)
    with torch.no_grad():
        logits = model(x)
        features = model.embed(x)
        again = model.head(features)
    assert logits.shape == (2, NUM_CLASSES)
    assert logits.dtype == torch.float32
    assert features.ndim == 2 and features.shape[0] == 2
    assert isinstance(model.head, nn.Linear)
    assert model.head.in_features == features.shape[1]
    assert model.head.out_features == NUM_CLASSES
    assert torch.allclose(again, logits)


def test_mlp_tabular_input() -> None:
    torch.manual_seed(0)
    model = nets.MLP(in_features=20, num_classes=3).eval()
    x = torch.randn(7, 20)
    with torch.no_grad():
        logits = model(x)
        features = model.embed(x)
    assert logits.shape == (7, 3)
    assert features.shape == (7, 128)  # default hidden sizes (128, 256, 128)
    assert torch.allclose(model.head(features), logits)


def test_mlp_without_hidden_layers_is_linear() -> None:
    model = nets.MLP(in_features=12, num_classes=3, hidden_sizes=())
    x = torch.randn(2, 3, 2, 2)
    assert torch.equal(model.embed(x), x.flatten(1))
    assert model(x).shape == (2, 3)


def test_mlp_capacity_presets() -> None:
    assert nets.MLP_CAPACITY == {
        "m1": (128, 256, 128),
        "m2": (256, 512, 256),
        "m3": (512, 1024, 512),
        "m4": (512, 1024, 1024, 512),
    }
    model = nets.MLP(in_features=10, num_classes=2, hidden_sizes=nets.MLP_CAPACITY["m4"])
    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    assert widths == [512, 1024, 1024, 512, 2]


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
def test_vgg_depths(depth: int) -> None:
    torch.manual_seed(0)
    model = nets.VGG(depth=depth, in_channels=1, num_classes=NUM_CLASSES, image_size=(8, 8), width=8).eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 3 == depth  # the three fully connected layers of the original are one head here
    x = _batch((1, 8, 8), n=2)
    with torch.no_grad():
        features = model.embed(x)
    assert features.shape == (2, 64)  # 512 * 8 / 64
    assert torch.allclose(model.head(features), model(x))


@pytest.mark.parametrize(("size", "pools"), [(8, 3), (28, 4), (32, 5)])
def test_vgg_skips_pools_that_would_empty_the_map(size: int, pools: int) -> None:
    model = nets.VGG(depth=11, in_channels=1, image_size=(size, size), width=8)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == pools


def test_vgg_default_is_cifar_vgg11_bn() -> None:
    model = nets.VGG()
    assert model.head.in_features == 512
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 8
    assert 9_000_000 < nets.count_parameters(model) < 9_500_000


def test_resnet_small_input_stem() -> None:
    model = nets.ResNet(depth=18, in_channels=1, num_classes=NUM_CLASSES)
    conv1 = model.backbone.conv1
    assert (conv1.in_channels, conv1.kernel_size, conv1.stride, conv1.padding) == (1, (3, 3), (1, 1), (1, 1))
    assert isinstance(model.backbone.maxpool, nn.Identity)
    assert isinstance(model.backbone.fc, nn.Identity)
    assert model.head.in_features == 512


def test_resnet_imagenet_stem_accepts_in_channels() -> None:
    model = nets.ResNet(depth=18, in_channels=1, num_classes=NUM_CLASSES, small_input=False).eval()
    conv1 = model.backbone.conv1
    assert (conv1.in_channels, conv1.kernel_size, conv1.stride) == (1, (7, 7), (2, 2))
    assert isinstance(model.backbone.maxpool, nn.MaxPool2d)
    with torch.no_grad():
        assert model(_batch((1, 28, 28), n=2)).shape == (2, NUM_CLASSES)


@pytest.mark.parametrize(("depth", "dim"), [(34, 512), (50, 2048)])
def test_resnet_deeper(depth: int, dim: int) -> None:
    torch.manual_seed(0)
    model = nets.ResNet(depth=depth, in_channels=1, num_classes=NUM_CLASSES).eval()
    x = _batch((1, 8, 8), n=2)
    with torch.no_grad():
        features = model.embed(x)
        logits = model(x)
    assert features.shape == (2, dim)
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.allclose(model.head(features), logits)


# --------------------------------------------------------------------------- determinism and training


@pytest.mark.parametrize("name", sorted(IMAGE_FACTORIES))
def test_same_seed_gives_identical_weights(name: str) -> None:
    shape = (1, 8, 8)
    torch.manual_seed(123)
    first = IMAGE_FACTORIES[name](shape).state_dict()
    torch.manual_seed(123)
    second = IMAGE_FACTORIES[name](shape).state_dict()
    torch.manual_seed(124)
    third = IMAGE_FACTORIES[name](shape).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], third[k]) for k in first)


@pytest.mark.parametrize("name", sorted(IMAGE_FACTORIES))
def test_sgd_steps_lower_the_loss(name: str) -> None:
    shape = (1, 8, 8)
    torch.manual_seed(0)
    model = IMAGE_FACTORIES[name](shape)
    if name == "mlp_bn_dropout":  # dropout makes single-batch losses noisy; check the deterministic part
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
    model.train()
    x = _batch(shape, n=4, seed=1)
    y = torch.tensor([0, 1, 2, 3])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(4):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = loss_fn(model(x), y).item()
    assert final < losses[0], (losses, final)


# --------------------------------------------------------------------------- misc


def test_count_parameters() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    assert nets.count_parameters(model) == 3 * 2 + 2 + 2 * 1 + 1
    model[0].weight.requires_grad_(False)
    assert nets.count_parameters(model) == 11
    assert nets.count_parameters(model, trainable_only=True) == 5


def test_mlp_count_matches_formula() -> None:
    model = nets.MLP(in_features=10, num_classes=3, hidden_sizes=(4,))
    assert nets.count_parameters(model) == (10 * 4 + 4) + (4 * 3 + 3)


def test_import_does_not_import_torchvision() -> None:
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("nets_probe", {str(NETS_PATH)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert hasattr(module, "ResNet")
        print("torchvision" in sys.modules)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# --------------------------------------------------------------------------- validation


def test_bad_activation_names_the_value() -> None:
    with pytest.raises(ValueError, match="gelu"):
        nets.MLP(in_features=4, num_classes=2, activation="gelu")


@pytest.mark.parametrize("depth", [10, 12, 18])
def test_bad_vgg_depth_names_the_value(depth: int) -> None:
    with pytest.raises(ValueError, match=rf"\b{depth}\b"):
        nets.VGG(depth=depth)


@pytest.mark.parametrize("depth", [11, 101])
def test_bad_resnet_depth_names_the_value(depth: int) -> None:
    with pytest.raises(ValueError, match=rf"\b{depth}\b"):
        nets.ResNet(depth=depth)


@pytest.mark.parametrize(
    "build",
    [
        lambda: nets.MLP(in_features=4, num_classes=2, dropout=1.0),
        lambda: nets.MLP(in_features=0, num_classes=2),
        lambda: nets.MLP(in_features=4, num_classes=2, hidden_sizes=(8, 0)),
        lambda: nets.SimpleCNN(in_channels=1, num_classes=2, image_size=(8,)),
        lambda: nets.SimpleCNN(in_channels=1, num_classes=2, image_size=(8, 8), kernel_size=0),
        lambda: nets.VGG(width=0),
        lambda: nets.ResNet(num_classes=0),
    ],
)
def test_bad_hyper_parameters_raise_value_error(build: Callable[[], nn.Module]) -> None:
    with pytest.raises(ValueError):
        build()


def test_non_integer_sizes_raise_type_error() -> None:
    with pytest.raises(TypeError):
        nets.MLP(in_features=4.0, num_classes=2)
    with pytest.raises(TypeError):
        nets.MLP(in_features=4, num_classes=2, hidden_sizes=8)


def test_constructors_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        nets.MLP(4, 2)
    with pytest.raises(TypeError):
        nets.VGG(11)
