"""Tests of the posterior-perturbation defenses (Prediction Poisoning, Adaptive Misinformation) and their metrics.

(1) the conformance kit; (2) the helpers: per-sample Jacobians, the extreme-point oracle, the 1 % rule,
AM's weight; (3) the defenses on hand-made posteriors; (4) the metrics' mechanics; (5) real outcomes on
Medical Insurance (the paper's finding: PP lowers the substitute's minority-class F1 against a natural
MLP; defended models agree with the undefended one far more on ID than on OOD rows); (6) in a pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from interplay_stolen_risks._perturb import (
    adaptive_weight,
    extreme_point,
    grid,
    largest_within_budget,
    log_likelihood_jacobian,
)
from interplay_stolen_risks.perturbation import PerturbedAccess
from interplay_stolen_risks.perturbation_metrics import gradient_angles

import interplay
from interplay.artifacts import LabeledData, QueryAccess, TaskData
from interplay.errors import ArtifactError, DataNotFoundError
from interplay.testing import parametrize_with_checks
from interplay.testing.synthetic import synthetic_task, tiny_context, tiny_model

PLUGINS = ["prediction_poisoning", "adaptive_misinformation", "id_ood_agreement", "angular_deviation"]


def create(name: str, **params: Any) -> Any:
    return interplay.get_registry().create(name, **params)


# -- (1) conformance ------------------------------------------------------------------------------
@parametrize_with_checks(PLUGINS)
def test_conformance(plugin: Any, check: Callable[[Any], None]) -> None:
    check(plugin)


def test_strengths_take_a_number_or_auto() -> None:
    assert create("prediction_poisoning").params.alpha == "auto"
    assert create("prediction_poisoning", alpha=0.25).params.alpha == 0.25
    assert create("adaptive_misinformation", tau=0.9).params.tau == 0.9
    for name, knob in (("prediction_poisoning", "alpha"), ("adaptive_misinformation", "tau")):
        for bad in (1.5, -0.1, "always"):
            with pytest.raises(interplay.errors.ConfigError):
                create(name, **{knob: bad})


# -- (2) helpers ----------------------------------------------------------------------------------
def test_jacobian_rows_are_the_log_posterior_gradients() -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    x = torch.randn(5, 4)
    g_all = log_likelihood_jacobian(module, x, parameters="all", chunk=2)
    g_last = log_likelihood_jacobian(module, x, parameters="last")
    assert g_all.shape == (5, 3, sum(p.numel() for p in module.parameters()))
    assert g_last.shape == (5, 3, 18)  # the output layer's 3 x 6 weights
    for i in (0, 3):
        for k in range(3):
            module.zero_grad()
            torch.log_softmax(module(x[i : i + 1]), dim=1)[0, k].backward()
            expected = torch.cat([p.grad.flatten() for p in module.parameters()])
            torch.testing.assert_close(g_all[i, k], expected)
            torch.testing.assert_close(g_last[i, k], module[2].weight.grad.flatten())


def _angle(u: torch.Tensor, v: torch.Tensor) -> float:
    return float(torch.arccos(torch.dot(u, v) / (u.norm() * v.norm())))


def test_extreme_point_maximises_the_angular_deviation() -> None:
    # Hand-made G (1 row, 3 classes, 2 parameters): G^T y = (0.5, 0.3); e_2 points away from it.
    g = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.2]]])
    y = torch.tensor([[0.5, 0.3, 0.2]])
    u = g[0].T @ y[0]
    angles = [_angle(u, g[0, k]) for k in range(3)]
    assert angles.index(max(angles)) == 2
    torch.testing.assert_close(extreme_point(g, y), torch.tensor([[0.0, 0.0, 1.0]]))
    # MAD's unnormalised objective ||G^T (e_k - y)|| can choose another vertex.
    # Here G^T y = (0.48, 3.004): e_2 is the most deviating direction, e_1 the longest difference.
    long = torch.tensor([[[1.0, 0.0], [0.0, 10.0], [-0.1, 0.02]]])
    assert int(extreme_point(long, y).argmax()) == 2
    assert int(extreme_point(long, y, objective="surrogate").argmax()) == 1


def test_extreme_point_on_a_real_surrogate_beats_every_other_vertex() -> None:
    torch.manual_seed(1)
    module = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    x = torch.randn(20, 6)
    y = torch.softmax(3 * torch.randn(20, 4), dim=1)
    g = log_likelihood_jacobian(module, x, parameters="all").double()
    eta = extreme_point(g, y)
    for i in range(20):
        u = g[i].T @ y[i].double()
        angles = torch.tensor([_angle(u, g[i, k]) for k in range(4)])
        assert float(angles[int(eta[i].argmax())]) == pytest.approx(float(angles.max()), abs=1e-9)
    assert len(set(eta.argmax(dim=1).tolist())) > 1  # the oracle is not a constant


def test_grid_and_the_one_percent_rule() -> None:
    values = grid(0.01)
    assert len(values) == 100 and values[0] == 0.01 and values[6] == 0.07 and values[-1] == 1.0
    # 200 rows: 1 % is 2 rows. Losses per grid value 0, 0, 1, 1, 2, 0 (non-monotone), ...
    losses = dict(zip([0.01, 0.02, 0.03, 0.04, 0.05, 0.06], [0, 0, 1, 1, 2, 0], strict=True))
    chosen, kept = largest_within_budget(list(losses), lambda v: 180 - losses[v], baseline=180, n=200, budget=0.01)
    assert (chosen, kept) == (0.04, 179)  # the walk stops at 0.05 and never reaches 0.06
    assert largest_within_budget([0.01], lambda v: 170, baseline=180, n=200, budget=0.01) == (0.0, 180)
    assert largest_within_budget([0.5, 1.0], lambda v: 181, baseline=180, n=200, budget=0.01) == (1.0, 181)


def test_adaptive_weight_is_nearly_a_step_at_tau() -> None:
    confidence = torch.tensor([0.5, 0.79, 0.8, 0.81, 0.99], dtype=torch.float64)
    a = adaptive_weight(confidence, tau=0.8, nu=10_000.0)
    assert float(a[0]) == pytest.approx(1.0) and float(a[1]) == pytest.approx(1.0, abs=1e-6)
    assert float(a[2]) == pytest.approx(0.5, abs=1e-6)
    assert float(a[3]) == pytest.approx(0.0, abs=1e-6) and float(a[4]) == pytest.approx(0.0)
    torch.testing.assert_close(adaptive_weight(confidence, tau=0.8, nu=1.0), torch.sigmoid(0.8 - confidence).double())


# -- (3) the defenses on hand-made posteriors -----------------------------------------------------
def _table_task(posteriors: torch.Tensor, labels: torch.Tensor) -> tuple[TaskData, QueryAccess]:
    """A task whose input is the row number, and a target answering the stored posteriors of that row."""
    n, k = posteriors.shape
    x = torch.stack([torch.arange(n, dtype=torch.float32), torch.zeros(n)], dim=1)
    rows = LabeledData(x=x, y=labels, num_classes=k)
    task = TaskData(splits={"train": rows, "test": rows}, name="table")
    target = QueryAccess.from_function(
        lambda q: posteriors[q[:, 0].long()], num_classes=k, input_shape=(2,), info={"dl2_property": "lipschitz"}
    )
    return task, target


def _posteriors(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    p = torch.softmax(2.5 * torch.randn(n, 3, generator=generator), dim=1)
    return p, p.argmax(dim=1)  # the target is right on every row


def test_prediction_poisoning_is_the_convex_combination_with_the_extreme_point() -> None:
    p, y = _posteriors()
    task, target = _table_task(p, y)
    context = tiny_context()
    defended = create("prediction_poisoning", alpha=0.3).apply(target, data=task, context=context)
    assert isinstance(defended, PerturbedAccess)
    answers = defended.query(task.test.x)
    eta = (answers - 0.7 * p) / 0.3
    torch.testing.assert_close(eta, torch.nn.functional.one_hot(eta.argmax(dim=1), 3).float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(answers.sum(dim=1), torch.ones(len(p)))
    torch.testing.assert_close(defended.undefended_query(task.test.x), p)
    assert defended.info["dl2_property"] == "lipschitz" and defended.info["pp_alpha"] == 0.3
    assert defended.info["pp_alpha_auto"] is False
    changed = int((answers.argmax(dim=1) != y).sum())
    assert defended.info["perturbation_accuracy_after"] == pytest.approx(1 - changed / len(p))


def test_prediction_poisoning_auto_keeps_the_argmax_within_the_budget() -> None:
    p, y = _posteriors()
    task, target = _table_task(p, y)
    defended = create("prediction_poisoning").apply(target, data=task, context=tiny_context())
    alpha = defended.info["pp_alpha"]
    assert 0.0 < alpha < 1.0 and defended.info["pp_alpha_auto"] is True
    flipped = int((defended.query(task.test.x).argmax(dim=1) != y).sum())
    assert flipped < 2 and defended.info["perturbation_accuracy_before"] == 1.0  # 1 % of 200 rows is 2
    # One grid step more would lose at least 1 %: the rule took the largest admissible alpha.
    more = create("prediction_poisoning", alpha=round(alpha + 0.01, 2)).apply(target, data=task, context=tiny_context())
    assert int((more.query(task.test.x).argmax(dim=1) != y).sum()) >= 2


def test_adaptive_misinformation_changes_only_unconfident_answers() -> None:
    task = synthetic_task()
    context = tiny_context(epochs=20)
    target = tiny_model(task, context)
    p = target.query(task.test.x)
    confidence = p.max(dim=1).values
    tau = float(confidence.median())
    defended = create("adaptive_misinformation", tau=tau).apply(target, data=task, context=context)
    answers = defended.query(task.test.x)
    confident, unsure = confidence > tau + 0.01, confidence < tau - 0.01
    assert int(confident.sum()) > 5 and int(unsure.sum()) > 5
    torch.testing.assert_close(answers[confident], p[confident], atol=1e-5, rtol=0)
    assert float((answers[unsure] - p[unsure]).abs().sum(dim=1).min()) > 1e-3
    # With tau = 1 every answer is the misinformation model's, trained to avoid the true class.
    liar = create("adaptive_misinformation", tau=1.0).apply(target, data=task, context=context)
    assert float((liar.predict(task.test.x) == task.test.y).float().mean()) < 0.2
    assert liar.info["am_tau"] == 1.0 and liar.info["am_nu"] == 10_000.0


def test_defenses_name_what_is_missing() -> None:
    p, y = _posteriors()
    _, target = _table_task(p, y)
    with pytest.raises(ArtifactError, match="needs data="):
        create("prediction_poisoning").apply(target, context=tiny_context())
    with pytest.raises(ArtifactError, match="needs data="):
        create("adaptive_misinformation", tau=0.5).apply(target, context=tiny_context())
    defended = create("prediction_poisoning", alpha=0.2).apply(target, context=tiny_context())  # fixed: no data
    assert "perturbation_accuracy_after" not in defended.info


# -- (4) the metrics' mechanics -------------------------------------------------------------------
def test_id_ood_agreement_of_an_undefended_model_is_one_one_zero() -> None:
    task = synthetic_task()
    model = tiny_model(task)
    values = {v.name: v.value for v in create("id_ood_agreement").compute(model, data=task, context=tiny_context())}
    assert values == {"id_ood_agreement[id]": 1.0, "id_ood_agreement[ood]": 1.0, "id_ood_agreement[gap]": 0.0}


def test_id_ood_agreement_counts_changed_predictions() -> None:
    p, y = _posteriors(60)
    task, target = _table_task(p, y)
    # Hand-made defense: flip the prediction of rows 0-5 (ID); OOD inputs have row 0 (x in [-1, 1] -> 0 or -1).
    flipped = p.flip(1)

    def answers(q: torch.Tensor) -> torch.Tensor:
        row = q[:, 0].long()
        return torch.where(((row >= 1) & (row < 6))[:, None], flipped[row], p[row])

    defended = PerturbedAccess.perturbing(target, answers, info={})
    values = {v.name: v.value for v in create("id_ood_agreement").compute(defended, data=task, context=tiny_context())}
    changed = int((flipped[1:6].argmax(dim=1) != p[1:6].argmax(dim=1)).sum())
    assert values["id_ood_agreement[id]"] == pytest.approx(1 - changed / 60)
    assert values["id_ood_agreement[ood]"] == 1.0  # no OOD query lands on rows 1-5
    assert values["id_ood_agreement[gap]"] == pytest.approx(-changed / 60)


def test_gradient_angles_on_hand_made_directions() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 0.0], [-1.0, 0.0], [1.0, 1.0]])
    expected = torch.tensor([[0.0, 180.0, 45.0], [90.0, 90.0, 45.0]], dtype=torch.float64)
    torch.testing.assert_close(gradient_angles(a, b), expected)


def test_angular_deviation_reports_the_angles_of_every_pair() -> None:
    task = synthetic_task()
    value = create("angular_deviation", n=10, epochs=3).compute(tiny_model(task), data=task, context=tiny_context())
    quantiles = list(value.details["quantiles"].values())
    assert value.details["pairs"] == 100 and quantiles == sorted(quantiles)
    assert 0.0 < quantiles[0] <= value.value <= quantiles[-1] < 180.0
    with pytest.raises(ArtifactError, match="fewer than n"):
        create("angular_deviation", n=500).compute(tiny_model(task), data=task, context=tiny_context())


# -- (5) real outcomes on Medical Insurance -----------------------------------------------------------
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def medical() -> dict[str, list[Any]]:
    try:
        task = create("medical_insurance").load()
    except DataNotFoundError as exc:
        pytest.skip(f"medical_insurance files not available: {exc}")
    f1, agreement = create("substitute_f1_minority"), create("id_ood_agreement")
    runs: dict[str, list[Any]] = {}
    for seed in SEEDS:
        context = interplay.RunContext(seed=seed, model=create("mlp"), recipe=interplay.TrainingRecipe())
        target = context.train(task.defender_train)
        models = {
            "none": target,
            "pp": create("prediction_poisoning").apply(target, data=task, context=context),
            "am": create("adaptive_misinformation").apply(target, data=task, context=context),
        }
        for label, model in models.items():
            stolen = create("random_query").run(model, data=task, context=context)
            runs.setdefault(f"{label}/f1", []).append(f1.compute(stolen, data=task).value)
            values = {v.name: v.value for v in agreement.compute(model, data=task, context=context)}
            runs.setdefault(f"{label}/agreement", []).append(values)
            runs.setdefault(f"{label}/info", []).append(dict(model.info))
    return runs


def test_prediction_poisoning_lowers_the_stolen_minority_f1(medical: dict[str, list[Any]]) -> None:
    """Stolen Risks, Table 2: PP lowers the substitute's F1 against a natural MLP (measured -0.24 to -0.52)."""
    natural, poisoned = medical["none/f1"], medical["pp/f1"]
    drops = [a - b for a, b in zip(natural, poisoned, strict=True)]
    assert min(drops) > 0.05, (natural, poisoned)
    assert sum(drops) / len(drops) > 0.15, (natural, poisoned)  # measured 0.33


