"""Vectorised (torch.func) training of many models against the sequential reference (``fit`` per model)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import interplay
from interplay import TrainingRecipe
from interplay._seeding import derive_seed, seeded
from interplay.artifacts import TaskData
from interplay.errors import ArtifactError, ConfigError
from interplay.plugins.privacy import _shadows
from interplay.plugins.privacy._shadows import model_seed, train_models
from interplay.plugins.privacy._stacked_optimizer import RowOptimizer
from interplay.training import fit, make_optimizer

Build = Callable[[int], nn.Module]

ADAM = TrainingRecipe(optimizer="adam", lr=3e-3, epochs=3, batch_size=60)
SGD = TrainingRecipe(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-3, epochs=3, batch_size=60)
ADAMW = TrainingRecipe(optimizer="adamw", lr=3e-3, weight_decay=0.05, epochs=3, batch_size=60)


def _builder(name: str, task: TaskData, **params: Any) -> Build:
    factory = interplay.get_registry().create(name, **params)

    def build(s: int) -> nn.Module:
        with seeded(derive_seed(11, "init", s)):
            return factory.build(input_shape=task.input_shape, num_classes=task.num_classes)

    return build


def _unequal_keep(n: int, fractions: list[float], seed: int = 0) -> torch.Tensor:
    """Each model keeps a random share of the rows; the shares differ, so do the steps per epoch."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(len(fractions), n, generator=generator) < torch.tensor(fractions)[:, None]


def _params(models: list[nn.Module]) -> list[torch.Tensor]:
    return [p.detach() for m in models for p in m.parameters()]


