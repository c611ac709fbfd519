"""Tests for dataset inference (SD3): the defense, the boundary embeddings and the ownership metrics."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from interplay.artifacts import LabelOnlyAccess, MetricValue, SurrogateModel, TaskData, TrainedModel, fingerprint
from interplay.context import RunContext
from interplay.errors import ArtifactError, ConfigError
from interplay.modules import Dataset, ModelFactory
from interplay.plugins.ownership._boundary import blind_walk_distances, mingd_distances
from interplay.plugins.ownership._inference import welch_greater
from interplay.plugins.ownership.attacks import ModelExtraction
from interplay.plugins.ownership.dataset_inference import (
    DatasetInference,
    DatasetInferencePValue,
    DatasetInferenceVerdict,
)
from interplay.recipe import TrainingRecipe
from interplay.registry import get_registry

# A victim that overfits its small private set (a tenth of digits' training rows, 126 images; 200 epochs:
# train accuracy 1.0, test 0.89) and an adversary holding the other nine tenths. MinGD runs with five times
# the paper's step sizes and 100 steps instead of 500 (the distances on 8x8 digits are reached within that).
# Measured (seed 0): surrogate fidelity 0.97; p-values: victim 0.004, surrogate 0.0002, independent 0.26.
VICTIM_EPOCHS = 200
THIEF_EPOCHS = 50
FAST = {"step_linf": 0.005, "step_l2": 0.05, "step_l1": 5.0, "mingd_iterations": 100, "m": 50}
ALPHA = 0.01


@pytest.fixture(scope="module")
def task() -> TaskData:
    digits = get_registry().create("digits", "dataset")
    assert isinstance(digits, Dataset)
    return digits.load().partitioned(defender=0.1, adversary=0.9, seed=0)


@pytest.fixture(scope="module")
def context() -> RunContext:
    factory = get_registry().create("mlp", "model")
    assert isinstance(factory, ModelFactory)
    return RunContext(seed=0, model=factory, recipe=TrainingRecipe(epochs=VICTIM_EPOCHS, batch_size=64))


@pytest.fixture(scope="module")
def victim(task: TaskData, context: RunContext) -> TrainedModel:
    return DatasetInference().apply(task, context=context)


@pytest.fixture(scope="module")
def stolen(task: TaskData, context: RunContext, victim: TrainedModel) -> SurrogateModel:
    result = ModelExtraction(epochs=THIEF_EPOCHS).run(victim, data=task, context=context)
    assert isinstance(result, SurrogateModel)
    return result


@pytest.fixture(scope="module")
def independent(task: TaskData, context: RunContext) -> SurrogateModel:
    """Same architecture, trained on the adversary's rows with their true labels: never saw the victim."""
    recipe = context.recipe.model_copy(update={"epochs": THIEF_EPOCHS})
    model = context.train(task.adversary, seed=context.derive_seed("independent"), recipe=recipe)
    return SurrogateModel(model=model, queries=0)


def _measure(metric: Any, suspect: SurrogateModel, **kwargs: Any) -> MetricValue:
    value = metric.compute(suspect, **kwargs)
    assert isinstance(value, MetricValue)
    return value


# --- the defense ---------------------------------------------------------------------------------------------


def test_defense_trains_as_usual(task: TaskData, context: RunContext, victim: TrainedModel) -> None:
    standard = context.train(task.defender_train, train_indices=task.partition.defender)  # type: ignore[union-attr]
    assert fingerprint(victim.module) == fingerprint(standard.module)  # passive: the same model
    assert victim.info == {"dataset_inference": True, "private_samples": len(task.defender_train)}
    assert torch.equal(victim.train_indices, task.partition.defender)  # type: ignore[arg-type, union-attr]
    with pytest.raises(ConfigError, match="model factory"):
        DatasetInference().apply(task, context=RunContext())


# --- ownership resolution: the stolen copy is caught, the independent model is not -----------------------------


def test_surrogate_is_caught_and_independent_model_is_not(
    task: TaskData, context: RunContext, victim: TrainedModel, stolen: SurrogateModel, independent: SurrogateModel
) -> None:
    fidelity = (stolen.model.predict(task.test.x) == victim.predict(task.test.x)).float().mean()
    assert fidelity > 0.9  # a faithful copy, obtained from posteriors on the adversary's own data only
    p_stolen = _measure(DatasetInferencePValue(**FAST), stolen, target=victim, data=task, context=context)
    p_independent = _measure(DatasetInferencePValue(**FAST), independent, target=victim, data=task, context=context)
    assert p_stolen.value < ALPHA < p_independent.value
    assert p_stolen.details["verdict"] is True and p_independent.details["verdict"] is False
    assert p_stolen.details["mean_difference"] > 0.2  # public samples score higher than private ones
    assert p_stolen.details["victim_p_value"] < ALPHA  # the victim's own private set is recognised
    assert p_stolen.details["defended"] is True
    assert p_stolen.details["n_private_tested"] == p_stolen.details["n_public_tested"] == 63
    assert p_stolen.higher_is_riskier and p_stolen.risk == "S3"

    verdict = _measure(DatasetInferenceVerdict(**FAST), stolen, target=victim, data=task, context=context)
    missed = _measure(DatasetInferenceVerdict(**FAST), independent, target=victim, data=task, context=context)
    assert (verdict.value, missed.value) == (1.0, 0.0)
    assert not verdict.higher_is_riskier
    assert verdict.details == p_stolen.details  # one computation, shared through the context's memo


