"""Plugin registry: built-ins, cheap discovery, third-party distributions and their failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_interplay, run_python
from toy_plugins import ToyEvasion, ToyManifest, ToyTrainDefense, toy_registry

import interplay
import interplay.artifacts as artifacts
import interplay.plugins.manifest as builtin_manifest
from interplay.errors import DuplicatePluginError, PluginError, UnknownPluginError
from interplay.registry import (
    ACCESS_LEVELS,
    CORE_ARTIFACTS,
    PluginLoadError,
    PluginSpec,
    Registry,
    get_registry,
    hookimpl,
)

BUILTIN_NAMES = {spec.name for spec in builtin_manifest.PLUGINS}
BUILTIN_RISKS = {"S1", "S2", "S3", "P1", "P2", "P3", "P4", "F"}


def _errors_of(registry: Registry, distribution: str) -> list[PluginLoadError]:
    return [e for e in registry.errors if e.distribution == distribution]


# --------------------------------------------------------------------------- built-ins


def test_builtins_are_listed_with_distribution_interplay() -> None:
    registry = get_registry()
    specs = {s.name: s for s in registry.specs() if s.distribution == "interplay"}
    assert set(specs) == BUILTIN_NAMES
    assert {"digits", "census", "fmnist", "mlp", "simple_cnn", "vgg", "resnet"} <= set(specs)
    assert specs["digits"].kind == "dataset" and specs["mlp"].kind == "model"
    assert specs["robust_accuracy"].input == "AdversarialExamples"
    assert specs["digits"].version == interplay.__version__
    assert set(registry.risks) >= BUILTIN_RISKS
    assert all(registry.risks[r].distribution == "interplay" for r in BUILTIN_RISKS)
    assert not [e for e in registry.errors if e.distribution == "interplay"]


def test_builtin_manifest_agrees_with_every_class() -> None:
    registry = get_registry()
    for name in BUILTIN_NAMES:
        cls = registry.load(name)
        assert cls.name == name
        assert registry.get(name).mismatches(cls) == []


def test_specs_names_and_kinds_are_sorted_and_filtered() -> None:
    registry = get_registry()
    datasets = registry.names("dataset")
    assert datasets == sorted(datasets) and {"census", "digits", "fmnist"} <= set(datasets)
    assert all(s.kind == "model" for s in registry.specs("model"))
    kinds = [kind for kind, _ in registry.iter_kinds()]
    assert kinds == ["dataset", "model", "attack", "defense", "metric"]


def test_core_artifact_table_matches_the_artifact_classes() -> None:
    for name, parent in CORE_ARTIFACTS.items():
        cls = getattr(artifacts, name)
        assert issubclass(cls, artifacts.Artifact)
        if parent is not None:
            direct = [b.__name__ for b in cls.__bases__ if issubclass(b, artifacts.Artifact)]
            assert direct == [parent], f"{name}: table says {parent}, class derives from {direct}"
    exported = {n for n in artifacts.__all__ if isinstance(getattr(artifacts, n), type)
                and issubclass(getattr(artifacts, n), artifacts.Artifact)}
    assert set(CORE_ARTIFACTS) <= exported
    # Partition is the only exported artifact a plugin cannot name in a manifest without ``module:Class``
    assert exported - set(CORE_ARTIFACTS) <= {"Partition"}
    for name, level in ACCESS_LEVELS.items():
        assert getattr(artifacts, name).level == level


def test_lazy_names_of_the_top_level_package_resolve() -> None:
    for name in interplay.__all__:
        assert getattr(interplay, name) is not None
    assert "Attack" in dir(interplay)
    with pytest.raises(AttributeError, match="no attribute 'Atack'"):
        _ = interplay.Atack  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- cheap discovery (subprocesses)

_HEAVY = ("torch", "torchvision", "opacus")


def test_listing_plugins_imports_neither_torch_nor_torchvision_nor_opacus(third_party_site: Path) -> None:
    code = f"""
        import json, sys
        from interplay.registry import get_registry
        registry = get_registry()
        names = [s.name for s in registry.specs()]
        heavy = [m for m in {(*_HEAVY, "badschema_plugin.impl_ok", "newrisk_plugin.attack")!r} if m in sys.modules]
        print(json.dumps({{"names": names, "heavy": heavy}}))
    """
    for pythonpath in (None, third_party_site):
        result = run_python(code, pythonpath=pythonpath)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert set(report["names"]) >= BUILTIN_NAMES
        assert report["heavy"] == []
    assert "x1_attack" in report["names"]  # the implementations were listed, not imported


def test_import_interplay_does_not_import_torch() -> None:
    result = run_python("""
        import sys
        import interplay
        assert interplay.__version__
        print(",".join(m for m in ("torch", "torchvision", "opacus", "numpy") if m in sys.modules))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_plugins_command_imports_no_heavy_module() -> None:
    result = run_python(f"""
        import sys
        from interplay.cli import main
        assert main(["plugins"]) == 0
        print("HEAVY=" + ",".join(m for m in {_HEAVY!r} if m in sys.modules))
    """)
    assert result.returncode == 0, result.stderr
    assert "digits" in result.stdout
    assert "HEAVY=\n" in result.stdout


