"""Tests for the data reconstruction (P3) built-ins: ``model_inversion``, ``inversion_mse`` and ``inversion_ssim``.

The behavioural tests invert an MLP trained on scikit-learn's digits (1x8x8 images in [0, 1]);
the metric tests use hand-made tensors whose MSE and SSIM are known.
"""

from __future__ import annotations

import math

import pytest
import torch

import interplay
from interplay import Dataset, RunContext, TrainingRecipe
from interplay.artifacts import Reconstructions, TaskData, TrainedModel
from interplay.errors import ArtifactError, ConfigError
from interplay.plugins.privacy.inversion import ModelInversion, class_means, invert
from interplay.plugins.privacy.inversion_metrics import (
    InversionMSE,
    InversionSSIM,
    reconstruction_mse,
    reconstruction_ssim,
    ssim_window,
)

ITERATIONS = 1000  # the default, 3000, gives the same picture (10/10 classes) at three times the cost
DIGITS = (1, 8, 8)


@pytest.fixture(scope="module")
def task() -> TaskData:
    dataset = interplay.get_registry().create("digits")
    assert isinstance(dataset, Dataset)
    return dataset.load().partitioned(defender=0.5, adversary=0.5, seed=0)


@pytest.fixture(scope="module")
def context() -> RunContext:
    return RunContext(
        seed=0, model=interplay.get_registry().create("mlp"), recipe=TrainingRecipe(epochs=20, batch_size=64)
    )


@pytest.fixture(scope="module")
def model(task: TaskData, context: RunContext) -> TrainedModel:
    assert task.partition is not None
    return context.train(task.defender_train, train_indices=task.partition.defender)


@pytest.fixture(scope="module")
def reconstructions(task: TaskData, context: RunContext, model: TrainedModel) -> Reconstructions:
    return ModelInversion(max_iterations=ITERATIONS).run(model, data=task, context=context)


def _distances(rec: Reconstructions) -> torch.Tensor:
    """``d[k, j]``: MSE of reconstruction ``k`` to reference ``j``."""
    return (rec.x_rec[:, None] - rec.reference[None]).pow(2).flatten(2).mean(2)


# --------------------------------------------------------------------------------------------- attack


def test_reconstructions_are_closest_to_their_own_class_mean(
    task: TaskData, model: TrainedModel, reconstructions: Reconstructions
) -> None:
    accuracy = float((model.predict(task.test.x) == task.test.y).float().mean())
    assert accuracy >= 0.9
    rec = reconstructions
    assert rec.x_rec.shape == (10, *DIGITS) and rec.reference.shape == (10, *DIGITS)
    assert torch.equal(rec.classes, torch.arange(10))
    nearest = _distances(rec).argmin(dim=1)
    own = int((nearest == rec.classes).sum())
    mse = InversionMSE().compute(rec)[0].value
    zero = float(reconstruction_mse(torch.zeros_like(rec.reference), rec.reference).mean())
    print(f"digits MLP (test acc {accuracy:.3f}): own mean nearest for {own}/10, MSE {mse:.4f} (start {zero:.4f})")
    assert own >= 9  # measured: 10/10 for training seeds 0-3, with 1000 and 3000 iterations
    assert mse < zero - 0.04  # measured: 0.130 against 0.192 for the all-zero start
    assert torch.equal(model.predict(rec.x_rec), rec.classes)  # each input is classified as its class


def test_reference_is_the_class_mean_over_the_targets_training_rows(
    task: TaskData, model: TrainedModel, reconstructions: Reconstructions
) -> None:
    assert task.partition is not None
    rows = task.train.subset(task.partition.defender)
    for c in (0, 5, 9):
        expected = rows.x[rows.y == c].mean(dim=0)
        assert torch.allclose(reconstructions.reference[c], expected, atol=1e-6)
    # without training indices the defender's rows are the reference: the same rows here
    anonymous = model.model_copy(update={"train_indices": None})
    assert torch.allclose(class_means(anonymous, task, torch.arange(10)), reconstructions.reference, atol=1e-6)
    # the reference follows train_indices, not the partition
    other = model.model_copy(update={"train_indices": task.partition.adversary})
    adversary = task.adversary
    assert torch.allclose(
        class_means(other, task, torch.tensor([4]))[0], adversary.x[adversary.y == 4].mean(dim=0), atol=1e-6
    )


