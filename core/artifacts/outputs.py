"""What attacks produce: one artifact family per risk."""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, model_validator

from ._tensors import BoolTensor, FloatTensor, LongTensor
from .access import TrainedModel
from .base import Artifact

__all__ = [
    "AdversarialExamples",
    "AttributeGuesses",
    "MembershipScores",
    "OwnershipEvidence",
    "PropertyGuesses",
    "Reconstructions",
    "SurrogateModel",
]


def _same_length(owner: str, **tensors: Any) -> None:
    lengths = {name: int(t.shape[0]) for name, t in tensors.items() if t is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{owner}: fields must have the same length, got {lengths}")


class AdversarialExamples(Artifact):
    """Evasion (S1): perturbed inputs and what the target predicted on them.

    Attributes:
        x_adv: The adversarial inputs, same shape as the clean inputs.
        y: True labels of the clean inputs.
        predictions: Target's labels on ``x_adv``.
        clean_predictions: Target's labels on the clean inputs.
        norm: Threat-model norm (``"linf"`` or ``"l2"``).
        eps: Perturbation budget.
    """

    x_adv: FloatTensor
    y: LongTensor
    predictions: LongTensor
    clean_predictions: LongTensor
    norm: str = "linf"
    eps: float = Field(ge=0)

    @model_validator(mode="after")
    def _check(self) -> Self:
        _same_length(
            "AdversarialExamples",
            x_adv=self.x_adv,
            y=self.y,
            predictions=self.predictions,
            clean_predictions=self.clean_predictions,
        )
        return self


class SurrogateModel(Artifact):
    """Model extraction (S3): the adversary's stolen copy of the target.

    Attributes:
        model: The surrogate, white-box to the adversary.
        queries: Number of queries spent on the target.
    """

    model: TrainedModel
    queries: int = Field(default=0, ge=0)


class MembershipScores(Artifact):
    """Membership inference (P1): a score per candidate (higher = more likely a member).

    Attributes:
        scores: One finite score per candidate record.
        is_member: Ground truth, disclosed so metrics can be computed.
    """

    scores: FloatTensor
    is_member: BoolTensor

    @model_validator(mode="after")
    def _check(self) -> Self:
        _same_length("MembershipScores", scores=self.scores, is_member=self.is_member)
        if self.scores.ndim != 1:
            raise ValueError("scores must be 1-D")
        return self


class AttributeGuesses(Artifact):
    """Attribute inference (P2): per sensitive attribute, the probability that it is 1.

    Attributes:
        scores: By attribute name, a probability per record.
        truth: By attribute name, the true binary value per record.
        threshold: By attribute name, the decision threshold the attack chose.
    """

    scores: dict[str, FloatTensor]
    truth: dict[str, LongTensor]
    threshold: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if sorted(self.scores) != sorted(self.truth):
            raise ValueError("scores and truth must name the same attributes")
        for name in self.scores:
            _same_length(f"AttributeGuesses[{name!r}]", scores=self.scores[name], truth=self.truth[name])
        return self


class Reconstructions(Artifact):
    """Data reconstruction (P3): one reconstructed input per class and its reference.

    Attributes:
        x_rec: Reconstructions, shape ``(K, ...)``.
        reference: The reference each is compared with (e.g. the class's mean training input).
        classes: The class of each reconstruction.
    """

    x_rec: FloatTensor
    reference: FloatTensor
    classes: LongTensor

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.x_rec.shape != self.reference.shape:
            raise ValueError(f"x_rec {tuple(self.x_rec.shape)} and reference {tuple(self.reference.shape)} differ")
        _same_length("Reconstructions", x_rec=self.x_rec, classes=self.classes)
        return self


class PropertyGuesses(Artifact):
    """Distribution inference (P4): which of two property ratios each trial's model was trained on.

    Attributes:
        predicted: Predicted ratio index (0 or 1) per trial.
        truth: True ratio index per trial.
        ratios: The two candidate ratios.
    """

    predicted: LongTensor
    truth: LongTensor
    ratios: tuple[float, float]

    @model_validator(mode="after")
    def _check(self) -> Self:
        _same_length("PropertyGuesses", predicted=self.predicted, truth=self.truth)
        return self


class OwnershipEvidence(Artifact):
    """Ownership verification (SD3/SD4 against S3): the verdict on one or more suspect models.

    Attributes:
        verdicts: By suspect name, whether it was judged derived from the owner's model or data.
        p_values: By suspect name, the hypothesis test's p-value, where the method gives one.
        statistics: Any further per-suspect statistic (e.g. watermark accuracy).
    """

    verdicts: dict[str, bool]
    p_values: dict[str, float] = Field(default_factory=dict)
    statistics: dict[str, float] = Field(default_factory=dict)
