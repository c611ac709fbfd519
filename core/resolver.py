"""Resolution of the interaction matrix from declared types alone.

Given a pipeline and the registry's declarations (no implementation is imported), the
resolver decides which (defense, attack, metric) cells exist, whether each is intended
(the defense targets the cell's risk) or unintended, how defenses chain, and, for each
pair that does not match, why. The rules:

* a defense chain's links must fit: each link's output must be what the next consumes;
  a chain that ends in data is completed by the scenario's standard training, and one
  that starts from a trained model is preceded by it;
* an attack on a model runs against a defense when the defense's output provides the
  attack's input, narrowing access if needed (white-box -> black-box -> label-only);
* an attack on data (poisoning) produces a task that feeds the training of the baseline
  and of every defense;
* a metric attaches to an attack whose output it consumes, and needs the model access it
  declares as ``target_access``; a metric that consumes a model directly is a measurement,
  taken on every model (its cells have the attack ``none``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ResolutionError
from .pipeline import Pipeline, PluginRef
from .registry import ArtifactTypes, PluginSpec, Registry, get_registry

__all__ = ["BASELINE", "Cell", "DefensePlan", "Resolution", "Unmatched", "resolve"]

BASELINE = "none"
TRAINING = "TaskData -> TrainedModel (scenario training)"


@dataclass(frozen=True)
class Cell:
    """One (defense, attack, metric) cell of the interaction matrix."""

    defense: str
    attack: str
    metric: str
    risk: str
    intended: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class Unmatched:
    """A (defense, attack) pair, or an attack's metric, that yields no cell, and why."""

    defense: str
    attack: str
    reason: str
    metric: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``metric`` only when the reason concerns one)."""
        data = asdict(self)
        if self.metric is None:
            del data["metric"]
        return data


@dataclass(frozen=True)
class DefensePlan:
    """How one defense row produces its model.

    Attributes:
        label: The row's id.
        steps: Plugin names in order, ``train`` standing for the scenario's standard training.
        output: The artifact type the attacks receive.
        risks: The risks the row's defenses target.
    """

    label: str
    steps: tuple[str, ...]
    output: str
    risks: tuple[str, ...]


@dataclass
class Resolution:
    """The resolved matrix: defense plans, cells and unmatched pairs."""

    defenses: list[DefensePlan] = field(default_factory=list)
    attacks: list[str] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    unmatched: list[Unmatched] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``interplay matrix --json``."""
        return {
            "cells": [c.to_dict() for c in self.cells],
            "unmatched": [u.to_dict() for u in self.unmatched],
            "defenses": [
                {"defense": d.label, "steps": list(d.steps), "output": d.output, "risks": list(d.risks)}
                for d in self.defenses
            ],
        }

    def risks(self) -> list[str]:
        """Risk ids that have at least one cell, in first-seen order."""
        return list(dict.fromkeys(c.risk for c in self.cells))


def _plan_defense(
    label: str, refs: list[PluginRef], specs: list[PluginSpec], types: ArtifactTypes, path: str
) -> DefensePlan:
    steps: list[str] = []
    current = "TaskData"
    for index, (ref, spec) in enumerate(zip(refs, specs, strict=True)):
        assert spec.input is not None and spec.output is not None
        if types.is_task(spec.input):
            if not types.is_task(current):
                where = f"{path}.chain[{index}]" if len(refs) > 1 else path
                raise ResolutionError(
                    f"{where}: {ref.name} needs {spec.input} (it trains on data), but the chain before it "
                    f"already produced {current}"
                )
        elif types.is_model_access(spec.input):
            if types.is_task(current):
                steps.append("train")
                current = "TrainedModel"
            if not types.provides(current, spec.input):
                where = f"{path}.chain[{index}]" if len(refs) > 1 else path
                raise ResolutionError(f"{where}: {ref.name} needs {spec.input}; the chain before it outputs {current}")
        steps.append(ref.name)
        current = spec.output
    if types.is_task(current):
        steps.append("train")
        current = "TrainedModel"
    risks = tuple(dict.fromkeys(r for s in specs for r in s.risks))
    return DefensePlan(label=label, steps=tuple(steps), output=current, risks=risks)


def _cell_risk(attack: PluginSpec | None, metric: PluginSpec) -> str | None:
    if attack is None:
        return metric.risks[0] if metric.risks else None
    shared = [r for r in attack.risks if r in metric.risks]
    if shared:
        return shared[0]
    if not metric.risks:
        return attack.risks[0]
    return None


