"""Tests for the evasion (S1) built-ins: the ``pgd`` attack, ``adversarial_training`` and the S1 metrics.

The behavioural tests train small MLPs on scikit-learn's digits (1x8x8 images in [0, 1]); the
whole file runs in well under a minute on two CPU cores.
"""

from __future__ import annotations

import math

import pytest
import torch

import interplay
from interplay import Dataset, RunContext, TrainingRecipe
from interplay.artifacts import AdversarialExamples, TaskData, TrainedModel
from interplay.errors import ArtifactError, ConfigError
from interplay.plugins.evasion._pgd import pgd, pgd_batched, random_perturbation
from interplay.plugins.evasion.attacks import PGD
from interplay.plugins.evasion.defenses import AdversarialTraining
from interplay.plugins.evasion.metrics import CleanAccuracy, RobustAccuracy
from interplay.testing import check_plugin

EPOCHS = 20
AT_ITERATIONS = 10  # PGD iterations inside adversarial training (the default, 40, is slower)


@pytest.fixture(scope="module")
def task() -> TaskData:
    dataset = interplay.get_registry().create("digits")
    assert isinstance(dataset, Dataset)
    return dataset.load().partitioned(defender=0.5, adversary=0.5, seed=0)


@pytest.fixture(scope="module")
def context() -> RunContext:
    return RunContext(
        seed=0,
        model=interplay.get_registry().create("mlp"),
        recipe=TrainingRecipe(epochs=EPOCHS, batch_size=64),
    )


@pytest.fixture(scope="module")
def standard(task: TaskData, context: RunContext) -> TrainedModel:
    return context.train(task.defender_train, train_indices=task.partition.defender if task.partition else None)


@pytest.fixture(scope="module")
def robust(task: TaskData, context: RunContext) -> TrainedModel:
    return AdversarialTraining(iterations=AT_ITERATIONS).apply(task, context=context)


def _accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predictions == labels).float().mean())


# --------------------------------------------------------------------------------------------- attack


def test_pgd_lowers_accuracy_of_a_trained_model(task: TaskData, context: RunContext, standard: TrainedModel) -> None:
    adv = PGD().run(standard, data=task, context=context)  # AMULET's defaults: L-inf, eps 0.1, 40 x 0.01
    clean = CleanAccuracy().compute(adv).value
    robust = RobustAccuracy().compute(adv).value
    print(f"standard MLP on digits: clean {clean:.3f}, robust (L-inf eps 0.1) {robust:.3f}")
    assert clean == pytest.approx(_accuracy(standard.predict(task.test.x), task.test.y))
    assert clean >= 0.9
    assert robust <= 0.55 and clean - robust >= 0.35  # measured: 0.952 -> 0.430
    stronger = RobustAccuracy().compute(PGD(eps=0.2).run(standard, data=task, context=context)).value
    assert stronger < 0.1  # measured: 0.009


def test_pgd_stays_in_the_linf_ball_and_the_valid_range(
    task: TaskData, context: RunContext, standard: TrainedModel
) -> None:
    adv = PGD(eps=0.1).run(standard, data=task, context=context)
    x = task.test.x
    assert adv.x_adv.shape == x.shape and adv.x_adv.dtype == x.dtype
    assert float((adv.x_adv - x).abs().max()) <= 0.1 + 1e-6
    assert float(adv.x_adv.min()) >= 0.0 and float(adv.x_adv.max()) <= 1.0
    assert adv.norm == "linf" and adv.eps == 0.1
    assert torch.equal(adv.y, task.test.y)
    assert torch.equal(adv.predictions, standard.predict(adv.x_adv))


def test_pgd_l2_stays_in_the_l2_ball_and_lowers_accuracy(
    task: TaskData, context: RunContext, standard: TrainedModel
) -> None:
    adv = PGD(norm="l2", eps=1.0, step=0.1).run(standard, data=task, context=context)
    distance = torch.linalg.vector_norm((adv.x_adv - task.test.x).flatten(1), dim=1)
    assert float(distance.max()) <= 1.0 + 1e-5
    assert float(adv.x_adv.min()) >= 0.0 and float(adv.x_adv.max()) <= 1.0
    clean, robust = CleanAccuracy().compute(adv).value, RobustAccuracy().compute(adv).value
    print(f"standard MLP on digits: clean {clean:.3f}, robust (L2 eps 1.0) {robust:.3f}")
    assert adv.norm == "l2"
    assert robust <= 0.2  # measured: 0.017


