"""Training through the run context: accuracy on digits, determinism under a seed, device resolution."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import ValidationError

import interplay
from interplay import RunContext, TrainingRecipe
from interplay._seeding import derive_seed
from interplay.artifacts import TaskData, TrainedModel, fingerprint
from interplay.context import resolve_device
from interplay.errors import ConfigError
from interplay.training import fit, make_optimizer

RECIPE = TrainingRecipe(optimizer="adam", lr=3e-3, epochs=8, batch_size=64)  # ~0.95 test accuracy


def _context(seed: int, **params: Any) -> RunContext:
    factory = interplay.get_registry().create("mlp", hidden_sizes=(64,), **params)
    return RunContext(seed=seed, device="cpu", model=factory, recipe=RECIPE)  # type: ignore[arg-type]


def _accuracy(model: TrainedModel, task: TaskData) -> float:
    return float((model.predict(task.test.x) == task.test.y).float().mean())


def test_digits_loads_as_expected(digits_task: TaskData) -> None:
    assert digits_task.input_shape == (1, 8, 8)
    assert digits_task.num_classes == 10 and digits_task.modality == "image"
    assert len(digits_task.train) + len(digits_task.test) == 1797
    assert float(digits_task.train.x.min()) >= 0.0 and float(digits_task.train.x.max()) <= 1.0


def test_train_mlp_on_digits_reaches_high_accuracy(digits_task: TaskData) -> None:
    indices = torch.arange(len(digits_task.train))
    model = _context(0).train(digits_task.train, train_indices=indices, info={"note": "test"})
    assert _accuracy(model, digits_task) > 0.85
    assert model.architecture == "mlp"
    assert model.architecture_params["hidden_sizes"] == (64,)
    assert model.recipe == RECIPE
    assert (model.num_classes, model.input_shape) == (10, (1, 8, 8))
    assert torch.equal(model.train_indices, indices)
    assert model.info == {"note": "test"}
    assert not model.module.training


def test_same_seed_same_weights_different_seed_different_weights(digits_task: TaskData) -> None:
    data = digits_task.train.subset(torch.arange(300))
    recipe = TrainingRecipe(epochs=2, batch_size=64)
    first = _context(1).train(data, recipe=recipe)
    second = _context(1).train(data, recipe=recipe)
    third = _context(2).train(data, recipe=recipe)
    assert fingerprint(first.module) == fingerprint(second.module)
    assert fingerprint(first.module) != fingerprint(third.module)
    explicit = _context(7).train(data, recipe=recipe, seed=_context(1).derive_seed("train"))
    assert fingerprint(explicit.module) == fingerprint(first.module)  # the seed, not the context, decides


def test_dropout_training_is_deterministic_too(digits_task: TaskData) -> None:
    data = digits_task.train.subset(torch.arange(200))
    recipe = TrainingRecipe(epochs=1, batch_size=32)
    a = _context(3, dropout=0.5).train(data, recipe=recipe)
    b = _context(3, dropout=0.5).train(data, recipe=recipe)
    assert fingerprint(a.module) == fingerprint(b.module)


def test_training_leaves_the_global_rng_alone(digits_task: TaskData) -> None:
    data = digits_task.train.subset(torch.arange(100))
    torch.manual_seed(9)
    expected = torch.rand(4)
    torch.manual_seed(9)
    _context(0).train(data, recipe=TrainingRecipe(epochs=1))
    assert torch.equal(torch.rand(4), expected)


def test_fit_reduces_the_loss(digits_task: TaskData) -> None:
    module = _context(0).build_model((1, 8, 8), 10)
    losses: list[float] = []
    fit(module, digits_task.train.x, digits_task.train.y, TrainingRecipe(epochs=4, batch_size=128, lr=3e-3), seed=0,
        on_epoch=lambda epoch, loss: losses.append(loss))
    assert len(losses) == 4
    assert losses[-1] < 0.5 * losses[0]
    assert not module.training


def test_build_model_is_seeded_and_needs_a_factory() -> None:
    context = _context(0)
    assert fingerprint(context.build_model((4,), 3, seed=5)) == fingerprint(context.build_model((4,), 3, seed=5))
    assert fingerprint(context.build_model((4,), 3, seed=5)) != fingerprint(context.build_model((4,), 3, seed=6))
    with pytest.raises(ConfigError) as info:
        RunContext().build_model((4,), 3)
    assert info.value.path == "context.model"


def test_derive_seed_is_stable_and_salted() -> None:
    context = RunContext(seed=4)
    assert context.derive_seed("a", 1) == derive_seed(4, "a", 1) == RunContext(seed=4).derive_seed("a", 1)
    assert context.derive_seed("a") != context.derive_seed("b")
    assert context.derive_seed("a") != RunContext(seed=5).derive_seed("a")
    assert 0 <= context.derive_seed("a") < 2**63
    assert torch.equal(torch.rand(3, generator=context.generator("g")), torch.rand(3, generator=context.generator("g")))


def test_optimizers_and_recipe_validation() -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    sgd = make_optimizer(params, TrainingRecipe(optimizer="sgd", lr=0.1, momentum=0.5))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.5
    assert isinstance(make_optimizer(params, TrainingRecipe(optimizer="adamw")), torch.optim.AdamW)
    assert isinstance(make_optimizer(params, TrainingRecipe()), torch.optim.Adam)
    for bad in ({"lr": 0}, {"batch_size": 0}, {"optimizer": "rmsprop"}, {"momentum": 1.0}, {"epoch": 3}):
        with pytest.raises(ValidationError):
            TrainingRecipe(**bad)


# --------------------------------------------------------------------------- devices


def test_resolve_device_here() -> None:
    if torch.cuda.is_available():
        assert resolve_device("auto") == "cuda"
        assert resolve_device("cuda") == "cuda"
    else:
        assert resolve_device("auto") == "cpu"
        with pytest.raises(ConfigError, match="CUDA was requested"):
            resolve_device("cuda")
    assert resolve_device("cpu") == "cpu"


def test_resolve_device_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device() == "cpu"
    for requested in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError) as info:
            resolve_device(requested)
        assert info.value.path == "device"


def test_resolve_device_with_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("cpu") == "cpu"


def test_recipe_overrides_skip_none_and_read_module_parameters() -> None:
    from types import SimpleNamespace

    recipe = TrainingRecipe(epochs=10, lr=1e-3, batch_size=256)
    assert recipe.overridden(epochs=None, lr=None) is recipe
    assert recipe.overridden(epochs=3, lr=None).model_dump() == {**recipe.model_dump(), "epochs": 3}
    params = SimpleNamespace(epochs=None, lr=0.05, batch_size=32, temperature=20.0)  # unrelated fields ignored
    assert recipe.overridden_by(params).model_dump() == {**recipe.model_dump(), "lr": 0.05, "batch_size": 32}


def test_context_model_factory_resolves_names_and_reports_the_field() -> None:
    from interplay.context import RunContext
    from interplay.errors import ConfigError
    from interplay.registry import get_registry

    scenario = get_registry().create("mlp", hidden_sizes=(16,))
    context = RunContext(model=scenario)
    assert context.model_factory() is scenario
    assert context.model_factory(None, {"hidden_sizes": (8,)}).get_params()["hidden_sizes"] == (8,)
    assert context.model_factory("simple_cnn").name == "simple_cnn"
    with pytest.raises(ConfigError) as unknown:
        context.model_factory("no_such_model", path="distillation.params.architecture")
    assert unknown.value.path == "distillation.params.architecture"
    with pytest.raises(ConfigError, match="no model factory"):
        RunContext().model_factory(path="x.params.architecture")