def test_adaptive_misinformation_lowers_the_stolen_minority_f1(medical: dict[str, list[Any]]) -> None:
    natural, misinformed = medical["none/f1"], medical["am/f1"]
    drops = [a - b for a, b in zip(natural, misinformed, strict=True)]
    assert sum(drops) / len(drops) > 0.1, (natural, misinformed)  # measured 0.26


@pytest.mark.parametrize("defense", ["pp", "am"])
def test_defenses_keep_accuracy_and_open_an_id_ood_gap(medical: dict[str, list[Any]], defense: str) -> None:
    """Stolen Risks, Table 3 (natural MLP: gaps of 14.8 / 13.8 points).

    Measured per seed: PP gaps 0.20, 0.19, 0.16 (ID agreement 0.97); AM 0.18, 0.15, 0.07 (ID 0.98).
    """
    gaps = []
    for info, values, base in zip(
        medical[f"{defense}/info"], medical[f"{defense}/agreement"], medical["none/agreement"], strict=True
    ):
        assert info["perturbation_accuracy_before"] - info["perturbation_accuracy_after"] < 0.01
        assert base["id_ood_agreement[gap]"] == 0.0
        assert values["id_ood_agreement[id]"] >= 0.95, values
        assert values["id_ood_agreement[gap]"] >= 0.04, values
        gaps.append(values["id_ood_agreement[gap]"])
    assert sum(gaps) / len(gaps) >= 0.1, gaps


