"""Tests of BoundaryFuzz (the privacy property of Stolen Risks) and of ``boundary_fuzz_accuracy``.

(1) the conformance kit; (2) the constraint on hand-made models: far from the boundary it holds,
at a confident boundary it fails with DL2's product loss, and the search finds the boundary in the
ball; (3) the paper's selection of Delta and epsilon on a stubbed trainer; (4) the defense's
mechanics (recorded facts, the selection's held-out rows, weight 0 is plain training); (5) the
metric on hand-made models; (6) real outcomes on Medical Insurance: BoundaryFuzz raises its own
constraint accuracy over the property-only model, keeps test accuracy within a few points, answers
less confidently near the boundary and lowers the F1 of a JBA substitute (Table 6's finding).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from interplay_stolen_risks._dl2 import Search
from interplay_stolen_risks._fuzz import FuzzConstraint, Trial, fuzz_bound, select_parameters

import interplay
from interplay.artifacts import LabeledData, TaskData, TrainedModel, fingerprint
from interplay.errors import ConfigError, DataNotFoundError
from interplay.testing import parametrize_with_checks
from interplay.testing.synthetic import synthetic_task, tiny_context

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
if SHARED_DATA.is_dir() and not os.environ.get("INTERPLAY_DATA"):
    os.environ["INTERPLAY_DATA"] = str(SHARED_DATA)


def create(name: str, **params: Any) -> Any:
    return interplay.get_registry().create(name, **params)


# -- (1) conformance ------------------------------------------------------------------------------
@parametrize_with_checks(["boundary_fuzz", "boundary_fuzz_accuracy"])
def test_conformance(plugin: Any, check: Callable[[Any], None]) -> None:
    check(plugin)


# -- (2) the constraint on hand-made models --------------------------------------------------------
class _Linear(torch.nn.Module):
    """Logits ``(s x0, -s x0)``: the boundary is ``x0 = 0``, and ``s`` sets how confident the model is near it."""

    def __init__(self, slope: float, features: int = 2) -> None:
        super().__init__()
        weight = torch.zeros(features, 2)
        weight[0] = torch.tensor([slope, -slope])
        self.weight = torch.nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


def _point(search_eps: float = 0.0, iterations: int = 0, step: float = 0.01) -> Search:
    return Search(search_eps, step, iterations)


def test_bound_is_the_papers() -> None:
    for epsilon in (0.001, 0.1, 1.0, 3.0):
        assert fuzz_bound(epsilon) == pytest.approx(math.sqrt(math.exp(epsilon) / (math.exp(epsilon) + 1)))
    assert fuzz_bound(0.001) == pytest.approx(0.70728, abs=1e-5)  # just above 1/sqrt(2), the norm of (0.5, 0.5)


def test_far_from_the_boundary_the_constraint_holds_however_confident() -> None:
    model = _Linear(25.0)
    x = torch.tensor([[2.0, 0.0], [-3.0, 1.0]])  # posteriors ~1: far above any bound, but no probe crosses
    fuzz = FuzzConstraint(delta=0.1, epsilon=0.001, settings=_point(0.3, 20, 0.05))
    formula = fuzz.constraint(model, x, torch.zeros(2, dtype=torch.long), generator=torch.Generator().manual_seed(0))
    assert formula.holds().tolist() == [True, True]
    assert formula.loss().tolist() == [0.0, 0.0]


def test_a_confident_boundary_violates_with_dl2_product_loss() -> None:
    x = torch.tensor([[0.05, 0.0], [0.05, 0.0]])
    fuzz = FuzzConstraint(delta=0.1, epsilon=0.001, settings=_point())  # eps 0: x~ is the row itself
    steep = fuzz.formula(_Linear(25.0), x)
    # At x0 = 0.05 the logits are (1.25, -1.25): class 0 with p = sigmoid(2.5). The probe x0 - 0.1 = -0.05
    # has logits (-1.25, 1.25): it flips by 2.5; the probe x0 + 0.1 keeps class 0 (no loss).
    p = 1 / (1 + math.exp(-2.5))
    norm = math.sqrt(p**2 + (1 - p) ** 2)
    assert steep.holds().tolist() == [False, False]
    assert steep.loss().detach().tolist() == pytest.approx([2.5 * (norm - fuzz_bound(0.001))] * 2, rel=1e-5)
    # The same crossing with an uncertain model (p = sigmoid(0.002) at x0): the conclusion holds.
    flat = fuzz.formula(_Linear(0.02), x)
    assert flat.holds().tolist() == [True, True] and flat.loss().tolist() == [0.0, 0.0]
    # A probe shorter than the distance to the boundary does not cross: the premise is false.
    short = FuzzConstraint(delta=0.04, epsilon=0.001, settings=_point()).formula(_Linear(25.0), x)
    assert short.holds().tolist() == [True, True] and short.loss().tolist() == [0.0, 0.0]
    # The loss trains the parameters (through both sides of the implication).
    model = _Linear(25.0)
    (grad,) = torch.autograd.grad(fuzz.formula(model, x).loss().sum(), list(model.parameters()))
    assert grad.abs().sum() > 0


def test_search_finds_the_boundary_inside_the_ball() -> None:
    model = _Linear(25.0)
    x = torch.tensor([[0.25, 0.0], [0.6, 0.0]])  # the boundary is 0.25 and 0.6 away
    fuzz = FuzzConstraint(delta=0.1, epsilon=0.001, settings=_point(0.3, 30, 0.02))
    formula = fuzz.constraint(model, x, torch.zeros(2, dtype=torch.long), generator=torch.Generator().manual_seed(0))
    # Row 0: the ball reaches within 0.1 of the boundary, where the steep model is still confident.
    # Row 1: every point of its ball is at least 0.3 from the boundary, farther than the probes reach.
    assert formula.holds().tolist() == [False, True]
    assert [p.grad for p in model.parameters()] == [None]  # the search leaves parameters' gradients alone


def test_more_classes_compare_against_every_other_class() -> None:
    class _Three(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # class 2 wins for x0 > 0, class 1 below
            return torch.stack([torch.zeros_like(x[:, 0]), -20 * x[:, 0], 20 * x[:, 0]], dim=1)

    x = torch.tensor([[0.05], [1.0]])
    formula = FuzzConstraint(delta=0.1, epsilon=0.001, settings=_point()).formula(_Three(), x)
    # Row 0 (class 2, p = 0.67): the probe at -0.05 moves to class 1, and ||F|| = 0.71 > 0.7073: violated.
    assert formula.holds().tolist() == [False, True]


# -- (3) the selection procedure -------------------------------------------------------------------
def _run(succeeds: Callable[[float, float], bool], **kw: Any) -> tuple[list[tuple[float, float]], Trial | None]:
    selection = select_parameters(succeeds, **{"delta": None, "epsilon": None, **kw})
    return [(round(t.delta, 6), t.epsilon) for t in selection.trials], selection.chosen


def test_selection_doubles_delta_while_training_succeeds() -> None:
    tried, chosen = _run(lambda d, e: d < 0.3, max_trainings=10)
    assert tried == [(0.1, 0.001), (0.2, 0.001), (0.4, 0.001)]  # 0.4 fails: 0.2 is the largest that trains
    assert chosen == Trial(0.2, 0.001, True)
    tried, chosen = _run(lambda d, e: True, max_trainings=4)  # the cap ends the doubling
    assert tried == [(0.1, 0.001), (0.2, 0.001), (0.4, 0.001), (0.8, 0.001)]
    assert chosen is not None and chosen.delta == 0.8


def test_selection_halves_delta_then_loosens_epsilon_tenfold_up_to_0_1() -> None:
    tried, chosen = _run(lambda d, e: False, max_trainings=20)
    halvings = [(0.1, 0.001), (0.05, 0.001), (0.025, 0.001), (0.0125, 0.001), (0.01, 0.001)]
    assert tried == [*halvings, (0.01, 0.01), (0.01, 0.1)]  # epsilon stops at 0.1
    assert chosen is None
    tried, chosen = _run(lambda d, e: e >= 0.01 and d <= 0.02, max_trainings=20)
    assert tried == [*halvings, (0.01, 0.01), (0.02, 0.01), (0.04, 0.01)]
    assert chosen == Trial(0.02, 0.01, True)


def test_selection_dl2_variant_steps_epsilon_by_one_from_one() -> None:
    tried, chosen = _run(lambda d, e: e >= 3, schedule="add", max_trainings=9)
    assert [e for _, e in tried] == [1.0] * 5 + [2.0, 3.0, 3.0, 3.0]
    assert [d for d, _ in tried][-4:] == [0.01, 0.01, 0.02, 0.04]  # at the floor epsilon steps, then Delta doubles
    assert chosen == Trial(0.04, 3.0, True)


def test_selection_tunes_only_what_is_auto() -> None:
    tried, chosen = _run(lambda d, e: e >= 0.1, delta=0.3, max_trainings=10)
    assert tried == [(0.3, 0.001), (0.3, 0.01), (0.3, 0.1)] and chosen == Trial(0.3, 0.1, True)
    tried, _ = _run(lambda d, e: False, epsilon=0.5, max_trainings=10)
    assert tried == [(0.1, 0.5), (0.05, 0.5), (0.025, 0.5), (0.0125, 0.5), (0.01, 0.5)]
    tried, chosen = _run(lambda d, e: False, delta=0.2, epsilon=0.5, max_trainings=10)
    assert tried == [(0.2, 0.5)] and chosen is None


# -- (4) the defense's mechanics --------------------------------------------------------------------
def test_fixed_constants_record_the_property_and_boundary_fuzz_facts() -> None:
    task = synthetic_task("tabular")
    defense = create(
        "boundary_fuzz", property="lipschitz", property_params={"L": 0.5, "iterations": 1}, delta=0.2, epsilon=0.01
    )
    model = defense.apply(task, context=tiny_context(epochs=1))
    assert model.info["dl2_property"] == "lipschitz" and model.info["dl2_L"] == 0.5  # what MaskedThief reads
    assert model.info["boundary_fuzz_delta"] == 0.2 and model.info["boundary_fuzz_epsilon"] == 0.01
    assert model.info["boundary_fuzz_eps"] == 0.3  # the property's ball
    assert "boundary_fuzz_trials" not in model.info
    assert torch.equal(model.train_indices, task.partition.defender)
    assert defense.search().iterations == 1 and create("boundary_fuzz", property="none").search().iterations == 50
    assert create("boundary_fuzz", property="lipschitz_t", eps=0.1).search().eps == 0.1


def test_auto_selection_holds_out_defender_rows_and_records_its_trials() -> None:
    task = synthetic_task("tabular")
    model = create("boundary_fuzz", property="lipschitz_t", iterations=1, max_trainings=2, min_fuzz_accuracy=0.0).apply(
        task, context=tiny_context(epochs=1)
    )
    trials = json.loads(model.info["boundary_fuzz_trials"])
    assert (trials[0]["delta"], trials[0]["epsilon"]) == (0.1, 0.001) and len(trials) <= 2
    assert set(trials[0]) >= {"success", "accuracy", "property_accuracy", "fuzz_accuracy"}
    reference = {k for k in model.info if k.startswith("boundary_fuzz_reference_")}
    assert reference == {"boundary_fuzz_reference_accuracy", "boundary_fuzz_reference_property_accuracy"}
    assert all(isinstance(v, (float, int, str, bool)) for v in model.info.values())  # facts are scalars
    chosen = [t for t in trials if t["success"]]
    assert model.info["boundary_fuzz_selected"] is bool(chosen)
    if chosen:
        assert model.info["boundary_fuzz_delta"] == chosen[-1]["delta"]
    defender = task.partition.defender
    assert len(model.train_indices) == len(defender) - round(0.2 * len(defender))
    assert torch.isin(model.train_indices, defender).all()


def test_weight_zero_without_property_is_plain_training() -> None:
    task = synthetic_task("tabular")
    natural = tiny_context().train(task.defender_train)
    model = create("boundary_fuzz", property="none", delta=0.1, epsilon=0.1, dl2_weight=0.0).apply(
        task, context=tiny_context()
    )
    assert fingerprint(model.module) == fingerprint(natural.module)
    assert "dl2_property" not in model.info


def test_parameters_are_validated() -> None:
    with pytest.raises(ConfigError):
        create("boundary_fuzz", property="lipschitz", property_params={"not_a_parameter": 1})
    with pytest.raises(ConfigError):
        create("boundary_fuzz", property="none", property_params={"L": 1.0})
    with pytest.raises(ConfigError):
        create("boundary_fuzz", delta=-0.1)
    with pytest.raises(ConfigError, match="context"):
        create("boundary_fuzz", delta=0.1, epsilon=0.1).apply(synthetic_task("tabular"))


# -- (5) the metric on hand-made models -------------------------------------------------------------
def _line_task(n: int = 40) -> TaskData:
    x = torch.zeros(n, 2)
    x[:, 0] = torch.linspace(-2, 2, n)
    split = LabeledData(x=x, y=(x[:, 0] < 0).long(), num_classes=2)
    return TaskData(splits={"train": split, "test": split}, name="line")


def test_boundary_fuzz_accuracy_on_hand_made_models() -> None:
    task = _line_task()
    metric = create("boundary_fuzz_accuracy", delta=0.1, eps=0.3, iterations=20, step=0.05)
    steep = TrainedModel(module=_Linear(25.0), num_classes=2, input_shape=(2,))
    value = metric.compute(steep, data=task)
    # The rows whose ball comes within 0.1 of x0 = 0 (|x0| < 0.4: 8 of the 40 evenly spaced) violate.
    assert value.value == pytest.approx(32 / 40)
    assert value.details["sensitive"] == pytest.approx(8 / 40)
    assert value.details["sensitive_norm"] > fuzz_bound(0.001)
    assert value.details["trained_with"] is None and value.details["same_constants"] is False
    flat = TrainedModel(module=_Linear(0.01), num_classes=2, input_shape=(2,))
    assert metric.compute(flat, data=task).value == 1.0  # near-uniform answers everywhere


# -- (6) real outcomes on Medical Insurance ------------------------------------------------------------
# Measured (seeds 0-2, 20 epochs; docs/boundary_fuzz.md): LocalInvariance alone -> with BoundaryFuzz
# (Delta 1.0, epsilon 0.001, weight 10): test accuracy 0.953-0.956 -> 0.934-0.937, BoundaryFuzz's
# constraint accuracy 0.57-0.62 -> 0.87-0.88, mean ||F|| at sensitive points 0.92 -> 0.77, JBA substitute's
# minority F1 0.72-0.79 -> 0.67-0.70 (seed 0, asserted here: 0.781 -> 0.695). The assertions keep
# margins well below the measured ones.
SEARCH = {"iterations": 5, "step": 0.06}
FUZZ = {"delta": 1.0, "epsilon": 0.001, "dl2_weight": 10.0, **SEARCH}


@pytest.fixture(scope="module")
def medical() -> dict[str, Any]:
    try:
        task = create("medical_insurance").load()
    except DataNotFoundError as exc:
        pytest.skip(f"medical_insurance files not available: {exc}")
    context = interplay.RunContext(
        seed=0,
        model=create("mlp", hidden_sizes=(64, 64)),
        recipe=interplay.TrainingRecipe(epochs=20, batch_size=128, lr=1e-3),
    )
    plain = create("local_invariance", **SEARCH).apply(task, context=context)
    fuzzed = create("boundary_fuzz", property="local_invariance", property_params=SEARCH, **FUZZ).apply(
        task, context=context
    )
    fuzz_metric = create("boundary_fuzz_accuracy", delta=1.0, epsilon=0.001, **SEARCH)
    li_metric = create("constraint_accuracy", properties=("local_invariance",))
    out: dict[str, Any] = {}
    for name, model in (("plain", plain), ("fuzzed", fuzzed)):
        stolen = create("jba").run(model, data=task, context=context)
        f1 = create("substitute_f1_minority").compute(stolen, data=task, context=context)
        out[name] = {
            "accuracy": float((model.predict(task.test.x) == task.test.y).float().mean()),
            "fuzz": fuzz_metric.compute(model, data=task, context=context),
            "local_invariance": li_metric.compute(model, data=task, context=context)[0].value,
            "jba_f1": (f1[0] if isinstance(f1, list) else f1).value,
        }
    return out


def test_boundary_fuzz_raises_its_constraint_accuracy_at_a_small_cost(medical: dict[str, Any]) -> None:
    plain, fuzzed = medical["plain"], medical["fuzzed"]
    assert fuzzed["fuzz"].value >= plain["fuzz"].value + 0.15, (plain["fuzz"].value, fuzzed["fuzz"].value)
    assert fuzzed["fuzz"].details["same_constants"] is True
    assert fuzzed["accuracy"] >= plain["accuracy"] - 0.04, (plain["accuracy"], fuzzed["accuracy"])
    assert fuzzed["local_invariance"] >= plain["local_invariance"] - 0.05


def test_answers_near_the_boundary_are_less_confident(medical: dict[str, Any]) -> None:
    plain, fuzzed = medical["plain"]["fuzz"].details, medical["fuzzed"]["fuzz"].details
    assert fuzzed["sensitive_norm"] <= plain["sensitive_norm"] - 0.05, (plain, fuzzed)
    assert fuzzed["sensitive"] < plain["sensitive"]


def test_jba_substitute_of_a_boundary_fuzz_model_has_lower_minority_f1(medical: dict[str, Any]) -> None:
    # Stolen Risks, Table 6: BoundaryFuzz decreases the substitute's F1 against LocalInvariance models.
    assert medical["fuzzed"]["jba_f1"] <= medical["plain"]["jba_f1"] - 0.02, medical
