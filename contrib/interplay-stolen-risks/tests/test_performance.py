"""Tests of ``target_performance``, the defended target's own test accuracy and minority-class F1.

(1) the conformance kit; (2) the values against scikit-learn on hand-made answers; (3) the
measurement on every defense row of a pipeline, as a utility reference (no susceptibility verdict).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

import interplay
from interplay.artifacts import LabeledData, QueryAccess, TaskData
from interplay.errors import ArtifactError
from interplay.testing import parametrize_with_checks


@parametrize_with_checks(["target_performance"])
def test_conformance(plugin: Any, check: Callable[[Any], None]) -> None:
    check(plugin)


def test_values_are_sklearns_accuracy_and_minority_f1() -> None:
    y = [1, 0, 1, 1, 0, 1, 0, 1]  # minority class 0
    answers = [[0.2, 0.8], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.4, 0.6], [0.1, 0.9], [0.55, 0.45], [0.7, 0.3]]
    x = torch.arange(len(y), dtype=torch.float32)[:, None]
    test = LabeledData(x=x, y=torch.tensor(y), num_classes=2)
    task = TaskData(splits={"train": test, "test": test}, name="hand-made")
    table = torch.tensor(answers)
    target = QueryAccess.from_function(lambda q: table[q[:, 0].long()], num_classes=2, input_shape=(1,))
    values = {v.name: v for v in interplay.get_registry().create("target_performance").compute(target, data=task)}
    predicted = table.argmax(dim=1).numpy()
    assert values["target_accuracy"].value == pytest.approx(accuracy_score(y, predicted))
    assert values["target_f1_minority"].value == pytest.approx(f1_score(y, predicted, pos_label=0))
    assert values["target_f1_minority"].details["positive_class"] == 0
    assert values["target_accuracy"].value != values["target_f1_minority"].value  # 5/8 against 2/3
    with pytest.raises(ArtifactError, match="target_performance"):
        interplay.get_registry().create("target_performance").compute(target, data=None)


def test_measured_on_every_row_as_a_utility_reference(tmp_path: Path) -> None:
    document = {
        "name": "target-performance",
        "scenario": {
            "dataset": {"name": "digits"},
            "model": {"name": "mlp", "params": {"hidden_sizes": [32]}},
            "training": {"epochs": 20, "batch_size": 64, "lr": 0.003},
            "seeds": [0],
        },
        "defenses": ["lipschitz_t"],
        "attacks": [],
        "metrics": ["target_performance"],
    }
    pipeline = interplay.Pipeline.from_dict(document)
    cells = {(c.defense, c.attack, c.metric) for c in interplay.resolve(pipeline).cells}
    assert cells == {("none", "none", "target_performance"), ("lipschitz_t", "none", "target_performance")}
    summary = interplay.run(pipeline, out=tmp_path / "run", progress=False)
    assert summary.failed == 0
    accuracy = {row.defense: row.value for row in summary.rows if row.value_name == "target_accuracy"}
    assert set(accuracy) == {"none", "lipschitz_t"}
    assert all(value is not None and value > 0.8 for value in accuracy.values())  # digits is easy
    assert all(row.utility for row in summary.rows)
