"""Watermark metrics (SD4 against S3): trigger-set accuracy of the defended and the extracted model.

Each metric consumes the :class:`~interplay.artifacts.SurrogateModel` of a model-extraction
attack and, as ``target=``, the model it was extracted from (any access; narrowed to labels).
The watermark key is regenerated from the target's ``info`` (``watermark_seed``,
``watermark_size``, written by the ``watermarking`` defense) with the same function the
defense used (:func:`~interplay.plugins.ownership._triggers.trigger_set`).

- ``watermark_accuracy``: the defended model's accuracy on its trigger set (AMULET's
  ``WatermarkNN.verify`` on the owner's model; what a verifier sees on an identical copy);
- ``surrogate_watermark_accuracy``: the surrogate's accuracy on the same trigger set;
- ``watermark_verified``: 1 when that accuracy reaches ``threshold`` (AMULET: 90%), else 0.

A target without watermark facts in ``info`` (the undefended baseline, or any other defense) is
measured on the trigger set the ``watermarking`` defense would draw with its defaults in the
same run (seed derived from the run's seed, 100 triggers): the model never saw it, so its
accuracy sits near chance (``1 / num_classes``), and the row says ``watermarked: false``.

For S3, a higher watermark accuracy means the owner can prove ownership: every value here has
``higher_is_riskier = False``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import Field

from interplay.artifacts import LabelOnlyAccess, MetricValue, ModelAccess, SurrogateModel, TaskData
from interplay.context import RunContext
from interplay.errors import ArtifactError
from interplay.modules import Metric, Params

from ._triggers import DEFAULT_TRIGGER_SIZE, INFO_SEED, INFO_SIZE, default_trigger_seed, trigger_set

__all__ = ["DEFAULT_THRESHOLD", "SurrogateWatermarkAccuracy", "WatermarkAccuracy", "WatermarkVerified", "binomial_tail"]

DEFAULT_THRESHOLD = 0.9
"""AMULET's ``WatermarkNN.verify``: the watermark is present when trigger accuracy exceeds 90%."""


@dataclass(frozen=True)
class _Key:
    """The trigger set a target is verified against, and whether the target was watermarked."""

    x: torch.Tensor
    y: torch.Tensor
    seed: int
    watermarked: bool

    def details(self) -> dict[str, Any]:
        return {"trigger_seed": self.seed, "trigger_size": len(self.y), "watermarked": self.watermarked}


def _info_int(target: ModelAccess, key: str, minimum: int) -> int:
    value = target.info.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ArtifactError(f"target.info[{key!r}] must be an integer >= {minimum}, got {value!r}")
    return value


def _key(metric: Metric, target: LabelOnlyAccess | None, context: RunContext | None) -> _Key:
    if target is None:
        raise ArtifactError(
            f"metric {metric.name!r} needs target= (the model the surrogate was extracted from, "
            "at least LabelOnlyAccess; its info names the watermark's trigger set)"
        )
    if INFO_SEED in target.info:
        seed, size, watermarked = _info_int(target, INFO_SEED, 0), _info_int(target, INFO_SIZE, 1), True
    else:
        seed = default_trigger_seed(context if context is not None else RunContext())
        size, watermarked = DEFAULT_TRIGGER_SIZE, False
    x, y = trigger_set(seed, size, target.input_shape, target.num_classes)
    return _Key(x=x, y=y, seed=seed, watermarked=watermarked)


def _n_correct(model: ModelAccess, key: _Key) -> int:
    return int((model.predict(key.x).to(key.y.device) == key.y).sum())


def _check_surrogate(metric: Metric, output: SurrogateModel, target: LabelOnlyAccess) -> None:
    model = output.model
    if model.input_shape != target.input_shape or model.num_classes != target.num_classes:
        raise ArtifactError(
            f"metric {metric.name!r}: the surrogate (input {model.input_shape}, {model.num_classes} classes) does "
            f"not match the target (input {target.input_shape}, {target.num_classes} classes)"
        )


