"""ML-Doctor's membership attack networks (layer sizes of its ``utils/define_models.py``) and their initialisation."""

from __future__ import annotations

import torch
from torch import nn

from interplay.errors import ArtifactError

__all__ = ["BlackBoxAttackModel", "WhiteBoxAttackModel", "init_weights"]


def _branch(in_features: int, dropout: float) -> nn.Sequential:
    """ML-Doctor's two-layer input component: ``[Dropout] -> Linear(in, 128) -> ReLU -> Linear(128, 64)``."""
    layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
    return nn.Sequential(*layers, nn.Linear(in_features, 128), nn.ReLU(), nn.Linear(128, 64))


def _encoder(in_features: int, dropout: float) -> nn.Sequential:
    """ML-Doctor's four-layer encoder ``in -> (256 or in) -> 128 -> 64 -> 2`` with ReLUs (and dropout)."""
    width = 256 if in_features == 128 else in_features  # black-box: 128 -> 256; white-box: 256 -> 256
    layers: list[nn.Module] = []
    for size_in, size_out in ((in_features, width), (width, 128), (128, 64)):
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.Linear(size_in, size_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(64, 2))


class BlackBoxAttackModel(nn.Module):
    """ML-Doctor's ``ShadowAttackModel``: ranked posteriors and a correctness bit -> member / non-member logits.

    Each input goes through its own ``Linear(., 128) -> ReLU -> Linear(128, 64)``; the two
    embeddings are concatenated and fed to ``128 -> 256 -> 128 -> 64 -> 2`` with ReLUs.

    Args:
        k: Number of ranked posteriors per record.
    """

    def __init__(self, k: int) -> None:
        super().__init__()
        self.output_component = _branch(k, 0.0)
        self.prediction_component = _branch(1, 0.0)
        self.encoder = _encoder(128, 0.0)

    def forward(self, ranked: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, 2)``; column 1 is *member*."""
        joined = torch.cat([self.output_component(ranked), self.prediction_component(correct)], dim=1)
        logits: torch.Tensor = self.encoder(joined)
        return logits


class WhiteBoxAttackModel(nn.Module):
    """ML-Doctor's ``WhiteBoxAttackModel``: posteriors, loss, last-layer gradient and label -> logits.

    Posteriors, loss and one-hot label each go through ``Dropout(0.2) -> Linear(., 128) -> ReLU ->
    Linear(128, 64)``; the gradient, a one-channel ``(C, H)`` image, through ``Dropout -> Conv2d(1, 1,
    5, padding 2) -> BatchNorm2d -> ReLU -> MaxPool2d(2) -> Flatten -> Dropout -> Linear(., 256) ->
    ReLU -> Dropout -> Linear(256, 128) -> ReLU -> Linear(128, 64)``. The four 64-wide embeddings
    are concatenated and fed to ``256 -> 256 -> 128 -> 64 -> 2`` with ReLUs and dropout 0.2.

    Args:
        num_classes: ``C``, the target's number of classes.
        gradient_shape: ``(C, H)``, the shape of the last layer's weight.
    """

    def __init__(self, num_classes: int, gradient_shape: tuple[int, int]) -> None:
        super().__init__()
        pooled = (gradient_shape[0] // 2) * (gradient_shape[1] // 2)
        if pooled == 0:
            raise ArtifactError(
                f"the last layer's weight has shape {gradient_shape}; the white-box attack's 2x2 pooling "
                "needs both sides >= 2"
            )
        self.output_component = _branch(num_classes, 0.2)
        self.loss_component = _branch(1, 0.2)
        self.label_component = _branch(num_classes, 0.2)
        self.gradient_component = nn.Sequential(
            nn.Dropout(0.2),
            nn.Conv2d(1, 1, kernel_size=5, padding=2),
            nn.BatchNorm2d(1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(pooled, 256),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Linear(128, 64),
        )
        self.encoder = _encoder(256, 0.2)

    def forward(
        self, posteriors: torch.Tensor, loss: torch.Tensor, gradient: torch.Tensor, label: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``(N, 2)``; column 1 is *member*."""
        parts = [
            self.output_component(posteriors),
            self.loss_component(loss),
            self.gradient_component(gradient),
            self.label_component(label),
        ]
        logits: torch.Tensor = self.encoder(torch.cat(parts, dim=1))
        return logits


def init_weights(module: nn.Module) -> None:
    """ML-Doctor's ``weights_init``: Xavier-normal linear weights, N(0, 1) conv weights, zero biases."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.xavier_normal_(module.weight)
        nn.init.zeros_(module.bias)
