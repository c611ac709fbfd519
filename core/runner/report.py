"""Aggregation of result rows into the interaction report: means, standard errors, paired tests."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from .store import ResultRow

__all__ = ["ALPHA", "build_report", "summarise", "verdict"]

ALPHA = 0.05
"""Significance level of the paired test."""

BASELINE = "none"


def summarise(values: Sequence[float]) -> dict[str, Any]:
    """Mean, standard error of the mean (sample standard deviation / sqrt(n)) and count."""
    n = len(values)
    if n == 0:
        return {"mean": None, "stderr": None, "n": 0}
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "stderr": None, "n": n}
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return {"mean": mean, "stderr": math.sqrt(variance / n), "n": n}


def paired_test(baseline: Sequence[float], defended: Sequence[float]) -> tuple[float | None, float | None]:
    """Two-sided paired t-test over seeds; returns (statistic, p-value), or Nones with fewer than 2 pairs.

    When every seed shows the same non-zero difference, the difference is certain and p is 0;
    when every difference is zero, p is 1.
    """
    differences = [d - b for b, d in zip(baseline, defended, strict=True)]
    n = len(differences)
    if n < 2:
        return None, None
    mean = sum(differences) / n
    spread = math.sqrt(sum((x - mean) ** 2 for x in differences) / (n - 1))
    if spread == 0.0:
        return (math.inf if mean else 0.0), (0.0 if mean else 1.0)
    import warnings

    from scipy import stats

    with warnings.catch_warnings():  # near-identical differences: scipy warns about precision, p is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_rel(defended, baseline)
    return float(result.statistic), float(result.pvalue)


def verdict(delta: float | None, significant: bool, higher_is_riskier: bool | None) -> str:
    """``raised``, ``lowered`` or ``unchanged`` susceptibility."""
    if delta is None or not significant or higher_is_riskier is None or delta == 0:
        return "unchanged"
    return "raised" if (delta > 0) == higher_is_riskier else "lowered"


def build_report(rows: Sequence[ResultRow], *, alpha: float = ALPHA) -> dict[str, Any]:
    """The report: one entry per (defense, attack, metric value), compared with the baseline.

    Returns:
        ``{"cells": [...], "alpha": alpha, "test": ...}``; each cell has ``defense``, ``attack``,
        ``metric``, ``metric_plugin``, ``risk``, ``intended``, ``higher_is_riskier``, ``baseline``
        and ``defended`` (``mean``, ``stderr``, ``n``), ``delta``, ``p_value``, ``significant``,
        ``utility``, ``susceptibility`` (raised / lowered / unchanged; ``n/a`` for utility
        references, which are reported but not read as a risk) and ``status``. ``models`` maps each
        defense to the facts recorded with its models (see :func:`model_facts`).
    """
    groups: dict[tuple[str, str, str], list[ResultRow]] = defaultdict(list)
    order: list[tuple[str, str, str]] = []
    for row in rows:
        key = (row.defense, row.attack, row.value_name)
        if key not in groups:
            order.append(key)
        groups[key].append(row)
    cells = []
    for key in order:
        defense, attack, value_name = key
        group = groups[key]
        base_rows = groups.get((BASELINE, attack, value_name), [])
        ok = {r.seed: r.value for r in group if r.status == "ok" and r.value is not None}
        base_ok = {r.seed: r.value for r in base_rows if r.status == "ok" and r.value is not None}
        failed = sum(r.status != "ok" for r in group)
        status = "ok" if failed == 0 else ("failed" if not ok else "partial")
        defended_stats = summarise(list(ok.values()))
        baseline_stats = summarise(list(base_ok.values()))
        delta = p_value = None
        significant = False
        if defense != BASELINE and defended_stats["mean"] is not None and baseline_stats["mean"] is not None:
            delta = defended_stats["mean"] - baseline_stats["mean"]
            seeds = sorted(set(ok) & set(base_ok))
            _, p_value = paired_test([base_ok[s] for s in seeds], [ok[s] for s in seeds])
            significant = p_value is not None and p_value < alpha
        elif defense == BASELINE and defended_stats["mean"] is not None:
            delta = 0.0
        first = group[0]
        higher = next((r.higher_is_riskier for r in group if r.higher_is_riskier is not None), None)
        utility = any(r.utility for r in group)
        cells.append(
            {
                "defense": defense,
                "attack": attack,
                "metric": value_name,
                "metric_plugin": first.metric,
                "risk": first.risk,
                "intended": first.intended,
                "higher_is_riskier": higher,
                "baseline": baseline_stats,
                "defended": defended_stats,
                "delta": delta,
                "p_value": p_value,
                "significant": significant,
                "utility": utility,
                "susceptibility": "n/a" if utility else verdict(delta, significant, higher),
                "status": status,
                "errors": [r.error.strip().splitlines()[-1] for r in group if r.error][:3],
            }
        )
    return {
        "cells": cells,
        "models": model_facts(rows),
        "alpha": alpha,
        "test": "two-sided paired t-test over seeds (scipy.stats.ttest_rel)",
    }


def model_facts(rows: Sequence[ResultRow]) -> dict[str, dict[str, Any]]:
    """Per defense, the numeric facts recorded with its models (e.g. ``dp_epsilon``), summarised over seeds.

    Facts that are not numbers (an accountant's name, say) are kept when every seed agrees.
    """
    by_defense: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        if row.model_info:
            by_defense[row.defense].setdefault(row.seed, row.model_info)
    facts: dict[str, dict[str, Any]] = {}
    for defense, seeds in by_defense.items():
        keys = dict.fromkeys(key for info in seeds.values() for key in info)
        summary: dict[str, Any] = {}
        for key in keys:
            values = [info[key] for info in seeds.values() if key in info]
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                summary[key] = summarise([float(v) for v in values])
            elif len({_json_key(v) for v in values}) == 1:
                summary[key] = values[0]
        facts[defense] = summary
    return facts


def _json_key(value: Any) -> str:
    """A hashable stand-in for a JSON value."""
    return repr(value)


def interaction_matrix(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per defense and risk: ``raised``, ``lowered``, ``mixed``, ``unchanged`` or ``failed``."""
    matrix: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for cell in report["cells"]:
        if cell["defense"] == BASELINE or cell.get("utility"):
            continue
        outcome = cell["susceptibility"] if cell["status"] != "failed" else "failed"
        matrix[cell["defense"]][cell["risk"]].add(outcome)
    summary: dict[str, dict[str, str]] = {}
    for defense, risks in matrix.items():
        summary[defense] = {}
        for risk, outcomes in risks.items():
            moved = outcomes & {"raised", "lowered"}
            if len(moved) == 2:
                summary[defense][risk] = "mixed"
            elif moved:
                summary[defense][risk] = moved.pop()
            elif outcomes == {"failed"}:
                summary[defense][risk] = "failed"
            else:
                summary[defense][risk] = "unchanged"
    return summary