# --------------------------------------------------------------------------- third-party distributions


def test_plugins_json_reports_broken_distributions_and_lists_the_rest(third_party_site: Path) -> None:
    result = run_interplay("plugins", "--json", pythonpath=third_party_site)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    plugins = {p["name"]: p for p in listing["plugins"]}
    errors = listing["errors"]
    for error in errors:
        assert {"distribution", "entry_point", "error"} <= set(error)

    # every built-in still listed, from distribution interplay
    assert set(plugins) >= BUILTIN_NAMES
    assert all(plugins[name]["distribution"] == "interplay" for name in BUILTIN_NAMES)
    for plugin in plugins.values():
        assert {"name", "kind", "risks", "distribution", "input", "output"} <= set(plugin)

    # (a) the manifest that raises on import
    broken = [e for e in errors if e["distribution"] == "broken-plugin"]
    assert len(broken) == 1
    assert broken[0]["entry_point"] == "broken"
    assert "import failed" in broken[0]["error"] and "ImportError" in broken[0]["error"]
    assert "quux_missing" in broken[0]["error"]

    # (b) invalid declarations, each naming the field; the valid entry of the same manifest is listed
    bad = {e["plugin"]: e["error"] for e in errors if e["distribution"] == "badschema-plugin"}
    assert "kind" in bad["typo_kind"] and "attak" not in plugins
    assert "input" in bad["bad_input"] and "NotAnArtifact" in bad["bad_input"]
    assert "Z9" in bad["unknown_risk"]
    assert not {"typo_kind", "bad_input", "unknown_risk"} & set(plugins)
    assert plugins["schema_ok_metric"]["distribution"] == "badschema-plugin"
    assert "lazy_bad_attack" in plugins  # listing reads declarations only; the class is not imported

    # (c) the new risk id and its plugins
    assert plugins["x1_attack"]["risks"] == ["X1"]
    assert plugins["x1_attack"]["distribution"] == "newrisk-plugin"
    assert plugins["x1_attack"]["version"] == "0.0.1"
    assert plugins["x1_metric"]["risks"] == ["X1"]

    # (d) one name, two distributions: an error naming both, and neither listed
    duplicates = [e for e in errors if "dup_metric" in e["error"]]
    assert len(duplicates) == 1
    assert "duplicate" in duplicates[0]["error"]
    assert "dup-plugin-a" in duplicates[0]["error"] and "dup-plugin-b" in duplicates[0]["error"]
    assert "dup_metric" not in plugins


def test_discovery_in_process_records_errors_with_distribution(third_party_registry: Registry) -> None:
    registry = third_party_registry
    (broken,) = _errors_of(registry, "broken-plugin")
    assert broken.plugin is None and broken.entry_point == "broken"
    assert broken.to_dict() == {"distribution": "broken-plugin", "entry_point": "broken", "error": broken.error,
                                "plugin": None}
    assert {e.plugin for e in _errors_of(registry, "badschema-plugin")} == {"typo_kind", "bad_input", "unknown_risk"}
    assert registry.risks["X1"].distribution == "newrisk-plugin"
    assert registry.risks["X1"].family == "privacy"
    assert set(registry.names()) >= BUILTIN_NAMES
    with pytest.raises(DuplicatePluginError) as info:
        registry.get("dup_metric")
    assert "dup-plugin-a" in str(info.value) and "dup-plugin-b" in str(info.value)
    with pytest.raises(UnknownPluginError, match="'bad_input' is not available: invalid declaration"):
        registry.get("bad_input")


