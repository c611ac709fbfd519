"""Typed artifacts: everything that flows between datasets, models, attacks, defenses and metrics."""

from ._tensors import BoolTensor, FloatTensor, LongTensor, Tensor, as_tensor
from .access import AccessLevel, LabelOnlyAccess, ModelAccess, QueryAccess, TrainedModel, can_narrow
from .base import Artifact, fingerprint
from .data import LabeledData, Modality, Partition, PoisonedData, TaskData
from .metric import MetricValue
from .outputs import (
    AdversarialExamples,
    AttributeGuesses,
    MembershipScores,
    OwnershipEvidence,
    PropertyGuesses,
    Reconstructions,
    SurrogateModel,
)

__all__ = [
    "AccessLevel",
    "AdversarialExamples",
    "Artifact",
    "AttributeGuesses",
    "BoolTensor",
    "FloatTensor",
    "LabelOnlyAccess",
    "LabeledData",
    "LongTensor",
    "MembershipScores",
    "MetricValue",
    "Modality",
    "ModelAccess",
    "OwnershipEvidence",
    "Partition",
    "PoisonedData",
    "PropertyGuesses",
    "QueryAccess",
    "Reconstructions",
    "SurrogateModel",
    "TaskData",
    "Tensor",
    "TrainedModel",
    "as_tensor",
    "can_narrow",
    "fingerprint",
]
