"""Tests for the membership-inference (P1) metrics: AUC, best balanced accuracy and TPR at fixed FPR.

The expected values are computed by hand from the ROC curve of small score vectors.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch

from interplay.artifacts import MembershipScores, MetricValue
from interplay.errors import ArtifactError, ConfigError
from interplay.modules import Metric
from interplay.plugins.privacy.membership_metrics import (
    MembershipAUC,
    MembershipBalancedAccuracy,
    MembershipTPRAtFPR,
    downsample_curve,
)
from interplay.testing import check_plugin


def _scores(members: list[float], nonmembers: list[float]) -> MembershipScores:
    return MembershipScores(
        scores=torch.tensor(members + nonmembers, dtype=torch.float64),
        is_member=torch.tensor([True] * len(members) + [False] * len(nonmembers)),
    )


def _values(metric: Metric, output: MembershipScores) -> list[MetricValue]:
    compute: Any = metric.compute
    result = compute(output)
    return [result] if isinstance(result, MetricValue) else list(result)


def _one(metric: Metric, output: MembershipScores) -> MetricValue:
    (value,) = _values(metric, output)
    return value


def _tpr(output: MembershipScores, *fprs: float) -> dict[str, float]:
    return {v.name: v.value for v in _values(MembershipTPRAtFPR(fprs=fprs), output)}


def test_perfect_separation() -> None:
    output = _scores([3.0, 4.0, 5.0], [0.0, 1.0, 2.0])
    assert _one(MembershipAUC(), output).value == 1.0
    assert _one(MembershipBalancedAccuracy(), output).value == 1.0
    assert _tpr(output, 0.01, 0.001) == {"mia_tpr_at_fpr[0.01]": 1.0, "mia_tpr_at_fpr[0.001]": 1.0}


def test_inverted_scores() -> None:
    output = _scores([0.0, 1.0, 2.0], [3.0, 4.0, 5.0])
    assert _one(MembershipAUC(), output).value == 0.0
    best = _one(MembershipBalancedAccuracy(), output)
    assert best.value == 0.5  # only the trivial thresholds (call everyone, or no one, a member) reach chance
    assert _tpr(output, 0.01, 0.5) == {"mia_tpr_at_fpr[0.01]": 0.0, "mia_tpr_at_fpr[0.5]": 0.0}


def test_hand_computed_curve() -> None:
    # Descending: 0.9 m, 0.7 m, 0.5 n, 0.4 m, 0.3 n, 0.1 n. ROC points: (0,0) (0,1/3) (0,2/3) (1/3,2/3)
    # (1/3,1) (2/3,1) (1,1). AUC: 8 of the 9 member/non-member pairs are ordered correctly.
    output = _scores([0.9, 0.4, 0.7], [0.1, 0.5, 0.3])
    auc = _one(MembershipAUC(), output)
    assert math.isclose(auc.value, 8 / 9)
    assert auc.details["roc"]["fpr"] == pytest.approx([0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    assert auc.details["roc"]["tpr"] == pytest.approx([0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    best = _one(MembershipBalancedAccuracy(), output)
    assert math.isclose(best.value, 5 / 6)  # at (0, 2/3) and at (1/3, 1)
    at = (best.details["threshold"], best.details["fpr"], best.details["tpr"])
    assert at == pytest.approx((0.7, 0.0, 2 / 3)) or at == pytest.approx((0.4, 1 / 3, 1.0))
    tpr = _tpr(output, 0.01, 0.2, 0.34, 0.5)
    assert tpr == pytest.approx(
        {
            "mia_tpr_at_fpr[0.01]": 2 / 3,
            "mia_tpr_at_fpr[0.2]": 2 / 3,
            "mia_tpr_at_fpr[0.34]": 1.0,
            "mia_tpr_at_fpr[0.5]": 1.0,
        }
    )


def test_fpr_boundary_is_inclusive() -> None:
    # 4 non-members: the curve reaches FPR 0.25 exactly; at rate 0.25 that point counts (FPR <= rate).
    output = _scores([5.0, 4.0, 2.0, 0.5], [3.0, 1.0, 0.0, -1.0])
    tpr = _tpr(output, 0.25, 0.24)
    assert tpr == {"mia_tpr_at_fpr[0.25]": 0.75, "mia_tpr_at_fpr[0.24]": 0.5}


def test_ties_give_chance() -> None:
    output = _scores([1.0] * 5, [1.0] * 5)
    assert _one(MembershipAUC(), output).value == 0.5
    assert _one(MembershipBalancedAccuracy(), output).value == 0.5
    assert _tpr(output, 0.01) == {"mia_tpr_at_fpr[0.01]": 0.0}


def test_random_scores_are_near_chance() -> None:
    generator = torch.Generator().manual_seed(0)
    n = 20_000
    output = MembershipScores(scores=torch.rand(n, generator=generator), is_member=torch.arange(n) % 2 == 0)
    assert abs(_one(MembershipAUC(), output).value - 0.5) < 0.015
    assert _one(MembershipBalancedAccuracy(), output).value < 0.52
    assert _tpr(output, 0.01)["mia_tpr_at_fpr[0.01]"] < 0.02


def test_details_are_json_ready_with_counts_and_a_small_curve() -> None:
    generator = torch.Generator().manual_seed(1)
    n_members, n_nonmembers = 3000, 2000
    is_member = torch.cat([torch.ones(n_members, dtype=torch.bool), torch.zeros(n_nonmembers, dtype=torch.bool)])
    output = MembershipScores(scores=torch.randn(len(is_member), generator=generator) + is_member, is_member=is_member)
    values = [_one(MembershipAUC(), output), _one(MembershipBalancedAccuracy(), output)]
    values += _values(MembershipTPRAtFPR(), output)
    assert [v.name for v in values] == [
        "mia_auc",
        "mia_balanced_accuracy",
        "mia_tpr_at_fpr[0.01]",
        "mia_tpr_at_fpr[0.001]",
    ]
    for value in values:
        assert value.details["n_members"] == n_members and value.details["n_nonmembers"] == n_nonmembers
        assert value.higher_is_riskier is True and value.risk == "P1"
        json.dumps(value.details, allow_nan=False)
    curve = values[0].details["roc"]
    assert 2 < len(curve["fpr"]) == len(curve["tpr"]) <= 200
    assert (curve["fpr"][0], curve["tpr"][0], curve["fpr"][-1], curve["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
    assert curve["fpr"] == sorted(curve["fpr"]) and curve["tpr"] == sorted(curve["tpr"])
    assert sum(f <= 0.01 for f in curve["fpr"]) >= 20  # the log-spaced half keeps the low-FPR region
    assert values[2].details["fpr_resolution"] == 1 / n_nonmembers
    assert values[2].details["achieved_fpr"] <= 0.01


def test_downsample_keeps_short_curves_whole() -> None:
    import numpy as np

    fpr, tpr = np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 1.0])
    assert downsample_curve(fpr, tpr, 200) == {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 1.0, 1.0]}
    assert len(downsample_curve(np.linspace(0, 1, 1000), np.linspace(0, 1, 1000), 10)["fpr"]) <= 10


@pytest.mark.parametrize("metric", [MembershipAUC(), MembershipBalancedAccuracy(), MembershipTPRAtFPR()])
def test_one_sided_ground_truth_is_an_error(metric: Metric) -> None:
    only_members = MembershipScores(scores=torch.tensor([0.1, 0.2]), is_member=torch.tensor([True, True]))
    with pytest.raises(ArtifactError, match="is_member"):
        _values(metric, only_members)


@pytest.mark.parametrize("fprs", [(), (0.0,), (1.5,), (0.01, 0.01)])
def test_invalid_rates_are_rejected(fprs: tuple[float, ...]) -> None:
    with pytest.raises(ConfigError, match="fprs"):
        MembershipTPRAtFPR(fprs=fprs)


def test_deterministic_and_inputs_unchanged() -> None:
    output = _scores([0.9, 0.4, 0.7, 0.2], [0.1, 0.5, 0.3, 0.8])
    before = output.fingerprint()
    first = [v.model_dump(mode="json") for v in _values(MembershipTPRAtFPR(), output)]
    second = [v.model_dump(mode="json") for v in _values(MembershipTPRAtFPR(), output)]
    assert first == second and output.fingerprint() == before


@pytest.mark.parametrize("name", ["mia_auc", "mia_balanced_accuracy", "mia_tpr_at_fpr"])
def test_conformance(name: str) -> None:
    report = check_plugin(name)
    assert report.passed, report.format()
