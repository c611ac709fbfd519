"""The conformance kit: every built-in passes it, and it catches the faults it promises to catch."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
from toy_plugins import ToyBlackBoxMI, ToyDataDefense, ToyEvasion, ToyMembershipAUC, ToyPoison, ToyPostHoc

import interplay.plugins.manifest as builtin_manifest
from interplay import Attack, Defense, Metric, MetricValue
from interplay.artifacts import AdversarialExamples, MembershipScores, TaskData, TrainedModel
from interplay.errors import DataNotFoundError
from interplay.registry import get_registry
from interplay.testing import check_plugin, iter_checks, parametrize_with_checks

BUILTINS = sorted(spec.name for spec in get_registry().specs() if spec.distribution == "interplay")


def test_every_builtin_is_checked() -> None:
    assert sorted(spec.name for spec in builtin_manifest.PLUGINS) == BUILTINS


@parametrize_with_checks(BUILTINS)
def test_builtin_conforms(plugin: Any, check: Any) -> None:
    try:
        check(plugin)
    except DataNotFoundError as exc:  # census / fmnist without their files under INTERPLAY_DATA
        pytest.skip(str(exc))


def test_parametrize_ids_name_plugin_and_check() -> None:
    pairs = list(iter_checks("mlp"))
    names = [check.__name__ for _, check in pairs]
    assert names[0] == "check_declaration" and "check_model_builds" in names
    assert all(cls.name == "mlp" for cls, _ in pairs)
    mark = parametrize_with_checks(["robust_accuracy"])
    ids = mark.mark.kwargs["ids"]
    assert "robust_accuracy-check_deterministic" in ids and "robust_accuracy-check_no_input_mutation" in ids


# --------------------------------------------------------------------------- good toy plugins pass


@pytest.mark.parametrize("plugin", [ToyEvasion, ToyBlackBoxMI, ToyPoison, ToyDataDefense, ToyPostHoc,
                                    ToyMembershipAUC], ids=lambda c: c.name)
def test_well_behaved_plugins_pass(plugin: type) -> None:
    report = check_plugin(plugin)
    assert report.passed, report.format()
    assert {r.check for r in report.results} >= {"check_deterministic", "check_no_input_mutation",
                                                 "check_rejects_wrong_input", "check_runs_on_tiny_task"}


# --------------------------------------------------------------------------- faulty plugins fail


class NonDeterministic(Attack):
    """Draws its noise from the operating system, ignoring the context's seed."""

    name = "non_deterministic"
    risks = ("S1",)
    Input = TrainedModel
    Output = AdversarialExamples
    access = "white-box"

    def run(self, target: TrainedModel, /, *, data: TaskData | None = None, context: Any = None) -> Any:
        assert data is not None
        generator = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)
        x = data.test.x + 0.1 * torch.randn(data.test.x.shape, generator=generator)
        return AdversarialExamples(x_adv=x, y=data.test.y, predictions=target.predict(x),
                                   clean_predictions=target.predict(data.test.x), eps=0.1)


class MutatesTask(Defense):
    """Shifts the training inputs in place."""

    name = "mutates_task"
    risks = ("S2",)
    Input = TaskData
    Output = TaskData

    def apply(self, target: TaskData, /, *, data: TaskData | None = None, context: Any = None) -> TaskData:
        target.train.x.add_(0.5)
        return target


class MutatesModel(Defense):
    """Perturbs the target model's weights in place before exposing it."""

    name = "mutates_model"
    risks = ("S3",)
    Input = TrainedModel
    Output = TrainedModel

    def apply(self, target: TrainedModel, /, *, data: TaskData | None = None, context: Any = None) -> TrainedModel:
        with torch.no_grad():
            for parameter in target.module.parameters():
                parameter.add_(0.01)
        return target


class WrongDirection(Metric):
    """Declares that lower is riskier but reports values whose higher is riskier."""

    name = "wrong_direction_metric"
    risks = ("P1",)
    Input = MembershipScores
    higher_is_riskier = False

    def compute(self, output: MembershipScores, /, **_: Any) -> MetricValue:
        return MetricValue(name=self.name, value=float(output.scores.mean()), higher_is_riskier=True)


class WrongOutput(Attack):
    """Returns membership scores while declaring adversarial examples."""

    name = "wrong_output"
    risks = ("S1",)
    Input = TrainedModel
    Output = AdversarialExamples
    access = "white-box"

    def run(self, target: TrainedModel, /, **_: Any) -> Any:
        return MembershipScores(scores=[0.5], is_member=[True])


@pytest.mark.parametrize(
    ("plugin", "failing", "fragment"),
    [
        (NonDeterministic, {"check_deterministic"}, "the same seed gave different outputs"),
        (MutatesTask, {"check_no_input_mutation"}, "its input, the task"),
        (MutatesModel, {"check_no_input_mutation"}, "the target model"),
        (WrongDirection, {"check_runs_on_tiny_task"}, "higher_is_riskier=True, the class declares False"),
        (WrongOutput, {"check_runs_on_tiny_task", "check_deterministic", "check_no_input_mutation"},
         "declares Output = AdversarialExamples"),
    ],
    ids=lambda v: v.name if isinstance(v, type) else None,
)
def test_the_kit_catches_faulty_plugins(plugin: type, failing: set[str], fragment: str) -> None:
    report = check_plugin(plugin)
    assert report.passed is False
    assert {r.check for r in report.failures} == failing
    assert any(fragment in r.message for r in report.failures), report.format()
    text = report.format()
    assert all(f"FAIL  {name}" in text for name in failing)
    assert report.to_dict()["passed"] is False