# -- (6) in a pipeline ------------------------------------------------------------------------------
PIPELINE = """
name: stolen-risks-perturbation
scenario:
  dataset: {name: medical_insurance}
  model: {name: mlp, params: {hidden_sizes: [32]}}
  training: {epochs: 3, batch_size: 128}
  seeds: [0]
defenses:
  - {name: prediction_poisoning}
  - {name: adaptive_misinformation, params: {epochs: 3}}
attacks:
  - {name: random_query, params: {epochs: 5}, metrics: [{name: substitute_f1_minority}]}
  - {name: pgd, metrics: [{name: robust_accuracy}]}
metrics:
  - {name: id_ood_agreement}
"""


def test_only_black_box_attacks_reach_the_perturbed_interfaces(tmp_path: Path) -> None:
    pipeline = interplay.Pipeline.from_yaml(PIPELINE)
    resolution = interplay.resolve(pipeline)
    cells = {(c.defense, c.attack, c.metric) for c in resolution.cells}
    for defense in ("prediction_poisoning", "adaptive_misinformation"):
        assert (defense, "random_query", "substitute_f1_minority") in cells
        assert (defense, "none", "id_ood_agreement") in cells
        assert not any(d == defense and a == "pgd" for d, a, _ in cells)
        reasons = [u.reason for u in resolution.unmatched if u.defense == defense and u.attack == "pgd"]
        assert reasons == [f"pgd needs TrainedModel; {defense} outputs QueryAccess"]
    assert ("none", "pgd", "robust_accuracy") in cells
    plans = {plan.label: plan for plan in resolution.defenses}
    assert plans["prediction_poisoning"].steps == ("train", "prediction_poisoning")
    document = yaml.safe_load(PIPELINE)
    document["attacks"] = document["attacks"][:1]  # run the black-box half only
    summary = interplay.run(interplay.Pipeline.from_dict(document), out=tmp_path / "run", progress=False)
    assert summary.failed == 0
    gaps = {r.defense: r.value for r in summary.rows if r.value_name == "id_ood_agreement[gap]"}
    assert gaps["none"] == 0.0 and gaps["prediction_poisoning"] > 0.0 and gaps["adaptive_misinformation"] > 0.0
    infos = {r.defense: r.model_info for r in summary.rows if r.metric == "substitute_f1_minority"}
    assert 0.0 < infos["prediction_poisoning"]["pp_alpha"] <= 1.0
