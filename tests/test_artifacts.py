"""Typed artifacts: validation, partitions, access narrowing, attack outputs, metric values, fingerprints."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from interplay.artifacts import (
    AdversarialExamples,
    Artifact,
    AttributeGuesses,
    LabeledData,
    LabelOnlyAccess,
    MembershipScores,
    MetricValue,
    ModelAccess,
    OwnershipEvidence,
    Partition,
    PoisonedData,
    PropertyGuesses,
    QueryAccess,
    Reconstructions,
    SurrogateModel,
    TaskData,
    TrainedModel,
    can_narrow,
    fingerprint,
)
from interplay.context import RunContext
from interplay.errors import ArtifactError
from interplay.recipe import TrainingRecipe
from interplay.registry import get_registry


def _xy(n: int = 6, features: int = 3) -> dict[str, Any]:
    return {"x": torch.arange(n * features, dtype=torch.float32).reshape(n, features), "y": torch.arange(n) % 3}


def _task(n_train: int = 20, n_test: int = 10) -> TaskData:
    train = LabeledData(
        x=torch.randn(n_train, 4, generator=torch.Generator().manual_seed(1)), y=torch.arange(n_train) % 2,
        sensitive={"sex": torch.arange(n_train) % 2},
    )
    test = LabeledData(
        x=torch.randn(n_test, 4, generator=torch.Generator().manual_seed(2)), y=torch.arange(n_test) % 2,
        sensitive={"sex": torch.zeros(n_test, dtype=torch.int64)},
    )
    return TaskData(splits={"train": train, "test": test}, name="toy")


# --------------------------------------------------------------------------- LabeledData


def test_labeled_data_converts_arrays_and_infers_classes() -> None:
    data = LabeledData(x=np.ones((4, 2), dtype=np.int64), y=[0, 1, 2, 1], sensitive={"g": [True, False, True, True]})
    assert data.x.dtype == torch.float32
    assert data.y.dtype == torch.int64
    assert data.sensitive["g"].tolist() == [1, 0, 1, 1]
    assert data.num_classes == 3
    assert len(data) == 4
    assert data.input_shape == (2,)


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"y": torch.zeros(5, dtype=torch.int64)}, "y", "y must have shape (6,)"),
        ({"y": torch.zeros(6, 1, dtype=torch.int64)}, "y", "y must have shape (6,)"),
        ({"y": [0.5] * 6}, "y", "integer"),
        ({"y": [-1, 0, 0, 0, 0, 0]}, "y", "non-negative"),
        ({"num_classes": 2}, "num_classes", "num_classes is 2"),
        ({"class_names": ("a", "b")}, "class_names", "class_names has 2 names for 3 classes"),
        ({"feature_names": ("a", "b")}, "feature_names", "feature_names has 2 names but x has 3 features"),
        ({"sensitive": {"sex": torch.zeros(4, dtype=torch.int64)}}, "sensitive",
         "sensitive['sex'] must have shape (6,)"),
        ({"x": torch.ones(6)}, "x", "x must have a batch dimension"),
        ({"x": torch.ones(6, 3, 2)}, "x", "tabular x must have shape (N, F)"),
        ({"modality": "image"}, "x", "image x must have shape (N, C, H, W)"),
        ({"modality": "audio"}, "modality", "modality"),
        ({"colour": 1}, "colour", "colour"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_labeled_data_rejects_invalid_fields_naming_them(changes: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        LabeledData(**{**_xy(), **changes})
    message = str(info.value)
    assert fragment in message
    assert field in message


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_labeled_data_rejects_non_finite_x_under_field_x(bad: float) -> None:
    x = _xy()["x"].clone()
    x[2, 1] = bad
    with pytest.raises(ValidationError) as info:
        LabeledData(x=x, y=_xy()["y"])
    (error,) = info.value.errors()
    assert error["loc"] == ("x",)
    assert "must be finite" in error["msg"]


def test_labeled_data_is_frozen() -> None:
    data = LabeledData(**_xy())
    with pytest.raises(ValidationError):
        data.y = torch.zeros(6, dtype=torch.int64)  # type: ignore[misc]


def test_subset_selects_rows_and_sensitive_and_leaves_original() -> None:
    data = LabeledData(**_xy(), sensitive={"g": torch.tensor([0, 1, 0, 1, 0, 1])})
    before = fingerprint(data)
    part = data.subset([4, 1])
    assert torch.equal(part.x, data.x[[4, 1]])
    assert part.y.tolist() == [1, 1]
    assert part.sensitive["g"].tolist() == [0, 1]
    assert part.num_classes == data.num_classes
    assert fingerprint(data) == before


# --------------------------------------------------------------------------- TaskData, Partition


def test_task_requires_train_and_test() -> None:
    with pytest.raises(ValidationError, match="splits must contain 'test'"):
        TaskData(splits={"train": LabeledData(**_xy())})


def test_task_rejects_splits_of_different_shapes() -> None:
    with pytest.raises(ValidationError, match=r"splits\['test'\] has input shape \(4,\), train has \(3,\)"):
        TaskData(splits={"train": LabeledData(**_xy()), "test": LabeledData(**_xy(features=4))})


def test_task_rejects_splits_with_different_sensitive_attributes() -> None:
    train = LabeledData(**_xy(), sensitive={"g": torch.zeros(6)})
    with pytest.raises(ValidationError, match="sensitive attributes differ"):
        TaskData(splits={"train": train, "test": LabeledData(**_xy())})


def test_task_aligns_num_classes_across_splits() -> None:
    test = LabeledData(x=torch.zeros(2, 3), y=[0, 1])
    task = TaskData(splits={"train": LabeledData(**_xy()), "test": test})
    assert task.num_classes == 3
    assert task.test.num_classes == 3


def test_partition_must_be_disjoint_and_1d() -> None:
    with pytest.raises(ValidationError, match="disjoint"):
        Partition(defender=torch.tensor([0, 1, 2]), adversary=torch.tensor([2, 3]))
    with pytest.raises(ValidationError, match="defender must be a 1-D"):
        Partition(defender=torch.zeros(2, 2, dtype=torch.int64), adversary=torch.tensor([5]))


def test_task_rejects_partition_outside_split() -> None:
    partition = Partition(defender=torch.tensor([0, 25]), adversary=torch.tensor([1]))
    with pytest.raises(ValidationError, match=r"partition\.defender has indices outside split of 20 rows"):
        TaskData(splits=_task().splits, partition=partition)


def test_partitioned_is_disjoint_sized_and_deterministic() -> None:
    task = _task(n_train=40)
    split = task.partitioned(defender=0.6, adversary=0.3, seed=5)
    assert task.partition is None  # the original is unchanged
    assert split.partition is not None
    defender, adversary = split.partition.defender, split.partition.adversary
    assert len(defender) == 24 and len(adversary) == 12
    assert not set(defender.tolist()) & set(adversary.tolist())
    assert set(defender.tolist()) | set(adversary.tolist()) <= set(range(40))
    again = task.partitioned(defender=0.6, adversary=0.3, seed=5).partition
    assert again is not None
    assert torch.equal(again.defender, defender) and torch.equal(again.adversary, adversary)
    other = task.partitioned(defender=0.6, adversary=0.3, seed=6).partition
    assert other is not None
    assert not torch.equal(other.defender, defender)


@pytest.mark.parametrize(("defender", "adversary"), [(0.7, 0.5), (0.0, 0.5), (1.2, 0.0), (0.5, -0.1)])
def test_partitioned_rejects_invalid_fractions(defender: float, adversary: float) -> None:
    with pytest.raises(ValueError, match="defender"):
        _task().partitioned(defender=defender, adversary=adversary)


def test_defender_train_and_adversary_are_the_partitioned_rows() -> None:
    task = _task()
    assert task.defender_train is task.train  # no partition: the whole training split
    with pytest.raises(ValueError, match="no defender/adversary partition"):
        _ = task.adversary
    split = task.partitioned(defender=0.5, adversary=0.5, seed=0)
    assert split.partition is not None
    assert torch.equal(split.defender_train.x, task.train.x[split.partition.defender])
    assert torch.equal(split.adversary.y, task.train.y[split.partition.adversary])
    assert torch.equal(split.adversary.sensitive["sex"], task.train.sensitive["sex"][split.partition.adversary])
    assert len(split.defender_train) + len(split.adversary) == len(task.train)


def test_with_split_adds_a_split() -> None:
    task = _task()
    extra = LabeledData(x=torch.zeros(3, 4), y=[0, 1, 0], sensitive={"sex": [0, 0, 1]})
    grown = task.with_split("val", extra)
    assert sorted(grown.splits) == ["test", "train", "val"]
    assert "val" not in task.splits


def test_with_split_validates_the_new_split() -> None:
    with pytest.raises((ValidationError, ValueError)):
        _task().with_split("val", LabeledData(x=torch.zeros(3, 7), y=[0, 1, 0], sensitive={"sex": [0, 0, 1]}))


def test_poisoned_data_is_a_task() -> None:
    task = _task()
    poisoned = PoisonedData(splits=task.splits, poisoned_indices=[0, 3], target_label=1)
    assert isinstance(poisoned, TaskData)
    assert poisoned.poisoned_indices.dtype == torch.int64
    with pytest.raises(ValidationError, match="splits must contain"):
        PoisonedData(splits={"train": task.train}, poisoned_indices=[0])


# --------------------------------------------------------------------------- model access


@pytest.fixture
def white_box(tiny_trained: TrainedModel) -> TrainedModel:
    return tiny_trained


def test_trained_model_narrows_to_query_and_label_only(white_box: TrainedModel, tabular_task: TaskData) -> None:
    x = tabular_task.test.x
    query = white_box.narrow(QueryAccess)
    assert isinstance(query, QueryAccess) and not isinstance(query, TrainedModel)
    posteriors = query.query(x)
    assert posteriors.shape == (len(x), white_box.num_classes)
    assert torch.allclose(posteriors.sum(dim=1), torch.ones(len(x)), atol=1e-5)
    assert bool((posteriors >= 0).all())
    labels = query.narrow(LabelOnlyAccess)
    assert isinstance(labels, LabelOnlyAccess)
    predicted = labels.predict(x)
    assert predicted.dtype == torch.int64
    assert torch.equal(predicted, posteriors.argmax(dim=1))
    assert torch.equal(white_box.narrow(LabelOnlyAccess).predict(x), white_box.predict(x))
    assert torch.equal(white_box.predict(x), white_box.logits(x).argmax(dim=1))
    assert query.num_classes == white_box.num_classes and query.input_shape == white_box.input_shape


def test_narrow_to_same_level_is_identity(white_box: TrainedModel) -> None:
    assert white_box.narrow(TrainedModel) is white_box
    query = white_box.narrow(QueryAccess)
    assert query.narrow(QueryAccess) is query


@pytest.mark.parametrize(
    ("source", "target"),
    [(QueryAccess, TrainedModel), (LabelOnlyAccess, QueryAccess), (LabelOnlyAccess, TrainedModel)],
)
def test_widening_access_raises(white_box: TrainedModel, source: type[ModelAccess], target: type[ModelAccess]) -> None:
    narrow = white_box.narrow(source)
    with pytest.raises(ArtifactError, match=f"cannot widen {source.__name__} to {target.__name__}"):
        narrow.narrow(target)
    assert not can_narrow(source, target)


def test_can_narrow_table() -> None:
    assert can_narrow(TrainedModel, QueryAccess)
    assert can_narrow(TrainedModel, LabelOnlyAccess)
    assert can_narrow(QueryAccess, LabelOnlyAccess)
    assert can_narrow(QueryAccess, QueryAccess)
    assert not can_narrow(TaskData, QueryAccess)
    assert not can_narrow(QueryAccess, TaskData)


def _reachable_modules(obj: object, depth: int) -> list[str]:
    """Public attribute paths (up to ``depth``) from ``obj`` that reach a ``torch.nn.Module``."""
    found = []
    for name in dir(obj):
        if name.startswith("_") or name in ("model_fields", "model_computed_fields"):
            continue
        try:
            value = getattr(obj, name)
        except Exception:  # properties that need arguments or raise are irrelevant here
            continue
        if isinstance(value, torch.nn.Module):
            found.append(name)
        elif depth > 1 and isinstance(value, Artifact):
            found.extend(f"{name}.{sub}" for sub in _reachable_modules(value, depth - 1))
    return found


def test_query_access_does_not_expose_the_module(white_box: TrainedModel) -> None:
    for narrowed in (white_box.narrow(QueryAccess), white_box.narrow(LabelOnlyAccess)):
        assert not hasattr(narrowed, "module")
        assert "module" not in type(narrowed).model_fields
        assert set(narrowed.model_dump()) == {"num_classes", "input_shape", "info", "train_indices"}
        assert _reachable_modules(narrowed, depth=2) == []
    assert _reachable_modules(white_box, depth=1) == ["module"]  # the walk does find a module where there is one


def test_narrowing_keeps_the_membership_ground_truth(tabular_task: TaskData) -> None:
    context = RunContext(model=get_registry().create("mlp", hidden_sizes=(8,)), recipe=TrainingRecipe(epochs=1))
    rows = torch.arange(0, len(tabular_task.train), 2)
    model = context.train(tabular_task.train.subset(rows), train_indices=rows)
    for narrowed in (model.narrow(QueryAccess), model.narrow(LabelOnlyAccess)):
        assert narrowed.train_indices is not None and torch.equal(narrowed.train_indices, rows)


def test_queries_are_counted(white_box: TrainedModel, tabular_task: TaskData) -> None:
    x = tabular_task.test.x
    query = white_box.narrow(QueryAccess)
    assert query.queries == 0
    query.query(x[:7])
    query.predict(x[:3])
    assert query.queries == 10
    labels = white_box.narrow(LabelOnlyAccess)
    labels.predict(x[:5])
    assert labels.queries == 5


def test_wrong_input_shape_is_an_artifact_error(white_box: TrainedModel) -> None:
    query = white_box.narrow(QueryAccess)
    for access in (white_box, query, white_box.narrow(LabelOnlyAccess)):
        with pytest.raises(ArtifactError, match=r"got \(4, 7\)"):
            access.predict(torch.zeros(4, 7))
    with pytest.raises(ArtifactError, match="must be a tensor"):
        query.query([[0.0] * 10])  # type: ignore[arg-type]
    assert query.queries == 0  # rejected queries are not counted


def test_access_without_function_raises() -> None:
    with pytest.raises(ArtifactError, match="from_function"):
        QueryAccess(num_classes=2, input_shape=(3,)).query(torch.zeros(1, 3))
    with pytest.raises(ArtifactError, match="from_function"):
        LabelOnlyAccess(num_classes=2, input_shape=(3,)).predict(torch.zeros(1, 3))


def test_from_function_wraps_a_callable() -> None:
    query = QueryAccess.from_function(lambda x: torch.full((len(x), 2), 0.5), num_classes=2, input_shape=(3,))
    assert query.query(torch.zeros(4, 3)).shape == (4, 2)
    assert query.queries == 4


def test_trained_model_restores_training_mode_and_embeds(white_box: TrainedModel, tabular_task: TaskData) -> None:
    x = tabular_task.test.x[:5]
    white_box.module.train()
    try:
        white_box.query(x)
        assert white_box.module.training
    finally:
        white_box.module.eval()
    assert white_box.embed(x).shape[0] == 5
    bare = TrainedModel(module=torch.nn.Linear(10, 3), num_classes=3, input_shape=(10,))
    with pytest.raises(ArtifactError, match="embed"):
        bare.embed(x)


def test_trained_model_requires_positive_classes() -> None:
    with pytest.raises(ValidationError, match="num_classes"):
        TrainedModel(module=torch.nn.Linear(3, 3), num_classes=0, input_shape=(3,))


# --------------------------------------------------------------------------- attack outputs


def test_adversarial_examples_lengths_must_agree() -> None:
    ok = AdversarialExamples(x_adv=torch.zeros(3, 2), y=[0, 1, 0], predictions=[0, 0, 0], clean_predictions=[0, 1, 0],
                             eps=0.1)
    assert ok.norm == "linf"
    with pytest.raises(ValidationError, match="'predictions': 2"):
        AdversarialExamples(x_adv=torch.zeros(3, 2), y=[0, 1, 0], predictions=[0, 0], clean_predictions=[0, 1, 0],
                            eps=0.1)
    with pytest.raises(ValidationError, match="eps"):
        AdversarialExamples(x_adv=torch.zeros(1, 2), y=[0], predictions=[0], clean_predictions=[0], eps=-1)
    with pytest.raises(ValidationError, match="x_adv"):
        AdversarialExamples(x_adv=torch.full((1, 2), float("nan")), y=[0], predictions=[0], clean_predictions=[0],
                            eps=0.1)


def test_membership_scores_are_one_dimensional_and_aligned() -> None:
    scores = MembershipScores(scores=[0.1, 0.9], is_member=[0, 1])
    assert scores.is_member.dtype == torch.bool
    with pytest.raises(ValidationError, match="scores must be 1-D"):
        MembershipScores(scores=torch.zeros(2, 2), is_member=[0, 1])
    with pytest.raises(ValidationError, match="same length"):
        MembershipScores(scores=[0.1, 0.2, 0.3], is_member=[0, 1])
    with pytest.raises(ValidationError, match="is_member"):
        MembershipScores(scores=[0.1, 0.2], is_member=[0, 2])


def test_attribute_guesses_need_the_same_attributes_and_lengths() -> None:
    AttributeGuesses(scores={"sex": [0.2, 0.8]}, truth={"sex": [0, 1]})
    with pytest.raises(ValidationError, match="same attributes"):
        AttributeGuesses(scores={"sex": [0.2, 0.8]}, truth={"race": [0, 1]})
    with pytest.raises(ValidationError, match=r"AttributeGuesses\['sex'\]"):
        AttributeGuesses(scores={"sex": [0.2, 0.8, 0.1]}, truth={"sex": [0, 1]})


def test_reconstructions_shapes_must_match() -> None:
    Reconstructions(x_rec=torch.zeros(2, 4), reference=torch.ones(2, 4), classes=[0, 1])
    with pytest.raises(ValidationError, match=r"x_rec \(2, 4\) and reference \(2, 5\) differ"):
        Reconstructions(x_rec=torch.zeros(2, 4), reference=torch.ones(2, 5), classes=[0, 1])
    with pytest.raises(ValidationError, match="same length"):
        Reconstructions(x_rec=torch.zeros(2, 4), reference=torch.ones(2, 4), classes=[0, 1, 2])


def test_other_outputs_validate() -> None:
    with pytest.raises(ValidationError, match="same length"):
        PropertyGuesses(predicted=[0, 1], truth=[0], ratios=(0.1, 0.9))
    with pytest.raises(ValidationError, match="verdicts"):
        OwnershipEvidence(verdicts={"suspect": "maybe"})
    with pytest.raises(ValidationError, match="queries"):
        SurrogateModel(model=TrainedModel(module=torch.nn.Linear(2, 2), num_classes=2, input_shape=(2,)), queries=-1)


# --------------------------------------------------------------------------- MetricValue


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_metric_value_rejects_non_finite(bad: float) -> None:
    with pytest.raises(ValidationError) as info:
        MetricValue(name="auc", value=bad, higher_is_riskier=True)
    assert info.value.errors()[0]["loc"] == ("value",)
    assert "must be finite" in str(info.value)


def test_metric_value_fields() -> None:
    value = MetricValue(name="auc", value=0.7, higher_is_riskier=True, risk="P1", details={"n": 3})
    assert (value.name, value.value, value.higher_is_riskier, value.risk) == ("auc", 0.7, True, "P1")
    with pytest.raises(ValidationError, match="name"):
        MetricValue(name="", value=0.5, higher_is_riskier=False)
    with pytest.raises(ValidationError, match="higher_is_riskier"):
        MetricValue(name="auc", value=0.5)  # type: ignore[call-arg]


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_equal_for_equal_content_and_different_after_a_change() -> None:
    a = LabeledData(**_xy())
    b = LabeledData(**_xy())
    assert a is not b
    assert fingerprint(a) == fingerprint(b) == a.fingerprint()
    changed = _xy()
    changed["x"][0, 0] += 1e-3
    assert fingerprint(LabeledData(**changed)) != fingerprint(a)
    assert fingerprint(a.model_copy(update={"modality": "tabular", "feature_names": ("p", "q", "r")})) != fingerprint(a)


def test_fingerprint_of_tensors_modules_and_containers() -> None:
    t = torch.arange(4, dtype=torch.float32)
    assert fingerprint(t) == fingerprint(t.clone())
    assert fingerprint(t) != fingerprint(t.to(torch.float64))  # dtype counts
    assert fingerprint(t) != fingerprint(t.reshape(2, 2))  # shape counts
    torch.manual_seed(0)
    m1 = torch.nn.Linear(3, 2)
    torch.manual_seed(0)
    m2 = torch.nn.Linear(3, 2)
    assert fingerprint(m1) == fingerprint(m2)
    with torch.no_grad():
        m2.bias.add_(1.0)
    assert fingerprint(m1) != fingerprint(m2)
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_query_access_checks_what_its_function_returns_and_chunks_large_queries() -> None:
    calls: list[int] = []

    def uniform(x: torch.Tensor) -> torch.Tensor:
        calls.append(int(x.shape[0]))
        return torch.full((x.shape[0], 3), 1 / 3)

    access = QueryAccess.from_function(uniform, num_classes=3, input_shape=(2,))
    assert access.query(torch.zeros(5000, 2)).shape == (5000, 3)
    assert calls == [2048, 2048, 904] and access.queries == 5000
    wrong_shape = QueryAccess.from_function(lambda x: torch.ones(x.shape[0], 2) / 2, num_classes=3, input_shape=(2,))
    with pytest.raises(ArtifactError, match=r"posteriors of shape \(4, 2\), expected \(4, 3\)"):
        wrong_shape.query(torch.zeros(4, 2))
    negative = QueryAccess.from_function(lambda x: torch.full((x.shape[0], 3), -1.0), num_classes=3, input_shape=(2,))
    with pytest.raises(ArtifactError, match="not finite, non-negative"):
        negative.query(torch.zeros(4, 2))
