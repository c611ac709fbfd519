"""Tests for the unauthorized-model-ownership (S3) plugins: model extraction and its metrics."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from interplay.artifacts import (
    LabeledData,
    LabelOnlyAccess,
    MetricValue,
    ModelAccess,
    QueryAccess,
    SurrogateModel,
    TaskData,
    TrainedModel,
    fingerprint,
)
from interplay.context import RunContext
from interplay.errors import ArtifactError, ConfigError
from interplay.modules import Dataset, Metric, ModelFactory
from interplay.plugins.ownership.attacks import ModelExtraction
from interplay.plugins.ownership.metrics import CorrectFidelity, Fidelity, SurrogateAccuracy
from interplay.recipe import TrainingRecipe
from interplay.registry import get_registry
from interplay.testing import parametrize_with_checks

EPOCHS = 20
# Measured on digits (seed 0, mlp m1, 20 epochs, batch 64): target test accuracy 0.952; surrogate fidelity
# 0.961 (mse), 0.957 (kl), 0.950 (ce); surrogate accuracy 0.92-0.94. Chance agreement is about 0.1.
MIN_FIDELITY = 0.85


@pytest.fixture(scope="module")
def task() -> TaskData:
    digits = get_registry().create("digits", "dataset")
    assert isinstance(digits, Dataset)
    return digits.load().partitioned(defender=0.5, adversary=0.5, seed=0)


@pytest.fixture(scope="module")
def context() -> RunContext:
    factory = get_registry().create("mlp", "model")
    assert isinstance(factory, ModelFactory)
    return RunContext(seed=0, model=factory, recipe=TrainingRecipe(epochs=EPOCHS, batch_size=64))


@pytest.fixture(scope="module")
def target(task: TaskData, context: RunContext) -> TrainedModel:
    return context.train(task.defender_train)


@pytest.fixture(scope="module")
def stolen(task: TaskData, context: RunContext, target: TrainedModel) -> SurrogateModel:
    return _extract(ModelExtraction(), target, data=task, context=context)


def _extract(attack: ModelExtraction, target: ModelAccess, **kwargs: Any) -> SurrogateModel:
    """Run ``attack``; typed loosely because the base class narrows any wider access to ``QueryAccess``."""
    run: Any = attack.run
    result = run(target, **kwargs)
    assert isinstance(result, SurrogateModel)
    return result


def _measure(metric: Metric, output: SurrogateModel, **kwargs: Any) -> MetricValue:
    """Compute ``metric``, narrowing any wider ``target=`` access, and check it returns one value."""
    compute: Any = metric.compute
    value = compute(output, **kwargs)
    assert isinstance(value, MetricValue)
    return value


def _fidelity(surrogate: SurrogateModel, target: ModelAccess, task: TaskData) -> float:
    return _measure(Fidelity(), surrogate, target=target, data=task).value


# --- the attack ---------------------------------------------------------------------------------------------


def test_extraction_reaches_high_fidelity(
    stolen: SurrogateModel, target: TrainedModel, task: TaskData, context: RunContext
) -> None:
    fidelity = _measure(Fidelity(), stolen, target=target, data=task)
    correct = _measure(CorrectFidelity(), stolen, target=target, data=task)
    accuracy = _measure(SurrogateAccuracy(), stolen, data=task)
    assert fidelity.value > MIN_FIDELITY
    assert fidelity.details["n"] == len(task.test)
    assert accuracy.value > 0.8
    assert correct.value > 0.8
    assert all(m.higher_is_riskier and m.risk == "S3" for m in (fidelity, correct, accuracy))
    model = stolen.model
    assert model.architecture == "mlp" and model.recipe == context.recipe
    assert model.train_indices is not None and task.partition is not None
    assert torch.equal(model.train_indices, task.partition.adversary)
    assert stolen.queries == len(task.adversary)


def test_attack_sees_only_query_access(task: TaskData, context: RunContext, target: TrainedModel) -> None:
    seen: list[Any] = []

    class Spy(ModelExtraction):
        def run(self, target: Any, /, **kwargs: Any) -> SurrogateModel:
            seen.append(target)
            return super().run(target, **kwargs)

    result = _extract(Spy(epochs=1), target, data=task, context=context)
    assert len(seen) == 1
    assert isinstance(seen[0], QueryAccess) and not isinstance(seen[0], TrainedModel)
    assert not hasattr(seen[0], "module")
    assert result.queries == len(task.adversary)


def test_query_counter_counts_adversary_rows(task: TaskData, context: RunContext, target: TrainedModel) -> None:
    access = target.narrow(QueryAccess)
    access.query(task.test.x[:5])
    before = access.queries
    result = ModelExtraction(epochs=1).run(access, data=task, context=context)
    assert access.queries - before == len(task.adversary) == result.queries


def test_query_budget_limits_queries(task: TaskData, context: RunContext, target: TrainedModel) -> None:
    access = target.narrow(QueryAccess)
    result = ModelExtraction(query_budget=200).run(access, data=task, context=context)
    assert result.queries == 200 == access.queries
    indices = result.model.train_indices
    assert indices is not None and task.partition is not None
    assert len(indices) == 200 and len(set(indices.tolist())) == 200
    assert bool(torch.isin(indices, task.partition.adversary).all())
    assert _fidelity(result, target, task) > 0.7  # measured 0.852 with 200 of 628 queries; chance is about 0.1

    generous = _extract(ModelExtraction(query_budget=10_000, epochs=1), target, data=task, context=context)
    assert generous.queries == len(task.adversary)


@pytest.mark.parametrize("loss", ["mse", "kl", "ce"])
def test_each_loss_extracts(loss: str, task: TaskData, context: RunContext, target: TrainedModel) -> None:
    result = _extract(ModelExtraction(loss=loss), target, data=task, context=context)
    assert result.model.info["extraction_loss"] == loss
    assert _fidelity(result, target, task) > MIN_FIDELITY


def test_deterministic_for_a_seed(task: TaskData, context: RunContext, target: TrainedModel) -> None:
    attack = ModelExtraction(epochs=2, query_budget=300)
    first = _extract(attack, target, data=task, context=context)
    second = _extract(attack, target, data=task, context=context)
    assert fingerprint(first.model.module) == fingerprint(second.model.module)
    other = _extract(attack, target, data=task, context=context.model_copy(update={"seed": 1}))
    assert fingerprint(other.model.module) != fingerprint(first.model.module)


def test_recipe_overrides_and_other_architecture(task: TaskData, context: RunContext, target: TrainedModel) -> None:
    attack = ModelExtraction(
        architecture="mlp", architecture_params={"hidden_sizes": (32,)}, epochs=2, lr=5e-3, batch_size=32
    )
    result = _extract(attack, target, data=task, context=context)
    recipe = result.model.recipe
    assert recipe is not None and (recipe.epochs, recipe.lr, recipe.batch_size) == (2, 5e-3, 32)
    assert result.model.architecture_params["hidden_sizes"] == (32,)
    assert result.model.module(task.test.x[:2]).shape == (2, task.num_classes)


def test_attack_errors(task: TaskData, context: RunContext, target: TrainedModel) -> None:
    attack = ModelExtraction(epochs=1)
    access = target.narrow(QueryAccess)
    with pytest.raises(ArtifactError, match="data="):
        attack.run(access, context=context)
    unpartitioned = task.model_copy(update={"partition": None})
    with pytest.raises(ArtifactError, match="partition"):
        attack.run(access, data=unpartitioned, context=context)
    with pytest.raises(ConfigError, match="model factory"):
        attack.run(access, data=task, context=RunContext())
    with pytest.raises(ConfigError, match="architecture"):
        ModelExtraction(architecture="no_such_model").run(access, data=task, context=context)
    with pytest.raises(ConfigError, match="loss"):
        ModelExtraction(loss="l1")
    broken = QueryAccess.from_function(
        lambda x: torch.zeros(len(x), 3), num_classes=task.num_classes, input_shape=task.input_shape
    )
    with pytest.raises(ArtifactError, match="shape"):
        attack.run(broken, data=task, context=context)


# --- the metrics on a hand-computed example ------------------------------------------------------------------


class _FixedLogits(nn.Module):
    """Input ``[[i]]`` maps to the one-hot logits of ``labels[i]``."""

    def __init__(self, labels: list[int], num_classes: int) -> None:
        super().__init__()
        self.register_buffer("table", nn.functional.one_hot(torch.tensor(labels), num_classes).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        table = self.get_buffer("table")
        return table[x[:, 0].long()]


Y_TRUE = [0, 1, 2, 0, 1, 2]
SURROGATE = [0, 1, 1, 0, 2, 2]  # right on rows 0, 1, 3, 5
TARGET = [0, 1, 1, 1, 2, 0]  # agrees with the surrogate on rows 0, 1, 2, 4; of those, the surrogate is right on 0, 1


def _toy(surrogate: list[int], target: list[int]) -> tuple[SurrogateModel, LabelOnlyAccess, TaskData]:
    x = torch.arange(len(Y_TRUE), dtype=torch.float32)[:, None]
    split = LabeledData(x=x, y=torch.tensor(Y_TRUE), num_classes=3)
    task = TaskData(splits={"train": split, "test": split})
    model = TrainedModel(module=_FixedLogits(surrogate, 3), num_classes=3, input_shape=(1,))
    labels = torch.tensor(target)
    access = LabelOnlyAccess.from_function(lambda q: labels[q[:, 0].long()], num_classes=3, input_shape=(1,))
    return SurrogateModel(model=model, queries=7), access, task


def test_metrics_match_hand_computed_values() -> None:
    surrogate, access, task = _toy(SURROGATE, TARGET)
    accuracy = _measure(SurrogateAccuracy(), surrogate, data=task)
    fidelity = _measure(Fidelity(), surrogate, target=access, data=task)
    correct = _measure(CorrectFidelity(), surrogate, target=access, data=task)
    assert accuracy.value == pytest.approx(4 / 6)
    assert fidelity.value == pytest.approx(4 / 6)
    assert correct.value == pytest.approx(2 / 4)
    assert accuracy.details == {"n": 6, "n_correct": 4, "queries": 7}
    assert fidelity.details == {"n": 6, "n_agree": 4, "queries": 7}
    assert correct.details == {"n": 6, "n_agree": 4, "n_agree_correct": 2, "queries": 7}
    assert access.queries == 12  # one label query per test input, per metric


def test_correct_fidelity_is_zero_without_agreement() -> None:
    surrogate, access, task = _toy(SURROGATE, [(label + 1) % 3 for label in SURROGATE])
    assert _measure(Fidelity(), surrogate, target=access, data=task).value == 0.0
    correct = _measure(CorrectFidelity(), surrogate, target=access, data=task)
    assert correct.value == 0.0 and correct.details["n_agree"] == 0


def test_perfect_copy_has_full_fidelity() -> None:
    surrogate, access, task = _toy(SURROGATE, SURROGATE)
    assert _measure(Fidelity(), surrogate, target=access, data=task).value == 1.0
    correct = _measure(CorrectFidelity(), surrogate, target=access, data=task)
    assert correct.value == pytest.approx(4 / 6)  # agreement everywhere: the surrogate's accuracy


@pytest.mark.parametrize("metric", [Fidelity, CorrectFidelity])
def test_metrics_need_target_and_data(metric: type[Fidelity] | type[CorrectFidelity]) -> None:
    surrogate, access, task = _toy(SURROGATE, TARGET)
    with pytest.raises(ArtifactError, match="target="):
        metric().compute(surrogate, data=task)
    with pytest.raises(ArtifactError, match="data="):
        metric().compute(surrogate, target=access)


def test_accuracy_needs_data() -> None:
    surrogate, _, _ = _toy(SURROGATE, TARGET)
    with pytest.raises(ArtifactError, match="data="):
        SurrogateAccuracy().compute(surrogate)


def test_fidelity_narrows_a_wider_target(stolen: SurrogateModel, target: TrainedModel, task: TaskData) -> None:
    via_model = _fidelity(stolen, target, task)
    via_queries = _fidelity(stolen, target.narrow(QueryAccess), task)
    assert via_model == via_queries


# --- conformance ----------------------------------------------------------------------------------------------


@parametrize_with_checks(["model_extraction", "surrogate_accuracy", "fidelity", "correct_fidelity"])  # type: ignore[untyped-decorator]
def test_conformance(plugin: Any, check: Any) -> None:
    check(plugin)
