"""Data reconstruction (P3) metrics: how close each reconstruction is to its class's mean training input.

ML-Doctor (Liu et al., section 5.2) and AMULET (Waheed et al., Table 4, "P3: MSE, SSIM") compare the
one reconstruction per class that model inversion produces with the average training sample of
that class and average the result over the classes; AMULET's ``evaluate_similarity`` reports the
mean and the per-class values of both. So do we: each metric returns the average (named
``inversion_mse`` / ``inversion_ssim``) followed by one value per class (``inversion_mse[3]``, ...).

- :class:`InversionMSE`: mean squared error over all input elements (AMULET's ``nn.MSELoss``);
  lower means a closer reconstruction, i.e. more risk.
- :class:`InversionSSIM`: structural similarity (Wang et al., "Image Quality Assessment: From Error
  Visibility to Structural Similarity", IEEE TIP 2004); higher means more risk. For images it is
  the mean SSIM map of :func:`torchmetrics.functional.image.structural_similarity_index_measure`
  with Wang et al.'s Gaussian window (11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03), scaled down for
  images smaller than 11 pixels: the window is the largest odd size not exceeding the image's
  smaller side and sigma shrinks in proportion (``1.5 * size / 11``), so 8 x 8 digits get a 7 x 7
  window with sigma of about 0.95. Tabular rows (and images under 3 pixels a side) get the global,
  single-window SSIM of the two flattened vectors (population moments). The dynamic range ``L`` is
  each class's reference range ``max - min`` (1 when the reference is constant).

AMULET computes SSIM with scikit-image's defaults (7 x 7 uniform window, sample covariance, border
positions cropped, ``data_range`` from the *reconstruction's* range); see ``docs/privacy/inversion.md``
for why we follow Wang et al.'s window and take the range from the reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from interplay.artifacts import MetricValue, Reconstructions, TaskData
from interplay.errors import ArtifactError
from interplay.modules import Metric

if TYPE_CHECKING:
    from interplay.context import RunContext

__all__ = ["InversionMSE", "InversionSSIM", "reconstruction_mse", "reconstruction_ssim", "ssim_window"]

K1 = 0.01
K2 = 0.03
SIGMA = 1.5
WINDOW = 11
"""Wang et al.'s constants and Gaussian window (size 11, standard deviation 1.5)."""


def reconstruction_mse(x_rec: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each row of ``x_rec`` to the same row of ``reference``, shape ``(K,)``."""
    difference = x_rec.to(torch.float64) - reference.to(torch.float64)
    return difference.pow(2).reshape(difference.shape[0], -1).mean(dim=1)


def ssim_window(height: int, width: int) -> tuple[int, float]:
    """The Gaussian window (size, sigma) for images of ``height x width``.

    Wang et al.'s 11 x 11 window with sigma 1.5, shrunk to the largest odd size that fits the
    smaller side, with sigma scaled in proportion so that the Gaussian keeps its shape (torchmetrics
    derives the window size from sigma: ``2 * int(3.5 * sigma + 0.5) + 1``, which gives back ``size``).
    """
    side = min(height, width)
    size = min(WINDOW, side if side % 2 == 1 else side - 1)
    return size, SIGMA * size / WINDOW


def _global_ssim(x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor) -> torch.Tensor:
    """Single-window SSIM of each pair of rows of ``(K, F)`` tensors (population moments)."""
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    mu_x, mu_y = x.mean(dim=1), y.mean(dim=1)
    dx, dy = x - mu_x[:, None], y - mu_y[:, None]
    var_x, var_y, cov = dx.pow(2).mean(dim=1), dy.pow(2).mean(dim=1), (dx * dy).mean(dim=1)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x.pow(2) + mu_y.pow(2) + c1)
    structure = (2 * cov + c2) / (var_x + var_y + c2)
    return luminance * structure


def reconstruction_ssim(x_rec: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """SSIM of each row of ``x_rec`` to the same row of ``reference``, shape ``(K,)``.

    Images ``(K, C, H, W)`` with both sides of at least 3 pixels: Gaussian-window SSIM (see
    :func:`ssim_window`), averaged over positions and channels. Anything else (tabular ``(K, F)``
    rows, tiny images): the global SSIM of the flattened rows. ``L`` is each reference row's range
    ``max - min`` (1 for a constant row); both rows are divided by it, which leaves SSIM unchanged
    and lets one call handle every class's range.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    x = x_rec.to(torch.float64)
    y = reference.to(torch.float64)
    flat = y.reshape(y.shape[0], -1)
    data_range = flat.max(dim=1).values - flat.min(dim=1).values
    data_range = torch.where(data_range > 0, data_range, torch.ones_like(data_range))
    scale = data_range.view((-1,) + (1,) * (y.ndim - 1))
    x, y = x / scale, y / scale
    if x.ndim == 4 and min(x.shape[-2:]) >= 3:
        _, sigma = ssim_window(int(x.shape[-2]), int(x.shape[-1]))
        values = structural_similarity_index_measure(
            x, y, gaussian_kernel=True, sigma=sigma, data_range=1.0, k1=K1, k2=K2, reduction="none"
        )
        assert isinstance(values, torch.Tensor)
        return values.reshape(-1)
    return _global_ssim(x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1), torch.ones(()))


