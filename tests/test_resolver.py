"""Resolution of the interaction matrix from declared types: matching, chains, metrics, intended cells."""

from __future__ import annotations

from typing import Any

import pytest
from toy_plugins import toy_registry

from interplay import Attack, Defense, Metric, MetricValue
from interplay.artifacts import LabelOnlyAccess, MembershipScores, TaskData, TrainedModel
from interplay.errors import ResolutionError
from interplay.pipeline import Pipeline, validate_plugins
from interplay.registry import Registry
from interplay.resolver import BASELINE, Resolution, resolve


class LabelOnlyMI(Attack):
    """Label-only membership inference (declaration only)."""

    name = "toy_label_only_mi"
    risks = ("P1",)
    Input = LabelOnlyAccess
    Output = MembershipScores
    access = "label-only"

    def run(self, target: Any, /, **_: Any) -> Any:
        raise NotImplementedError


class DataProbe(Attack):
    """An attack on data whose output is not a task (declaration only)."""

    name = "toy_data_probe"
    risks = ("P4",)
    Input = TaskData
    Output = MembershipScores
    access = "data"

    def run(self, target: Any, /, **_: Any) -> Any:
        raise NotImplementedError


class FairTraining(Defense):
    """A training defense against discrimination (declaration only)."""

    name = "toy_fair_training"
    risks = ("F",)
    Input = TaskData
    Output = TrainedModel

    def apply(self, target: Any, /, **_: Any) -> Any:
        raise NotImplementedError


class AttributeMetric(Metric):
    """A metric on membership scores that measures another risk (declaration only)."""

    name = "toy_p2_metric"
    risks = ("P2",)
    Input = MembershipScores
    higher_is_riskier = True

    def compute(self, output: Any, /, **_: Any) -> MetricValue:
        raise NotImplementedError


@pytest.fixture(scope="module")
def registry() -> Registry:
    return toy_registry(LabelOnlyMI, DataProbe, FairTraining, AttributeMetric)


def matrix(registry: Registry, **document: Any) -> Resolution:
    document.setdefault("scenario", {"dataset": "digits", "model": "mlp"})
    return resolve(validate_plugins(Pipeline.from_dict(document), registry), registry)


def cells(resolution: Resolution) -> set[tuple[str, str, str, str, bool]]:
    return {(c.defense, c.attack, c.metric, c.risk, c.intended) for c in resolution.cells}


def reasons(resolution: Resolution) -> dict[tuple[str, str], str]:
    return {(u.defense, u.attack): u.reason for u in resolution.unmatched}


def plans(resolution: Resolution) -> dict[str, tuple[str, ...]]:
    return {p.label: p.steps for p in resolution.defenses}


# --------------------------------------------------------------------------- attacks against defenses


def test_white_box_attack_does_not_match_a_query_only_defense(registry: Registry) -> None:
    result = matrix(registry, defenses=["toy_posthoc"], attacks=["toy_evasion"], metrics=["robust_accuracy"])
    assert reasons(result)[("toy_posthoc", "toy_evasion")] == (
        "toy_evasion needs TrainedModel; toy_posthoc outputs QueryAccess"
    )
    assert cells(result) == {(BASELINE, "toy_evasion", "robust_accuracy", "S1", False)}


def test_black_box_attack_matches_trained_model_and_query_defenses(registry: Registry) -> None:
    result = matrix(registry, defenses=["toy_train_defense", "toy_posthoc"], attacks=["toy_blackbox_mi"],
                    metrics=["toy_mi_metric"])
    assert cells(result) == {
        (BASELINE, "toy_blackbox_mi", "toy_mi_metric", "P1", False),
        ("toy_train_defense", "toy_blackbox_mi", "toy_mi_metric", "P1", True),
        ("toy_posthoc", "toy_blackbox_mi", "toy_mi_metric", "P1", False),
    }
    assert result.unmatched == []


def test_label_only_attack_matches_every_model_output(registry: Registry) -> None:
    result = matrix(registry, defenses=["toy_train_defense", "toy_posthoc"], attacks=["toy_label_only_mi"],
                    metrics=["toy_mi_metric"])
    assert {c.defense for c in result.cells} == {BASELINE, "toy_train_defense", "toy_posthoc"}


def test_intended_only_when_the_defense_targets_the_cell_risk(registry: Registry) -> None:
    result = matrix(registry, defenses=["toy_adv_training", "toy_train_defense"],
                    attacks=["toy_evasion", "toy_blackbox_mi"])
    intended = {(c.defense, c.attack, c.metric): c.intended for c in result.cells}
    assert intended[("toy_adv_training", "toy_evasion", "robust_accuracy")] is True
    assert intended[("toy_adv_training", "toy_evasion", "evasion_success_rate")] is True
    assert intended[("toy_adv_training", "toy_blackbox_mi", "toy_mi_metric")] is False
    assert intended[("toy_train_defense", "toy_blackbox_mi", "toy_mi_metric")] is True
    assert intended[("toy_train_defense", "toy_evasion", "robust_accuracy")] is False
    assert not any(c.intended for c in result.cells if c.defense == BASELINE)
    assert result.risks() == ["S1", "P1"]


