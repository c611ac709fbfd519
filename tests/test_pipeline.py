"""Pipeline documents: parsing, shorthand, validation errors with field paths, round trips, safe YAML."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import REPO
from toy_plugins import toy_registry

from interplay.errors import ConfigError
from interplay.pipeline import Pipeline, load_pipeline, validate_plugins
from interplay.registry import Registry

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

SCENARIO = """\
scenario:
  dataset: digits
  model: mlp
"""


@pytest.fixture(scope="module")
def registry() -> Registry:
    return toy_registry()


def parse(text: str) -> Pipeline:
    return Pipeline.from_yaml(textwrap.dedent(text))


def config_error(text: str, registry: Registry | None = None) -> ConfigError:
    """The ConfigError raised by parsing ``text`` (and validating its plugins when ``registry`` is given)."""
    with pytest.raises(ConfigError) as info:
        pipeline = parse(text)
        if registry is not None:
            validate_plugins(pipeline, registry)
    return info.value


# --------------------------------------------------------------------------- examples and shorthand


def test_there_are_examples() -> None:
    assert REPO / "examples" / "digits.yaml" in EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_pipelines_load(path: Path) -> None:
    pipeline = load_pipeline(path)
    assert pipeline.scenario.dataset.name
    assert Pipeline.from_yaml(pipeline.to_yaml()).model_dump() == pipeline.model_dump()


def test_digits_example_content() -> None:
    pipeline = load_pipeline(REPO / "examples" / "digits.yaml")
    assert pipeline.name == "digits-default"
    assert pipeline.scenario.dataset.name == "digits"
    assert pipeline.scenario.model.name == "mlp"
    assert pipeline.scenario.model.params == {"hidden_sizes": [128, 64]}
    assert pipeline.scenario.training.epochs == 30 and pipeline.scenario.training.batch_size == 64
    assert pipeline.scenario.seeds == [0, 1, 2]
    assert pipeline.scenario.split.defender == 0.5


def test_bare_names_are_shorthand(registry: Registry) -> None:
    pipeline = validate_plugins(parse(SCENARIO + textwrap.dedent("""\
        defenses: [toy_train_defense]
        attacks: [toy_evasion, {name: toy_blackbox_mi, params: {}}]
        metrics: [robust_accuracy]
    """)), registry)
    assert pipeline.scenario.dataset.name == "digits" and pipeline.scenario.dataset.params == {}
    assert [d.label for d in pipeline.defenses] == ["toy_train_defense"]
    assert [ref.name for ref in pipeline.defenses[0].chain] == ["toy_train_defense"]
    assert [(a.name, a.params, a.metrics) for a in pipeline.attacks] == [
        ("toy_evasion", {}, None), ("toy_blackbox_mi", {}, None)
    ]
    assert pipeline.metrics is not None and [m.name for m in pipeline.metrics] == ["robust_accuracy"]


def test_defaults() -> None:
    pipeline = parse(SCENARIO)
    assert pipeline.version == 1
    assert pipeline.defenses == [] and pipeline.attacks == [] and pipeline.metrics is None
    assert pipeline.scenario.seeds == [0]
    assert pipeline.scenario.device == "auto"
    assert (pipeline.scenario.split.defender, pipeline.scenario.split.adversary) == (0.5, 0.5)


def test_from_dict_builds_the_same_pipeline() -> None:
    document = {"scenario": {"dataset": "digits", "model": {"name": "mlp"}}, "attacks": ["toy_evasion"]}
    assert Pipeline.from_dict(document).model_dump() == parse(SCENARIO + "attacks: [toy_evasion]\n").model_dump()


# --------------------------------------------------------------------------- structural errors


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ("  split: {defendr: 0.5}\n", "scenario.split.defendr"),
        ("  training: {epoch: 3}\n", "scenario.training.epoch"),
        ("  modle: mlp\n", "scenario.modle"),
        ("attack: [toy_evasion]\n", "attack"),
        ("attacks: [{name: toy_evasion, parms: {eps: 0.1}}]\n", "attacks[0].parms"),
        ("defenses: [{name: toy_train_defense, parms: {}}]\n", "defenses[0].parms"),
        ("defenses: [{chain: [toy_data_defense, {name: toy_train_defense, parms: {}}]}]\n",
         "defenses[0].chain[1].parms"),
        ("attacks: [{name: toy_evasion, metrics: [{name: robust_accuracy, idd: r}]}]\n", "attacks[0].metrics[0].idd"),
    ],
)
def test_unknown_key_names_its_path(extra: str, path: str) -> None:
    error = config_error(SCENARIO + extra)
    assert error.path == path
    assert str(error) == f"{path}: unknown key"


@pytest.mark.parametrize(
    ("extra", "path", "fragment"),
    [
        ("  seeds: [1, 1]\n", "scenario.seeds", "seeds must be unique"),
        ("  seeds: []\n", "scenario.seeds", "at least 1 item"),
        ("  seeds: [zero]\n", "scenario.seeds[0]", "valid integer"),
        ("  split: {defender: 0.8, adversary: 0.5}\n", "scenario.split", "must not exceed 1"),
        ("  split: {defender: 0}\n", "scenario.split.defender", "greater than 0"),
        ("  device: tpu\n", "scenario.device", "pattern"),
        ("  training: {optimizer: rmsprop}\n", "scenario.training.optimizer", "'adam'"),
        ("  training: {epochs: -1}\n", "scenario.training.epochs", "greater than or equal to 0"),
        ("version: 2\n", "version", "1"),
        ("defenses: [{name: a, chain: [b]}]\n", "defenses[0]", "either 'name'"),
        ("defenses: [{chain: []}]\n", "defenses[0].chain", "at least 1 item"),
        ("attacks: [{params: {}}]\n", "attacks[0].name", "required field is missing"),
    ],
)
def test_invalid_values_name_their_path(extra: str, path: str, fragment: str) -> None:
    error = config_error(SCENARIO + extra)
    assert error.path == path
    assert fragment in str(error)


def test_missing_scenario_is_reported() -> None:
    error = config_error("attacks: [toy_evasion]\n")
    assert error.path == "scenario"
    assert "required field is missing" in str(error)


def test_broken_yaml_reports_the_line() -> None:
    error = config_error("scenario:\n  dataset: digits\n   model: mlp\n")
    assert "invalid YAML at line 3" in str(error)
    error = config_error("scenario: {dataset: digits\n")
    assert "invalid YAML at line" in str(error)


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("", "NoneType"), ("just text\n", "str")])
def test_document_must_be_a_mapping(text: str, kind: str) -> None:
    assert f"a pipeline must be a mapping, got {kind}" in str(config_error(text))


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"!!python/object/apply:pathlib.Path.touch [{str(marker)!r}]\n"
    error = config_error(text)
    assert "invalid YAML" in str(error)
    assert not marker.exists()
    error = config_error(SCENARIO + "name: !!python/object:os.system {}\n")
    assert "invalid YAML" in str(error) and "python/object" in str(error)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_pipeline(missing)
    assert info.value.path == str(missing)
    assert "cannot read pipeline file" in str(info.value)


# --------------------------------------------------------------------------- ids, chains, seeds


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("attacks: [toy_evasion, toy_evasion]\n", "attacks[1]: duplicate id 'toy_evasion'"),
        ("attacks: [{name: toy_evasion, id: x}, {name: toy_blackbox_mi, id: x}]\n", "attacks[1]: duplicate id 'x'"),
        ("defenses: [toy_posthoc, {chain: [toy_posthoc], id: toy_posthoc}]\n", "defenses[1]: duplicate id"),
        ("defenses: [{name: toy_train_defense, id: none}]\n", "defenses[0]: 'none' is the undefended baseline"),
        ("attacks: [{name: toy_evasion, id: none}]\n", "attacks[0]: 'none' is the undefended baseline"),
    ],
)
def test_duplicate_ids_and_reserved_none_are_rejected(extra: str, fragment: str) -> None:
    assert fragment in str(config_error(SCENARIO + extra))


def test_distinct_ids_allow_one_plugin_twice(registry: Registry) -> None:
    pipeline = validate_plugins(parse(SCENARIO + textwrap.dedent("""\
        attacks:
          - {name: toy_evasion, id: weak}
          - {name: toy_evasion, id: strong, params: {eps: 0.5}}
    """)), registry)
    assert [(a.label, a.params) for a in pipeline.attacks] == [("weak", {}), ("strong", {"eps": 0.5})]


def test_duplicate_id_error_path_is_the_entry() -> None:
    assert config_error(SCENARIO + "attacks: [toy_evasion, toy_evasion]\n").path == "attacks[1]"


@pytest.mark.parametrize(
    "extra",
    [
        "attacks: [toy_evasion]\nmetrics: [robust_accuracy, robust_accuracy]\n",
        "attacks: [{name: toy_evasion, metrics: [robust_accuracy, robust_accuracy]}]\n",
    ],
    ids=["top-level", "per-attack"],
)
def test_duplicate_metric_labels_are_rejected(extra: str) -> None:
    assert "duplicate id" in str(config_error(SCENARIO + extra))


def test_chain_entries(registry: Registry) -> None:
    pipeline = validate_plugins(parse(SCENARIO + textwrap.dedent("""\
        defenses:
          - chain: [toy_data_defense, {name: toy_train_defense}]
          - {chain: [toy_data_defense, toy_adv_training], id: clean_then_robust}
          - {name: toy_posthoc, id: perturb}
    """)), registry)
    first, second, third = pipeline.defenses
    assert [ref.name for ref in first.chain] == ["toy_data_defense", "toy_train_defense"]
    assert first.label == "toy_data_defense+toy_train_defense"
    assert second.label == "clean_then_robust"
    assert [ref.name for ref in third.chain] == ["toy_posthoc"] and third.label == "perturb"


# --------------------------------------------------------------------------- plugin validation


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ("scenario:\n  dataset: digits\n  model: {name: mlp, params: {hidden_sizes: abc}}\n",
         "scenario.model.params.hidden_sizes", "valid tuple"),
        ("scenario:\n  dataset: digits\n  model: {name: mlp, params: {hidden_sizes: [8, x]}}\n",
         "scenario.model.params.hidden_sizes[1]", "valid integer"),
        ("scenario:\n  dataset: digits\n  model: {name: mlp, params: {capacity: m9}}\n",
         "scenario.model.params.capacity", "'m1'"),
        ("scenario:\n  dataset: {name: digits, params: {test_fraction: 2}}\n  model: mlp\n",
         "scenario.dataset.params.test_fraction", "less than 1"),
        (SCENARIO + "attacks: [{name: toy_evasion, params: {eps: big}}]\n", "attacks[0].params.eps", "valid number"),
        (SCENARIO + "attacks: [{name: toy_evasion, params: {epsilon: 1}}]\n", "attacks[0].params.epsilon",
         "unknown key"),
        (SCENARIO + "defenses: [{chain: [toy_data_defense, {name: toy_train_defense, params: {x: 1}}]}]\n",
         "defenses[0].chain[1].params.x", "unknown key"),
        (SCENARIO + "defenses: [{name: toy_train_defense, params: {x: 1}}]\n", "defenses[0].params.x", "unknown key"),
    ],
)
def test_wrong_plugin_params_name_their_path(registry: Registry, text: str, path: str, fragment: str) -> None:
    error = config_error(text, registry)
    assert error.path == path
    assert fragment in str(error)


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ("scenario:\n  dataset: digitz\n  model: mlp\n", "scenario.dataset.name", "did you mean 'digits'"),
        ("scenario:\n  dataset: mlp\n  model: mlp\n", "scenario.dataset.name", "(it is a model)"),
        ("scenario:\n  dataset: Digits\n  model: mlp\n", "scenario.dataset.name", "not a valid plugin name"),
        (SCENARIO + "attacks: [toy_evasoin]\n", "attacks[0].name", "did you mean 'toy_evasion'"),
        (SCENARIO + "defenses: [{chain: [toy_data_defense, toy_train_defence]}]\n", "defenses[0].chain[1].name",
         "did you mean 'toy_train_defense'"),
        (SCENARIO + "attacks: [toy_evasion]\nmetrics: [robust_acuracy]\n", "metrics[0].name",
         "did you mean 'robust_accuracy'"),
        (SCENARIO + "attacks: [{name: toy_evasion, metrics: [toy_evasion]}]\n", "attacks[0].metrics[0].name",
         "(it is an attack)"),
    ],
)
def test_unknown_plugins_name_their_path(registry: Registry, text: str, path: str, fragment: str) -> None:
    error = config_error(text, registry)
    assert error.path == path
    assert fragment in str(error)


def test_validate_plugins_returns_the_pipeline(registry: Registry) -> None:
    pipeline = parse(SCENARIO + "attacks: [toy_evasion]\n")
    assert validate_plugins(pipeline, registry) is pipeline


# --------------------------------------------------------------------------- serialisation


def test_to_yaml_round_trips() -> None:
    pipeline = parse("""\
        name: round-trip
        scenario:
          dataset: {name: digits, params: {test_fraction: 0.25}}
          model: {name: mlp, params: {hidden_sizes: [16, 8], dropout: 0.1}}
          training: {optimizer: sgd, lr: 0.05, epochs: 2, batch_size: 32}
          split: {defender: 0.6, adversary: 0.4}
          seeds: [3, 1]
          device: cpu
        defenses:
          - toy_train_defense
          - {chain: [toy_data_defense, {name: toy_adv_training, params: {}}], id: both}
        attacks:
          - {name: toy_evasion, id: e1, params: {eps: 0.3}, metrics: [robust_accuracy]}
          - {name: toy_blackbox_mi, params: {threshold: null}}
        metrics: [robust_accuracy, {name: toy_mi_metric, id: mi}]
    """)
    text = pipeline.to_yaml()
    again = Pipeline.from_yaml(text)
    assert again.model_dump() == pipeline.model_dump()
    assert again.to_yaml() == text
    assert again.attacks[1].params == {"threshold": None}  # explicit nulls in params survive
    assert again.scenario.seeds == [3, 1]