def test_an_untrained_model_reveals_nothing(
    task: TaskData, context: RunContext, reconstructions: Reconstructions
) -> None:
    untrained = context.train(task.defender_train, recipe=TrainingRecipe(epochs=0))
    rec = ModelInversion(max_iterations=ITERATIONS).run(untrained, data=task, context=context)
    mse, ssim = InversionMSE().compute(rec)[0].value, InversionSSIM().compute(rec)[0].value
    trained_mse = InversionMSE().compute(reconstructions)[0].value
    trained_ssim = InversionSSIM().compute(reconstructions)[0].value
    print(f"MSE {trained_mse:.4f} trained vs {mse:.4f} untrained; SSIM {trained_ssim:.3f} vs {ssim:.3f}")
    assert trained_mse < mse - 0.04  # measured: 0.130 vs 0.192
    assert trained_ssim > ssim + 0.05  # measured: 0.103 vs 0.001


def test_batched_inversion_equals_one_class_at_a_time(model: TrainedModel) -> None:
    batched = invert(model.module, torch.arange(10), DIGITS, max_iterations=200)
    for c in (3, 8):
        alone = invert(model.module, torch.tensor([c]), DIGITS, max_iterations=200)
        assert torch.allclose(batched.x[c], alone.x[0], atol=1e-5)
        assert int(batched.steps[c]) == int(alone.steps[0])


def test_target_cost_stops_each_class_as_it_reaches_the_confidence(model: TrainedModel) -> None:
    trace = invert(model.module, torch.arange(10), DIGITS, max_iterations=ITERATIONS, target_cost=0.5)
    assert bool(trace.reached_target.all())
    assert bool((trace.cost <= 0.5).all())
    assert int(trace.steps.max()) < ITERATIONS  # measured: 53 to 216 steps
    assert len(set(trace.steps.tolist())) > 1  # each class stops on its own


def test_window_one_stops_early_and_keeps_the_best_input(model: TrainedModel) -> None:
    classes = torch.arange(10)
    # a huge step overshoots or saturates the softmax: the cost stops falling within a few steps
    trace = invert(model.module, classes, DIGITS, max_iterations=500, window=1, lr=100.0, target_cost=0.0)
    assert int(trace.steps.max()) < 500  # measured: at most 5 steps
    probabilities = torch.softmax(model.logits(trace.x), dim=1)
    recomputed = 1 - probabilities[torch.arange(10), classes]
    assert torch.allclose(recomputed, trace.cost, atol=1e-6)  # the returned input is the one whose cost is kept
    start = 1 - torch.softmax(model.logits(torch.zeros(1, *DIGITS)), dim=1)[0]
    assert bool((trace.cost <= start + 1e-6).all())  # never worse than where it started