# --------------------------------------------------------------------------- defense chains


def test_chain_of_data_defense_and_training_defense(registry: Registry) -> None:
    result = matrix(registry, defenses=[{"chain": ["toy_data_defense", "toy_train_defense"]}])
    plan = result.defenses[1]
    assert plan.label == "toy_data_defense+toy_train_defense"
    assert plan.steps == ("toy_data_defense", "toy_train_defense")
    assert plan.output == "TrainedModel"
    assert plan.risks == ("S2", "P1")


def test_chain_ending_in_data_gets_training_appended(registry: Registry) -> None:
    result = matrix(registry, defenses=["toy_data_defense", {"chain": ["toy_data_defense", "toy_data_defense"],
                                                             "id": "twice"}])
    assert plans(result) == {
        BASELINE: ("train",),
        "toy_data_defense": ("toy_data_defense", "train"),
        "twice": ("toy_data_defense", "toy_data_defense", "train"),
    }
    assert all(p.output == "TrainedModel" for p in result.defenses)


def test_post_hoc_defense_gets_training_prepended(registry: Registry) -> None:
    result = matrix(registry, defenses=["toy_posthoc", {"chain": ["toy_train_defense", "toy_posthoc"], "id": "dp_pp"}])
    assert plans(result)["toy_posthoc"] == ("train", "toy_posthoc")
    assert plans(result)["dp_pp"] == ("toy_train_defense", "toy_posthoc")
    assert result.defenses[1].output == "QueryAccess"


@pytest.mark.parametrize(
    ("chain", "where", "fragment"),
    [
        (["toy_train_defense", "toy_data_defense"], "defenses[1].chain[1]",
         "toy_data_defense needs TaskData (it trains on data), but the chain before it already produced TrainedModel"),
        (["toy_posthoc", "toy_train_defense"], "defenses[1].chain[1]", "already produced QueryAccess"),
        (["toy_posthoc", "toy_posthoc"], "defenses[1].chain[1]",
         "toy_posthoc needs TrainedModel; the chain before it outputs QueryAccess"),
    ],
)
def test_invalid_chain_names_the_link(registry: Registry, chain: list[str], where: str, fragment: str) -> None:
    with pytest.raises(ResolutionError) as info:
        matrix(registry, defenses=["toy_train_defense", {"chain": chain}])
    assert str(info.value).startswith(f"{where}: ")
    assert fragment in str(info.value)


# --------------------------------------------------------------------------- poisoning


def test_poisoning_attack_yields_cells_for_every_training_defense(registry: Registry) -> None:
    result = matrix(registry, defenses=["toy_data_defense", "toy_train_defense",
                                        {"chain": ["toy_data_defense", "toy_train_defense"], "id": "both"}],
                    attacks=["toy_poison"], metrics=["toy_poison_metric"])
    assert cells(result) == {
        (BASELINE, "toy_poison", "toy_poison_metric", "S2", False),
        ("toy_data_defense", "toy_poison", "toy_poison_metric", "S2", True),
        ("toy_train_defense", "toy_poison", "toy_poison_metric", "S2", False),
        ("both", "toy_poison", "toy_poison_metric", "S2", True),
    }
    assert result.unmatched == []


def test_poisoning_metric_needing_a_white_box_model_skips_query_only_defenses(registry: Registry) -> None:
    result = matrix(registry, defenses=["toy_posthoc"], attacks=["toy_poison"], metrics=["toy_poison_metric"])
    (unmatched,) = result.unmatched
    assert (unmatched.defense, unmatched.attack, unmatched.metric) == ("toy_posthoc", "toy_poison", "toy_poison_metric")
    assert unmatched.reason == "toy_poison_metric needs TrainedModel; toy_posthoc outputs QueryAccess"
    assert {c.defense for c in result.cells} == {BASELINE}


def test_data_attack_that_outputs_no_task_is_unmatched(registry: Registry) -> None:
    result = matrix(registry, defenses=["toy_train_defense"], attacks=["toy_data_probe"])
    assert result.cells == []
    assert set(reasons(result)) == {(BASELINE, "toy_data_probe"), ("toy_train_defense", "toy_data_probe")}
    assert all("attacks data but outputs MembershipScores" in r for r in reasons(result).values())


# --------------------------------------------------------------------------- metrics