def test_pgd_is_deterministic_for_the_same_context_seed(
    task: TaskData, context: RunContext, standard: TrainedModel
) -> None:
    attack = PGD(iterations=5)
    first = attack.run(standard, data=task, context=context)
    second = attack.run(standard, data=task, context=context)
    assert torch.equal(first.x_adv, second.x_adv)
    other = attack.run(standard, data=task, context=context.model_copy(update={"seed": 1}))
    assert not torch.equal(first.x_adv, other.x_adv)  # a different seed draws a different random start


def test_pgd_modifies_neither_the_model_nor_the_inputs(task: TaskData, context: RunContext) -> None:
    model = context.train(task.defender_train, recipe=TrainingRecipe(epochs=1, batch_size=64))
    module = model.module
    module.train()  # the attack must switch to eval mode and back
    first = next(module.parameters())
    first.grad = torch.full_like(first, 0.5)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    x_before, y_before = task.test.x.clone(), task.test.y.clone()

    PGD(iterations=3).run(model, data=task, context=context)

    assert module.training
    assert all(torch.equal(state[k], v) for k, v in module.state_dict().items())
    assert torch.equal(first.grad, torch.full_like(first, 0.5))
    assert all(p.grad is None for p in module.parameters() if p is not first)
    assert torch.equal(task.test.x, x_before) and torch.equal(task.test.y, y_before)


def test_targeted_pgd_moves_predictions_to_the_target_label(
    task: TaskData, context: RunContext, standard: TrainedModel
) -> None:
    adv = PGD(eps=0.2, targeted=True).run(standard, data=task, context=context)
    hit = _accuracy(adv.predictions, (task.test.y + 1) % task.num_classes)
    assert hit >= 0.5  # the clean hit rate is ~0


