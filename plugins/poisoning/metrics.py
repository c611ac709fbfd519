"""Poisoning (S2) metrics on :class:`~interplay.artifacts.PoisonedData` and the model trained on it.

AMULET (Waheed et al., Table 4, "S2 (Poisoning)") reports the poisoned model's test accuracy
``Acc_te(M_pois)`` and the accuracy on the poisoned test set, ``Acc_pois``, for the poisoned model
and for the clean one (``M_std``). Its poisoned test set holds the triggered test inputs of every
class but the target, labelled with the target class, so ``Acc_pois`` is the backdoor's success rate.

- ``backdoor_success_rate``: ``Acc_pois(M_pois)``, the share of triggered inputs classified as the target;
- ``triggered_accuracy``: accuracy on the same inputs against their *true* labels (how much of the
  task survives the trigger);
- ``poisoned_clean_accuracy``: ``Acc_te(M_pois)``, the utility reference;
- ``clean_model_success_rate``: ``Acc_pois(M_std)``, recorded by the attack from a model trained on
  the clean rows (a reference that does not depend on the defense).

The model the first three evaluate is the one trained on the poisoned data: in a pipeline, the
baseline's or a defense's model (the runner passes it as ``target``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interplay.artifacts import LabeledData, LabelOnlyAccess, MetricValue, PoisonedData, TaskData, TrainedModel
from interplay.errors import ArtifactError
from interplay.modules import Metric

from ._trigger import success_and_accuracy

if TYPE_CHECKING:
    from interplay.context import RunContext

__all__ = ["BackdoorSuccessRate", "CleanModelSuccessRate", "PoisonedCleanAccuracy", "TriggeredAccuracy"]


def _triggered(metric: Metric, output: PoisonedData) -> tuple[LabeledData, int]:
    if output.triggered_test is None or output.target_label is None:
        raise ArtifactError(
            f"metric {metric.name!r} needs a PoisonedData with triggered_test and target_label "
            "(an all-to-one backdoor such as badnets)"
        )
    return output.triggered_test, output.target_label


def _model(metric: Metric, target: LabelOnlyAccess | None) -> LabelOnlyAccess:
    if target is None:
        raise ArtifactError(
            f"metric {metric.name!r} needs target= (the model trained on the poisoned data, at least LabelOnlyAccess)"
        )
    return target


def _example(task: TaskData, model: TrainedModel, context: RunContext) -> PoisonedData:
    """A real poisoned task for the conformance kit (the attack's own output on the tiny task)."""
    from .attacks import BadNets

    del model
    poisoned = BadNets(poison_fraction=0.2).run(task, data=task, context=context)
    assert isinstance(poisoned, PoisonedData)
    return poisoned


class _PoisoningMetric(Metric):
    __abstract__ = True
    risks = ("S2",)
    Input = PoisonedData
    Target = LabelOnlyAccess

    @classmethod
    def conformance_example(cls, task: TaskData, model: TrainedModel, context: RunContext) -> PoisonedData:
        """The conformance kit's input: ``badnets`` run on its tiny task."""
        return _example(task, model, context)

    def _value(self, value: float, details: dict[str, Any]) -> MetricValue:
        return MetricValue(
            name=self.name, value=value, higher_is_riskier=type(self).higher_is_riskier, risk="S2", details=details
        )


class BackdoorSuccessRate(_PoisoningMetric):
    """Share of triggered test inputs of other classes that the model classifies as the target (``Acc_pois``).

    ``ASR = |{x in T : f(x + trigger) = t}| / |T|`` with ``T`` the test inputs whose true class is not
    the target ``t`` (AMULET's poisoned test set, ``BadNets.poison_dataset(mode="test")``).
    """

    name = "backdoor_success_rate"
    higher_is_riskier = True

    def compute(
        self,
        output: PoisonedData,
        /,
        *,
        target: LabelOnlyAccess | None = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """Attack success rate of ``target`` on ``output.triggered_test``.

        Args:
            output: The poisoned task.
            target: The model trained on it (any access; narrowed to labels).
            data: Unused.
            context: Unused.

        Raises:
            ArtifactError: When ``target`` is missing or ``output`` has no triggered test set.
        """
        triggered, label = _triggered(self, output)
        success, _ = success_and_accuracy(_model(self, target), triggered, label)
        return self._value(success, {"n": len(triggered), "target_label": label})


class TriggeredAccuracy(_PoisoningMetric):
    """Accuracy against the true labels on the triggered test inputs (lower means a stronger backdoor)."""

    name = "triggered_accuracy"
    higher_is_riskier = False

    def compute(
        self,
        output: PoisonedData,
        /,
        *,
        target: LabelOnlyAccess | None = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """Share of ``output.triggered_test`` that ``target`` classifies as the true label.

        Args:
            output: The poisoned task.
            target: The model trained on it (any access; narrowed to labels).
            data: Unused.
            context: Unused.

        Raises:
            ArtifactError: When ``target`` is missing or ``output`` has no triggered test set.
        """
        triggered, label = _triggered(self, output)
        _, accuracy = success_and_accuracy(_model(self, target), triggered, label)
        return self._value(accuracy, {"n": len(triggered), "target_label": label})


class PoisonedCleanAccuracy(_PoisoningMetric):
    """Clean test accuracy of the model trained on the poisoned data (AMULET's ``Acc_te(M_pois)``).

    A utility reference: a backdoor is stealthy when this stays at the clean model's accuracy.
    """

    name = "poisoned_clean_accuracy"
    higher_is_riskier = False
    utility = True

    def compute(
        self,
        output: PoisonedData,
        /,
        *,
        target: LabelOnlyAccess | None = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """Share of ``output.test`` (the untouched test split) that ``target`` classifies correctly.

        Args:
            output: The poisoned task.
            target: The model trained on it (any access; narrowed to labels).
            data: Unused.
            context: Unused.

        Raises:
            ArtifactError: When ``target`` is missing.
        """
        test = output.test
        model = _model(self, target)
        value = float((model.predict(test.x).to(test.y.device) == test.y).float().mean()) if len(test) else 0.0
        return self._value(value, {"n": len(test)})


class CleanModelSuccessRate(_PoisoningMetric):
    """Backdoor success rate of a model trained on the clean data (AMULET's ``Acc_pois(M_std)``).

    Read from ``output.details["clean_model"]``, which :class:`~interplay.plugins.poisoning.attacks.BadNets`
    fills when ``reference_model`` is set (its default). The value does not depend on the defense: it is
    the reference showing that the trigger alone does not make an unpoisoned model predict the target.
    """

    name = "clean_model_success_rate"
    Target = None
    higher_is_riskier = True
    utility = True

    def compute(
        self,
        output: PoisonedData,
        /,
        *,
        target: Any = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """The clean reference model's success rate, with its triggered and clean accuracies in ``details``.

        Args:
            output: The poisoned task.
            target: Unused.
            data: Unused.
            context: Unused.

        Raises:
            ArtifactError: When the attack recorded no clean reference model.
        """
        reference = output.details.get("clean_model")
        if not isinstance(reference, dict) or "attack_success_rate" not in reference:
            raise ArtifactError(
                f"metric {self.name!r} needs details['clean_model'] from the attack "
                "(run badnets with reference_model=True)"
            )
        details = {k: v for k, v in reference.items() if k != "attack_success_rate"}
        return self._value(float(reference["attack_success_rate"]), details)
