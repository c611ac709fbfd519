"""Small plugins used by the tests: one per shape the resolver, the CLI and the kit must handle.

They are real module classes (declarations checked at class creation) with cheap
implementations. :class:`ToyManifest` declares them through the ``interplay_plugins``
hook exactly like a third-party distribution's manifest would; :func:`toy_registry`
builds a fresh :class:`~interplay.registry.Registry` holding the built-ins and these.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

import interplay.plugins.manifest as builtin_manifest
from interplay import Attack, Defense, Metric, MetricValue, Params
from interplay.artifacts import (
    AdversarialExamples,
    LabelOnlyAccess,
    MembershipScores,
    PoisonedData,
    QueryAccess,
    Reconstructions,
    TaskData,
    TrainedModel,
)
from interplay.registry import PluginSpec, Registry, hookimpl


class ToyEvasion(Attack):
    """White-box evasion: adds bounded noise to the test split."""

    name = "toy_evasion"
    risks = ("S1",)
    Input = TrainedModel
    Output = AdversarialExamples
    access = "white-box"

    class Params(Params):
        eps: float = Field(default=0.1, ge=0)

    def run(self, target: TrainedModel, /, *, data: TaskData | None = None, context: Any = None) -> AdversarialExamples:
        assert data is not None
        x = data.test.x
        x_adv = x + self.params.eps * torch.sign(torch.randn(x.shape))
        return AdversarialExamples(
            x_adv=x_adv, y=data.test.y, predictions=target.predict(x_adv), clean_predictions=target.predict(x),
            eps=self.params.eps,
        )


class ToyBlackBoxMI(Attack):
    """Black-box membership inference: the top posterior is the score."""

    name = "toy_blackbox_mi"
    risks = ("P1",)
    Input = QueryAccess
    Output = MembershipScores
    access = "black-box"
    knowledge = "shadow"

    def run(self, target: QueryAccess, /, *, data: TaskData | None = None, context: Any = None) -> MembershipScores:
        assert data is not None
        x = torch.cat([data.train.x, data.test.x])
        member = torch.cat([torch.ones(len(data.train)), torch.zeros(len(data.test))])
        return MembershipScores(scores=target.query(x).max(dim=1).values, is_member=member)


class ToyPoison(Attack):
    """Data poisoning: relabels the first rows of the training split."""

    name = "toy_poison"
    risks = ("S2",)
    Input = TaskData
    Output = PoisonedData
    access = "data"

    def run(self, target: TaskData, /, *, data: TaskData | None = None, context: Any = None) -> PoisonedData:
        train = target.train
        y = train.y.clone()
        y[:4] = 0
        splits = {**target.splits, "train": train.model_copy(update={"y": y})}
        return PoisonedData(splits=splits, partition=target.partition, name=target.name,
                            poisoned_indices=torch.arange(4), target_label=0, triggered_test=target.test)


class ToyInversion(Attack):
    """White-box reconstruction whose output no metric in the tests consumes."""

    name = "toy_inversion"
    risks = ("P3",)
    Input = TrainedModel
    Output = Reconstructions
    access = "white-box"

    def run(self, target: TrainedModel, /, *, data: TaskData | None = None, context: Any = None) -> Reconstructions:
        assert data is not None
        classes = torch.arange(data.num_classes)
        reference = torch.stack([data.test.x[data.test.y == c].mean(0) for c in classes])
        return Reconstructions(x_rec=reference.clone(), reference=reference, classes=classes)


class ToyTrainDefense(Defense):
    """A training defense against membership inference (a stand-in for DP-SGD)."""

    name = "toy_train_defense"
    risks = ("P1",)
    Input = TaskData
    Output = TrainedModel

    def apply(self, target: TaskData, /, *, data: TaskData | None = None, context: Any = None) -> TrainedModel:
        assert context is not None
        trained: TrainedModel = context.train(target.defender_train)
        return trained


class ToyAdvTraining(Defense):
    """A training defense against evasion (a stand-in for adversarial training)."""

    name = "toy_adv_training"
    risks = ("S1",)
    Input = TaskData
    Output = TrainedModel

    def apply(self, target: TaskData, /, *, data: TaskData | None = None, context: Any = None) -> TrainedModel:
        assert context is not None
        trained: TrainedModel = context.train(target.defender_train)
        return trained


class ToyDataDefense(Defense):
    """A data defense against poisoning (a stand-in for outlier removal)."""

    name = "toy_data_defense"
    risks = ("S2",)
    Input = TaskData
    Output = TaskData

    def apply(self, target: TaskData, /, *, data: TaskData | None = None, context: Any = None) -> TaskData:
        return target


class ToyPostHoc(Defense):
    """A post-hoc defense exposing only perturbed posteriors (a stand-in for prediction poisoning)."""

    name = "toy_posthoc"
    risks = ("S3",)
    Input = TrainedModel
    Output = QueryAccess

    def apply(self, target: TrainedModel, /, *, data: TaskData | None = None, context: Any = None) -> QueryAccess:
        return target.narrow(QueryAccess)


class ToyMembershipAUC(Metric):
    """Share of members scored above the median (higher: more membership leakage)."""

    name = "toy_mi_metric"
    risks = ("P1",)
    Input = MembershipScores
    higher_is_riskier = True

    def compute(self, output: MembershipScores, /, **_: Any) -> MetricValue:
        above = output.scores > output.scores.median()
        value = float((above == output.is_member).float().mean())
        return MetricValue(name=self.name, value=value, higher_is_riskier=True, risk="P1")


class ToyPoisonSuccess(Metric):
    """Accuracy of a model trained on poisoned data on the triggered test data."""

    name = "toy_poison_metric"
    risks = ("S2",)
    Input = PoisonedData
    Target = TrainedModel
    higher_is_riskier = True

    def compute(self, output: PoisonedData, /, *, target: Any = None, **_: Any) -> MetricValue:
        assert output.triggered_test is not None and target is not None
        hits = target.predict(output.triggered_test.x) == (output.target_label or 0)
        return MetricValue(name=self.name, value=float(hits.float().mean()), higher_is_riskier=True, risk="S2")


class ToyLabelRate(Metric):
    """A measurement on the model itself: the share of test inputs labelled 0 (a fairness stand-in)."""

    name = "toy_label_rate"
    risks = ("F",)
    Input = LabelOnlyAccess
    higher_is_riskier = True

    def compute(self, output: LabelOnlyAccess, /, *, data: TaskData | None = None, **_: Any) -> MetricValue:
        assert data is not None
        value = float((output.predict(data.test.x) == 0).float().mean())
        return MetricValue(name=self.name, value=value, higher_is_riskier=True, risk="F")


TOYS: tuple[type, ...] = (
    ToyEvasion, ToyBlackBoxMI, ToyPoison, ToyInversion,
    ToyTrainDefense, ToyAdvTraining, ToyDataDefense, ToyPostHoc,
    ToyMembershipAUC, ToyPoisonSuccess, ToyLabelRate,
)


class ToyManifest:
    """A manifest object with ``@hookimpl`` methods, as ``Registry.add_manifest`` accepts."""

    def __init__(self, classes: tuple[type, ...] = TOYS) -> None:
        self.classes = classes

    @hookimpl
    def interplay_plugins(self) -> list[PluginSpec]:
        return [PluginSpec.from_class(cls) for cls in self.classes]


def toy_registry(*extra: type, with_toys: bool = True) -> Registry:
    """A fresh registry: the built-in manifest, the toy manifest, and ``extra`` classes registered directly."""
    registry = Registry()
    registry.add_manifest(builtin_manifest, distribution="interplay", entry_point="builtins")
    if with_toys:
        registry.add_manifest(ToyManifest(), distribution="interplay-tests", entry_point="toys")
    registry.check_risks()
    for cls in extra:
        registry.register(cls, distribution="interplay-tests")
    return registry
