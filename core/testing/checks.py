"""The conformance checks: what every attack, defense, metric, dataset and model factory must satisfy.

Each check takes a module class and raises ``AssertionError`` with an explanation when
the class falls short. :func:`checks_for` lists the checks that apply to a class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..artifacts import Artifact, MetricValue, TaskData, TrainedModel, fingerprint
from ..context import RunContext
from ..errors import ArtifactError, ConfigError
from ..modules import Attack, Dataset, Defense, Metric, ModelFactory, Module, as_metric_list
from ..registry import get_registry
from .synthetic import example_artifact, synthetic_task, tiny_context, tiny_model

__all__ = ["Check", "checks_for"]

Check = Callable[[type[Module]], None]


def _instance(cls: type[Module]) -> Module:
    return cls(**dict(cls.conformance_params))


def check_declaration(cls: type[Module]) -> None:
    """Class attributes are present and valid, and its risk ids are declared by some distribution."""
    cls._check_declaration()
    known = get_registry().risks
    unknown = [r for r in cls.risks if r not in known]
    assert not unknown, f"risk ids {unknown} are not declared by any installed distribution (interplay_risks hook)"


def check_params_defaults(cls: type[Module]) -> None:
    """``Params()`` validates with its defaults, has a JSON schema, and the class builds with no arguments."""
    params = cls.Params()
    cls.Params.model_json_schema()
    module = cls()
    assert module.get_params() == params.model_dump(), "constructing with no arguments must use the defaults"


def check_params_rejects_unknown(cls: type[Module]) -> None:
    """An unknown parameter raises ConfigError naming it, and positional arguments are refused."""
    try:
        cls(not_a_parameter=1)
    except ConfigError as exc:
        assert "not_a_parameter" in str(exc), f"error does not name the unknown parameter: {exc}"
    else:
        raise AssertionError("an unknown parameter was accepted")
    try:
        cls(1)  # type: ignore[call-arg]
    except TypeError:
        pass
    else:
        raise AssertionError("hyper-parameters must be keyword-only, but a positional argument was accepted")


def check_conformance_params(cls: type[Module]) -> None:
    """``conformance_params`` names only real parameters with valid values."""
    _instance(cls)


def check_manifest(cls: type[Module]) -> None:
    """When the class is registered, its manifest entry agrees with its class attributes."""
    registry = get_registry()
    if cls.name not in registry.names():
        return
    spec = registry.get(cls.name)
    loaded = registry.load(cls.name)
    assert loaded is cls, f"manifest entry {cls.name!r} points to {spec.target}, not to this class"
    problems = spec.mismatches(cls)
    assert not problems, "manifest disagrees with the class: " + "; ".join(problems)


def _modality(cls: type[Module]) -> str:
    modalities = getattr(cls, "modalities", None) or ("tabular", "image")
    return "tabular" if "tabular" in modalities else modalities[0]


def _setup(cls: type[Module]) -> tuple[TaskData, TrainedModel, RunContext]:
    task = synthetic_task(_modality(cls))  # type: ignore[arg-type]
    context = tiny_context()
    return task, tiny_model(task, context), context


def _target_for(cls: type[Module], task: TaskData, model: TrainedModel, context: RunContext) -> Artifact:
    input_type: type[Artifact] = cls.Input  # type: ignore[attr-defined]
    provider = getattr(cls, "conformance_example", None)
    if provider is not None:
        value: Artifact = provider(task, model, context)
        return value
    return example_artifact(input_type, task, model, context)


def _call(
    cls: type[Module], module: Module, target: Artifact, task: TaskData, model: TrainedModel, context: RunContext
) -> Any:
    if isinstance(module, Attack):
        return module.run(target, data=task, context=context)
    if isinstance(module, Defense):
        return module.apply(target, data=task, context=context)
    assert isinstance(module, Metric)
    extra = {"target": model} if cls.Target is not None else {}  # type: ignore[attr-defined]
    return module.compute(target, data=task, context=context, **extra)


def check_runs_on_tiny_task(cls: type[Module]) -> None:
    """On a tiny synthetic task the module returns its declared output type."""
    task, model, context = _setup(cls)
    module = _instance(cls)
    result = _call(cls, module, _target_for(cls, task, model, context), task, model, context)
    if isinstance(module, Metric):
        for value in as_metric_list(result, plugin=cls.name):
            assert value.higher_is_riskier == cls.higher_is_riskier, (  # type: ignore[attr-defined]
                f"MetricValue {value.name!r} has higher_is_riskier={value.higher_is_riskier}, the class declares "
                f"{cls.higher_is_riskier}"  # type: ignore[attr-defined]
            )
    else:
        output = cls.Output  # type: ignore[attr-defined]
        assert isinstance(result, output), f"returned {type(result).__name__}, declares {output.__name__}"


def check_deterministic(cls: type[Module]) -> None:
    """Two runs with the same seed give identical outputs."""
    digests = []
    for _ in range(2):
        task, model, context = _setup(cls)
        result = _call(cls, _instance(cls), _target_for(cls, task, model, context), task, model, context)
        digests.append(fingerprint(as_metric_list(result) if isinstance(result, (MetricValue, list)) else result))
    assert digests[0] == digests[1], "the same seed gave different outputs"


def check_no_input_mutation(cls: type[Module]) -> None:
    """The module leaves its inputs (target, task, model) unchanged."""
    task, model, context = _setup(cls)
    target = _target_for(cls, task, model, context)

    def state() -> list[str]:
        grads = [p.grad for p in model.module.parameters()]
        return [
            fingerprint(target),
            fingerprint(task),
            fingerprint(model.module),
            fingerprint(grads),
            str(model.module.training),
        ]

    before = state()
    _call(cls, _instance(cls), target, task, model, context)
    after = state()
    names = [
        "its input",
        "the task",
        "the target model's weights",
        "the target model's gradients",
        "the target model's train/eval mode",
    ]
    changed = [name for name, a, b in zip(names, before, after, strict=True) if a != b]
    assert not changed, f"the module modified {', '.join(changed)}"


def check_rejects_wrong_input(cls: type[Module]) -> None:
    """A wrong input type gets an ArtifactError that names what was expected."""
    task, model, context = _setup(cls)
    module = _instance(cls)
    try:
        _call(cls, module, task.test, task, model, context)  # type: ignore[arg-type]
    except ArtifactError as exc:
        expected = cls.Input.__name__  # type: ignore[attr-defined]
        assert expected in str(exc), f"the error does not name the expected type {expected}: {exc}"
    else:
        raise AssertionError("a LabeledData was accepted where the module declares another input type")


def check_dataset_loads(cls: type[Module]) -> None:
    """``load()`` returns a TaskData with non-empty train and test splits of the declared modality, twice alike."""
    dataset = _instance(cls)
    assert isinstance(dataset, Dataset)
    first = dataset.load()
    assert len(first.train) > 0 and len(first.test) > 0, "empty train or test split"
    assert first.modality == cls.modality, f"loaded {first.modality} data, declares {cls.modality}"  # type: ignore[attr-defined]
    assert fingerprint(first) == fingerprint(dataset.load()), "two loads gave different data"


def check_model_builds(cls: type[Module]) -> None:
    """Built modules map each supported modality to logits, expose ``embed``, and initialise deterministically."""
    from .._seeding import seeded

    factory = _instance(cls)
    assert isinstance(factory, ModelFactory)
    for modality in cls.modalities:  # type: ignore[attr-defined]
        shape = (10,) if modality == "tabular" else (1, 8, 8)
        x = torch.rand(4, *shape)
        with seeded(0):
            module = factory.build(input_shape=shape, num_classes=3)
        with seeded(0):
            again = factory.build(input_shape=shape, num_classes=3)
        assert fingerprint(module) == fingerprint(again), "the same seed gave different initial weights"
        module.eval()
        with torch.no_grad():
            logits = module(x)
            assert tuple(logits.shape) == (4, 3), (
                f"{modality}: logits have shape {tuple(logits.shape)}, expected (4, 3)"
            )
            embed = getattr(module, "embed", None)
            assert callable(embed), f"{modality}: the built module has no embed() method"
            features = embed(x)
            assert features.ndim == 2 and features.shape[0] == 4, f"{modality}: embed() gave {tuple(features.shape)}"


_COMMON: list[Check] = [
    check_declaration,
    check_params_defaults,
    check_params_rejects_unknown,
    check_conformance_params,
    check_manifest,
]
_BEHAVIOUR: list[Check] = [
    check_runs_on_tiny_task,
    check_deterministic,
    check_no_input_mutation,
    check_rejects_wrong_input,
]


def checks_for(cls: type[Module]) -> Iterator[Check]:
    """The checks that apply to ``cls``, in order."""
    yield from _COMMON
    if issubclass(cls, (Attack, Defense, Metric)):
        yield from _BEHAVIOUR
    elif issubclass(cls, Dataset):
        yield check_dataset_loads
    elif issubclass(cls, ModelFactory):
        yield check_model_builds