def binomial_tail(k: int, n: int, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)``: how likely a model guessing at chance matches ``k`` triggers.

    Args:
        k: Triggers matched.
        n: Trigger set size.
        p: Chance of matching one random label (``1 / num_classes``).

    Returns:
        The upper-tail probability, in ``[0, 1]``.
    """
    if k <= 0:
        return 1.0
    tail = sum(math.comb(n, i) * p**i * (1.0 - p) ** (n - i) for i in range(k, n + 1))
    return min(1.0, max(0.0, tail))


def _value(metric: Metric, value: float, key: _Key, n_correct: int, num_classes: int, **extra: Any) -> MetricValue:
    n = len(key.y)
    details = {
        **key.details(),
        "n_correct": n_correct,
        "chance": 1.0 / num_classes,
        "chance_p_value": binomial_tail(n_correct, n, 1.0 / num_classes),
        **extra,
    }
    return MetricValue(name=metric.name, value=value, higher_is_riskier=False, risk="S3", details=details)


class WatermarkAccuracy(Metric):
    """Trigger-set accuracy of the defended model: does the owner's watermark show on the model itself?

    Adi et al.'s verification on the marked model (and on any identical copy of it): the share of
    trigger inputs the target classifies with their random labels. The target may be narrowed to
    labels; its ``info`` names the trigger set (see the module docstring for a target without one).
    """

    name = "watermark_accuracy"
    risks = ("S3",)
    Input = SurrogateModel
    Target = LabelOnlyAccess
    higher_is_riskier = False

    def compute(
        self,
        output: SurrogateModel,
        /,
        *,
        target: LabelOnlyAccess | None = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """Share of the target's trigger set that the target labels with the trigger labels.

        Args:
            output: The extraction attack's surrogate (not used beyond attaching the metric to it).
            target: The model the surrogate was extracted from (any access; narrowed to labels).
            data: Unused.
            context: Gives the run's seed when the target carries no watermark facts.

        Raises:
            ArtifactError: When ``target`` is missing or its watermark facts are malformed.
        """
        key = _key(self, target, context)
        assert target is not None
        n_correct = _n_correct(target, key)
        return _value(self, n_correct / len(key.y), key, n_correct, target.num_classes)


class SurrogateWatermarkAccuracy(Metric):
    """Trigger-set accuracy of the surrogate extracted from the defended model: did the watermark survive theft?

    The share of the target's trigger inputs that the surrogate classifies with their random
    labels. Extraction trains the surrogate only on the adversary's own inputs, so it inherits the
    backdoor only as far as it generalises from those queries.
    """

    name = "surrogate_watermark_accuracy"
    risks = ("S3",)
    Input = SurrogateModel
    Target = LabelOnlyAccess
    higher_is_riskier = False

    def compute(
        self,
        output: SurrogateModel,
        /,
        *,
        target: LabelOnlyAccess | None = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """Share of the target's trigger set that the surrogate labels with the trigger labels.

        Args:
            output: The extraction attack's surrogate.
            target: The model it was extracted from (any access; only its ``info`` and shape are read).
            data: Unused.
            context: Gives the run's seed when the target carries no watermark facts.

        Raises:
            ArtifactError: When ``target`` is missing, its watermark facts are malformed, or the
                surrogate's input shape or class count differs from the target's.
        """
        key = _key(self, target, context)
        assert target is not None
        _check_surrogate(self, output, target)
        n_correct = _n_correct(output.model, key)
        return _value(self, n_correct / len(key.y), key, n_correct, target.num_classes, queries=output.queries)


class WatermarkVerified(Metric):
    """Ownership verdict on the surrogate: 1 when its trigger-set accuracy reaches ``threshold``, else 0.

    Adi et al.'s ``Verify``: the suspect model is claimed as the owner's when it returns the
    trigger labels on (nearly) the whole trigger set; AMULET's ``WatermarkNN.verify`` declares
    the watermark present above 90% trigger accuracy. Averaged over seeds the value is the rate
    at which extraction leaves a verifiable watermark.
    """

    name = "watermark_verified"
    risks = ("S3",)
    Input = SurrogateModel
    Target = LabelOnlyAccess
    higher_is_riskier = False

    class Params(Params):
        """Hyper-parameters of :class:`WatermarkVerified`.

        Attributes:
            threshold: Trigger accuracy at or above which the surrogate is judged derived from the
                owner's model (AMULET: 0.9).
        """

        threshold: float = Field(default=DEFAULT_THRESHOLD, ge=0, le=1)

    params: WatermarkVerified.Params

    def compute(
        self,
        output: SurrogateModel,
        /,
        *,
        target: LabelOnlyAccess | None = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """1.0 when the surrogate's trigger-set accuracy is at least ``threshold``, else 0.0.

        Args:
            output: The extraction attack's surrogate (the suspect model).
            target: The model it was extracted from (any access; only its ``info`` and shape are read).
            data: Unused.
            context: Gives the run's seed when the target carries no watermark facts.

        Raises:
            ArtifactError: When ``target`` is missing, its watermark facts are malformed, or the
                surrogate's input shape or class count differs from the target's.
        """
        key = _key(self, target, context)
        assert target is not None
        _check_surrogate(self, output, target)
        n_correct = _n_correct(output.model, key)
        accuracy = n_correct / len(key.y)
        verified = accuracy >= self.params.threshold
        return _value(
            self,
            1.0 if verified else 0.0,
            key,
            n_correct,
            target.num_classes,
            accuracy=accuracy,
            threshold=self.params.threshold,
            queries=output.queries,
        )