def _assert_same_training(vectorised: list[nn.Module], sequential: list[nn.Module], x: torch.Tensor) -> None:
    for p, q in zip(_params(vectorised), _params(sequential), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        for v, s in zip(vectorised, sequential, strict=True):
            torch.testing.assert_close(v(x).softmax(1), s(x).softmax(1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("recipe", [ADAM, SGD, ADAMW], ids=["adam", "sgd-momentum-wd", "adamw"])
def test_vectorised_mlp_matches_sequential_fit_with_unequal_keep_sizes(
    digits_task: TaskData, recipe: TrainingRecipe
) -> None:
    x, y = digits_task.train.x, digits_task.train.y
    keep = _unequal_keep(len(x), [0.15, 0.3, 0.45, 0.6, 0.75])
    steps = (keep.sum(1) + recipe.batch_size - 1) // recipe.batch_size
    assert len(set(steps.tolist())) > 2  # models skip padded steps: the masking is exercised
    assert bool((keep.sum(1) % recipe.batch_size != 0).all())  # every epoch ends on a short batch
    build = _builder("mlp", digits_task, hidden_sizes=(48, 32))

    vectorised = train_models(build, x, y, keep, recipe, seed=5, vectorize=True)
    sequential = train_models(build, x, y, keep, recipe, seed=5, vectorize=False)

    _assert_same_training(vectorised, sequential, digits_task.test.x)
    untrained = build(0)
    assert not torch.allclose(untrained.head.weight, vectorised[0].head.weight)  # it did train
    assert all(not m.training for m in vectorised)


def test_sequential_path_is_fit_per_model(digits_task: TaskData) -> None:
    x, y = digits_task.train.x, digits_task.train.y
    keep = _unequal_keep(len(x), [0.2, 0.5])
    recipe = TrainingRecipe(epochs=1, batch_size=64)
    build = _builder("mlp", digits_task, hidden_sizes=(16,))
    models = train_models(build, x, y, keep, recipe, seed=9, vectorize=False)
    for s, model in enumerate(models):
        rows = keep[s].nonzero().squeeze(1)
        reference = fit(build(s), x[rows], y[rows], recipe, seed=model_seed(9, s))
        for p, q in zip(model.parameters(), reference.parameters(), strict=True):
            assert torch.equal(p, q)


def test_vectorised_simple_cnn_matches_sequential_on_digits_images(digits_task: TaskData) -> None:
    x, y = digits_task.train.x[:600], digits_task.train.y[:600]
    keep = _unequal_keep(len(x), [0.3, 0.5, 0.7], seed=1)
    recipe = TrainingRecipe(epochs=2, batch_size=64)
    build = _builder("simple_cnn", digits_task, conv_channels=(8, 16), fc_sizes=(32,))

    vectorised = train_models(build, x, y, keep, recipe, seed=2, vectorize=True)
    sequential = train_models(build, x, y, keep, recipe, seed=2, vectorize=False)

    _assert_same_training(vectorised, sequential, digits_task.test.x)


def test_batch_norm_falls_back_to_sequential_and_refuses_forced_vectorisation(digits_task: TaskData) -> None:
    x, y = digits_task.train.x[:400], digits_task.train.y[:400]
    keep = _unequal_keep(len(x), [0.4, 0.6])
    recipe = TrainingRecipe(epochs=1, batch_size=64)
    build = _builder("mlp", digits_task, hidden_sizes=(16,), batch_norm=True)

    automatic = train_models(build, x, y, keep, recipe, seed=3)
    sequential = train_models(build, x, y, keep, recipe, seed=3, vectorize=False)
    for p, q in zip(_params(automatic), _params(sequential), strict=True):
        assert torch.equal(p, q)  # the very same path: fit per model
    for model in automatic:  # BatchNorm's running statistics were updated, as fit updates them
        assert not torch.equal(model.features[2].running_mean, torch.zeros(16))

    with pytest.raises(ConfigError, match=r"vectorize.*BatchNorm1d.*batch statistics"):
        train_models(build, x, y, keep, recipe, seed=3, vectorize=True)


def test_forward_that_torch_func_cannot_batch_is_detected(digits_task: TaskData) -> None:
    class ItemForward(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scale = float(x.abs().max().item())  # data-dependent Python value: vmap cannot batch .item()
            return self.head(x.flatten(1)) / max(scale, 1.0)

    x, y = digits_task.train.x[:200], digits_task.train.y[:200]
    keep = _unequal_keep(len(x), [0.5, 0.5])
    recipe = TrainingRecipe(epochs=1, batch_size=64)
    with pytest.raises(ConfigError, match=r"torch\.func cannot run its forward pass"):
        train_models(lambda s: ItemForward(), x, y, keep, recipe, seed=0, vectorize=True)
    assert len(train_models(lambda s: ItemForward(), x, y, keep, recipe, seed=0)) == 2  # automatic: sequential


def test_vectorised_shadows_learn_their_kept_rows(digits_task: TaskData) -> None:
    x, y = digits_task.train.x, digits_task.train.y
    keep = _unequal_keep(len(x), [0.5] * 4, seed=4)
    recipe = TrainingRecipe(lr=3e-3, epochs=8, batch_size=64)
    models = train_models(_builder("mlp", digits_task, hidden_sizes=(64,)), x, y, keep, recipe, seed=0)
    with torch.no_grad():
        for s, model in enumerate(models):
            rows = keep[s]
            accuracy = float((model(x[rows]).argmax(1) == y[rows]).float().mean())
            assert accuracy > 0.9, (s, accuracy)  # chance is 0.1


def test_same_seed_same_models_other_seed_other_models(digits_task: TaskData) -> None:
    x, y = digits_task.train.x[:500], digits_task.train.y[:500]
    x_before, y_before = x.clone(), y.clone()
    keep = _unequal_keep(len(x), [0.3, 0.6, 0.5])
    keep_before = keep.clone()
    recipe = TrainingRecipe(epochs=2, batch_size=32)
    build = _builder("mlp", digits_task, hidden_sizes=(32,), dropout=0.3)  # dropout draws are seeded too

    first = train_models(build, x, y, keep, recipe, seed=1)
    second = train_models(build, x, y, keep, recipe, seed=1)
    other = train_models(build, x, y, keep, recipe, seed=2)

    assert all(torch.equal(p, q) for p, q in zip(_params(first), _params(second), strict=True))
    assert not torch.allclose(first[0].head.weight, other[0].head.weight)
    assert torch.equal(x, x_before) and torch.equal(y, y_before) and torch.equal(keep, keep_before)


def test_chunked_training_matches_one_stack(digits_task: TaskData, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = digits_task.train.x[:500], digits_task.train.y[:500]
    keep = _unequal_keep(len(x), [0.3, 0.6, 0.5, 0.4, 0.7])
    recipe = TrainingRecipe(epochs=2, batch_size=64)
    build = _builder("mlp", digits_task, hidden_sizes=(32,))
    whole = train_models(build, x, y, keep, recipe, seed=4, vectorize=True)
    per_model = _shadows._chunk_size(build(0), x, recipe.batch_size, torch.device("cpu"))
    monkeypatch.setattr(_shadows, "_CPU_MEMORY_BUDGET", 1)  # room for one model per chunk
    assert _shadows._chunk_size(build(0), x, recipe.batch_size, torch.device("cpu")) == 1 < per_model
    chunked = train_models(build, x, y, keep, recipe, seed=4, vectorize=True)
    for p, q in zip(_params(whole), _params(chunked), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_model_without_kept_rows_stays_untrained(digits_task: TaskData) -> None:
    x, y = digits_task.train.x[:300], digits_task.train.y[:300]
    keep = _unequal_keep(len(x), [0.5, 0.0, 0.5])
    build = _builder("mlp", digits_task, hidden_sizes=(16,))
    models = train_models(build, x, y, keep, TrainingRecipe(epochs=2, batch_size=64), seed=0, vectorize=True)
    assert all(torch.equal(p, q) for p, q in zip(models[1].parameters(), build(1).parameters(), strict=True))
    assert not torch.equal(models[0].head.weight, build(0).head.weight)


@pytest.mark.parametrize("recipe", [ADAM, SGD, ADAMW, TrainingRecipe(optimizer="sgd", momentum=0.0)])
def test_row_optimizer_is_torch_optim_per_row_and_skips_inactive_rows(recipe: TrainingRecipe) -> None:
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(3, 20, generator=generator)
    grads = [torch.randn(3, 20, generator=generator) for _ in range(6)]
    active = [None, None, [True, False, True], None, [False, False, True], None]

    stacked = start.clone()
    optimizer = RowOptimizer(stacked, recipe)
    for g, a in zip(grads, active, strict=True):
        optimizer.step(g, a)

    for s in range(3):
        param = nn.Parameter(start[s].clone())
        reference = make_optimizer([param], recipe)
        for g, a in zip(grads, active, strict=True):
            if a is None or bool(a[s]):
                param.grad = g[s].clone()
                reference.step()
        torch.testing.assert_close(stacked[s], param.detach(), rtol=0, atol=1e-6)


def test_bad_keep_is_rejected(digits_task: TaskData) -> None:
    x, y = digits_task.train.x[:100], digits_task.train.y[:100]
    build = _builder("mlp", digits_task, hidden_sizes=(8,))
    with pytest.raises(ArtifactError, match="keep must be a boolean"):
        train_models(build, x, y, torch.ones(2, 100), TrainingRecipe(epochs=1), seed=0)
    with pytest.raises(ArtifactError, match="keep 99 columns"):
        train_models(build, x, y, torch.ones(2, 99, dtype=torch.bool), TrainingRecipe(epochs=1), seed=0)