def test_metrics_attach_only_when_they_consume_the_attack_output(registry: Registry) -> None:
    result = matrix(registry, attacks=["toy_evasion", "toy_blackbox_mi"])
    by_attack: dict[str, set[str]] = {}
    for cell in result.cells:
        by_attack.setdefault(cell.attack, set()).add(cell.metric)
    consumes = {
        "toy_evasion": {s.name for s in registry.specs("metric") if s.input == "AdversarialExamples"},
        "toy_blackbox_mi": {s.name for s in registry.specs("metric") if s.input == "MembershipScores"},
    }
    assert {"robust_accuracy", "evasion_success_rate"} <= by_attack["toy_evasion"] <= consumes["toy_evasion"]
    assert "toy_mi_metric" in by_attack["toy_blackbox_mi"] <= consumes["toy_blackbox_mi"]
    assert "toy_p2_metric" not in by_attack["toy_blackbox_mi"]  # it consumes the output but measures P2
    assert "toy_label_rate" not in by_attack["toy_evasion"] | by_attack["toy_blackbox_mi"]
    assert ((BASELINE, "toy_blackbox_mi"), "toy_p2_metric") in {((u.defense, u.attack), u.metric)
                                                                 for u in result.unmatched}


def test_pipeline_metrics_restrict_the_metrics(registry: Registry) -> None:
    result = matrix(registry, attacks=["toy_evasion"], metrics=["evasion_success_rate"])
    assert {c.metric for c in result.cells} == {"evasion_success_rate"}


def test_explicit_metric_that_does_not_consume_is_an_error(registry: Registry) -> None:
    with pytest.raises(ResolutionError) as info:
        matrix(registry, attacks=["toy_blackbox_mi", {"name": "toy_evasion", "metrics": ["robust_accuracy",
                                                                                          "toy_mi_metric"]}])
    assert str(info.value) == (
        "attacks[1].metrics[1]: metric 'toy_mi_metric' consumes MembershipScores; "
        "attack 'toy_evasion' outputs AdversarialExamples"
    )


def test_explicit_metrics_use_their_ids(registry: Registry) -> None:
    result = matrix(registry, attacks=[{"name": "toy_evasion", "metrics": [{"name": "robust_accuracy", "id": "ra"}]}])
    assert cells(result) == {(BASELINE, "toy_evasion", "ra", "S1", False)}


def test_measurement_metric_yields_cells_with_attack_none(registry: Registry) -> None:
    result = matrix(registry, defenses=["toy_fair_training", "toy_posthoc"], metrics=["toy_label_rate"])
    assert cells(result) == {
        (BASELINE, BASELINE, "toy_label_rate", "F", False),
        ("toy_fair_training", BASELINE, "toy_label_rate", "F", True),
        ("toy_posthoc", BASELINE, "toy_label_rate", "F", False),
    }


def test_measurements_are_not_attached_to_attacks_by_default(registry: Registry) -> None:
    result = matrix(registry, attacks=["toy_evasion"])
    assert "toy_label_rate" not in {c.metric for c in result.cells}
    assert all(c.attack != BASELINE for c in result.cells)


def test_attack_without_a_consuming_metric_is_unmatched(registry: Registry) -> None:
    result = matrix(registry, defenses=["toy_train_defense"], attacks=["toy_inversion"], metrics=["robust_accuracy"])
    assert result.cells == []
    assert reasons(result) == {
        (BASELINE, "toy_inversion"): "no metric consumes Reconstructions, the output of toy_inversion",
        ("toy_train_defense", "toy_inversion"): "no metric consumes Reconstructions, the output of toy_inversion",
    }


def test_two_entries_of_one_metric_keep_their_ids(registry: Registry) -> None:
    result = matrix(registry, attacks=["toy_evasion"],
                    metrics=[{"name": "robust_accuracy", "id": "ra_a"}, {"name": "robust_accuracy", "id": "ra_b"}])
    assert {c.metric for c in result.cells} == {"ra_a", "ra_b"}


# --------------------------------------------------------------------------- the JSON form


def test_to_dict_shape_and_default_registry(registry: Registry, use_registry: Any) -> None:
    use_registry(registry)
    pipeline = Pipeline.from_dict({"scenario": {"dataset": "digits", "model": "mlp"}, "defenses": ["toy_posthoc"],
                                   "attacks": ["toy_evasion", "toy_poison"],
                                   "metrics": ["robust_accuracy", "toy_poison_metric"]})
    data = resolve(pipeline).to_dict()  # no registry given: the process-wide one
    assert set(data) == {"cells", "unmatched", "defenses"}
    assert data["cells"] and all(set(c) == {"defense", "attack", "metric", "risk", "intended"} for c in data["cells"])
    plain = [u for u in data["unmatched"] if u["attack"] == "toy_evasion"]
    assert plain == [{"defense": "toy_posthoc", "attack": "toy_evasion",
                      "reason": "toy_evasion needs TrainedModel; toy_posthoc outputs QueryAccess"}]
    with_metric = [u for u in data["unmatched"] if u["attack"] == "toy_poison"]
    assert with_metric and with_metric[0]["metric"] == "toy_poison_metric"
    assert data["defenses"][0] == {"defense": "none", "steps": ["train"], "output": "TrainedModel", "risks": []}