class _LabelsOnly(nn.Module):
    """Wraps a model and refuses to run where gradients could be taken."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            raise RuntimeError("gradient access")
        out: torch.Tensor = self.inner(x)
        return out


def test_blind_walk_uses_label_queries_only(
    task: TaskData, context: RunContext, victim: TrainedModel, stolen: SurrogateModel
) -> None:
    opaque = stolen.model.model_copy(update={"module": _LabelsOnly(stolen.model.module)})
    suspect = SurrogateModel(model=opaque, queries=stolen.queries)
    walk = {"embedding": "blind_walk", "walk_starts": 2, "walk_steps": 20, "regressor_epochs": 100}
    value = _measure(DatasetInferencePValue(**walk), suspect, target=victim, data=task, context=context)
    assert 0.0 <= value.value <= 1.0 and value.details["embedding"] == "blind_walk"
    with pytest.raises(RuntimeError, match="gradient access"):  # MinGD needs the suspect's gradients
        DatasetInferencePValue(**FAST).compute(suspect, target=victim, data=task, context=context)


# --- the embeddings on a model whose boundary is known -------------------------------------------------------


class _Threshold(nn.Module):
    """Two classes on [0, 1]^2: class 1 exactly when x0 > 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.zeros_like(x[:, 0]), 10 * (x[:, 0] - 0.5)], dim=1)


def test_mingd_finds_the_distance_to_each_class() -> None:
    x = torch.tensor([[0.3, 0.5], [0.9, 0.1]])
    expected = torch.tensor([[0.0, 0.2], [0.4, 0.0]])  # own class at 0; the boundary is 0.2 / 0.4 away along x0
    for norm, step in [("linf", 0.001), ("l2", 0.001), ("l1", 0.002)]:  # L1 spreads its step over 2 coordinates
        distances = mingd_distances(_Threshold(), x, 2, norm=norm, step=step, iterations=1000)  # type: ignore[arg-type]
        assert distances == pytest.approx(expected, abs=2e-3), norm


def test_mingd_reports_the_budget_when_a_class_is_out_of_reach() -> None:
    distances = mingd_distances(_Threshold(), torch.tensor([[0.3, 0.5]]), 2, norm="linf", step=0.001, iterations=50)
    assert distances[0, 1] == pytest.approx(0.05, abs=1e-6)  # 50 steps of 0.001, never crossed


def test_blind_walk_distances_are_bounded_by_the_boundary() -> None:
    x = torch.tensor([[0.3, 0.5], [0.45, 0.5]])
    access = LabelOnlyAccess.from_function(lambda q: (q[:, 0] > 0.5).long(), num_classes=2, input_shape=(2,))
    distances = blind_walk_distances(
        access.predict, x, torch.zeros(2, dtype=torch.long), norm="linf", scale=0.01, starts=8, steps=100,
        generator=torch.Generator().manual_seed(0),
    )
    assert distances.shape == (2, 8)
    assert bool((distances[0] >= 0.2 - 1e-6).all()) and bool((distances[1] >= 0.05 - 1e-6).all())
    assert bool((distances[1] < distances[0]).any())  # some walks from the nearer point cross sooner
    assert access.queries > 16  # label queries only, more than one per walk


def test_welch_test_direction() -> None:
    generator = torch.Generator().manual_seed(0)
    low, high = torch.randn(200, generator=generator), torch.randn(200, generator=generator) + 1.0
    separated = welch_greater(low, high, m=30, repetitions=50, generator=generator)
    reversed_ = welch_greater(high, low, m=30, repetitions=50, generator=generator)
    assert separated.p_value < 1e-3 < 0.99 < reversed_.p_value
    assert separated.mean_difference > 0.5
    constant = welch_greater(torch.ones(20), torch.ones(20), m=10, repetitions=5, generator=generator)
    assert constant.p_value == constant.p_value_all == 0.5  # no spread and no difference: no evidence


# --- errors ----------------------------------------------------------------------------------------------------


def test_metric_errors(task: TaskData, context: RunContext, victim: TrainedModel, stolen: SurrogateModel) -> None:
    metric = DatasetInferencePValue(**FAST)
    with pytest.raises(ArtifactError, match="target="):
        metric.compute(stolen, data=task, context=context)
    with pytest.raises(ArtifactError, match="data="):
        metric.compute(stolen, target=victim, context=context)
    with pytest.raises(ArtifactError, match="TrainedModel"):
        metric.compute(stolen, target=victim.narrow(LabelOnlyAccess), data=task, context=context)
    with pytest.raises(ConfigError, match="m"):
        DatasetInferencePValue(m=1)
    with pytest.raises(ConfigError, match="embedding"):
        DatasetInferencePValue(embedding="pgd")