def test_declaration_error_inside_an_implementation_surfaces_on_load(third_party_registry: Registry) -> None:
    registry = third_party_registry
    assert registry.get("lazy_bad_attack").distribution == "badschema-plugin"
    with pytest.raises(PluginError, match="invalid declaration") as info:
        registry.load("lazy_bad_attack")
    assert info.value.distribution == "badschema-plugin"
    assert "access is 'black-box' but Input TrainedModel implies 'white-box'" in str(info.value)
    recorded = [e for e in registry.errors if e.plugin == "lazy_bad_attack"]
    assert len(recorded) == 1 and recorded[0].distribution == "badschema-plugin"
    with pytest.raises(PluginError, match="invalid declaration"):  # remembered, not retried
        registry.load("lazy_bad_attack")
    assert len([e for e in registry.errors if e.plugin == "lazy_bad_attack"]) == 1
    assert registry.load("schema_ok_metric").name == "schema_ok_metric"


def test_plugin_with_a_new_risk_loads_resolves_and_passes_the_kit(
    third_party_registry: Registry, use_registry: Any
) -> None:
    from interplay.pipeline import Pipeline, validate_plugins
    from interplay.resolver import resolve
    from interplay.testing import check_plugin

    registry = use_registry(third_party_registry)
    pipeline = validate_plugins(Pipeline.from_dict(
        {"scenario": {"dataset": "digits", "model": "mlp"}, "attacks": ["x1_attack"], "metrics": ["x1_metric"]}
    ), registry)
    resolution = resolve(pipeline, registry)
    assert [(c.defense, c.attack, c.metric, c.risk) for c in resolution.cells] == [
        ("none", "x1_attack", "x1_metric", "X1")
    ]
    report = check_plugin("x1_attack")
    assert report.passed, report.format()
    assert check_plugin("x1_metric").passed


# --------------------------------------------------------------------------- Registry API


def test_get_unknown_name_suggests_close_names() -> None:
    registry = toy_registry()
    with pytest.raises(UnknownPluginError, match=r"unknown metric 'robust_acuracy'; did you mean 'robust_accuracy'"):
        registry.get("robust_acuracy", "metric")
    with pytest.raises(UnknownPluginError, match=r"unknown attack 'digits' \(it is a dataset\)"):
        registry.get("digits", "attack")
    with pytest.raises(UnknownPluginError, match="unknown plugin 'zzzz'"):
        registry.get("zzzz")


def test_load_of_a_target_that_does_not_import_is_recorded() -> None:
    registry = Registry()
    spec = PluginSpec.from_class(ToyEvasion, target="interplay_no_such_module.attacks:Gone")

    class Manifest:
        @hookimpl
        def interplay_plugins(self) -> list[PluginSpec]:
            return [spec]

    registry.add_manifest(Manifest(), distribution="gone-plugin", entry_point="gone")
    assert registry.names() == ["toy_evasion"]
    with pytest.raises(PluginError) as info:
        registry.load("toy_evasion")
    assert "cannot import interplay_no_such_module.attacks:Gone" in str(info.value)
    assert info.value.plugin == "toy_evasion" and info.value.distribution == "gone-plugin"
    (error,) = registry.errors
    assert (error.distribution, error.entry_point, error.plugin) == ("gone-plugin", "gone", "toy_evasion")
    assert "ModuleNotFoundError" in error.error


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"risks": ("S2",)}, "risks: manifest says ('S2',), class says ('S1',)"),
        ({"access": "black-box", "input": "QueryAccess"}, "manifest says 'QueryAccess', class says 'TrainedModel'"),
        ({"output": "MembershipScores"}, "output: manifest says 'MembershipScores'"),
        ({"kind": "defense", "access": None, "knowledge": None}, "is a attack, but the manifest declares a defense"),
        ({"target": "toy_plugins:TOYS"}, "is not an interplay module class"),
    ],
)
def test_load_detects_manifest_class_mismatch(overrides: dict[str, Any], fragment: str) -> None:
    data = {**PluginSpec.from_class(ToyEvasion).model_dump(), **overrides}
    spec = PluginSpec.model_validate(data)

    class Manifest:
        @hookimpl
        def interplay_plugins(self) -> list[PluginSpec]:
            return [spec]

    registry = Registry()
    registry.add_manifest(Manifest(), distribution="liar-plugin")
    with pytest.raises(PluginError) as info:
        registry.load("toy_evasion")
    assert fragment in str(info.value)
    assert [e.plugin for e in registry.errors] == ["toy_evasion"]


