"""Tests for the attribute-inference (P2) plugins: the black-box and white-box attacks and their metrics."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from interplay.artifacts import AttributeGuesses, LabeledData, MetricValue, QueryAccess, TaskData, TrainedModel
from interplay.context import RunContext
from interplay.errors import ArtifactError, ConfigError
from interplay.modules import Dataset, ModelFactory
from interplay.plugins.privacy._attack_mlps import NetSpec, train_stacked
from interplay.plugins.privacy.attribute import (
    AttributeInference,
    WhiteBoxAttributeInference,
    gmean_threshold,
)
from interplay.plugins.privacy.attribute_metrics import AttributeAccuracy, AttributeAUC, AttributeBalancedAccuracy
from interplay.recipe import TrainingRecipe
from interplay.registry import get_registry
from interplay.testing import parametrize_with_checks
from interplay.testing.synthetic import synthetic_task, tiny_context, tiny_model

# Census subset: 4,000 training rows (2,000 defender, 2,000 adversary) and 2,000 test rows; the target is the
# scenario default (mlp m1, Adam 1e-3, 10 epochs, batch 256). Measured over seeds 0, 1, 2 (partition, target
# and attack seeded alike), on the test split:
#   black-box (AMULET defaults, G-mean threshold): balanced accuracy race 0.60-0.63, sex 0.65-0.67;
#                                                  AUC race 0.64-0.68, sex 0.67-0.68
#   white-box (ML-Doctor defaults, arg-max):       AUC race 0.66-0.70, sex 0.75-0.78; balanced accuracy sex
#                                                  0.59-0.60 (race 0.50-0.51: arg-max on a 90 % majority);
#                                                  accuracy sex 0.71-0.72 against a majority rate of about 0.68
# AMULET reports about 0.58 (race) and 0.65 (sex) balanced accuracy, AUC 0.61 and 0.69. Chance is 0.5.
CENSUS_TRAIN, CENSUS_TEST = 4000, 2000


@pytest.fixture(scope="module")
def census() -> TaskData:
    dataset = get_registry().create("census", "dataset", train_size=CENSUS_TRAIN, test_size=CENSUS_TEST)
    assert isinstance(dataset, Dataset)
    return dataset.load().partitioned(defender=0.5, adversary=0.5, seed=0)


@pytest.fixture(scope="module")
def context() -> RunContext:
    factory = get_registry().create("mlp", "model")
    assert isinstance(factory, ModelFactory)
    return RunContext(seed=0, model=factory, recipe=TrainingRecipe())


@pytest.fixture(scope="module")
def target(census: TaskData, context: RunContext) -> TrainedModel:
    assert census.partition is not None
    return context.train(census.defender_train, train_indices=census.partition.defender)


@pytest.fixture(scope="module")
def blackbox(census: TaskData, context: RunContext, target: TrainedModel) -> AttributeGuesses:
    return _attack(AttributeInference(), target, data=census, context=context)


def _attack(attack: Any, target: Any, **kwargs: Any) -> AttributeGuesses:
    """Run ``attack``, typed loosely because the base class narrows a wider access to the declared one."""
    result = attack.run(target, **kwargs)
    assert isinstance(result, AttributeGuesses)
    return result


def _metrics(guesses: AttributeGuesses) -> dict[str, MetricValue]:
    values: dict[str, MetricValue] = {}
    for metric in (AttributeAccuracy(), AttributeBalancedAccuracy(), AttributeAUC()):
        result = metric.compute(guesses)
        assert isinstance(result, list)
        values.update({value.name: value for value in result})
    return values


# --- the attacks on Census -------------------------------------------------------------------------------------


def test_blackbox_infers_race_and_sex_on_census(blackbox: AttributeGuesses, census: TaskData) -> None:
    assert list(blackbox.scores) == ["race", "sex"]
    for name in ("race", "sex"):
        assert torch.equal(blackbox.truth[name], census.test.sensitive[name])  # scored on the test split (AMULET)
        assert 0.0 < blackbox.threshold[name] < 1.0
        assert bool(((blackbox.scores[name] >= 0) & (blackbox.scores[name] <= 1)).all())
    values = _metrics(blackbox)
    assert values["attribute_balanced_accuracy[sex]"].value > 0.60
    assert values["attribute_auc[sex]"].value > 0.62
    assert values["attribute_balanced_accuracy[race]"].value > 0.55
    assert values["attribute_auc[race]"].value > 0.58
    race = values["attribute_accuracy[race]"]
    assert race.details["n"] == CENSUS_TEST and 0.85 < race.details["majority_rate"] < 0.95  # about 90 % White
    assert race.details["threshold"] == blackbox.threshold["race"]
    assert all(v.risk == "P2" and v.higher_is_riskier for v in values.values())


def test_whitebox_infers_sex_from_embeddings(census: TaskData, context: RunContext, target: TrainedModel) -> None:
    guesses = _attack(WhiteBoxAttributeInference(), target, data=census, context=context)
    assert guesses.threshold == {"race": 0.5, "sex": 0.5}  # ML-Doctor predicts the arg-max class
    values = _metrics(guesses)
    assert values["attribute_auc[sex]"].value > 0.68
    assert values["attribute_auc[race]"].value > 0.60
    assert values["attribute_balanced_accuracy[sex]"].value > 0.55
    sex = values["attribute_accuracy[sex]"]
    assert sex.value > sex.details["majority_rate"]  # beats always guessing "male"


def test_members_evaluation_and_attribute_choice(census: TaskData, context: RunContext, target: TrainedModel) -> None:
    attack = AttributeInference(attributes=("sex",), evaluate_on="members", max_epochs=30)
    guesses = _attack(attack, target.narrow(QueryAccess), data=census, context=context)
    assert list(guesses.scores) == ["sex"]
    assert torch.equal(guesses.truth["sex"], census.defender_train.sensitive["sex"])
    assert _metrics(guesses)["attribute_auc[sex]"].value > 0.6  # the members leak at least as much


def test_deterministic_for_a_seed(census: TaskData, context: RunContext, target: TrainedModel) -> None:
    attack = AttributeInference(attributes=("sex",), max_epochs=4)
    first = _attack(attack, target, data=census, context=context)
    second = _attack(attack, target, data=census, context=context)
    assert torch.equal(first.scores["sex"], second.scores["sex"]) and first.threshold == second.threshold
    other = _attack(attack, target, data=census, context=context.model_copy(update={"seed": 1}))
    assert not torch.equal(other.scores["sex"], first.scores["sex"])


def test_attack_sees_only_query_access(census: TaskData, context: RunContext, target: TrainedModel) -> None:
    seen: list[Any] = []

    class Spy(AttributeInference):
        def run(self, target: Any, /, **kwargs: Any) -> AttributeGuesses:
            seen.append(target)
            return super().run(target, **kwargs)

    access = target.narrow(QueryAccess)
    _attack(Spy(max_epochs=1), access, data=census, context=context)
    assert isinstance(seen[0], QueryAccess) and not isinstance(seen[0], TrainedModel)
    assert access.queries == len(census.adversary) + len(census.test)


# --- the stacked attack models ----------------------------------------------------------------------------------


def test_stacked_models_train_as_if_alone() -> None:
    """Two attributes trained together give what each gives alone, even when they stop at different epochs."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(300, 3, generator=generator)
    z = torch.stack([torch.randint(0, 2, (300,), generator=generator), (x[:, 0] > 0.5).long()])
    # alone, model 0 (random labels) stops after 11 epochs, model 1 (a learnable rule) after 63
    spec = NetSpec(hidden=(8,), outputs=1, init="glorot", alpha=1e-3, lr=1e-2, batch_size=50, max_epochs=100,
                    tol=1e-3, patience=2)  # fmt: skip

    def train(rows: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        init = [torch.Generator().manual_seed(10 + a) for a in rows]
        return train_stacked(spec, x, z[rows], init=init, order=torch.Generator().manual_seed(1), device="cpu")

    together = train([0, 1])
    for a in (0, 1):
        alone = train([a])
        for (w, b), (w1, b1) in zip(together, alone, strict=True):
            torch.testing.assert_close(w[a], w1[0])
            torch.testing.assert_close(b[a], b1[0])


def test_stopping_rule_matches_fixed_epochs() -> None:
    """With every epoch but the first counted as no progress, training stops after ``n_iter_no_change + 2`` epochs.

    (The first epoch always improves on the initial, infinite best loss, as in scikit-learn.)
    """
    task, context = synthetic_task(), tiny_context()
    model = tiny_model(task, context)
    stopped = _attack(AttributeInference(tol=1e9, n_iter_no_change=2), model, data=task, context=context)
    fixed = _attack(AttributeInference(max_epochs=4), model, data=task, context=context)
    assert torch.equal(stopped.scores["group"], fixed.scores["group"])
    longer = _attack(AttributeInference(max_epochs=5), model, data=task, context=context)
    assert not torch.equal(longer.scores["group"], fixed.scores["group"])


# --- errors -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attack", [AttributeInference, WhiteBoxAttributeInference])
def test_data_without_sensitive_attributes(attack: type[AttributeInference], digits_task: TaskData) -> None:
    task = digits_task.partitioned(defender=0.5, adversary=0.5, seed=0)
    context = tiny_context()
    model = tiny_model(task, context)
    with pytest.raises(ArtifactError, match=rf"{attack.name}.*'digits' has no sensitive attributes"):
        attack().run(model, data=task, context=context)


def _with_group(task: TaskData, group: torch.Tensor) -> TaskData:
    train = task.train.model_copy(update={"sensitive": {"group": group}})
    return task.with_split("train", train)


def test_attack_errors() -> None:
    task, context = synthetic_task(), tiny_context()
    model = tiny_model(task, context)
    attack = AttributeInference(max_epochs=1)
    with pytest.raises(ArtifactError, match="data="):
        attack.run(model, context=context)
    with pytest.raises(ArtifactError, match="partition"):
        attack.run(model, data=task.model_copy(update={"partition": None}), context=context)
    with pytest.raises(ConfigError, match=r"attribute_inference\.params\.attributes.*'race'.*\['group'\]"):
        AttributeInference(attributes=("race",)).run(model, data=task, context=context)
    with pytest.raises(ConfigError, match="hidden_sizes"):
        AttributeInference(hidden_sizes=(64, 0))
    assert task.partition is not None
    constant = task.train.sensitive["group"].clone()
    constant[task.partition.adversary] = 1
    with pytest.raises(ArtifactError, match="'group' takes the single value 1 on the adversary's rows"):
        attack.run(model, data=_with_group(task, constant), context=context)
    with pytest.raises(ArtifactError, match="'group' must be binary"):
        attack.run(model, data=_with_group(task, task.train.sensitive["group"] * 2), context=context)
    broken = QueryAccess.from_function(
        lambda q: torch.full((len(q), task.num_classes), float("nan")),
        num_classes=task.num_classes,
        input_shape=task.input_shape,
    )
    with pytest.raises(ArtifactError, match="not finite"):
        attack.run(broken, data=task, context=context)


def test_whitebox_needs_embeddings() -> None:
    task, context = synthetic_task(), tiny_context()
    plain = TrainedModel(
        module=torch.nn.Linear(10, task.num_classes), num_classes=task.num_classes, input_shape=task.input_shape
    )
    with pytest.raises(ArtifactError, match="embed"):
        WhiteBoxAttributeInference(epochs=1).run(plain, data=task, context=context)


# --- the threshold and the metrics on hand-computed examples --------------------------------------------------


def test_gmean_threshold() -> None:
    # roc_curve: thresholds [inf, 0.8, 0.4, 0.35, 0.1], TPR [0, .5, .5, 1, 1], FPR [0, 0, .5, .5, 1];
    # G-mean [0, .707, .5, .707, 0]: the first maximum wins, as numpy.argmax picks it in AMULET
    assert gmean_threshold(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == pytest.approx(0.8)
    scores = torch.full((4,), 0.3)
    flat = gmean_threshold(scores, torch.tensor([0, 1, 0, 1]))  # no separating threshold
    assert float(scores[0]) < flat < float(scores[0]) + 1e-6
    guesses = AttributeGuesses(scores={"s": scores}, truth={"s": torch.tensor([0, 1, 0, 1])}, threshold={"s": flat})
    assert AttributeAccuracy().compute(guesses)[0].value == 0.5  # predicts 0 everywhere


TRUTH = [1, 1, 1, 1, 0, 0]
SCORES = [0.9, 0.7, 0.4, 0.65, 0.2, 0.66]  # threshold 0.65 predicts [1, 1, 0, 1, 0, 1] (0.65 >= 0.65)


def _guesses() -> AttributeGuesses:
    return AttributeGuesses(
        scores={"a": torch.tensor(SCORES), "b": torch.tensor([0.2, 0.6, 0.7, 0.4])},
        truth={"a": torch.tensor(TRUTH), "b": torch.tensor([0, 0, 1, 1])},
        threshold={"a": 0.65},  # b has none: 0.5 predicts [0, 1, 1, 0]
    )


def test_metrics_match_hand_computed_values() -> None:
    values = _metrics(_guesses())
    assert values["attribute_accuracy[a]"].value == pytest.approx(4 / 6)
    assert values["attribute_balanced_accuracy[a]"].value == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert values["attribute_auc[a]"].value == pytest.approx(6 / 8)  # positive above negative in 6 of 8 pairs
    assert values["attribute_accuracy[b]"].value == pytest.approx(2 / 4)
    assert values["attribute_balanced_accuracy[b]"].value == pytest.approx(1 / 2)
    assert values["attribute_auc[b]"].value == pytest.approx(3 / 4)
    assert values["attribute_auc[a]"].details == {"n": 6, "majority_rate": pytest.approx(4 / 6), "threshold": 0.65}
    assert values["attribute_accuracy[b]"].details == {"n": 4, "majority_rate": 0.5, "threshold": 0.5}
    assert list(values)[:2] == ["attribute_accuracy[a]", "attribute_accuracy[b]"]


def test_balanced_accuracy_and_auc_agree_with_sklearn() -> None:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    generator = torch.Generator().manual_seed(0)
    truth = torch.randint(0, 2, (200,), generator=generator)
    scores = (torch.rand(200, generator=generator) + 0.3 * truth).clamp(max=1)
    guesses = AttributeGuesses(scores={"s": scores}, truth={"s": truth}, threshold={"s": 0.7})
    values = _metrics(guesses)
    expected = balanced_accuracy_score(truth.numpy(), (scores >= 0.7).numpy())
    assert values["attribute_balanced_accuracy[s]"].value == pytest.approx(expected)
    assert values["attribute_auc[s]"].value == pytest.approx(roc_auc_score(truth.numpy(), scores.numpy()))


def test_metric_errors() -> None:
    single = AttributeGuesses(scores={"s": torch.tensor([0.2, 0.9])}, truth={"s": torch.tensor([1, 1])})
    with pytest.raises(ArtifactError, match="AUC of attribute 's' is undefined"):
        AttributeAUC().compute(single)
    assert AttributeBalancedAccuracy().compute(single)[0].value == pytest.approx(1 / 2)  # recall of the one value
    with pytest.raises(ArtifactError, match="no attribute"):
        AttributeAccuracy().compute(AttributeGuesses(scores={}, truth={}))
    three = AttributeGuesses(scores={"s": torch.tensor([0.2, 0.9])}, truth={"s": torch.tensor([0, 2])})
    with pytest.raises(ArtifactError, match="binary"):
        AttributeAccuracy().compute(three)


def test_metrics_reject_other_artifacts() -> None:
    data = LabeledData(x=torch.zeros(2, 1), y=torch.tensor([0, 1]))
    with pytest.raises(ArtifactError, match="AttributeGuesses"):
        AttributeAccuracy().compute(data)  # type: ignore[arg-type]


# --- conformance ------------------------------------------------------------------------------------------------


@parametrize_with_checks(  # type: ignore[untyped-decorator]
    [
        "attribute_inference",
        "attribute_inference_whitebox",
        "attribute_accuracy",
        "attribute_balanced_accuracy",
        "attribute_auc",
    ]
)
def test_conformance(plugin: Any, check: Any) -> None:
    check(plugin)
