"""Tests of MaskedThief (Algorithms 1 and 2 of Stolen Risks) and its MixMatch baseline.

(1) the conformance kit; (2) INFER and Table 4's deviation bounds on hand-made neighbours;
(3) the attacks' mechanics: exact budget of real queries, the labelled-set bound, where the property
comes from; (4) real outcomes on Medical Insurance against a LocalInvariance-trained MLP.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from interplay_stolen_risks._infer import (
    PropertyBound,
    deviation,
    grid_search,
    hoeffding,
    infer,
    leave_one_out,
    property_from_info,
)
from interplay_stolen_risks.mixmatch import mixup, sharpen
from recorder import Recorder

import interplay
from interplay.artifacts import QueryAccess
from interplay.errors import ConfigError, DataNotFoundError
from interplay.testing import parametrize_with_checks
from interplay.testing.synthetic import synthetic_task, tiny_context

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


def create(name: str, **params: Any) -> Any:
    return interplay.get_registry().create(name, **params)


# -- (1) conformance ------------------------------------------------------------------------------
@parametrize_with_checks(["masked_thief", "mixmatch"])
def test_conformance(plugin: Any, check: Callable[[Any], None]) -> None:
    check(plugin)


# -- (2) INFER ------------------------------------------------------------------------------------
def test_table4_deviation_bounds() -> None:
    x = torch.zeros(1, 3, dtype=torch.float64)
    neighbours = torch.tensor([[[3.0, 4.0, 0.0], [0.1, 0.0, 0.0]]], dtype=torch.float64)  # distances 5 and 0.1
    answers = torch.tensor([[[0.2, 0.8], [0.9, 0.1]]], dtype=torch.float64)
    lip = deviation(PropertyBound("lipschitz", L=0.5), neighbours, x, answers)
    torch.testing.assert_close(lip[0, :, 0], torch.tensor([0.5 / math.sqrt(2) * 5, 0.5 / math.sqrt(2) * 0.1]).double())
    li = deviation(PropertyBound("local_invariance", delta=0.01, eps=0.3, lam=2.0), neighbours, x, answers)
    torch.testing.assert_close(li[0, :, 1], torch.tensor([0.01 * math.exp(2 * 4.7), 0.01]).double())
    sn = deviation(PropertyBound("small_neighborhood", L=2.0, eps=0.3, lam=2.0), neighbours, x, answers)
    torch.testing.assert_close(sn[0, :, 0], 0.3 * 2.0 / math.sqrt(2) * torch.tensor([math.exp(9.4), 1.0]).double())
    # Monotonicity(I) on feature 0: x_j - x'_j = 3 and 0.1 against sum of the others' |diff| = 4 and 0.
    mono = deviation(PropertyBound("monotonicity", features=(0,), directions=(1,)), neighbours, x, answers)
    expected = (1 - answers[0]) * torch.tensor([math.exp(2 * 4.0), math.exp(2 * 0.1)]).double()[:, None]
    torch.testing.assert_close(mono[0], expected)
    # Monotonicity(D): x'_j - x_j = -3 and -0.1, so only the other features' spread counts.
    mono_d = deviation(PropertyBound("monotonicity", features=(0,), directions=(-1,)), neighbours, x, answers)
    expected_d = (1 - answers[0]) * torch.tensor([math.exp(2 * 4.0), 1.0]).double()[:, None]
    torch.testing.assert_close(mono_d[0], expected_d)


def test_hoeffding_term_of_algorithm_2() -> None:
    k = torch.tensor([1, 50])
    torch.testing.assert_close(
        hoeffding(k, 0.1), torch.tensor([math.sqrt(math.log(20) / 2), math.sqrt(math.log(1000) / 100)]).double()
    )


def _reference(
    bound: PropertyBound, x: torch.Tensor, known: torch.Tensor, labels: torch.Tensor, k_max: int, failure: float
):
    """Algorithm 2 as printed, one candidate and one class at a time (class 1 of two)."""
    out = []
    for candidate in x:
        distance = (known - candidate).norm(dim=1)
        order = distance.argsort()
        low, high = -math.inf, math.inf
        for k in range(1, k_max + 1):
            idx = order[:k]
            mu = float(labels[idx].double().mean())
            xi = float(
                deviation(
                    bound, known[idx][None].double(), candidate[None].double(), torch.zeros(1, k, 1).double()
                ).mean()
            )
            sigma = xi + math.sqrt(math.log(2 * k / failure) / (2 * k))
            low, high = max(low, mu - sigma), min(high, mu + sigma)
        out.append((low, high))
    return out


def test_infer_matches_algorithm_2_one_candidate_at_a_time() -> None:
    generator = torch.Generator().manual_seed(0)
    known = torch.randn(40, 3, generator=generator)
    labels = (known[:, 0] > 0).long()
    x = torch.randn(15, 3, generator=generator)
    bound = PropertyBound("lipschitz", L=0.05)
    result = infer(bound, x, known, labels, num_classes=2, neighbours=20, failure=0.1, max_width=1.0, threshold=0.5)
    for i, (low, high) in enumerate(_reference(bound, x, known, labels, 20, 0.1)):
        assert float(result.lower[i, 1]) == pytest.approx(max(low, 0.0))
        assert float(result.upper[i, 1]) == pytest.approx(min(high, 1.0))
        assert bool(result.valid[i]) == (max(low, 0.0) < min(high, 1.0))
        assert int(result.labels[i]) == int(0.5 * (low + high) > 0.5)


def test_a_pure_close_neighbourhood_gives_a_valid_interval() -> None:
    known = torch.cat([torch.zeros(30, 2), torch.full((30, 2), 5.0)])
    labels = torch.cat([torch.ones(30), torch.zeros(30)]).long()
    x = torch.tensor([[0.01, 0.0], [5.0, 5.01]])
    result = infer(PropertyBound("lipschitz", L=0.1), x, known, labels, num_classes=2, neighbours=30, failure=0.1)
    assert result.valid.tolist() == [True, True] and result.labels.tolist() == [1, 0]
    # Only the Hoeffding term and a tiny deviation: the class-1 interval of the first is [1 - h_30 - xi, 1].
    h30 = math.sqrt(math.log(60 / 0.1) / 60)
    assert float(result.lower[0, 1]) == pytest.approx(1 - h30 - 0.1 / math.sqrt(2) * 0.01, abs=1e-6)
    assert float(result.upper[0, 1]) == 1.0
    # A weaker property (larger L) widens the interval past the threshold: invalid.
    wide = infer(PropertyBound("lipschitz", L=100.0), x, known, labels, num_classes=2, neighbours=30, failure=0.1)
    assert wide.valid.tolist() == [False, False]


def test_disagreeing_neighbourhoods_give_an_empty_interval() -> None:
    """20 nearest neighbours say 1, the next 30 say 0: the k = 20 and k = 50 intervals do not meet."""
    known = torch.cat([torch.full((20, 1), 0.1), torch.full((30, 1), 0.2)])
    labels = torch.cat([torch.ones(20), torch.zeros(30)]).long()
    bound = PropertyBound("lipschitz", L=0.0)
    result = infer(bound, torch.zeros(1, 1), known, labels, num_classes=2, neighbours=50, failure=0.9, max_width=1.0)
    assert float(result.lower[0, 1]) == pytest.approx(1 - math.sqrt(math.log(40 / 0.9) / 40))
    assert float(result.upper[0, 1]) == pytest.approx(0.4 + math.sqrt(math.log(100 / 0.9) / 100))
    assert float(result.lower[0, 1]) > float(result.upper[0, 1]) and not bool(result.valid[0])
    # With a smaller failure probability the terms grow and the intervals meet again.
    assert bool(infer(bound, torch.zeros(1, 1), known, labels, num_classes=2, failure=0.1, max_width=1.0).valid[0])


def test_the_threshold_is_the_class_marginal_or_the_argmax() -> None:
    """Ten close neighbours answer (0.6, 0.4); thirty far ones (0.95, 0.05) pull the marginal of class 1 to 0.1375."""
    known = torch.cat([torch.zeros(10, 1), torch.full((30, 1), 100.0)])
    posteriors = torch.tensor([[0.6, 0.4]] * 10 + [[0.95, 0.05]] * 30)
    bound, x = PropertyBound("lipschitz", L=0.0), torch.zeros(1, 1)
    marginal = infer(bound, x, known, posteriors, num_classes=2, neighbours=10, max_width=1.0)
    argmax = infer(bound, x, known, posteriors, num_classes=2, neighbours=10, max_width=1.0, threshold="argmax")
    assert int(marginal.labels[0]) == 1 and int(argmax.labels[0]) == 0  # midpoint 0.4: above 0.1375, below 1/2
    torch.testing.assert_close(marginal.posteriors[0], torch.tensor([0.6, 0.4]).double())


def test_leave_one_out_and_grid_search() -> None:
    generator = torch.Generator().manual_seed(1)
    known = torch.cat(
        [torch.randn(40, 2, generator=generator) * 0.1, torch.randn(40, 2, generator=generator) * 0.1 + 3]
    )
    labels = torch.cat([torch.zeros(40), torch.ones(40)]).long()
    rate, accuracy = leave_one_out(PropertyBound("lipschitz", L=0.01), known, labels, num_classes=2, neighbours=30)
    assert rate == 1.0 and accuracy == 1.0  # two pure, well separated clusters
    rate, _ = leave_one_out(PropertyBound("lipschitz", L=10.0), known, labels, num_classes=2, neighbours=30)
    assert rate == 0.0
    chosen = grid_search(
        PropertyBound("lipschitz"),
        known,
        labels,
        num_classes=2,
        given={},
        min_accuracy=0.98,
        infer_kw={"neighbours": 30},
    )
    assert chosen is not None and chosen[2] == 1.0 and chosen[0].L <= 0.3
    fixed = grid_search(
        PropertyBound("lipschitz"), known, labels, num_classes=2, given={"L": 10.0}, min_accuracy=0.98, infer_kw={}
    )
    assert fixed is None  # a known, weak property infers nothing


def test_the_property_form_comes_from_the_parameter_or_the_target() -> None:
    assert property_from_info({"dl2_property": "local_invariance"}, None, {}).form == "local_invariance"
    assert property_from_info({"dl2_property": "lipschitz_t"}, None, {}).form == "lipschitz"
    facts = {"tree_property": "monotonicity", "tree_increasing": "2,bmi", "tree_decreasing": "5"}
    mono = property_from_info(facts, None, {}, ("age", "sex", "bmi"))
    assert mono.form == "monotonicity" and mono.features == (2, 2, 5) and mono.directions == (1, 1, -1)
    assert property_from_info({}, "small_neighborhood", {}).form == "small_neighborhood"
    with pytest.raises(ConfigError, match="property form"):
        property_from_info({}, None, {})


def test_sharpen_and_mixup() -> None:
    p = torch.tensor([[0.6, 0.4], [0.5, 0.5]])
    torch.testing.assert_close(sharpen(p, 0.5), torch.tensor([[0.36 / 0.52, 0.16 / 0.52], [0.5, 0.5]]))
    x1, x2 = torch.zeros(500, 2), torch.ones(500, 2)
    mixed, labels = mixup(
        x1,
        torch.tensor([[1.0, 0.0]]).expand(500, 2),
        x2,
        torch.tensor([[0.0, 1.0]]).expand(500, 2),
        0.75,
        torch.Generator().manual_seed(0),
    )
    assert float(mixed.max()) <= 0.5  # lambda' = max(lambda, 1 - lambda): closer to the first argument
    torch.testing.assert_close(labels[:, 1], mixed[:, 0])


# -- (3) mechanics --------------------------------------------------------------------------------
def _smooth(x: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(4.0 * (x[:, 0] + 0.5 * x[:, 1] - 0.3))
    return torch.stack([1 - p, p], dim=1)


@pytest.mark.parametrize("base", ["uniform", "gaussian", "line_search", "jba"])
def test_masked_thief_spends_exactly_the_budget_of_real_queries(base: str) -> None:
    task = synthetic_task(num_classes=2)
    recorder = Recorder(_smooth, features=10, classes=2)
    attack = create(
        "masked_thief", base=base, property="lipschitz", query_budget=60, seed_size=20, label_bound=150, epochs=1
    )
    stolen = attack.run(recorder.access, data=task, context=tiny_context())
    info = stolen.model.info
    assert stolen.queries == info["queries"] == 60
    assert info["labelled"] == 60 + info["inferred"] <= 150
    evaluation = info.get("evaluation_queries", 0)
    assert evaluation == info["inferred"] and len(recorder.queried) == 60 + evaluation
    quiet = create(
        "masked_thief",
        base=base,
        property="lipschitz",
        query_budget=60,
        seed_size=20,
        epochs=1,
        evaluate_inference=False,
    )
    recorder = Recorder(_smooth, features=10, classes=2)
    assert quiet.run(recorder.access, data=task, context=tiny_context()).queries == len(recorder.queried) == 60


def test_masked_thief_infers_on_a_smooth_target() -> None:
    """Against a smooth two-class target of two features, many random inputs are labelled by inference, correctly."""
    recorder = Recorder(_smooth, features=2, classes=2)
    attack = create("masked_thief", base="uniform", property="lipschitz", label_bound=600, epochs=1)
    info = attack.run(recorder.access, context=tiny_context()).model.info
    assert info["inferred"] >= 100 and info["inference_rate"] >= 0.3, info
    assert info["inferred_label_accuracy"] >= 0.9, info


def test_without_inference_masked_thief_is_its_base_attack_on_the_same_draws() -> None:
    """``infer=False``: every input queried, no property needed, the same seed set as with inference."""
    runs = {}
    for inferring in (True, False):
        recorder = Recorder(_smooth, features=2, classes=2)
        attack = create("masked_thief", base="uniform", query_budget=80, label_bound=300, epochs=1, infer=inferring)
        access = (
            recorder.access
            if not inferring
            else QueryAccess.from_function(
                recorder.access.query, num_classes=2, input_shape=(2,), info={"dl2_property": "lipschitz"}
            )
        )
        runs[inferring] = (attack.run(access, context=tiny_context()).model.info, recorder)
    (info, recorder), (inferred_info, _) = runs[False], runs[True]
    assert info["inferred"] == 0 and info["labelled"] == info["queries"] == 80 == len(recorder.queried)
    assert info["property"] == "none" and inferred_info["inferred"] > 0
    torch.testing.assert_close(runs[True][1].batches[0], recorder.batches[0])  # the same seed set


def test_masked_thief_needs_a_property_form_before_querying() -> None:
    recorder = Recorder(_smooth, features=10, classes=2)
    with pytest.raises(ConfigError, match="property form"):
        create("masked_thief", base="uniform").run(recorder.access, context=tiny_context())
    assert recorder.batches == []


def test_a_fallback_form_stands_in_only_for_a_target_without_facts() -> None:
    recorder = Recorder(_smooth, features=2, classes=2)
    attack = create("masked_thief", base="uniform", fallback_property="lipschitz", label_bound=300, epochs=1)
    assert attack.run(recorder.access, context=tiny_context()).model.info["property"] == "lipschitz"
    declared = QueryAccess.from_function(
        recorder.access.query, num_classes=2, input_shape=(2,), info={"dl2_property": "local_invariance"}
    )
    assert attack.run(declared, context=tiny_context()).model.info["property"] == "local_invariance"


def test_masked_thief_against_a_monotone_tree_target() -> None:
    """The form and the monotone features come from the target's facts; the substitute is XGBoost, JBA's step ZOO."""
    task = synthetic_task(num_classes=2)
    target = create("monotonicity", increasing=[0], decreasing=[1], n_estimators=5).apply(task, context=tiny_context())
    stolen = create("masked_thief", base="jba", seed_size=20, query_budget=60, seed_source="partial").run(
        target, data=task, context=tiny_context()
    )
    info = stolen.model.info
    assert info["property"] == "monotonicity" and stolen.queries == info["queries"] == 60
    assert stolen.model.architecture == "xgboost"
    with pytest.raises(ConfigError, match="network substitute"):
        create("mixmatch", base="uniform").run(target, data=task, context=tiny_context())


@pytest.mark.parametrize("base", ["uniform", "jba"])
def test_mixmatch_spends_exactly_the_budget(base: str) -> None:
    task = synthetic_task(num_classes=2)
    recorder = Recorder(_smooth, features=10, classes=2)
    stolen = create("mixmatch", base=base, query_budget=50, seed_size=20, epochs=1, mixmatch_epochs=2).run(
        recorder.access, data=task, context=tiny_context()
    )
    assert stolen.queries == len(recorder.queried) == 50 and stolen.model.info["unlabelled"] == 50


# -- (4) Medical Insurance -------------------------------------------------------------------------
# Target: the scenario-default MLP trained on D_tr with LocalInvariance (DL2, eps 0.3, delta 0.52; ten
# search steps of 0.03 as in test_properties.py); attacks: JBA(X) (50 external seed rows, Q = 200) alone,
# with MaskedThief's inference (threshold "argmax", posterior responses) and with MixMatch; agreement
# (interplay's fidelity) on the test split. Measured with seeds 0-5 (docs/maskedthief.md):
#   JBA(X)        0.957 0.956 0.964 0.968 0.969 0.963
#   MaskedThief   0.961 0.970 0.961 0.967 0.967 0.937   (inferred 295-530 inputs, label accuracy 0.977-1.000)
#   MixMatch      0.910 0.904 0.916 (seeds 0-2)
# With substitutes fitted to the target's posteriors (loss "kl") the base attack is near its ceiling and
# the gain is within the spread of the seeds (+0.005 on average over seeds 0-2, -0.002 over 0-5).
# With substitutes fitted to labels (loss "ce", Algorithm 2's inferred outputs are labels), paired against
# the same loop without inference (infer=False: same seed set, draws and substitute seeds), the gain is
# the paper's: seeds 0-13 +0.1 +2.4 +0.6 -0.1 +2.0 +1.3 +1.9 +0.7 +0.5 +1.2 +0.2 -0.5 -0.8 +0.8 points
# (mean +0.7; 10 up, 2 down, 2 within one test row).
SEEDS = (0, 1, 2)


def data_root() -> str:
    return os.environ.get("INTERPLAY_DATA") or str(SHARED_DATA)


@pytest.fixture(scope="module")
def medical_runs() -> dict[str, list[dict[str, float]]]:
    try:
        task = create("medical_insurance", root=data_root()).load()
    except DataNotFoundError as exc:
        pytest.skip(f"medical_insurance files not available: {exc}")
    fidelity = create("fidelity")
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in ("jba", "masked_thief", "mixmatch", "base_ce", "ce")}
    for seed in SEEDS:
        context = interplay.RunContext(seed=seed, model=create("mlp"), recipe=interplay.TrainingRecipe())
        target = create("local_invariance", iterations=10, step=0.03).apply(task, context=context)
        attacks = {
            "jba": create("jba", seed_source="external"),
            "masked_thief": create("masked_thief", base="jba", seed_source="external", threshold="argmax"),
            "mixmatch": create("mixmatch", base="jba", seed_source="external"),
            "base_ce": create("masked_thief", base="jba", seed_source="external", loss="ce", infer=False),
            "ce": create("masked_thief", base="jba", seed_source="external", threshold="argmax", loss="ce"),
        }
        for label, attack in attacks.items():
            stolen = attack.run(target, data=task, context=context)
            info = stolen.model.info
            runs[label].append(
                {
                    "agreement": fidelity.compute(stolen, target=target, data=task).value,
                    "queries": stolen.queries,
                    "inferred": info.get("inferred", 0),
                    "accuracy": info.get("inferred_label_accuracy", 1.0),
                    "labelled": info.get("labelled", stolen.queries),
                }
            )
    return runs


def _mean(runs: list[dict[str, float]], key: str = "agreement") -> float:
    return sum(run[key] for run in runs) / len(runs)


def test_inferred_labels_agree_with_the_target_on_medical_insurance(
    medical_runs: dict[str, list[dict[str, float]]],
) -> None:
    """Paper finding (Figure 6): the inference labels most synthesised inputs, almost always as the target would."""
    for run in medical_runs["masked_thief"]:
        assert run["queries"] == 200 and run["labelled"] == 200 + run["inferred"]
        assert run["inferred"] >= 150, run  # measured 295-530 of the synthesised inputs
        assert run["accuracy"] >= 0.95, run  # measured 0.977-1.000


def test_masked_thief_against_its_base_and_mixmatch_on_medical_insurance(
    medical_runs: dict[str, list[dict[str, float]]],
) -> None:
    """At the same 200 queries MaskedThief keeps JBA(X)'s agreement and beats the MixMatch baseline."""
    assert all(run["queries"] == 200 for runs in medical_runs.values() for run in runs)
    masked, base, mixmatch = (_mean(medical_runs[k]) for k in ("masked_thief", "jba", "mixmatch"))
    assert masked >= base - 0.01, (masked, base)
    assert masked >= mixmatch + 0.01, (masked, mixmatch)


def test_masked_thief_raises_agreement_over_its_base_attack_with_label_training(
    medical_runs: dict[str, list[dict[str, float]]],
) -> None:
    """Paper finding (Table 5): at the same budget the inferred labels raise the substitute's agreement."""
    gains = [c["agreement"] - b["agreement"] for c, b in zip(medical_runs["ce"], medical_runs["base_ce"], strict=True)]
    assert all(run["inferred"] == 0 and run["queries"] == 200 for run in medical_runs["base_ce"])
    assert all(run["inferred"] >= 150 and run["accuracy"] >= 0.95 for run in medical_runs["ce"])
    assert sum(gains) / len(gains) >= 0.004, gains  # measured +0.001, +0.024, +0.006
    assert min(gains) >= -0.005, gains