class _Bowl(torch.nn.Module):
    """Class 0's logit is ``-||x - 1||^2`` against a constant 0: the cost is lowest at ``x = 1``."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = -(x.flatten(1) - self.anchor).pow(2).sum(dim=1)
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)


@pytest.mark.parametrize(("window", "steps"), [(1, 1), (3, 3), (10_000, 50)])
def test_window_rule_follows_fredrikson(window: int, steps: int) -> None:
    # lr 20 jumps from x = 0 (cost 1 - sigmoid(-1) = 0.731) to x = 7.9, where the cost is 1.0 and flat:
    # the cost is no lower than each of the previous `window` costs after `window` steps
    trace = invert(_Bowl(), torch.tensor([0]), (1,), max_iterations=50, window=window, lr=20.0)
    assert int(trace.steps[0]) == steps
    assert float(trace.x[0, 0]) == 0.0  # the best input is the start
    assert float(trace.cost[0]) == pytest.approx(1 - 1 / (1 + math.exp(1)), abs=1e-6)
    assert not bool(trace.reached_target[0])


def test_small_steps_descend_to_the_optimum_and_clipping_bounds_them() -> None:
    trace = invert(_Bowl(), torch.tensor([0]), (1,), max_iterations=2000, lr=1.0, target_cost=0.0)
    assert float(trace.x[0, 0]) == pytest.approx(1.0, abs=0.05)  # measured 0.99; cost 0.5 is the minimum
    clipped = invert(_Bowl(), torch.tensor([0]), (1,), max_iterations=2000, lr=1.0, clip_max=0.25)
    assert float(clipped.x[0, 0]) == pytest.approx(0.25)


def test_classes_parameter_selects_and_validates(task: TaskData, context: RunContext, model: TrainedModel) -> None:
    rec = ModelInversion(max_iterations=20, classes=(7, 2)).run(model, data=task, context=context)
    assert rec.classes.tolist() == [7, 2]
    assert rec.x_rec.shape == (2, *DIGITS)
    assert torch.allclose(rec.reference, class_means(model, task, torch.tensor([7, 2])))
    with pytest.raises(ConfigError, match=r"model_inversion\.params\.classes.*10 classes"):
        ModelInversion(classes=(3, 10)).run(model, data=task, context=context)
    with pytest.raises(ConfigError, match="distinct"):
        ModelInversion(classes=(1, 1))
    with pytest.raises(ConfigError, match="clip_min"):
        ModelInversion(clip_min=1.0, clip_max=0.0)


def test_bad_inputs_are_named(task: TaskData, context: RunContext, model: TrainedModel) -> None:
    attack = ModelInversion(max_iterations=5)
    with pytest.raises(ArtifactError, match="needs data="):
        attack.run(model, context=context)
    with pytest.raises(ArtifactError, match="TrainedModel"):
        attack.run(model.narrow(interplay.artifacts.QueryAccess), data=task, context=context)
    outside = model.model_copy(update={"train_indices": torch.tensor([0, 10_000])})
    with pytest.raises(ArtifactError, match="train_indices"):
        attack.run(outside, data=task, context=context)
    only_zeros = model.model_copy(update={"train_indices": task.train.y.eq(0).nonzero().flatten()})
    with pytest.raises(ArtifactError, match=r"no training rows of class\(es\) \[1, 2"):
        attack.run(only_zeros, data=task, context=context)


def test_inversion_is_deterministic_and_leaves_the_model_alone(
    task: TaskData, context: RunContext, model: TrainedModel
) -> None:
    module = model.module
    module.train()
    state = {k: v.clone() for k, v in module.state_dict().items()}
    attack = ModelInversion(max_iterations=100)
    first = attack.run(model, data=task, context=context)
    second = attack.run(model, data=task, context=context)
    assert first.fingerprint() == second.fingerprint()
    assert module.training  # mode restored
    assert all(p.grad is None for p in module.parameters())  # gradients w.r.t. the input only
    assert all(torch.equal(v, state[k]) for k, v in module.state_dict().items())
    module.eval()


# --------------------------------------------------------------------------------------------- metrics


def _rec(x_rec: torch.Tensor, reference: torch.Tensor, classes: list[int] | None = None) -> Reconstructions:
    chosen = torch.tensor(classes) if classes is not None else torch.arange(x_rec.shape[0])
    return Reconstructions(x_rec=x_rec, reference=reference, classes=chosen)


def test_identical_reconstructions_score_mse_zero_and_ssim_one() -> None:
    generator = torch.Generator().manual_seed(0)
    for shape in [(3, 1, 8, 8), (2, 3, 28, 28), (4, 12), (2, 1, 2, 5)]:
        reference = torch.rand(shape, generator=generator)
        rec = _rec(reference.clone(), reference)
        mse = InversionMSE().compute(rec)
        ssim = InversionSSIM().compute(rec)
        assert mse[0].value == 0.0 and all(v.value == 0.0 for v in mse[1:])
        assert ssim[0].value == pytest.approx(1.0, abs=1e-9)
        assert all(v.value == pytest.approx(1.0, abs=1e-9) for v in ssim[1:])
    constant = torch.full((1, 1, 8, 8), 0.3)
    assert float(reconstruction_ssim(constant, constant)[0]) == pytest.approx(1.0)


def test_mse_values_names_and_directions() -> None:
    reference = torch.zeros(2, 1, 8, 8)
    x_rec = torch.stack([torch.full((1, 8, 8), 0.5), torch.full((1, 8, 8), 0.1)])
    values = InversionMSE().compute(_rec(x_rec, reference, [3, 7]))
    assert [v.name for v in values] == ["inversion_mse", "inversion_mse[3]", "inversion_mse[7]"]
    assert values[1].value == pytest.approx(0.25) and values[2].value == pytest.approx(0.01)
    assert values[0].value == pytest.approx(0.13)
    assert values[0].details["per_class"] == {"3": pytest.approx(0.25), "7": pytest.approx(0.01)}
    assert all(v.higher_is_riskier is False and v.risk == "P3" for v in values)
    ssim = InversionSSIM().compute(_rec(x_rec, reference, [3, 7]))
    assert [v.name for v in ssim] == ["inversion_ssim", "inversion_ssim[3]", "inversion_ssim[7]"]
    assert all(v.higher_is_riskier is True for v in ssim)


def test_ssim_ranks_a_closer_reconstruction_higher() -> None:
    generator = torch.Generator().manual_seed(1)
    reference = torch.rand(1, 1, 8, 8, generator=generator)
    noise = torch.randn(1, 1, 8, 8, generator=generator)
    scores = [float(reconstruction_ssim(reference + s * noise, reference)[0]) for s in (0.01, 0.1, 0.5)]
    assert scores[0] > scores[1] > scores[2]
    assert scores[0] > 0.99
    inverted = float(reconstruction_ssim(1 - reference, reference)[0])
    assert inverted < 0  # anti-correlated structure


def test_tabular_ssim_is_the_global_formula() -> None:
    reference = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    x_rec = torch.tensor([[1.0, 1.0, 3.0, 2.0]])
    mu_x, mu_y = 1.75, 1.5
    var_x, var_y = 0.6875, 1.25
    cov = ((x_rec - mu_x) * (reference - mu_y)).mean().item()
    c1, c2 = (0.01 * 3.0) ** 2, (0.03 * 3.0) ** 2  # L = 3, the reference's range
    expected = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    assert float(reconstruction_ssim(x_rec, reference)[0]) == pytest.approx(expected, rel=1e-9)
    values = InversionSSIM().compute(_rec(x_rec, reference))
    assert values[0].details["window"] == "global"


def test_ssim_window_fits_small_images_and_is_wangs_for_large_ones() -> None:
    assert ssim_window(8, 8) == (7, pytest.approx(1.5 * 7 / 11))
    assert ssim_window(28, 28) == (11, 1.5)
    assert ssim_window(5, 9)[0] == 5
    for size in (3, 5, 7, 9, 11):  # torchmetrics derives the window from sigma; it must give back `size`
        sigma = ssim_window(size, size)[1]
        assert 2 * int(3.5 * sigma + 0.5) + 1 == size
    values = InversionSSIM().compute(_rec(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)))
    assert values[0].details["window_size"] == 7


def test_ssim_is_invariant_to_a_common_scaling() -> None:
    generator = torch.Generator().manual_seed(2)
    reference = torch.rand(3, 1, 8, 8, generator=generator)
    x_rec = reference + 0.2 * torch.randn(3, 1, 8, 8, generator=generator)
    assert torch.allclose(reconstruction_ssim(x_rec, reference), reconstruction_ssim(255 * x_rec, 255 * reference))


def test_metrics_reject_empty_reconstructions() -> None:
    empty = Reconstructions(x_rec=torch.zeros(0, 4), reference=torch.zeros(0, 4), classes=torch.zeros(0))
    for metric in (InversionMSE(), InversionSSIM()):
        with pytest.raises(ArtifactError, match="no class"):
            metric.compute(empty)