def test_register_a_class_directly() -> None:
    registry = Registry()
    spec = registry.register(ToyTrainDefense)
    assert spec.distribution == "__main__"
    assert spec == registry.get("toy_train_defense", "defense")
    assert (spec.input, spec.output, spec.risks) == ("TaskData", "TrainedModel", ("P1",))
    assert registry.load("toy_train_defense") is ToyTrainDefense
    assert isinstance(registry.create("toy_train_defense"), ToyTrainDefense)


def test_add_manifest_with_hookimpl_methods_and_modules() -> None:
    registry = Registry()
    registry.add_manifest(builtin_manifest, distribution="interplay")
    registry.add_manifest(ToyManifest((ToyEvasion,)), distribution="toys")
    assert "toy_evasion" in registry.names("attack") and "digits" in registry.names("dataset")
    assert registry.get("toy_evasion").distribution == "toys"
    assert registry.load("toy_evasion") is ToyEvasion
    assert registry.errors == []


def test_one_name_in_two_distributions_is_an_error_naming_both() -> None:
    registry = toy_registry()
    registry.add_manifest(ToyManifest((ToyEvasion,)), distribution="copycat-plugin", entry_point="copy")
    assert "toy_evasion" not in registry.names()
    with pytest.raises(DuplicatePluginError) as info:
        registry.get("toy_evasion")
    assert "'interplay-tests'" in str(info.value) and "'copycat-plugin'" in str(info.value)
    (error,) = [e for e in registry.errors if e.plugin == "toy_evasion"]
    assert "interplay-tests" in error.error and "copycat-plugin" in error.error
    registry.register(ToyEvasion, distribution="third")  # a third claimant is added to the same error
    (error,) = [e for e in registry.errors if e.plugin == "toy_evasion"]
    assert "'third'" in error.error and "copycat-plugin" in error.error


def test_plugin_naming_an_undeclared_risk_is_an_error() -> None:
    class Manifest:
        @hookimpl
        def interplay_plugins(self) -> list[dict[str, Any]]:
            return [{**PluginSpec.from_class(ToyEvasion).model_dump(), "risks": ["Q7"]}]

    registry = Registry()
    registry.add_manifest(builtin_manifest, distribution="interplay")
    registry.add_manifest(Manifest(), distribution="q7-plugin")
    registry.check_risks()
    assert "toy_evasion" not in registry.names()
    (error,) = registry.errors
    assert error.distribution == "q7-plugin" and "unknown risk id(s) ['Q7']" in error.error


def test_a_raising_hook_and_a_bad_hook_signature_are_recorded() -> None:
    class Raises:
        @hookimpl
        def interplay_plugins(self) -> list[Any]:
            raise RuntimeError("boom")

    class BadSignature:
        @hookimpl
        def interplay_plugins(self, extra: int) -> list[Any]:
            return []

    registry = Registry()
    registry.add_manifest(Raises(), distribution="raises-plugin")
    registry.add_manifest(BadSignature(), distribution="signature-plugin")
    messages = {e.distribution: e.error for e in registry.errors}
    assert "interplay_plugins() raised RuntimeError: boom" in messages["raises-plugin"]
    assert "invalid hook implementation" in messages["signature-plugin"] and "extra" in messages["signature-plugin"]


class _TypoHook:
    @hookimpl
    def interplay_plugin(self) -> list[Any]:  # singular: not a hook of the interplay project
        return [PluginSpec.from_class(ToyEvasion)]


class _NoMarker:
    def interplay_plugins(self) -> list[Any]:  # forgot @hookimpl
        return [PluginSpec.from_class(ToyEvasion)]


@pytest.mark.parametrize("manifest", [_TypoHook, _NoMarker], ids=["misnamed-hook", "no-hookimpl"])
def test_entry_point_without_valid_hooks_is_reported(manifest: type) -> None:
    registry = Registry()
    registry.add_manifest(manifest(), distribution="careless-plugin", entry_point="careless")
    assert [e.distribution for e in registry.errors] == ["careless-plugin"]
