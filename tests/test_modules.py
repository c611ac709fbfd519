"""Module base classes: declaration checks, keyword-only validated parameters, and the run wrappers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from pydantic import Field

from interplay import Attack, Dataset, Defense, Metric, MetricValue, ModelFactory, Params, RunContext
from interplay.artifacts import (
    AdversarialExamples,
    LabelOnlyAccess,
    MembershipScores,
    QueryAccess,
    TaskData,
    TrainedModel,
)
from interplay.errors import ArtifactError, ConfigError, PluginDeclarationError, PluginError
from interplay.registry import Registry, get_registry, reset_registry


def _scores(n: int = 4) -> MembershipScores:
    return MembershipScores(scores=torch.linspace(0, 1, n), is_member=torch.arange(n) % 2 == 0)


def _run_noop(self: Any, target: Any, /, *, data: Any = None, context: Any = None) -> Any:
    return _scores()


def _compute_noop(self: Any, output: Any, /, **_: Any) -> Any:
    return MetricValue(name="m", value=0.5, higher_is_riskier=True)


ATTACK_OK: dict[str, Any] = {
    "name": "ok_attack", "risks": ("P1",), "Input": QueryAccess, "Output": MembershipScores, "access": "black-box",
    "run": _run_noop,
}
DEFENSE_OK: dict[str, Any] = {
    "name": "ok_defense", "risks": ("P1",), "Input": TrainedModel, "Output": QueryAccess,
    "apply": lambda self, target, /, **_: target.narrow(QueryAccess),
}
METRIC_OK: dict[str, Any] = {
    "name": "ok_metric", "risks": ("P1",), "Input": MembershipScores, "higher_is_riskier": True,
    "compute": _compute_noop,
}
DATASET_OK: dict[str, Any] = {"name": "ok_dataset", "modality": "tabular", "load": lambda self: None}
MODEL_OK: dict[str, Any] = {
    "name": "ok_model", "modalities": ("tabular",),
    "build": lambda self, *, input_shape, num_classes: torch.nn.Linear(input_shape[0], num_classes),
}
BASES: dict[str, tuple[type, dict[str, Any]]] = {
    "attack": (Attack, ATTACK_OK), "defense": (Defense, DEFENSE_OK), "metric": (Metric, METRIC_OK),
    "dataset": (Dataset, DATASET_OK), "model": (ModelFactory, MODEL_OK),
}


def declare(kind: str, *, drop: tuple[str, ...] = (), **changes: Any) -> type:
    """Create a module class of ``kind`` from a valid declaration with some attributes dropped or changed."""
    base, valid = BASES[kind]
    namespace = {k: v for k, v in {**valid, **changes}.items() if k not in drop}
    return type(f"Declared{kind.title()}", (base,), namespace)


class _RequiredParams(Params):
    eps: float


class _InvalidDefault(Params):
    eps: float = Field(default=-1.0, ge=0)


class _NotParams:
    eps = 1.0


# --------------------------------------------------------------------------- declarations


@pytest.mark.parametrize("kind", list(BASES))
def test_valid_declarations_create_classes(kind: str) -> None:
    cls = declare(kind)
    assert cls.kind == kind
    assert cls.name == BASES[kind][1]["name"]


@pytest.mark.parametrize(
    ("kind", "drop", "changes", "fragment"),
    [
        ("attack", ("name",), {}, "missing class attribute 'name'"),
        ("metric", ("name",), {}, "missing class attribute 'name'"),
        ("dataset", ("name",), {}, "missing class attribute 'name'"),
        ("model", ("name",), {}, "missing class attribute 'name'"),
        ("attack", (), {"name": "Bad-Name"}, "name 'Bad-Name' must be lowercase"),
        ("defense", (), {"name": "2fast"}, "name '2fast' must be lowercase"),
        ("attack", (), {"name": "none"}, "name 'none' is reserved"),
        ("defense", (), {"name": "none"}, "name 'none' is reserved"),
        ("attack", ("risks",), {}, "an attack must declare at least one risk id"),
        ("defense", ("risks",), {}, "a defense must declare the risk ids"),
        ("attack", (), {"risks": "P1"}, "risks must be a tuple"),
        ("metric", (), {"risks": ("p1",)}, "risk id 'p1' must start with an upper-case letter"),
        ("attack", (), {"Params": _RequiredParams}, "Params.eps has no default"),
        ("defense", (), {"Params": _InvalidDefault}, "default of Params.eps is invalid"),
        ("metric", (), {"Params": _NotParams}, "Params must be a subclass of interplay.Params"),
        ("attack", (), {"Input": int}, "Input must be an interplay artifact type"),
        ("attack", (), {"Input": MetricValue}, "Input must be a model-access type or TaskData"),
        ("attack", ("Output",), {}, "missing class attribute 'Output'"),
        ("defense", (), {"Output": AdversarialExamples}, "Output must be a model-access type or TaskData"),
        ("metric", ("Input",), {}, "missing class attribute 'Input'"),
        ("attack", (), {"access": "white-box"}, "access is 'white-box' but Input QueryAccess implies 'black-box'"),
        ("attack", (), {"Input": TrainedModel}, "access is 'black-box' but Input TrainedModel implies 'white-box'"),
        ("attack", (), {"Input": TaskData}, "implies 'data'"),
        ("attack", (), {"knowledge": "everything"}, "invalid knowledge 'everything'"),
        ("metric", ("higher_is_riskier",), {}, "missing class attribute 'higher_is_riskier'"),
        ("metric", (), {"higher_is_riskier": 1}, "higher_is_riskier"),
        ("metric", (), {"Target": TaskData}, "Target must be a model-access type"),
        ("dataset", (), {"modality": "audio"}, "modality must be 'tabular' or 'image'"),
        ("model", (), {"modalities": ()}, "modalities must be a non-empty tuple"),
        ("model", (), {"modalities": ("video",)}, "modalities must be a non-empty tuple"),
    ],
)
def test_invalid_declarations_fail_at_class_creation(
    kind: str, drop: tuple[str, ...], changes: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(PluginDeclarationError) as info:
        declare(kind, drop=drop, **changes)
    assert fragment in str(info.value)
    assert "Declared" in str(info.value)  # names the offending class


def test_abstract_intermediate_bases_are_allowed() -> None:
    class MembershipAttack(Attack):
        __abstract__ = True
        Output = MembershipScores

    class Concrete(MembershipAttack):
        name = "concrete_mi"
        risks = ("P1",)
        Input = QueryAccess
        access = "black-box"
        run = _run_noop

    assert Concrete.Output is MembershipScores
    # __abstract__ is not inherited: a concrete subclass that forgets a declaration is still rejected
    with pytest.raises(PluginDeclarationError, match="missing class attribute 'name'"):
        type("Forgetful", (MembershipAttack,), {"risks": ("P1",), "Input": QueryAccess, "access": "black-box",
                                                 "run": _run_noop})


# --------------------------------------------------------------------------- parameters


class Noisy(Attack):
    """Black-box attack returning scores drawn from the *global* torch generator."""

    name = "noisy"
    risks = ("P1",)
    Input = QueryAccess
    Output = MembershipScores
    access = "black-box"

    class Params(Params):
        n: int = Field(default=8, ge=1)
        mode: str = "fast"
        widths: tuple[int, ...] = (4, 2)

    def run(self, target: Any, /, *, data: TaskData | None = None, context: RunContext | None = None) -> Any:
        self.received = target
        return MembershipScores(scores=torch.rand(self.params.n), is_member=torch.arange(self.params.n) % 2 == 0)


def test_params_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Noisy(3)  # type: ignore[call-arg]


def test_defaults_and_changed_params() -> None:
    attack = Noisy(n=3, widths=[8])
    assert attack.get_params() == {"n": 3, "mode": "fast", "widths": (8,)}
    assert Noisy().get_params() == {"n": 8, "mode": "fast", "widths": (4, 2)}
    assert repr(Noisy()) == "Noisy()"
    assert repr(attack) == "Noisy(n=3, widths=(8,))"
    changed = attack.with_params(mode="slow")
    assert changed.get_params() == {"n": 3, "mode": "slow", "widths": (8,)}
    assert attack.get_params()["mode"] == "fast"


def test_unknown_param_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as info:
        Noisy(nn=3)
    assert info.value.path == "noisy.params.nn"
    assert "nn" in str(info.value) and "unknown" in str(info.value)


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"n": "three"}, "noisy.params.n"),
        ({"n": 0}, "noisy.params.n"),
        ({"widths": [1, "x"]}, "noisy.params.widths[1]"),
    ],
)
def test_wrong_param_is_a_config_error_with_its_path(params: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        Noisy(**params)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")


def test_params_are_immutable() -> None:
    attack = Noisy()
    with pytest.raises(Exception, match="frozen"):
        attack.params.n = 2  # type: ignore[misc]


# --------------------------------------------------------------------------- run wrappers


def test_black_box_attack_receives_query_access(tiny_trained: TrainedModel) -> None:
    attack = Noisy()
    attack.run(tiny_trained)
    assert isinstance(attack.received, QueryAccess)
    assert not isinstance(attack.received, TrainedModel)
    assert not hasattr(attack.received, "module")


def test_black_box_attack_rejects_label_only_access(tiny_trained: TrainedModel) -> None:
    with pytest.raises(ArtifactError, match="attack 'noisy' needs QueryAccess, got LabelOnlyAccess"):
        Noisy().run(tiny_trained.narrow(LabelOnlyAccess))


def test_attack_rejects_wrong_target_and_data_types(tiny_trained: TrainedModel, tabular_task: TaskData) -> None:
    with pytest.raises(ArtifactError, match="needs QueryAccess, got LabeledData"):
        Noisy().run(tabular_task.test)
    with pytest.raises(ArtifactError, match="data must be TaskData, got LabeledData"):
        Noisy().run(tiny_trained, data=tabular_task.test)


def test_wrong_output_type_is_a_plugin_error(tiny_trained: TrainedModel) -> None:
    class Liar(Attack):
        name = "liar"
        risks = ("P1",)
        Input = QueryAccess
        Output = MembershipScores
        access = "black-box"

        def run(self, target: Any, /, **_: Any) -> Any:
            return {"scores": [0.1]}

    with pytest.raises(PluginError, match="plugin 'liar': returned dict, but declares Output = MembershipScores"):
        Liar().run(tiny_trained)


def test_defense_widening_its_output_is_a_plugin_error(tiny_trained: TrainedModel) -> None:
    leaky = declare("defense", apply=lambda self, target, /, **_: target)  # returns the white-box model
    with pytest.raises(PluginError, match="returned TrainedModel, but declares Output = QueryAccess"):
        leaky().apply(tiny_trained)
    assert isinstance(declare("defense")().apply(tiny_trained), QueryAccess)


def test_run_seeds_the_global_rng_from_the_context(tiny_trained: TrainedModel) -> None:
    attack = Noisy()
    first = attack.run(tiny_trained, context=RunContext(seed=11)).scores
    torch.rand(100)  # disturbing the global generator between calls must not matter
    second = attack.run(tiny_trained, context=RunContext(seed=11)).scores
    other = attack.run(tiny_trained, context=RunContext(seed=12)).scores
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    assert torch.equal(attack.run(tiny_trained).scores, attack.run(tiny_trained).scores)  # no context: seed 0


def test_run_restores_the_global_rng(tiny_trained: TrainedModel) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    Noisy().run(tiny_trained, context=RunContext(seed=1))
    assert torch.equal(torch.rand(3), expected)


def test_metric_returning_a_non_metric_value_is_a_plugin_error() -> None:
    for bad in (0.5, [], [0.5], None):
        metric = declare("metric", compute=lambda self, output, /, _bad=bad, **_: _bad)
        with pytest.raises(PluginError, match="expected a MetricValue"):
            metric().compute(_scores())


def test_metric_accepts_a_list_and_checks_its_input(tiny_trained: TrainedModel) -> None:
    values = [MetricValue(name="a", value=0.1, higher_is_riskier=True), MetricValue(name="b", value=0.2,
                                                                                     higher_is_riskier=True)]
    metric = declare("metric", compute=lambda self, output, /, **_: values)
    assert metric().compute(_scores()) == values
    with pytest.raises(ArtifactError, match="metric 'ok_metric' needs MembershipScores, got TrainedModel"):
        metric().compute(tiny_trained)


def test_metric_target_is_narrowed(tiny_trained: TrainedModel) -> None:
    seen: list[Any] = []

    def compute(self: Any, output: Any, /, *, target: Any = None, **_: Any) -> MetricValue:
        seen.append(target)
        return MetricValue(name="m", value=0.0, higher_is_riskier=True)

    metric = declare("metric", Target=QueryAccess, compute=compute)
    metric().compute(_scores(), target=tiny_trained)
    assert isinstance(seen[0], QueryAccess) and not isinstance(seen[0], TrainedModel)
    with pytest.raises(ArtifactError, match="needs QueryAccess, got LabelOnlyAccess"):
        metric().compute(_scores(), target=tiny_trained.narrow(LabelOnlyAccess))


def test_dataset_and_model_factory_outputs_are_checked() -> None:
    with pytest.raises(PluginError, match="returned NoneType, but declares Output = TaskData"):
        declare("dataset")().load()
    with pytest.raises(PluginError, match="returned str"):
        declare("model", build=lambda self, **_: "not a module")().build(input_shape=(3,), num_classes=2)
    built = declare("model")().build(input_shape=[3], num_classes=2)
    assert isinstance(built, torch.nn.Linear)


def test_entry_point_inherited_from_abstract_base_is_guarded(tiny_trained: TrainedModel) -> None:
    class SharedRun(Attack):
        __abstract__ = True
        risks = ("P1",)
        Input = QueryAccess
        Output = MembershipScores
        access = "black-box"

        def run(self, target: Any, /, **_: Any) -> Any:
            self.received = target
            return _scores()

    class Variant(SharedRun):
        name = "variant"

    attack = Variant()
    attack.run(tiny_trained)
    assert isinstance(attack.received, QueryAccess) and not isinstance(attack.received, TrainedModel)


# --------------------------------------------------------------------------- no registry needed


@pytest.fixture
def empty_registry() -> Iterator[Registry]:
    previous = get_registry()
    registry = Registry()
    reset_registry(registry)
    yield registry
    reset_registry(previous)


def test_modules_work_without_any_registry(empty_registry: Registry, tabular_task: TaskData) -> None:
    from interplay.plugins.evasion.metrics import RobustAccuracy
    from interplay.testing.synthetic import tiny_context

    assert get_registry() is empty_registry and empty_registry.names() == []
    context = tiny_context(seed=3)
    model = context.train(tabular_task.defender_train)
    attack = Noisy(n=4)
    scores = attack.run(model, data=tabular_task, context=context)
    assert isinstance(scores, MembershipScores) and len(scores.scores) == 4
    x = tabular_task.test.x
    adversarial = AdversarialExamples(x_adv=x, y=tabular_task.test.y, predictions=model.predict(x),
                                      clean_predictions=model.predict(x), eps=0.0)
    value = RobustAccuracy().compute(adversarial)
    assert isinstance(value, MetricValue) and value.higher_is_riskier is False
    assert value.value == pytest.approx(float((model.predict(x) == tabular_task.test.y).float().mean()))
    assert empty_registry.names() == []

