"""Shared pieces of the built-in dataset plugins: common parameters and array-to-task assembly."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from interplay import Params
from interplay.artifacts import LabeledData, Modality, TaskData

__all__ = ["SubsetParams", "build_task"]


class SubsetParams(Params):
    """Parameters every built-in dataset accepts: an optional random subset of each split.

    Attributes:
        train_size: Keep this many training rows (a seeded random subset); all when None.
        test_size: Keep this many test rows; all when None.
        subset_seed: Seed of the subset selection.
    """

    train_size: int | None = Field(default=None, ge=1)
    test_size: int | None = Field(default=None, ge=1)
    subset_seed: int = 0


def _subset(
    x: np.ndarray, y: np.ndarray, s: dict[str, np.ndarray], size: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    if size is None or size >= len(y):
        return x, y, s
    index = np.sort(np.random.default_rng(seed).choice(len(y), size=size, replace=False))
    return x[index], y[index], {k: v[index] for k, v in s.items()}


def build_task(
    name: str,
    arrays: dict[str, Any],
    *,
    modality: Modality,
    params: SubsetParams,
    feature_names: list[str] | None = None,
    class_names: list[str] | None = None,
) -> TaskData:
    """Assemble a :class:`TaskData` from ``x_train``/``y_train``/``x_test``/``y_test`` (and ``s_*``) arrays."""
    splits = {}
    for offset, split in enumerate(("train", "test")):
        size = params.train_size if split == "train" else params.test_size
        x, y, s = _subset(
            arrays[f"x_{split}"], arrays[f"y_{split}"], arrays.get(f"s_{split}", {}), size, params.subset_seed + offset
        )
        splits[split] = LabeledData(
            x=x.astype(np.float32, copy=False),
            y=y.astype(np.int64, copy=False),
            sensitive=s,
            feature_names=tuple(feature_names) if feature_names is not None and modality == "tabular" else None,
            modality=modality,
            class_names=tuple(class_names) if class_names else None,
            num_classes=len(class_names) if class_names else 0,
        )
    return TaskData(splits=splits, name=name)
