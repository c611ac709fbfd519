"""Tests for the watermarking defense (SD4, Adi et al., 2018) and its trigger-set metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from interplay.artifacts import LabelOnlyAccess, MetricValue, SurrogateModel, TaskData, TrainedModel
from interplay.context import RunContext
from interplay.errors import ArtifactError, ConfigError
from interplay.modules import Dataset, Metric, ModelFactory
from interplay.pipeline import Pipeline, validate_plugins
from interplay.plugins.ownership._triggers import DEFAULT_TRIGGER_SIZE, default_trigger_seed, trigger_set
from interplay.plugins.ownership.attacks import ModelExtraction
from interplay.plugins.ownership.watermark_metrics import (
    SurrogateWatermarkAccuracy,
    WatermarkAccuracy,
    WatermarkVerified,
    binomial_tail,
)
from interplay.plugins.ownership.watermarking import Watermarking, _TriggerMixer
from interplay.recipe import TrainingRecipe
from interplay.registry import get_registry
from interplay.runner import Runner
from interplay.testing import parametrize_with_checks

# Measured on digits (defender/adversary halves, mlp m1, 20 epochs, batch 64, seeds 0/1/2):
# watermarked model: trigger accuracy 0.98 / 1.00 / 1.00, clean test accuracy 0.950 / 0.941 / 0.931;
# the same model trained without triggers: trigger accuracy 0.06 / 0.12 / 0.16 (chance 0.10), clean accuracy
# 0.952 / 0.959 / 0.957; surrogate extracted from the watermarked model: trigger accuracy 0.16 / 0.15 / 0.11.
EPOCHS = 20
MAX_UNMARKED_ACCURACY = 0.3
MAX_CLEAN_ACCURACY_DROP = 0.05


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
def watermarked(task: TaskData, context: RunContext) -> TrainedModel:
    return Watermarking().apply(task, context=context)


@pytest.fixture(scope="module")
def independent(task: TaskData, context: RunContext) -> TrainedModel:
    """The same architecture, recipe and rows, trained without the trigger set."""
    return context.train(task.defender_train)


@pytest.fixture(scope="module")
def stolen(task: TaskData, context: RunContext, watermarked: TrainedModel) -> SurrogateModel:
    run: Any = ModelExtraction().run
    result = run(watermarked, data=task, context=context)
    assert isinstance(result, SurrogateModel)
    return result


def _measure(metric: Metric, output: SurrogateModel, **kwargs: Any) -> MetricValue:
    compute: Any = metric.compute
    value = compute(output, **kwargs)
    assert isinstance(value, MetricValue)
    return value


def _accuracy(model: TrainedModel, task: TaskData) -> float:
    return float((model.predict(task.test.x) == task.test.y).float().mean())


# --- the defense on digits -----------------------------------------------------------------------------------


def test_watermark_verifies_on_the_defended_model(
    watermarked: TrainedModel, stolen: SurrogateModel, context: RunContext, task: TaskData
) -> None:
    value = _measure(WatermarkAccuracy(), stolen, target=watermarked, context=context)
    assert value.value >= 0.9
    assert value.details["watermarked"] is True and value.details["trigger_size"] == DEFAULT_TRIGGER_SIZE
    assert value.details["chance_p_value"] < 1e-50  # 90+ of 100 random labels of 10 classes is never chance
    assert not value.higher_is_riskier and value.risk == "S3"
    info = watermarked.info
    assert info["watermark_seed"] == default_trigger_seed(context) and info["watermark_size"] == 100
    assert info["watermark_trigger_batch_size"] == 64  # AMULET: the training batch size, capped at the set size
    assert task.partition is not None and watermarked.train_indices is not None
    assert torch.equal(watermarked.train_indices, task.partition.defender)


def test_watermark_does_not_verify_on_an_independent_model(
    independent: TrainedModel, watermarked: TrainedModel, stolen: SurrogateModel, context: RunContext
) -> None:
    x, y = trigger_set(int(watermarked.info["watermark_seed"]), 100, independent.input_shape, 10)
    independent_accuracy = float((independent.predict(x) == y).float().mean())
    assert independent_accuracy < MAX_UNMARKED_ACCURACY
    # the independent model stands in for a suspect: the verdict is negative
    suspect = SurrogateModel(model=independent, queries=0)
    verdict = _measure(WatermarkVerified(), suspect, target=watermarked, context=context)
    assert verdict.value == 0.0 and verdict.details["accuracy"] == pytest.approx(independent_accuracy)


def test_clean_accuracy_stays_close_to_the_baseline(
    watermarked: TrainedModel, independent: TrainedModel, task: TaskData
) -> None:
    baseline = _accuracy(independent, task)
    assert baseline > 0.9
    assert _accuracy(watermarked, task) >= baseline - MAX_CLEAN_ACCURACY_DROP


def test_surrogate_watermark_accuracy_is_reported(
    watermarked: TrainedModel, stolen: SurrogateModel, context: RunContext
) -> None:
    defended = _measure(WatermarkAccuracy(), stolen, target=watermarked, context=context)
    surrogate = _measure(SurrogateWatermarkAccuracy(), stolen, target=watermarked.narrow(LabelOnlyAccess))
    verdict = _measure(WatermarkVerified(), stolen, target=watermarked, context=context)
    assert 0.0 <= surrogate.value < defended.value  # extraction from in-distribution queries loses the backdoor
    assert surrogate.details["n_correct"] == round(100 * surrogate.value)
    assert surrogate.details["queries"] == stolen.queries
    assert verdict.value == float(surrogate.value >= 0.9)
    assert verdict.details["accuracy"] == surrogate.value and verdict.details["threshold"] == 0.9


def test_tabular_rows_watermark_a_model(task: TaskData, context: RunContext) -> None:
    # digits as 64 tabular features in [0, 1]; measured trigger accuracy 1.00 (seeds 0, 1), unmarked 0.11 / 0.05
    flat = {k: v.model_copy(update={"x": v.x.flatten(1), "modality": "tabular"}) for k, v in task.splits.items()}
    tabular = TaskData(splits=flat, partition=task.partition, name="digits-flat")
    marked = Watermarking().apply(tabular, context=context)
    x, y = trigger_set(int(marked.info["watermark_seed"]), 100, (64,), 10)
    assert x.shape == (100, 64) and bool((x >= 0).all() and (x <= 1).all())
    assert float((marked.predict(x) == y).float().mean()) >= 0.9


def test_trigger_batch_size_and_seed(task: TaskData, context: RunContext) -> None:
    small = task.model_copy(update={"partition": None, "splits": {**task.splits, "train": task.test}})
    model = Watermarking(trigger_size=30, trigger_batch_size=2, trigger_seed=7).apply(
        small, context=context.model_copy(update={"recipe": TrainingRecipe(epochs=1, batch_size=64)})
    )
    assert model.info == {"watermark_seed": 7, "watermark_size": 30, "watermark_trigger_batch_size": 2}
    assert model.train_indices is None


# --- the mixing of triggers into mini-batches -----------------------------------------------------------------


class _Recorder(nn.Module):
    """Records the rows of each batch it sees; its output is a trainable function of the input."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 3)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x[:, 0].detach().clone())
        out: torch.Tensor = self.linear(x)
        return out


