"""Data artifacts: labelled tensors, tasks with named splits, and poisoned tasks."""

from __future__ import annotations

from typing import Any, Literal, Self

import torch
from pydantic import Field, model_validator

from .._seeding import derive_seed
from ._tensors import FloatTensor, LongTensor
from .base import Artifact

__all__ = ["LabeledData", "Modality", "Partition", "PoisonedData", "TaskData"]

Modality = Literal["tabular", "image"]


class LabeledData(Artifact):
    """Inputs with class labels and optional sensitive attributes.

    Attributes:
        x: Inputs, float tensor of shape ``(N, F)`` for tabular data or ``(N, C, H, W)`` for images.
        y: Class labels, int64 of shape ``(N,)`` with values in ``[0, num_classes)``.
        sensitive: Sensitive attributes by name (e.g. ``race``, ``sex``), each int64 of shape ``(N,)``.
        feature_names: Names of the ``F`` columns of tabular data.
        modality: ``"tabular"`` or ``"image"``.
        num_classes: Number of classes; inferred from ``y`` when omitted.
        class_names: Optional human-readable class names.
    """

    x: FloatTensor
    y: LongTensor
    sensitive: dict[str, LongTensor] = Field(default_factory=dict)
    feature_names: tuple[str, ...] | None = None
    modality: Modality = "tabular"
    num_classes: int = Field(default=0, ge=0)
    class_names: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        n = self.x.shape[0] if self.x.ndim else -1
        if self.x.ndim < 2:
            raise ValueError(f"x must have a batch dimension and features, got shape {tuple(self.x.shape)}")
        if self.y.ndim != 1 or self.y.shape[0] != n:
            raise ValueError(f"y must have shape ({n},) to match x, got {tuple(self.y.shape)}")
        if self.modality == "image" and self.x.ndim != 4:
            raise ValueError(f"image x must have shape (N, C, H, W), got {tuple(self.x.shape)}")
        if self.modality == "tabular" and self.x.ndim != 2:
            raise ValueError(f"tabular x must have shape (N, F), got {tuple(self.x.shape)}")
        for name, values in self.sensitive.items():
            if values.ndim != 1 or values.shape[0] != n:
                raise ValueError(f"sensitive[{name!r}] must have shape ({n},), got {tuple(values.shape)}")
        if self.feature_names is not None and self.x.ndim == 2 and len(self.feature_names) != self.x.shape[1]:
            raise ValueError(f"feature_names has {len(self.feature_names)} names but x has {self.x.shape[1]} features")
        observed = int(self.y.max()) + 1 if n > 0 else 0
        if n > 0 and int(self.y.min()) < 0:
            raise ValueError("y must be non-negative class indices")
        if self.num_classes == 0:
            object.__setattr__(self, "num_classes", observed)
        elif observed > self.num_classes:
            raise ValueError(f"y has label {observed - 1} but num_classes is {self.num_classes}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names for {self.num_classes} classes")
        return self

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, without the batch dimension."""
        return tuple(int(d) for d in self.x.shape[1:])

    def subset(self, indices: torch.Tensor | list[int]) -> LabeledData:
        """Return the rows at ``indices`` (a new artifact; this one is unchanged)."""
        index = torch.as_tensor(indices, dtype=torch.int64)
        return self.model_copy(
            update={
                "x": self.x[index],
                "y": self.y[index],
                "sensitive": {k: v[index] for k, v in self.sensitive.items()},
            }
        )

    def to(self, device: torch.device | str) -> LabeledData:
        """Return a copy whose tensors live on ``device``."""
        return self.model_copy(
            update={
                "x": self.x.to(device),
                "y": self.y.to(device),
                "sensitive": {k: v.to(device) for k, v in self.sensitive.items()},
            }
        )


class Partition(Artifact):
    """Which rows of a source split belong to the defender and which to the adversary.

    Attributes:
        defender: Row indices the defender (model owner) trains on.
        adversary: Row indices available to the adversary as auxiliary data; disjoint from ``defender``.
        split: Name of the split the indices refer to.
    """

    defender: LongTensor
    adversary: LongTensor
    split: str = "train"

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name in ("defender", "adversary"):
            if getattr(self, name).ndim != 1:
                raise ValueError(f"{name} must be a 1-D index tensor")
        if torch.isin(self.defender, self.adversary).any():
            raise ValueError("defender and adversary indices must be disjoint")
        return self


class TaskData(Artifact):
    """A learning task: named splits (at least ``train`` and ``test``) and an optional partition.

    The partition divides one split (``train`` by default) between the defender, who
    trains the target model on it, and the adversary, who may use it as auxiliary
    data. Splits must agree on input shape, modality, classes and sensitive attributes.

    Attributes:
        splits: The splits by name.
        partition: The defender/adversary division of ``splits[partition.split]``.
        name: Name of the data set, for reports.
    """

    splits: dict[str, LabeledData]
    partition: Partition | None = None
    name: str = ""

    @model_validator(mode="after")
    def _check(self) -> Self:
        for required in ("train", "test"):
            if required not in self.splits:
                raise ValueError(f"splits must contain {required!r}; got {sorted(self.splits)}")
        reference = self.splits["train"]
        for split_name, split in self.splits.items():
            if split.input_shape != reference.input_shape:
                raise ValueError(
                    f"splits[{split_name!r}] has input shape {split.input_shape}, train has {reference.input_shape}"
                )
            if split.modality != reference.modality:
                raise ValueError(f"splits[{split_name!r}] modality differs from train")
            if sorted(split.sensitive) != sorted(reference.sensitive):
                raise ValueError(f"splits[{split_name!r}] sensitive attributes differ from train")
        classes = max(split.num_classes for split in self.splits.values())
        if any(split.num_classes != classes for split in self.splits.values()):
            aligned = {k: v.model_copy(update={"num_classes": classes}) for k, v in self.splits.items()}
            object.__setattr__(self, "splits", aligned)
        if self.partition is not None:
            source = self.splits.get(self.partition.split)
            if source is None:
                raise ValueError(f"partition refers to unknown split {self.partition.split!r}")
            for name in ("defender", "adversary"):
                index = getattr(self.partition, name)
                if index.numel() and (int(index.min()) < 0 or int(index.max()) >= len(source)):
                    raise ValueError(f"partition.{name} has indices outside split of {len(source)} rows")
        return self

    @property
    def train(self) -> LabeledData:
        """The full training split."""
        return self.splits["train"]

    @property
    def test(self) -> LabeledData:
        """The held-out test split."""
        return self.splits["test"]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return self.train.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, without the batch dimension."""
        return self.train.input_shape

    @property
    def modality(self) -> Modality:
        """``"tabular"`` or ``"image"``."""
        return self.train.modality

    @property
    def defender_train(self) -> LabeledData:
        """The rows the defender trains on (the whole training split when there is no partition)."""
        if self.partition is None:
            return self.train
        return self.splits[self.partition.split].subset(self.partition.defender)

    @property
    def adversary(self) -> LabeledData:
        """The adversary's auxiliary rows.

        Raises:
            ValueError: When the task has no partition.
        """
        if self.partition is None:
            raise ValueError("this task has no defender/adversary partition; call partitioned() first")
        return self.splits[self.partition.split].subset(self.partition.adversary)

    def partitioned(self, *, defender: float = 0.5, adversary: float = 0.5, seed: int = 0) -> Self:
        """Return a copy whose ``train`` split is divided between defender and adversary.

        Args:
            defender: Fraction of the training rows the defender trains on.
            adversary: Fraction given to the adversary; ``defender + adversary`` must not exceed 1.
            seed: Seed of the random permutation.

        Returns:
            A new task with a :class:`Partition`.
        """
        if not (0.0 < defender <= 1.0 and 0.0 <= adversary < 1.0 and defender + adversary <= 1.0 + 1e-9):
            raise ValueError(
                f"need 0 < defender, 0 <= adversary and defender + adversary <= 1; got {defender} and {adversary}"
            )
        n = len(self.train)
        generator = torch.Generator().manual_seed(derive_seed(seed, "partition"))
        order = torch.randperm(n, generator=generator)
        n_def = round(defender * n)
        n_adv = min(round(adversary * n), n - n_def)
        partition = Partition(
            defender=order[:n_def].sort().values, adversary=order[n_def : n_def + n_adv].sort().values
        )
        return self.model_copy(update={"partition": partition})

    def with_split(self, name: str, data: LabeledData) -> Self:
        """Return a copy with split ``name`` added or replaced."""
        return type(self)(**{**dict(self), "splits": {**self.splits, name: data}})  # validated, unlike model_copy

    def to(self, device: torch.device | str) -> Self:
        """Return a copy whose split tensors live on ``device``."""
        return self.model_copy(update={"splits": {k: v.to(device) for k, v in self.splits.items()}})


class PoisonedData(TaskData):
    """A task whose training data an adversary has poisoned; it trains like any :class:`TaskData`.

    Attributes:
        poisoned_indices: Rows of the ``train`` split that were modified.
        target_label: The label the backdoor maps triggered inputs to (all-to-one attacks).
        triggered_test: Test inputs with the trigger applied and their true labels.
        details: Free-form description of the poisoning (trigger, fraction, ...).
    """

    poisoned_indices: LongTensor
    target_label: int | None = None
    triggered_test: LabeledData | None = None
    details: dict[str, Any] = Field(default_factory=dict)
