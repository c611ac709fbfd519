"""Tests of BoundaryFuzz on trees (``boundary_fuzz_trees``) and its black-box constraint accuracy.

(1) the conformance kit; (2) the margin form of the bound and the verified axis bound on synthetic
data; (3) parameters and the selection; (4) Medical Insurance: the property holds for every
sampled input, Monotonicity survives, the accuracy stays at the security property's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from interplay_stolen_risks._fixer import axis_bound, fuzz_margin
from interplay_stolen_risks._fuzz import fuzz_bound
from interplay_stolen_risks._trees import booster_splits, fit_xgboost, neighborhood_bound
from interplay_stolen_risks.trees import Monotonicity

import interplay
from interplay import RunContext
from interplay.artifacts import TaskData
from interplay.errors import ArtifactError, ConfigError
from interplay.testing import parametrize_with_checks
from interplay.testing.synthetic import synthetic_task

MONO = {"increasing": ["bmi", "smoker"]}


def create(name: str, **params: Any) -> Any:
    return interplay.get_registry().create(name, **params)


def _binary(task: TaskData) -> TaskData:
    return Monotonicity.conformance_example(task, None, RunContext())  # type: ignore[arg-type]


# -- (1) conformance ------------------------------------------------------------------------------
@parametrize_with_checks(["boundary_fuzz_trees"])
def test_conformance(plugin: Any, check: Callable[[Any], None]) -> None:
    check(plugin)


# -- (2) the bounds -------------------------------------------------------------------------------
@pytest.mark.parametrize("epsilon", [0.001, 0.01, 0.1, 1.0])
def test_the_margin_bound_is_property_5s_norm_bound(epsilon: float) -> None:
    tau = fuzz_margin(epsilon)
    for m, inside in ((tau * (1 - 1e-6), True), (tau * (1 + 1e-6), False)):
        p = 1 / (1 + math.exp(-m))
        assert (math.hypot(p, 1 - p) < fuzz_bound(epsilon)) is inside


def test_axis_bound_covers_sampled_axis_moves_and_is_below_the_box_bound() -> None:
    task = _binary(synthetic_task(n_train=300))
    labels = torch.nn.functional.one_hot(task.train.y, 2).double()
    module = fit_xgboost(task.train.x, labels, params={"n_estimators": 20}, seed=0, soft=False)
    trees = [(f, t, r, 0) for f, t, r in booster_splits(module.boosters[0])]
    delta = 0.2
    bound = axis_bound(trees, np.full(10, delta))
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3000, 10, generator=g) * 3 - 1
    seen = 0.0
    for i in range(10):
        moved = x.clone()
        moved[:, i] += (2 * torch.rand(3000, generator=g) - 1) * delta
        seen = max(seen, float(np.abs(module.margin(x) - module.margin(moved)).max()))
    assert 0 < seen <= bound
    # Moving one feature is a special case of moving all of them: never above the box bound's margin term.
    assert bound <= 4 / math.sqrt(2) * neighborhood_bound(trees, np.full(10, delta), 2)


def test_the_property_holds_where_the_natural_model_breaks_it() -> None:
    """Every axis probe that changes the class starts and ends at an uncertain answer (checked on many inputs)."""
    task = _binary(synthetic_task(n_train=300))
    defended = create(
        "boundary_fuzz_trees", property="none", delta=0.3, epsilon=0.01, property_params={"n_estimators": 30}
    )
    access = defended.apply(task, context=RunContext())
    natural = create("xgb", n_estimators=30).apply(task, context=RunContext())
    assert access.info["boundary_fuzz_bound"] < access.info["boundary_fuzz_margin"] == fuzz_margin(0.01)
    metric = create("tree_constraint_accuracy", property="boundary_fuzz", delta=0.3, epsilon=0.01, samples=32)
    assert metric.compute(access, data=task).value == 1.0
    assert metric.compute(natural, data=task).value < 0.9
    assert float((access.predict(task.test.x) == task.test.y).float().mean()) > 0.6


# -- (3) parameters and selection ---------------------------------------------------------------
def test_parameters_name_the_offending_field() -> None:
    with pytest.raises(ConfigError, match="jitter"):
        create("boundary_fuzz_trees", property_params={"jitter": 0.1})
    with pytest.raises(ConfigError, match="delta"):
        create("boundary_fuzz_trees", delta=-1.0)
    with pytest.raises(ConfigError, match="increasing"):
        create("boundary_fuzz_trees", property="none", property_params={"increasing": [0]})
    with pytest.raises(ArtifactError, match="two-class"):
        create("boundary_fuzz_trees", delta=0.1, epsilon=0.1).apply(synthetic_task(), context=RunContext())


def test_auto_selection_records_its_trials() -> None:
    task = _binary(synthetic_task(n_train=300))
    access = create("boundary_fuzz_trees", property="none", max_trainings=3, property_params={"n_estimators": 10})
    info = access.apply(task, context=RunContext()).info
    trials = json.loads(info["boundary_fuzz_trials"])
    assert trials[0]["delta"] == 0.1 and len(trials) <= 3
    successes = [t for t in trials if t["success"]]
    assert successes and info["boundary_fuzz_selected"] and info["boundary_fuzz_delta"] == successes[-1]["delta"]
    assert all(t["accuracy"] >= info["boundary_fuzz_reference_accuracy"] - 0.01 for t in successes)
    assert info["boundary_fuzz_bound"] < info["boundary_fuzz_margin"]


# -- (4) Medical Insurance ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def medical() -> tuple[TaskData, dict[str, Any]]:
    task = create("medical_insurance").load()
    context = RunContext(seed=0)
    fuzz = {"delta": 0.1, "epsilon": 0.001}
    targets = {
        "xgb": create("xgb").apply(task, context=context),
        "small_neighborhood": create("small_neighborhood").apply(task, context=context),
        "monotonicity": create("monotonicity", **MONO).apply(task, context=context),
        "small_neighborhood+bf": create("boundary_fuzz_trees", **fuzz).apply(task, context=context),
        "monotonicity+bf": create("boundary_fuzz_trees", property="monotonicity", property_params=MONO, **fuzz).apply(
            task, context=context
        ),
    }
    return task, targets


def test_boundary_fuzz_holds_on_trees_of_medical_insurance(medical: tuple[TaskData, dict[str, Any]]) -> None:
    """The paper's Table 6 "CA 100.00" for the tree rows: the property holds at every sampled input."""
    task, targets = medical
    fuzz = create("tree_constraint_accuracy", property="boundary_fuzz", rows=200, samples=16)
    values = {n: fuzz.compute(a, data=task).value for n, a in targets.items()}
    assert values["small_neighborhood+bf"] == values["monotonicity+bf"] == 1.0
    assert values["xgb"] < 0.9  # measured 0.81
    for name in ("small_neighborhood+bf", "monotonicity+bf"):
        info = targets[name].info
        assert info["boundary_fuzz_bound"] < info["boundary_fuzz_margin"] and info["model_family"] == "xgboost"
    assert targets["monotonicity+bf"].info["tree_property"] == "monotonicity"


def test_security_properties_survive_boundary_fuzz(medical: tuple[TaskData, dict[str, Any]]) -> None:
    task, targets = medical
    mono = create("tree_constraint_accuracy", property="monotonicity", increasing=["bmi", "smoker"], rows=200)
    near = create("tree_constraint_accuracy", rows=200, samples=16)
    assert mono.compute(targets["monotonicity+bf"], data=task).value == 1.0
    assert near.compute(targets["small_neighborhood+bf"], data=task).value == 1.0
    accuracy = {n: float((a.predict(task.test.x) == task.test.y).float().mean()) for n, a in targets.items()}
    # measured: SmallNeighborhood 0.961, with BoundaryFuzz 0.961; Monotonicity 0.961, with BoundaryFuzz 0.962
    assert accuracy["small_neighborhood+bf"] >= accuracy["small_neighborhood"] - 0.01
    assert accuracy["monotonicity+bf"] >= accuracy["monotonicity"] - 0.01