def test_pgd_needs_the_task(context: RunContext, standard: TrainedModel, task: TaskData) -> None:
    with pytest.raises(ArtifactError, match="needs the task"):
        PGD().run(standard, context=context)
    with pytest.raises(ArtifactError, match="no split 'validation'"):
        PGD(split="validation").run(standard, data=task, context=context)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"step": 0.2}, "step"),  # step > eps
        ({"clip_min": 1.0, "clip_max": 0.0}, "clip_min"),
        ({"norm": "l1"}, "norm"),
        ({"eps": -0.1}, "eps"),
        ({"iterations": -1}, "iterations"),
    ],
)
def test_pgd_rejects_invalid_parameters(params: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        PGD(**params)


# ------------------------------------------------------------------------------------ pgd function


def test_pgd_function_leaves_inputs_alone_and_handles_edge_cases() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x = torch.rand(10, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.arange(10) % 3
    x_before = x.clone()
    out = pgd(model, x, y, eps=0.1, step=0.05, iterations=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x_before) and not out.requires_grad
    assert all(p.grad is None for p in model.parameters())
    unchanged = pgd(model, x, y, eps=0.0, step=0.0, iterations=3)
    assert torch.equal(unchanged, x) and unchanged.data_ptr() != x.data_ptr()
    with pytest.raises(ValueError, match="must not exceed eps"):
        pgd(model, x, y, eps=0.1, step=0.2, iterations=1)
    with pytest.raises(ValueError, match="y must have shape"):
        pgd(model, x, y[:5], eps=0.1, step=0.01, iterations=1)


def test_pgd_batched_matches_one_batch_without_random_start() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x = torch.rand(50, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.arange(50) % 3
    whole = pgd(model, x, y, eps=0.1, step=0.02, iterations=5, random_start=False)
    batched = pgd_batched(model, x, y, eps=0.1, step=0.02, iterations=5, random_start=False, batch_size=7)
    torch.testing.assert_close(batched, whole, rtol=0, atol=1e-6)


def test_random_starts_lie_in_the_ball() -> None:
    generator = torch.Generator().manual_seed(0)
    linf = random_perturbation((2000, 3, 4, 4), norm="linf", eps=0.3, generator=generator)
    assert float(linf.abs().max()) <= 0.3 and float(linf.abs().max()) > 0.29
    l2 = random_perturbation((2000, 3, 4, 4), norm="l2", eps=0.5, generator=generator)
    radius = torch.linalg.vector_norm(l2.flatten(1), dim=1)
    assert float(radius.max()) <= 0.5 + 1e-6
    # Uniform in a 48-dimensional ball: P(radius <= r * eps) = r**48, so most radii are close to eps.
    assert float((radius < 0.45).float().mean()) == pytest.approx(0.9**48, abs=0.02)
    again = random_perturbation((2000, 3, 4, 4), norm="linf", eps=0.3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(linf, again)


# ------------------------------------------------------------------------------------------ defense


def test_adversarial_training_raises_robust_accuracy(
    task: TaskData, context: RunContext, standard: TrainedModel, robust: TrainedModel
) -> None:
    attack = PGD()  # AMULET's defaults: L-inf, eps 0.1, 40 x 0.01
    std_adv = attack.run(standard, data=task, context=context)
    def_adv = attack.run(robust, data=task, context=context)
    std_clean, std_robust = CleanAccuracy().compute(std_adv).value, RobustAccuracy().compute(std_adv).value
    def_clean, def_robust = CleanAccuracy().compute(def_adv).value, RobustAccuracy().compute(def_adv).value
    print(
        f"standard: clean {std_clean:.3f}, robust {std_robust:.3f}; "
        f"adversarially trained: clean {def_clean:.3f}, robust {def_robust:.3f}"
    )
    assert def_robust >= std_robust + 0.15  # measured: 0.430 -> 0.702
    assert def_clean >= 0.85  # measured: 0.959


def test_adversarial_training_records_its_provenance(task: TaskData, robust: TrainedModel) -> None:
    assert task.partition is not None and robust.train_indices is not None
    assert torch.equal(robust.train_indices, task.partition.defender)
    assert robust.architecture == "mlp"
    assert robust.recipe is not None and robust.recipe.epochs == EPOCHS
    assert robust.info["adv_eps"] == 0.1 and robust.info["adv_norm"] == "linf"
    assert robust.info["adv_iterations"] == AT_ITERATIONS and robust.info["adv_fraction"] == 1.0
    assert not robust.module.training


def test_adversarial_training_with_no_adversarial_rows_is_standard_training(
    task: TaskData, context: RunContext, standard: TrainedModel
) -> None:
    plain = AdversarialTraining(adv_fraction=0.0).apply(task, context=context)
    assert interplay.fingerprint(plain.module) == interplay.fingerprint(standard.module)


def test_adversarial_training_mixes_clean_and_adversarial_rows(task: TaskData, context: RunContext) -> None:
    short = context.model_copy(update={"recipe": TrainingRecipe(epochs=2, batch_size=64)})
    half = AdversarialTraining(iterations=2, adv_fraction=0.5).apply(task, context=short)
    full = AdversarialTraining(iterations=2, adv_fraction=1.0).apply(task, context=short)
    assert half.info["adv_fraction"] == 0.5
    assert interplay.fingerprint(half.module) != interplay.fingerprint(full.module)


def test_adversarial_training_needs_a_model_factory(task: TaskData) -> None:
    with pytest.raises(ConfigError, match=r"context\.model"):
        AdversarialTraining().apply(task)
    with pytest.raises(ConfigError, match="model factory"):
        AdversarialTraining().apply(task, context=RunContext(seed=0))


# ------------------------------------------------------------------------------------------ metrics


def test_clean_accuracy_is_the_accuracy_of_the_clean_predictions() -> None:
    examples = AdversarialExamples(
        x_adv=torch.zeros(4, 2),
        y=torch.tensor([0, 1, 1, 0]),
        predictions=torch.tensor([1, 1, 0, 0]),
        clean_predictions=torch.tensor([0, 1, 1, 1]),
        eps=0.1,
    )
    clean = CleanAccuracy().compute(examples)
    assert clean.value == 0.75 and clean.name == "clean_accuracy" and clean.higher_is_riskier is False
    assert RobustAccuracy().compute(examples).value == 0.5
    assert math.isclose(clean.value, _accuracy(examples.clean_predictions, examples.y))


# -------------------------------------------------------------------------------------- conformance


@pytest.mark.parametrize("name", ["pgd", "adversarial_training", "clean_accuracy"])
def test_conformance(name: str) -> None:
    report = check_plugin(name)
    assert report.passed, report.format()
