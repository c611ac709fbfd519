"""White-box distribution inference's meta-classifier: MLP weights as features, and the network reading them.

The permutation-invariant network is Ganju et al.'s (CCS 2018) as Suri and Evans use it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from interplay.errors import ArtifactError

__all__ = ["PermutationInvariantNetwork", "layer_shapes", "linear_layers", "weight_features"]


def linear_layers(module: nn.Module, owner: str) -> list[nn.Linear]:
    """The module's ``nn.Linear`` layers in order, checked to form a chain (an MLP)."""
    allowed = (nn.Linear, nn.BatchNorm1d, nn.LayerNorm)
    foreign = sorted(
        {
            type(m).__name__
            for m in module.modules()
            if next(m.parameters(recurse=False), None) is not None and not isinstance(m, allowed)
        }
    )
    layers = [m for m in module.modules() if isinstance(m, nn.Linear)]
    chained = all(a.out_features == b.in_features for a, b in itertools.pairwise(layers))
    if foreign or not layers or not chained:
        raise ArtifactError(
            f"{owner}: the white-box meta-classifier reads multi-layer perceptrons (a chain of nn.Linear layers); "
            f"{type(module).__name__} has "
            + (f"{', '.join(foreign)} layers" if foreign else "no chain of Linear layers")
        )
    return layers


def layer_shapes(layers: Sequence[nn.Linear]) -> list[tuple[int, int]]:
    return [(layer.out_features, layer.in_features) for layer in layers]


def weight_features(models: Sequence[nn.Module], owner: str) -> list[torch.Tensor]:
    """Per layer, every model's neurons as ``[incoming weights | bias]``: ``(B, out, in + 1)``."""
    per_model = [[_neurons(layer) for layer in linear_layers(module, owner)] for module in models]
    return [torch.stack(layer) for layer in zip(*per_model, strict=True)]


def _neurons(layer: nn.Linear) -> torch.Tensor:
    weight = layer.weight.detach().cpu()
    bias = layer.bias.detach().cpu() if layer.bias is not None else torch.zeros(layer.out_features)
    return torch.cat([weight, bias.unsqueeze(1)], dim=1)


class PermutationInvariantNetwork(nn.Module):
    """Permutation-invariant meta-classifier over an MLP's weights (Ganju et al., CCS 2018; Suri and Evans).

    Layer ``i``'s neurons are each described by their incoming weights and bias; a small network
    ``phi_i`` (``Linear -> ReLU -> ... -> Dropout`` with widths ``inside_dims``) maps each neuron,
    concatenated with the flattened ``phi_{i-1}`` outputs of all previous-layer neurons (Suri and
    Evans's ``PermInvModel``), to a vector; the vectors are summed over the layer's neurons, the
    layer sums concatenated, and a linear ``rho`` gives one logit. The sum makes each layer's
    representation independent of the order in which its neurons are listed (Deep Sets). As in the
    reference, the next layer reads the previous layer's neuron outputs flattened *in order*, so
    relabelling hidden neurons (rows of one layer and columns of the next together) is not an exact
    symmetry of the meta-classifier; only the last layer's neuron order is irrelevant.

    The previous-layer representation is the same for every neuron of a layer, so the first linear
    map of ``phi_i`` is split into a per-neuron part and a per-model part added by broadcasting:
    the same function as the reference's concatenation, computed once per model instead of once per
    neuron; both parts are initialised as the reference's single ``nn.Linear`` would be.

    Args:
        layer_shapes: ``(out_features, in_features)`` of each linear layer of the read MLP.
        inside_dims: Widths of ``phi_i``'s layers (reference: ``[64, 8]``).
        dropout: Dropout after ``phi_i`` (reference: 0.5).
    """

    def __init__(
        self, layer_shapes: Sequence[tuple[int, int]], *, inside_dims: Sequence[int] = (64, 8), dropout: float = 0.5
    ) -> None:
        super().__init__()
        width, last = inside_dims[0], inside_dims[-1]
        self.own = nn.ModuleList()
        self.prev = nn.ModuleList()
        self.rest = nn.ModuleList()
        previous_out = 0
        for out_features, in_features in layer_shapes:
            own = nn.Linear(in_features + 1, width)
            prev: nn.Module = nn.Linear(previous_out * last, width, bias=False) if previous_out else nn.Identity()
            bound = 1.0 / math.sqrt(in_features + 1 + previous_out * last)
            for parameter in [*own.parameters(), *prev.parameters()]:
                nn.init.uniform_(parameter, -bound, bound)
            tail: list[nn.Module] = [nn.ReLU()]
            for a, b in itertools.pairwise(inside_dims):
                tail += [nn.Linear(a, b), nn.ReLU()]
            tail.append(nn.Dropout(dropout))
            self.own.append(own)
            self.prev.append(prev)
            self.rest.append(nn.Sequential(*tail))
            previous_out = out_features
        self.rho = nn.Linear(last * len(layer_shapes), 1)

    def forward(self, layers: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logit of ratio 1 per model, ``(B,)``, from per-layer features ``(B, out_i, in_i + 1)``."""
        sums, previous = [], None
        for index, features in enumerate(layers):
            hidden = self.own[index](features)
            if previous is not None:
                hidden = hidden + self.prev[index](previous).unsqueeze(1)
            neurons = self.rest[index](hidden)
            sums.append(neurons.sum(dim=1))
            previous = neurons.flatten(1)
        logits: torch.Tensor = self.rho(torch.cat(sums, dim=1)).squeeze(1)
        return logits