def resolve(pipeline: Pipeline, registry: Registry | None = None) -> Resolution:
    """Resolve ``pipeline``'s interaction matrix from declared types.

    Args:
        pipeline: A pipeline whose plugin names exist (see :func:`~interplay.pipeline.validate_plugins`).
        registry: Where declarations are read (default: the process-wide registry).

    Returns:
        The defense plans, every cell, and every unmatched pair with its reason.

    Raises:
        ResolutionError: When a defense chain cannot compose, or a metric named for an
            attack cannot consume its output.
    """
    registry = registry or get_registry()
    types = ArtifactTypes()
    result = Resolution()

    baseline = DefensePlan(label=BASELINE, steps=("train",), output="TrainedModel", risks=())
    result.defenses.append(baseline)
    for index, entry in enumerate(pipeline.defenses):
        specs = [registry.get(ref.name, "defense") for ref in entry.chain]
        result.defenses.append(_plan_defense(entry.label, entry.chain, specs, types, f"defenses[{index}]"))

    global_metrics = (
        [(ref.label, registry.get(ref.name, "metric")) for ref in pipeline.metrics]
        if pipeline.metrics is not None
        else [(s.name, s) for s in registry.specs("metric") if not types.is_model_access(s.input or "")]
    )

    for a_index, attack_ref in enumerate(pipeline.attacks):
        attack = registry.get(attack_ref.name, "attack")
        result.attacks.append(attack_ref.label)
        assert attack.input is not None and attack.output is not None
        explicit = attack_ref.metrics is not None
        if explicit:
            assert attack_ref.metrics is not None
            metric_pairs = [(ref.label, registry.get(ref.name, "metric")) for ref in attack_ref.metrics]
        else:
            metric_pairs = list(global_metrics)
        consuming = []
        for m_index, (m_label, metric) in enumerate(metric_pairs):
            if metric.input is not None and types.is_a(attack.output, metric.input):
                consuming.append((m_label, metric))
            elif explicit:
                raise ResolutionError(
                    f"attacks[{a_index}].metrics[{m_index}]: metric {metric.name!r} consumes {metric.input}; "
                    f"attack {attack.name!r} outputs {attack.output}"
                )
        if types.is_task(attack.input) and not types.is_task(attack.output):
            for plan in result.defenses:
                result.unmatched.append(
                    Unmatched(
                        plan.label,
                        attack_ref.label,
                        f"{attack.name} attacks data but outputs {attack.output}, not a task to train on",
                    )
                )
            continue
        for plan in result.defenses:
            if types.is_model_access(attack.input) and not types.provides(plan.output, attack.input):
                result.unmatched.append(
                    Unmatched(
                        plan.label,
                        attack_ref.label,
                        f"{attack.name} needs {attack.input}; {plan.label} outputs {plan.output}",
                    )
                )
                continue
            if not consuming:
                result.unmatched.append(
                    Unmatched(
                        plan.label, attack_ref.label, f"no metric consumes {attack.output}, the output of {attack.name}"
                    )
                )
                continue
            for m_label, metric in consuming:
                if metric.target_access is not None and not types.provides(plan.output, metric.target_access):
                    result.unmatched.append(
                        Unmatched(
                            plan.label,
                            attack_ref.label,
                            f"{metric.name} needs {metric.target_access}; {plan.label} outputs {plan.output}",
                            m_label,
                        )
                    )
                    continue
                risk = _cell_risk(attack, metric)
                if risk is None:
                    result.unmatched.append(
                        Unmatched(
                            plan.label,
                            attack_ref.label,
                            f"{metric.name} measures {list(metric.risks)}, {attack.name} attacks {list(attack.risks)}",
                            m_label,
                        )
                    )
                    continue
                result.cells.append(Cell(plan.label, attack_ref.label, m_label, risk, risk in plan.risks))

    measurements = [
        (ref.label, registry.get(ref.name, "metric"))
        for ref in pipeline.metrics or []
        if types.is_model_access(registry.get(ref.name, "metric").input or "")
    ]
    for m_label, metric in measurements:
        assert metric.input is not None
        risk = _cell_risk(None, metric)
        for plan in result.defenses:
            if not types.provides(plan.output, metric.input):
                result.unmatched.append(
                    Unmatched(
                        plan.label,
                        BASELINE,
                        f"{metric.name} needs {metric.input}; {plan.label} outputs {plan.output}",
                        m_label,
                    )
                )
            elif risk is None:
                result.unmatched.append(
                    Unmatched(plan.label, BASELINE, f"{metric.name} measures a model but declares no risk id", m_label)
                )
            else:
                result.cells.append(Cell(plan.label, BASELINE, m_label, risk, risk in plan.risks))
    return result
