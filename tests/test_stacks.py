"""The two parameter stacks behind vectorised shadow training: which models take the matrix-product path, and
that both paths compute the same per-model gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import interplay
from interplay._seeding import seeded
from interplay.plugins.privacy._stacks import LinearChainStack, VmapStack, linear_chain, stack_models


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 6)
        self.b = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(x + self.a(x).relu())


class UnusedParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
        self.temperature = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return out


def _built(name: str, shape: tuple[int, ...], **params: object) -> nn.Module:
    module: nn.Module = interplay.get_registry().create(name, **params).build(input_shape=shape, num_classes=3)
    return module


@pytest.mark.parametrize(
    ("make", "rows", "chain"),
    [
        (lambda: _built("mlp", (6,)), (4, 6), True),
        (lambda: _built("mlp", (1, 3, 2), activation="tanh", dropout=0.3), (4, 1, 3, 2), True),
        (lambda: nn.Sequential(nn.Linear(6, 5, bias=False), nn.GELU(), nn.Linear(5, 3)), (4, 6), True),
        (lambda: _built("mlp", (6,), batch_norm=True), (4, 6), False),
        (lambda: _built("simple_cnn", (1, 8, 8)), (4, 1, 8, 8), False),
        (lambda: nn.Sequential(nn.Linear(2, 3)), (4, 3, 2), False),  # Linear on the last dim of 3-D rows
        (lambda: nn.Sequential(nn.Flatten(start_dim=2), nn.Linear(2, 3)), (4, 3, 2), False),
        (Residual, (4, 6), False),
        (UnusedParameter, (4, 6), False),
    ],
    ids=["mlp", "mlp-tanh-dropout-images", "no-bias-gelu", "batch-norm", "cnn", "3d-rows", "partial-flatten",
         "residual", "unused-parameter"],
)  # fmt: skip
def test_only_plain_chains_take_the_matrix_product_path(
    make: type[nn.Module], rows: tuple[int, ...], chain: bool
) -> None:
    assert (linear_chain(make(), torch.zeros(rows)) is not None) is chain


def _models(make: type[nn.Module] | object, count: int) -> list[nn.Module]:
    models = []
    for s in range(count):
        with seeded(s):
            models.append(make())  # type: ignore[operator]
    return models


@pytest.mark.parametrize(
    "make",
    [
        lambda: _built("mlp", (1, 3, 4), hidden_sizes=(8, 5), activation="tanh"),
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 7, bias=False), nn.LeakyReLU(0.1), nn.Linear(7, 3)),
    ],
    ids=["mlp-tanh", "no-bias-leaky"],
)
def test_chain_and_vmap_stacks_compute_the_same_per_model_gradients(make: object) -> None:
    models = _models(make, 3)
    chain = stack_models(models, torch.zeros(2, 1, 3, 4))
    generic = VmapStack(models)
    assert isinstance(chain, LinearChainStack)
    generator = torch.Generator().manual_seed(0)
    xb = torch.randn(3, 5, 1, 3, 4, generator=generator)
    yb = torch.randint(0, 3, (3, 5), generator=generator)
    wb = torch.tensor([[0.2] * 5, [0.25] * 4 + [0.0], [1.0] + [0.0] * 4])  # full, padded and one-row batches
    ours = chain.gradients(chain.flat, xb, yb, wb)
    reference = generic.gradients(generic.flat, xb, yb, wb)
    # the stacks lay out Linear weights differently (transposed in the chain): compare per parameter
    for s, model in enumerate(models):
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(xb[s][wb[s] > 0]), yb[s][wb[s] > 0])
        loss.backward()  # type: ignore[no-untyped-call]
        expected = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
        torch.testing.assert_close(reference[s], expected, rtol=1e-5, atol=1e-6)
        transposed = [p.grad.t() if p.dim() == 2 else p.grad for p in chain.parameters[s] if p.grad is not None]
        torch.testing.assert_close(ours[s], torch.cat([g.reshape(-1) for g in transposed]), rtol=1e-5, atol=1e-6)


def test_write_back_restores_each_models_own_layout() -> None:
    models = _models(lambda: nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2, bias=False)), 2)
    before = [[p.detach().clone() for p in m.parameters()] for m in models]
    stack = stack_models(models, torch.zeros(1, 4))
    assert isinstance(stack, LinearChainStack)
    with torch.no_grad():
        for p in models[0].parameters():
            p.zero_()  # overwritten by the write-back
    stack.write_back()
    for model, params in zip(models, before, strict=True):
        for p, q in zip(model.parameters(), params, strict=True):
            assert torch.equal(p, q)