def test_each_batch_gets_the_next_trigger_batch_and_a_pass_covers_the_set() -> None:
    x_wm = torch.arange(10, dtype=torch.float32)[:, None] + 100  # triggers are the rows >= 100
    y_wm = torch.zeros(10, dtype=torch.int64)
    mixer = _TriggerMixer(x_wm, y_wm, per_batch=3, batches_per_pass=4, generator=torch.Generator().manual_seed(0))
    module = _Recorder()
    batch, labels = torch.zeros(5, 1), torch.zeros(5, dtype=torch.int64)
    for _ in range(8):  # two passes of four mini-batches
        loss = mixer(module, batch, labels)
        assert loss.ndim == 0 and loss.requires_grad
    triggers = [rows[rows >= 100] for rows in module.seen]
    assert all(len(rows) == len(seen) - 5 for rows, seen in zip(triggers, module.seen, strict=True))
    for one_pass in (triggers[:4], triggers[4:]):
        # the set is cut into batches of 3, 3, 3, 1; four consecutive batches cover all ten triggers once
        assert sorted(len(t) for t in one_pass) == [1, 3, 3, 3]
        assert sorted(torch.cat(one_pass).tolist()) == list(range(100, 110))
    assert [t.tolist() for t in triggers[:4]] != [t.tolist() for t in triggers[4:]]  # reshuffled per pass


