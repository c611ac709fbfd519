"""The watermark trigger set of Adi et al. (2018), regenerated deterministically from a seed.

The watermarking defense and the watermark metrics both call :func:`trigger_set`: the
defended model records only the trigger set's seed and size in ``TrainedModel.info``, and
the metrics rebuild the identical inputs and labels from them, so no tensor has to be stored
with the model.

Image trigger sets are procedurally drawn "abstract images" (Adi et al. used 100 abstract
pictures; none ship with this library): a smooth random colour field with random ellipses
and rectangles painted over it, each filled with a random colour modulated by a random
sinusoidal grating. Tabular trigger rows are drawn uniformly from ``[0, 1]`` per feature, as
AMULET does (``WatermarkNN.get_wm_loader(tabular=True)``). Every trigger gets a label drawn
uniformly at random from the classes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from interplay.errors import ArtifactError

if TYPE_CHECKING:
    from interplay.context import RunContext

__all__ = [
    "DEFAULT_TRIGGER_SIZE",
    "INFO_SEED",
    "INFO_SIZE",
    "abstract_images",
    "default_trigger_seed",
    "trigger_set",
]

DEFAULT_TRIGGER_SIZE = 100
"""Adi et al. and AMULET: a trigger set of 100 images with random labels."""

INFO_SEED = "watermark_seed"
"""Key of ``TrainedModel.info`` holding the trigger set's seed."""

INFO_SIZE = "watermark_size"
"""Key of ``TrainedModel.info`` holding the trigger set's size."""

_SHAPES = 8
"""Shapes painted over the background of each abstract image."""

_BACKGROUND_GRID = 3
"""Side of the random colour grid that is upsampled into the smooth background."""


def default_trigger_seed(context: RunContext) -> int:
    """The trigger seed the watermarking defense uses under ``context`` when none is set.

    Args:
        context: The run context; the seed is derived from its run seed.

    Returns:
        A seed that depends only on the run seed.
    """
    return context.derive_seed("watermarking", "trigger_set")


def abstract_images(n: int, shape: tuple[int, int, int], generator: torch.Generator) -> torch.Tensor:
    """Draw ``n`` abstract images in ``[0, 1]``: random shapes with striped fills on a smooth background.

    Each image starts from a ``3 x 3`` grid of random colours upsampled bilinearly to the image
    size. Then :data:`_SHAPES` shapes are painted in order, each an ellipse or a rectangle with a
    random centre, half-axes between 10% and 45% of the image side, and rotation; its fill is a
    random colour plus a sinusoidal grating of random frequency, direction, phase and amplitude.
    All images are drawn at once (one vectorised step per shape layer).

    Args:
        n: Number of images.
        shape: ``(channels, height, width)``.
        generator: Source of all randomness.

    Returns:
        Float tensor ``(n, channels, height, width)`` with values in ``[0, 1]``.
    """
    channels, height, width = shape
    grid = torch.rand(n, channels, _BACKGROUND_GRID, _BACKGROUND_GRID, generator=generator)
    images = F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=True)
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) pixel centres in [0, 1]
    for _ in range(_SHAPES):

        def draw(*size: int) -> torch.Tensor:
            return torch.rand(n, *size, generator=generator)

        cx, cy, angle = draw(1, 1), draw(1, 1), draw(1, 1) * math.pi
        half_u, half_v = 0.10 + 0.35 * draw(1, 1), 0.10 + 0.35 * draw(1, 1)
        is_ellipse = draw(1, 1) < 0.5
        du, dv = gx - cx, gy - cy  # (n, H, W)
        u = du * torch.cos(angle) + dv * torch.sin(angle)
        v = -du * torch.sin(angle) + dv * torch.cos(angle)
        ellipse = (u / half_u) ** 2 + (v / half_v) ** 2 <= 1.0
        rectangle = (u.abs() <= half_u) & (v.abs() <= half_v)
        mask = torch.where(is_ellipse, ellipse, rectangle)[:, None]  # (n, 1, H, W)
        frequency, direction, phase = 1.0 + 5.0 * draw(1, 1), draw(1, 1) * math.pi, draw(1, 1) * 2 * math.pi
        wave = torch.sin(2 * math.pi * frequency * (u * torch.cos(direction) + v * torch.sin(direction)) + phase)
        colour, amplitude = draw(channels, 1, 1), 0.5 * draw(channels, 1, 1)
        fill = (colour + amplitude * wave[:, None]).clamp(0.0, 1.0)
        images = torch.where(mask, fill, images)
    return images.clamp(0.0, 1.0)


def trigger_set(
    seed: int, size: int, input_shape: tuple[int, ...], num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The trigger set (watermark key) for a seed: inputs and their random labels.

    Args:
        seed: Seeds every draw; the same arguments always give the same tensors.
        size: Number of triggers.
        input_shape: Shape of one model input: ``(C, H, W)`` gives abstract images,
            ``(F,)`` gives tabular rows uniform in ``[0, 1]``.
        num_classes: Labels are drawn uniformly from ``range(num_classes)``.

    Returns:
        ``(x, y)``: float inputs ``(size, *input_shape)`` on the CPU and int64 labels ``(size,)``.

    Raises:
        ArtifactError: When ``input_shape`` is neither ``(F,)`` nor ``(C, H, W)``, or
            ``size`` or ``num_classes`` is not positive.
    """
    if size < 1 or num_classes < 1:
        raise ArtifactError(f"a trigger set needs size >= 1 and num_classes >= 1, got {size} and {num_classes}")
    generator = torch.Generator().manual_seed(int(seed))
    if len(input_shape) == 3:
        channels, height, width = (int(d) for d in input_shape)
        x = abstract_images(size, (channels, height, width), generator)
    elif len(input_shape) == 1:
        x = torch.rand(size, int(input_shape[0]), generator=generator)
    else:
        raise ArtifactError(
            f"watermark triggers need inputs of shape (F,) or (C, H, W), got input_shape {tuple(input_shape)}"
        )
    y = torch.randint(num_classes, (size,), generator=generator)
    return x, y
