"""Tests of the gradient-boosted-tree targets, their tree substitutes and ``tree_constraint_accuracy``.

(1) the conformance kit; (2) the tree module and the verified SmallNeighborhood bound on synthetic
data; (3) real outcomes on Medical Insurance: accuracy, properties, stealing with tree substitutes;
(4) ``monotonicity`` x ``jba`` in a pipeline.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from interplay_stolen_risks._trees import booster_splits, fit_xgboost, neighborhood_bound
from interplay_stolen_risks.trees import Monotonicity, feature_scale

import interplay
from interplay import RunContext
from interplay.artifacts import TaskData
from interplay.errors import ConfigError
from interplay.testing import parametrize_with_checks
from interplay.testing.synthetic import synthetic_task


def create(name: str, **params: Any) -> Any:
    return interplay.get_registry().create(name, **params)


# -- (1) conformance ------------------------------------------------------------------------------
@parametrize_with_checks(["xgb", "monotonicity", "small_neighborhood", "tree_constraint_accuracy"])
def test_conformance(plugin: Any, check: Callable[[Any], None]) -> None:
    check(plugin)


# -- (2) mechanics on synthetic data --------------------------------------------------------------
def _binary(task: TaskData) -> TaskData:
    return Monotonicity.conformance_example(task, None, RunContext())  # type: ignore[arg-type]


def test_tree_module_returns_log_probabilities_and_pickles() -> None:
    task = synthetic_task()
    labels = torch.nn.functional.one_hot(task.train.y, 3).double()
    module = fit_xgboost(task.train.x, labels, params={"n_estimators": 10}, seed=0, soft=False)
    out = module(task.test.x)
    assert out.dtype == torch.float32 and not out.requires_grad
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(len(out)), atol=1e-4, rtol=0)
    assert (out.argmax(1) == task.test.y).float().mean() > 0.7
    torch.testing.assert_close(pickle.loads(pickle.dumps(module))(task.test.x), out)


def test_monotonicity_holds_exactly_on_random_pairs() -> None:
    task = _binary(synthetic_task(n_train=300))
    # The labels grow with feature 0 (class 0 against the rest): constrain it the other way.
    access = create("monotonicity", increasing=[3], decreasing=[0]).apply(task, context=RunContext())
    g = torch.Generator().manual_seed(0)
    x = torch.rand(500, 10, generator=g) * 3 - 1
    for j, sign in ((3, 1.0), (0, -1.0)):
        moved = x.clone()
        moved[:, j] = torch.rand(500, generator=g) * 3 - 1
        delta = (moved[:, j] - x[:, j]) * sign * (access.query(moved)[:, 1] - access.query(x)[:, 1])
        assert bool((delta >= 0).all())
    natural = create("xgb").apply(task, context=RunContext())
    moved = x.clone()
    moved[:, 0] = torch.rand(500, generator=g) * 3 - 1
    delta = (x[:, 0] - moved[:, 0]) * (natural.query(moved)[:, 1] - natural.query(x)[:, 1])
    assert bool((delta < 0).any())  # without the constraint, pairs break "decreasing in feature 0"


def test_monotonicity_names_the_missing_field_and_unknown_features() -> None:
    task = _binary(synthetic_task())
    with pytest.raises(ConfigError, match="increasing"):
        create("monotonicity").apply(task)
    with pytest.raises(ConfigError, match="no_such"):
        create("monotonicity", increasing=["no_such"]).apply(task)


def test_best_intercept_maximises_accuracy() -> None:
    from interplay_stolen_risks.trees import best_intercept

    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.35])
    positive = np.array([False, False, True, True, True])
    b = best_intercept(scores, positive)
    assert ((scores + b > 0) == positive).all()
    assert best_intercept(np.array([0.1, 0.2]), np.array([True, True])) > -0.1  # every row positive


def test_window_bound_covers_sampled_pairs_of_a_natural_model() -> None:
    """The bound of a natural model is an upper bound of what sampled close pairs show."""
    task = synthetic_task(n_train=200)
    labels = torch.nn.functional.one_hot(task.train.y, 3).double()
    module = fit_xgboost(task.train.x, labels, params={"n_estimators": 20}, seed=0, soft=False)
    radius = 0.1 * feature_scale(task.train)
    trees = [(f, t, r, k % 3) for k, (f, t, r) in enumerate(booster_splits(module.boosters[0]))]
    bound = neighborhood_bound(trees, radius, 3)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4000, 10, generator=g)
    x2 = x + (2 * torch.rand(4000, 10, generator=g) - 1) * torch.from_numpy(radius).float()
    seen = (module(x).exp() - module(x2).exp()).norm(dim=1).max().item()
    assert 0 < seen <= bound


def test_small_neighborhood_bound_holds_where_the_natural_model_breaks_it() -> None:
    task = _binary(synthetic_task(n_train=300))
    eps, lip = 0.1, 2.0
    defended = create("small_neighborhood", eps=eps, L=lip, n_estimators=30).apply(task, context=RunContext())
    natural = create("xgb").apply(task, context=RunContext())
    radius = torch.from_numpy(eps * feature_scale(task.defender_train)).float()
    g = torch.Generator().manual_seed(2)
    x = task.test.x.repeat(50, 1)
    x2 = x + (2 * torch.rand(x.shape, generator=g) - 1) * radius
    for access, broken in ((defended, False), (natural, True)):
        gap = (access.query(x) - access.query(x2)).norm(dim=1)
        assert bool((gap >= lip * eps).any()) is broken


# -- (3) real outcomes on Medical Insurance --------------------------------------------------------
@pytest.fixture(scope="module")
def medical() -> tuple[TaskData, dict[str, Any]]:
    task = interplay.get_registry().create("medical_insurance").load()
    context = RunContext(seed=0)
    targets = {
        "xgb": create("xgb").apply(task, context=context),
        "monotonicity": create("monotonicity", increasing=["bmi", "smoker"]).apply(task, context=context),
        "small_neighborhood": create("small_neighborhood").apply(task, context=context),
    }
    return task, targets


def test_medical_insurance_targets(medical: tuple[TaskData, dict[str, Any]]) -> None:
    from sklearn.metrics import roc_auc_score

    task, targets = medical
    y = task.test.y
    accuracy = {n: float((a.predict(task.test.x) == y).float().mean()) for n, a in targets.items()}
    assert accuracy["xgb"] > 0.95 and accuracy["monotonicity"] > 0.95  # measured 0.965 and 0.961
    # SmallNeighborhood's scaled-down trees keep every posterior within about 0.45-0.55; the
    # calibrated intercept puts 1/2 where the ranking (AUC 0.93) separates the classes best.
    assert accuracy["small_neighborhood"] > 0.94  # measured 0.961; 0.883 (all negative) uncalibrated
    posteriors = targets["small_neighborhood"].query(task.test.x)[:, 1]
    assert roc_auc_score(y.numpy(), posteriors.numpy()) > 0.9
    assert float(posteriors.max() - posteriors.min()) < 0.2  # the property's L * eps
    assert targets["monotonicity"].info["model_family"] == "xgboost"
    assert targets["monotonicity"].info["tree_increasing"] == "bmi,smoker"
    assert targets["small_neighborhood"].info["tree_L"] == 2.0


def test_tree_constraint_accuracy_on_medical_insurance(medical: tuple[TaskData, dict[str, Any]]) -> None:
    task, targets = medical
    mono = create("tree_constraint_accuracy", property="monotonicity", increasing=["bmi", "smoker"], rows=200)
    near = create("tree_constraint_accuracy", rows=200, samples=16)
    values = {n: (mono.compute(a, data=task).value, near.compute(a, data=task).value) for n, a in targets.items()}
    assert values["monotonicity"][0] == 1.0 and values["xgb"][0] < 0.5  # measured 0.05 on all rows
    assert values["small_neighborhood"][1] == 1.0 and values["xgb"][1] < 0.9  # measured 0.72


def test_stealing_a_tree_target_with_tree_substitutes(medical: tuple[TaskData, dict[str, Any]]) -> None:
    task, targets = medical
    target = targets["xgb"]
    answers = target.predict(task.test.x)
    majority = float((answers == answers.mode().values).float().mean())
    context = RunContext(seed=0)
    jba = create("jba", seed_source="external").run(target, data=task, context=context)
    assert jba.model.architecture == "xgboost" and jba.model.info["gradient"] == "zoo" and jba.queries == 200
    assert float((jba.model.predict(task.test.x) == answers).float().mean()) > majority + 0.01  # 0.926 vs 0.903
    rq = create("random_query").run(target, context=context)
    assert rq.model.architecture == "xgboost" and rq.queries == 200
    assert float((rq.model.predict(task.test.x) == answers).float().mean()) >= majority - 0.01
    with pytest.raises(ConfigError, match="loss"):
        create("random_query", loss="mse").run(target, context=context)


# -- (4) pipeline ---------------------------------------------------------------------------------
def test_monotonicity_and_jba_resolve_and_run_in_a_pipeline(tmp_path: Path) -> None:
    metrics = ["fidelity", "substitute_f1_minority"]
    document = {
        "name": "stolen-risks-trees",
        "scenario": {
            "dataset": {"name": "medical_insurance"},
            "split": {"from_dataset": True},
            "model": {"name": "mlp", "params": {"hidden_sizes": [16]}},
            "training": {"epochs": 2, "batch_size": 64},
            "seeds": [0],
        },
        "defenses": [{"name": "monotonicity", "params": {"increasing": ["bmi", "smoker"]}}],
        "attacks": [{"name": "jba", "params": {"epochs": 2, "seed_source": "external"}, "metrics": metrics}],
    }
    pipeline = interplay.Pipeline.from_dict(document)
    cells = {(cell.defense, cell.attack, cell.metric) for cell in interplay.resolve(pipeline).cells}
    assert {("monotonicity", "jba", m) for m in metrics} <= cells
    summary = interplay.run(pipeline, out=tmp_path / "run", progress=False)
    assert summary.failed == 0
    values = {(row.defense, row.metric): row.value for row in summary.rows}
    assert values[("monotonicity", "fidelity")] is not None and values[("monotonicity", "fidelity")] > 0.85
    assert all(v is not None and 0.0 <= v <= 1.0 for v in values.values())
    assert np.isfinite(list(values.values())).all()