# --- the trigger set ------------------------------------------------------------------------------------------


def test_trigger_set_is_deterministic_abstract_and_randomly_labelled() -> None:
    x, y = trigger_set(3, 100, (1, 8, 8), 10)
    again_x, again_y = trigger_set(3, 100, (1, 8, 8), 10)
    other_x, _ = trigger_set(4, 100, (1, 8, 8), 10)
    assert torch.equal(x, again_x) and torch.equal(y, again_y) and not torch.equal(x, other_x)
    assert x.shape == (100, 1, 8, 8) and bool((x >= 0).all() and (x <= 1).all())
    assert float(x.flatten(1).std(dim=1).min()) > 0.02  # every image has structure, none is flat
    assert len(torch.unique(x.flatten(1), dim=0)) == 100
    assert set(y.tolist()) <= set(range(10)) and len(set(y.tolist())) >= 8  # 100 uniform labels hit most classes
    colour, _ = trigger_set(0, 5, (3, 32, 32), 2)
    assert colour.shape == (5, 3, 32, 32)


def test_trigger_set_rejects_unsupported_shapes() -> None:
    with pytest.raises(ArtifactError, match="input_shape"):
        trigger_set(0, 10, (4, 4), 3)
    with pytest.raises(ArtifactError, match="size"):
        trigger_set(0, 0, (4,), 3)


# --- the metrics on a hand-built example ----------------------------------------------------------------------