def _check(metric: Metric, output: Reconstructions) -> None:
    if output.x_rec.shape[0] == 0:
        raise ArtifactError(f"metric {metric.name!r}: the Reconstructions hold no class")
    if output.x_rec.ndim < 2:
        raise ArtifactError(
            f"metric {metric.name!r}: Reconstructions.x_rec must have shape (K, *input_shape), "
            f"got {tuple(output.x_rec.shape)}"
        )


def _values(metric: Metric, output: Reconstructions, per_class: torch.Tensor, **details: Any) -> list[MetricValue]:
    """The average over classes, then one value per class named ``name[class]``."""
    higher: bool = type(metric).higher_is_riskier
    classes = [int(c) for c in output.classes.tolist()]
    values = [float(v) for v in per_class.tolist()]
    by_class = {str(c): v for c, v in zip(classes, values, strict=True)}
    average = MetricValue(
        name=metric.name,
        value=sum(values) / len(values),
        higher_is_riskier=higher,
        risk="P3",
        details={"per_class": by_class, "classes": classes, **details},
    )
    return [average] + [
        MetricValue(name=f"{metric.name}[{c}]", value=v, higher_is_riskier=higher, risk="P3", details={"class": c})
        for c, v in zip(classes, values, strict=True)
    ]


class InversionMSE(Metric):
    """Mean squared error between each reconstruction and its class's mean training input (lower: more risk).

    ML-Doctor's and AMULET's P3 metric: ``mean((x_rec - x_avg)^2)`` over the input's elements per
    class, then averaged over the classes.
    """

    name = "inversion_mse"
    risks = ("P3",)
    Input = Reconstructions
    higher_is_riskier = False

    def compute(
        self,
        output: Reconstructions,
        /,
        *,
        target: Any = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> list[MetricValue]:
        """MSE per class and its average.

        Args:
            output: Reconstructions with their references.
            target: Unused.
            data: Unused.
            context: Unused.

        Returns:
            ``inversion_mse`` (the average; ``details["per_class"]`` maps each class to its value)
            followed by ``inversion_mse[c]`` for each class ``c``.

        Raises:
            ArtifactError: When the reconstructions hold no class.
        """
        _check(self, output)
        return _values(self, output, reconstruction_mse(output.x_rec, output.reference))


class InversionSSIM(Metric):
    """Structural similarity between each reconstruction and its class's mean training input (higher: more risk).

    AMULET's second P3 metric. Gaussian-window SSIM for images, global SSIM for tabular rows; see
    :func:`reconstruction_ssim` and the module's documentation.
    """

    name = "inversion_ssim"
    risks = ("P3",)
    Input = Reconstructions
    higher_is_riskier = True

    def compute(
        self,
        output: Reconstructions,
        /,
        *,
        target: Any = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> list[MetricValue]:
        """SSIM per class and its average.

        Args:
            output: Reconstructions with their references.
            target: Unused.
            data: Unused.
            context: Unused.

        Returns:
            ``inversion_ssim`` (the average; ``details`` give the per-class values and the window)
            followed by ``inversion_ssim[c]`` for each class ``c``.

        Raises:
            ArtifactError: When the reconstructions hold no class.
        """
        _check(self, output)
        x = output.x_rec
        if x.ndim == 4 and min(x.shape[-2:]) >= 3:
            size, sigma = ssim_window(int(x.shape[-2]), int(x.shape[-1]))
            window: dict[str, Any] = {"window": "gaussian", "window_size": size, "sigma": sigma}
        else:
            window = {"window": "global"}
        return _values(self, output, reconstruction_ssim(x, output.reference), **window)
