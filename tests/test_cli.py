"""The command line: listings, the matrix, validation, the conformance kit, exit codes and error messages."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_interplay
from toy_plugins import toy_registry

import interplay
import interplay.plugins.manifest as builtin_manifest
from interplay import Metric, MetricValue
from interplay.artifacts import MembershipScores
from interplay.cli import main
from interplay.registry import Registry

BUILTIN_NAMES = {spec.name for spec in builtin_manifest.PLUGINS}
DIGITS = str(REPO / "examples" / "digits.yaml")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


class WrongDirection(Metric):
    """Declares that higher is riskier, then reports the opposite."""

    name = "wrong_direction"
    risks = ("P1",)
    Input = MembershipScores
    higher_is_riskier = True

    def compute(self, output: MembershipScores, /, **_: Any) -> MetricValue:
        return MetricValue(name=self.name, value=float(output.scores.mean()), higher_is_riskier=False)


# --------------------------------------------------------------------------- listings


def test_plugins_json_lists_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plugins", "--json")
    assert code == 0, err
    listing = json.loads(out)
    assert set(listing) == {"plugins", "errors"}
    assert isinstance(listing["errors"], list)
    plugins = {p["name"]: p for p in listing["plugins"]}
    assert set(plugins) >= BUILTIN_NAMES
    for name in BUILTIN_NAMES:
        plugin = plugins[name]
        assert plugin["distribution"] == "interplay"
        assert {"name", "kind", "risks", "distribution", "input", "output"} <= set(plugin)
        assert isinstance(plugin["risks"], list)
    assert plugins["digits"]["kind"] == "dataset" and plugins["digits"]["output"] == "TaskData"
    assert plugins["mlp"]["kind"] == "model"
    assert plugins["robust_accuracy"]["input"] == "AdversarialExamples"


def test_plugins_kind_filter(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plugins", "--json", "--kind", "dataset")
    assert code == 0
    kinds = {p["kind"] for p in json.loads(out)["plugins"]}
    assert kinds == {"dataset"}


def test_plugins_table_shows_plugins_and_errors(capsys: pytest.CaptureFixture[str], use_registry: Any) -> None:
    registry = toy_registry()
    registry.register(WrongDirection, distribution="first-dist")
    registry.register(WrongDirection, distribution="second-dist")  # a duplicate: reported as an error
    use_registry(registry)
    code, out, _ = run(capsys, "plugins")
    assert code == 0
    assert "digits" in out and "toy_evasion" in out and "interplay-tests" in out
    assert "1 plugin error(s)" in out
    assert "duplicate plugin name 'wrong_direction'" in out and "first-dist" in out and "second-dist" in out


def test_plugins_verify_reports_implementations_that_fail(
    capsys: pytest.CaptureFixture[str], use_registry: Any, third_party_registry: Registry
) -> None:
    use_registry(third_party_registry)
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 0
    assert "lazy_bad_attack" not in {e.get("plugin") for e in json.loads(out)["errors"]}
    code, out, _ = run(capsys, "plugins", "--json", "--verify")
    assert code == 0
    errors = {e.get("plugin"): e for e in json.loads(out)["errors"]}
    assert errors["lazy_bad_attack"]["distribution"] == "badschema-plugin"
    assert "invalid declaration" in errors["lazy_bad_attack"]["error"]


def test_risks_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "risks", "--json")
    assert code == 0
    risks = {r["id"]: r for r in json.loads(out)["risks"]}
    assert {"S1", "S2", "S3", "P1", "P2", "P3", "P4", "F"} <= set(risks)
    assert risks["S1"]["name"] == "evasion" and risks["S1"]["family"] == "security"
    assert risks["F"]["family"] == "fairness"
    assert all(r["distribution"] == "interplay" for k, r in risks.items() if k in ("S1", "P1", "F"))
    code, out, _ = run(capsys, "risks")
    assert code == 0 and "membership inference" in out


# --------------------------------------------------------------------------- matrix and validate


def test_matrix_json_of_the_digits_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "matrix", DIGITS, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert {"cells", "unmatched"} <= set(data)
    for cell in data["cells"]:
        assert set(cell) == {"defense", "attack", "metric", "risk", "intended"}
        assert isinstance(cell["intended"], bool)
    for item in data["unmatched"]:
        assert {"defense", "attack", "reason"} <= set(item)
    assert data["defenses"][0]["defense"] == "none"


def test_matrix_with_test_plugins_shows_cells(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, use_registry: Any
) -> None:
    use_registry(toy_registry())
    pipeline = write(tmp_path, """\
        name: toy-study
        scenario: {dataset: digits, model: mlp}
        defenses: [toy_posthoc, toy_train_defense]
        attacks: [toy_evasion, toy_blackbox_mi]
        metrics: [robust_accuracy, toy_mi_metric]
    """)
    code, out, err = run(capsys, "matrix", pipeline, "--json")
    assert code == 0, err
    data = json.loads(out)
    cells = {(c["defense"], c["attack"], c["metric"], c["intended"]) for c in data["cells"]}
    assert cells == {
        ("none", "toy_evasion", "robust_accuracy", False),
        ("toy_train_defense", "toy_evasion", "robust_accuracy", False),
        ("none", "toy_blackbox_mi", "toy_mi_metric", False),
        ("toy_posthoc", "toy_blackbox_mi", "toy_mi_metric", False),
        ("toy_train_defense", "toy_blackbox_mi", "toy_mi_metric", True),
    }
    assert data["unmatched"] == [{"defense": "toy_posthoc", "attack": "toy_evasion",
                                  "reason": "toy_evasion needs TrainedModel; toy_posthoc outputs QueryAccess"}]
    code, out, _ = run(capsys, "matrix", pipeline)
    assert code == 0
    assert "toy-study" in out
    assert "5 cells (2 baseline, 1 intended" in out
    assert "toy_posthoc x toy_evasion: toy_evasion needs TrainedModel" in out


def test_validate_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", DIGITS)
    assert code == 0
    assert "valid" in out and "3 seeds" in out


_SCENARIO = "scenario:\n  dataset: digits\n  model: mlp\n"
BAD_INPUT = [
    ("unknown-plugin", "scenario:\n  dataset: digitz\n  model: mlp\n",
     ["scenario.dataset.name", "digitz", "did you mean 'digits'"]),
    ("unknown-key", _SCENARIO + "  split: {defendr: 0.5}\n", ["scenario.split.defendr", "unknown key"]),
    ("wrong-type", "scenario:\n  dataset: digits\n  model: {name: mlp, params: {hidden_sizes: abc}}\n",
     ["scenario.model.params.hidden_sizes"]),
    ("broken-yaml", "scenario:\n  dataset: digits\n   model: mlp\n", ["invalid YAML at line 3"]),
    ("unknown-metric", _SCENARIO + "metrics: [robust_acuracy]\n", ["metrics[0].name", "robust_acuracy"]),
    ("bad-seeds", _SCENARIO + "  seeds: [1, 1]\n", ["scenario.seeds", "unique"]),
]


@pytest.mark.parametrize("command", ["matrix", "validate"])
@pytest.mark.parametrize(("text", "fragments"), [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_bad_pipelines_exit_2_without_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str, text: str, fragments: list[str]
) -> None:
    code, out, err = run(capsys, command, write(tmp_path, text))
    assert code == 2
    assert out == ""
    assert err.startswith("interplay: error: ")
    for fragment in fragments:
        assert fragment in err
    assert "Traceback" not in err


def test_missing_pipeline_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.yaml")
    code, _, err = run(capsys, "matrix", missing)
    assert code == 2
    assert missing in err and "cannot read pipeline file" in err


def test_unresolvable_chain_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, use_registry: Any) -> None:
    use_registry(toy_registry())
    pipeline = write(tmp_path, _SCENARIO + "defenses: [{chain: [toy_posthoc, toy_train_defense]}]\n")
    code, _, err = run(capsys, "matrix", pipeline)
    assert code == 2
    assert "defenses[0].chain[1]" in err and "Traceback" not in err


def test_bad_input_exits_2_in_a_real_process(tmp_path: Path) -> None:
    result = run_interplay("matrix", write(tmp_path, "scenario:\n  dataset: digits\n  modle: mlp\n"))
    assert result.returncode == 2
    assert "scenario.modle: unknown key" in result.stderr
    assert "scenario.model: required field is missing" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_interplay("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"interplay {interplay.__version__}"


# --------------------------------------------------------------------------- check-plugin


def test_check_plugin_passes_for_mlp(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check-plugin", "mlp")
    assert code == 0, out + err
    assert "PASS  check_model_builds" in out and "FAIL" not in out
    code, out, _ = run(capsys, "check-plugin", "mlp", "--json")
    report = json.loads(out)
    assert code == 0 and report["plugin"] == "mlp" and report["passed"] is True
    assert {r["check"] for r in report["results"]} >= {"check_declaration", "check_model_builds"}


def test_check_plugin_unknown_name_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check-plugin", "nosuch")
    assert code == 2 and out == ""
    assert "unknown plugin 'nosuch'" in err and "Traceback" not in err
    code, _, err = run(capsys, "check-plugin", "robust_acuracy")
    assert code == 2 and "did you mean 'robust_accuracy'" in err


def test_check_plugin_fails_for_a_broken_plugin(capsys: pytest.CaptureFixture[str], use_registry: Any) -> None:
    use_registry(toy_registry(WrongDirection))
    code, out, _ = run(capsys, "check-plugin", "wrong_direction")
    assert code == 1
    assert "FAIL  check_runs_on_tiny_task" in out
    assert "higher_is_riskier=False, the class declares True" in out
    assert "PASS  check_declaration" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"interplay {interplay.__version__}"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: interplay" in capsys.readouterr().err


def test_report_prints_bracketed_value_names_as_they_are(capsys: pytest.CaptureFixture[str]) -> None:
    from interplay.cli.format import report_tables

    stats = {"mean": 0.6, "stderr": 0.01, "n": 3}
    cell = {"defense": "none", "attack": "attribute_inference", "metric": "attribute_auc[race]", "risk": "P2",
            "baseline": stats, "defended": stats, "delta": None, "p_value": None, "status": "ok",
            "susceptibility": None, "intended": False}  # fmt: skip
    report_tables({"cells": [cell], "alpha": 0.05, "test": "paired t-test"}, {}, title="t")
    assert "attribute_auc[race]" in capsys.readouterr().out  # rich would read "[race]" as a style tag