class _Lookup(nn.Module):
    """Labels each input with the label of the nearest stored row (one-hot logits)."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("keys", x.flatten(1))
        self.register_buffer("table", nn.functional.one_hot(labels, num_classes).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nearest = torch.cdist(x.flatten(1), self.get_buffer("keys")).argmin(dim=1)
        return self.get_buffer("table")[nearest]


def _suspect(seed: int, n_right: int) -> tuple[SurrogateModel, LabelOnlyAccess]:
    """A suspect model that returns the trigger label on exactly the first ``n_right`` of 100 triggers."""
    x, y = trigger_set(seed, 100, (1, 8, 8), 10)
    labels = torch.where(torch.arange(100) < n_right, y, (y + 1) % 10)
    model = TrainedModel(module=_Lookup(x, labels, 10), num_classes=10, input_shape=(1, 8, 8))
    target = LabelOnlyAccess.from_function(
        lambda q: torch.zeros(len(q), dtype=torch.int64),
        num_classes=10,
        input_shape=(1, 8, 8),
        info={"watermark_seed": seed, "watermark_size": 100},
    )
    return SurrogateModel(model=model, queries=5), target


@pytest.mark.parametrize(("n_right", "verified"), [(95, 1.0), (90, 1.0), (89, 0.0), (10, 0.0)])
def test_verdict_applies_the_threshold(n_right: int, verified: float) -> None:
    suspect, target = _suspect(11, n_right)
    accuracy = _measure(SurrogateWatermarkAccuracy(), suspect, target=target)
    assert accuracy.value == pytest.approx(n_right / 100) and accuracy.details["n_correct"] == n_right
    assert _measure(WatermarkVerified(), suspect, target=target).value == verified
    assert _measure(WatermarkVerified(threshold=0.5), suspect, target=target).value == float(n_right >= 50)
    assert _measure(WatermarkAccuracy(), suspect, target=target).details["n_correct"] == int(
        (trigger_set(11, 100, (1, 8, 8), 10)[1] == 0).sum()
    )  # the target answers 0 everywhere: right on the triggers labelled 0


def test_baseline_is_measured_on_the_default_trigger_set(
    independent: TrainedModel, watermarked: TrainedModel, context: RunContext
) -> None:
    suspect = SurrogateModel(model=independent, queries=0)
    value = _measure(WatermarkAccuracy(), suspect, target=independent, context=context)
    assert value.details["watermarked"] is False
    assert value.details["trigger_seed"] == watermarked.info["watermark_seed"]  # the key the defense would draw
    assert value.details["trigger_size"] == DEFAULT_TRIGGER_SIZE
    assert value.value < MAX_UNMARKED_ACCURACY


def test_binomial_tail() -> None:
    assert binomial_tail(0, 10, 0.1) == 1.0
    assert binomial_tail(10, 10, 0.5) == pytest.approx(0.5**10)
    assert binomial_tail(1, 2, 0.5) == pytest.approx(0.75)


def test_metric_errors() -> None:
    suspect, target = _suspect(1, 50)
    with pytest.raises(ArtifactError, match="target="):
        WatermarkAccuracy().compute(suspect)
    broken = LabelOnlyAccess.from_function(
        lambda q: torch.zeros(len(q), dtype=torch.int64),
        num_classes=10,
        input_shape=(1, 8, 8),
        info={"watermark_seed": 1, "watermark_size": "many"},
    )
    with pytest.raises(ArtifactError, match="watermark_size"):
        SurrogateWatermarkAccuracy().compute(suspect, target=broken)
    narrower = LabelOnlyAccess.from_function(
        lambda q: torch.zeros(len(q), dtype=torch.int64), num_classes=3, input_shape=(1, 8, 8), info=target.info
    )
    with pytest.raises(ArtifactError, match="does not match"):
        WatermarkVerified().compute(suspect, target=narrower)
    with pytest.raises(ConfigError, match="threshold"):
        WatermarkVerified(threshold=1.5)


def test_defense_needs_a_model_factory(task: TaskData) -> None:
    with pytest.raises(ConfigError, match="model factory"):
        Watermarking().apply(task)
    with pytest.raises(ConfigError, match="trigger_size"):
        Watermarking(trigger_size=0)


# --- end to end through the runner ----------------------------------------------------------------------------


def test_watermarking_against_extraction_through_the_runner(tmp_path: Path) -> None:
    metrics = ["watermark_accuracy", "surrogate_watermark_accuracy", "watermark_verified", "fidelity"]
    document = {
        "name": "watermark-smoke",
        "scenario": {
            "dataset": {"name": "digits"},
            "model": {"name": "mlp"},
            "training": {"epochs": EPOCHS, "batch_size": 64},
            "seeds": [0],
            "device": "cpu",
        },
        "defenses": [{"name": "watermarking"}],
        "attacks": [{"name": "model_extraction", "metrics": [{"name": m} for m in metrics]}],
    }
    summary = Runner(validate_plugins(Pipeline.from_dict(document)), out=tmp_path, progress=False).run()
    assert summary.failed == 0, [r.error for r in summary.rows if r.error][:1]
    cells = {(c["defense"], c["metric"]): c for c in summary.report["cells"]}
    marked = cells[("watermarking", "watermark_accuracy")]
    assert marked["intended"] and marked["risk"] == "S3"
    assert marked["defended"]["mean"] >= 0.9 and marked["baseline"]["mean"] < MAX_UNMARKED_ACCURACY
    assert marked["susceptibility"] in {"lowered", "unchanged"}  # one seed: no significance test
    assert summary.report["models"]["watermarking"]["watermark_size"]["mean"] == 100


# --- conformance ----------------------------------------------------------------------------------------------


@parametrize_with_checks(  # type: ignore[untyped-decorator]
    ["watermarking", "watermark_accuracy", "surrogate_watermark_accuracy", "watermark_verified"]
)
def test_conformance(plugin: Any, check: Any) -> None:
    check(plugin)
