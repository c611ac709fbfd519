"""The BadNets trigger: a square patch in the bottom-right corner of images, a constant on trailing features."""

from __future__ import annotations

from typing import Any

import torch

from interplay.artifacts import LabeledData, LabelOnlyAccess, Modality
from interplay.errors import ArtifactError

__all__ = ["Trigger", "success_and_accuracy"]


class Trigger:
    """Where and with which value the trigger is stamped onto inputs of one task.

    Images ``(N, C, H, W)``: every channel of the ``size x size`` square whose bottom-right
    corner lies ``margin`` pixels from the image's bottom and right edges is set to ``value``.
    Tabular ``(N, F)``: the last ``max(1, floor(F * tabular_fraction))`` features are set to ``value``.

    Args:
        modality: ``image`` or ``tabular``.
        input_shape: Shape of one input.
        value: The value written into the trigger region.
        size: Side of the square patch (images).
        margin: Pixels between the patch and the bottom/right edges (images).
        tabular_fraction: Share of trailing features the trigger covers (tabular).
        owner: Name used in error messages (the attack's name).

    Raises:
        ArtifactError: When the patch does not fit into the image.
    """

    def __init__(
        self,
        *,
        modality: Modality,
        input_shape: tuple[int, ...],
        value: float,
        size: int,
        margin: int,
        tabular_fraction: float,
        owner: str,
    ) -> None:
        self.modality = modality
        self.value = float(value)
        if modality == "image":
            height, width = input_shape[-2], input_shape[-1]
            if size + margin > min(height, width):
                raise ArtifactError(
                    f"{owner}: trigger_size {size} plus trigger_margin {margin} does not fit into "
                    f"{height}x{width} images"
                )
            self.rows = slice(height - margin - size, height - margin)
            self.cols = slice(width - margin - size, width - margin)
            self.region: dict[str, Any] = {
                "kind": "patch",
                "rows": [self.rows.start, self.rows.stop],
                "cols": [self.cols.start, self.cols.stop],
            }
        else:
            n_features = input_shape[-1]
            count = max(1, int(n_features * tabular_fraction + 1e-9))
            self.features = slice(n_features - count, n_features)
            self.region = {"kind": "features", "features": [self.features.start, self.features.stop]}
        self.region["value"] = self.value

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Return a copy of the batch ``x`` with the trigger stamped on every row."""
        out = x.clone()
        if self.modality == "image":
            out[..., self.rows, self.cols] = self.value
        else:
            out[:, self.features] = self.value
        return out

    def apply_to(self, data: LabeledData) -> LabeledData:
        """Return ``data`` with the trigger stamped on every input (labels and attributes unchanged)."""
        return data.model_copy(update={"x": self.apply(data.x)})


def success_and_accuracy(model: LabelOnlyAccess, triggered: LabeledData, target_label: int) -> tuple[float, float]:
    """Attack success rate and true-label accuracy of ``model`` on triggered inputs.

    Args:
        model: Any model access (only its labels are read).
        triggered: Triggered inputs with their true labels.
        target_label: The backdoor's target class.

    Returns:
        ``(share predicted as target_label, share predicted as the true label)``; ``(0.0, 0.0)`` when empty.
    """
    if len(triggered) == 0:
        return 0.0, 0.0
    predicted = model.predict(triggered.x).to(triggered.y.device)
    return float((predicted == target_label).float().mean()), float((predicted == triggered.y).float().mean())
