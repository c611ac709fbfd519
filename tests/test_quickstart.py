"""The README's main job, end to end: examples/quickstart.yaml through `interplay run`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from interplay.cli import main
from interplay.pipeline import Pipeline, load_pipeline

REPO = Path(__file__).resolve().parents[1]


def test_quickstart_runs_and_reports_the_interactions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "quickstart"
    assert main(["run", str(REPO / "examples" / "quickstart.yaml"), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "interaction matrix" in printed and "adversarial_training" in printed

    cells = {
        (c["defense"], c["attack"], c["metric"]): c for c in json.loads((out / "report.json").read_text())["cells"]
    }
    robust = cells[("adversarial_training", "pgd", "robust_accuracy")]
    assert robust["intended"] and robust["risk"] == "S1" and robust["status"] == "ok"
    assert robust["defended"]["mean"] > robust["baseline"]["mean"] + 0.1
    assert robust["susceptibility"] == "lowered"
    for metric in ("fidelity", "correct_fidelity", "surrogate_accuracy"):
        cell = cells[("adversarial_training", "model_extraction", metric)]
        assert not cell["intended"] and cell["risk"] == "S3" and cell["status"] == "ok"
        assert cell["defended"]["n"] == 3
    assert cells[("adversarial_training", "pgd", "clean_accuracy")]["susceptibility"] == "n/a"  # a utility reference
    # the README's abridged output: exactly these metrics, none attached by default from other families
    assert {m for d, a, m in cells if a == "model_extraction"} == {"fidelity", "correct_fidelity", "surrogate_accuracy"}

    pipeline = load_pipeline(REPO / "examples" / "quickstart.yaml")
    with sqlite3.connect(out / "results.sqlite") as db:
        rows = db.execute("SELECT defense, attack, metric, seed FROM results").fetchall()
    assert len(rows) == len(set(rows)) == len(cells) * len(pipeline.scenario.seeds)


def test_sweep_expands_into_labelled_variants_kept_in_the_store() -> None:
    document = {
        "scenario": {"dataset": "digits", "model": "mlp"},
        "defenses": [{"name": "adversarial_training", "params": {"iterations": 5}, "sweep": {"eps": [0.01, 0.03]}}],
        "attacks": [{"name": "pgd", "sweep": {"eps": [0.05, 0.1], "norm": ["linf", "l2"]}}, "model_extraction"],
    }
    pipeline = Pipeline.from_dict(document)
    assert [d.label for d in pipeline.defenses] == ["adversarial_training@eps=0.01", "adversarial_training@eps=0.03"]
    assert pipeline.defenses[1].chain[0].params == {"iterations": 5, "eps": 0.03}
    assert [a.label for a in pipeline.attacks] == [
        "pgd@eps=0.05,norm=linf",
        "pgd@eps=0.05,norm=l2",
        "pgd@eps=0.1,norm=linf",
        "pgd@eps=0.1,norm=l2",
        "model_extraction",
    ]
    with pytest.raises(Exception, match=r"attacks\[0\].sweep.eps"):
        Pipeline.from_dict({**document, "attacks": [{"name": "pgd", "sweep": {"eps": []}}]})
