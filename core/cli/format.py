"""Terminal tables for the command line (rich)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..pipeline import Pipeline
from ..registry import PluginLoadError, PluginSpec, RiskSpec
from ..resolver import Resolution

INTENDED = "◆"


def _console() -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:  # piped or captured: do not squeeze tables into 80 columns
        console = Console(highlight=False, soft_wrap=False, width=160)
    return console


def plugins_table(specs: Sequence[PluginSpec], errors: Sequence[PluginLoadError]) -> None:
    """Print the plugin listing and the load errors."""
    console = _console()
    table = Table(title="interplay plugins", title_justify="left")
    for column in ("name", "kind", "risks", "input -> output", "distribution", "summary"):
        table.add_column(column, overflow="fold")
    for spec in specs:
        flow = f"{spec.input or ''} -> {spec.output or ''}" if (spec.input or spec.output) else ""
        _add_row(table, spec.name, spec.kind, ",".join(spec.risks), flow, spec.distribution, spec.summary)
    console.print(table)
    if errors:
        console.print(f"[bold red]{len(errors)} plugin error(s):[/]")
        for error in errors:
            what = f" plugin {error.plugin!r}" if error.plugin else ""
            console.print(
                f"  {error.distribution} (entry point {error.entry_point!r}){what}: {error.error}", markup=False
            )


def risks_table(risks: Sequence[RiskSpec]) -> None:
    """Print the risk ids."""
    table = Table(title="risks", title_justify="left")
    for column in ("id", "name", "family", "distribution"):
        table.add_column(column)
    for risk in risks:
        _add_row(table, risk.id, risk.name, risk.family, risk.distribution)
    _console().print(table)


def matrix_table(pipeline: Pipeline, resolution: Resolution, risks: dict[str, RiskSpec]) -> None:
    """Print the interaction matrix: defenses x risks, each cell listing attack/metric pairs."""
    console = _console()
    columns = resolution.risks()
    title = f"interaction matrix{': ' + pipeline.name if pipeline.name else ''}"
    table = Table(title=title, title_justify="left", show_lines=True)
    table.add_column("defense", style="bold")
    table.add_column("produces")
    for risk in columns:
        table.add_column(f"{risk} {risks[risk].name if risk in risks else ''}".strip(), overflow="fold")
    for plan in resolution.defenses:
        row = [plan.label, " -> ".join(plan.steps) + f"\n({plan.output})"]
        for risk in columns:
            cells = [c for c in resolution.cells if c.defense == plan.label and c.risk == risk]
            marks = [f"{INTENDED + ' ' if c.intended else ''}{c.attack}/{c.metric}" for c in cells]
            row.append("\n".join(marks) if marks else "-")
        _add_row(table, *row)
    console.print(table)
    intended = sum(c.intended for c in resolution.cells)
    unintended = sum(not c.intended and c.defense != "none" for c in resolution.cells)
    baseline = sum(c.defense == "none" for c in resolution.cells)
    console.print(
        f"{len(resolution.cells)} cells ({baseline} baseline, {intended} intended {INTENDED}, {unintended} unintended) "
        f"over {len(resolution.defenses)} defenses (baseline 'none' included), {len(resolution.attacks)} attacks, "
        f"{len(pipeline.scenario.seeds)} seed(s)."
    )
    if not resolution.cells:
        console.print("No cells: add attacks (and metrics that consume their outputs) to the pipeline.")
    if resolution.unmatched:
        console.print(f"{len(resolution.unmatched)} unmatched:")
        for item in resolution.unmatched:
            metric = f" [{item.metric}]" if item.metric else ""
            console.print(f"  {item.defense} x {item.attack}{metric}: {item.reason}", markup=False)


_ARROWS = {
    "raised": "↑ raised",
    "lowered": "↓ lowered",
    "unchanged": "= unchanged",
    "mixed": "↕ mixed",
    "failed": "✗ failed",
}


def _stat(stats: dict[str, Any]) -> str:
    if stats.get("mean") is None:
        return "-"
    stderr = stats.get("stderr")
    return f"{stats['mean']:.4f}" + (f" ± {stderr:.4f}" if stderr is not None else "")


def _model_facts(models: dict[str, dict[str, Any]]) -> list[str]:
    """One ``defense: key=value, ...`` entry per defense whose models record facts (numbers as mean ± stderr)."""
    entries = []
    for defense, facts in models.items():
        shown = []
        for key, value in facts.items():
            if isinstance(value, dict) and "mean" in value:
                spread = value.get("stderr")
                shown.append(f"{key}={value['mean']:.4g}" + (f" ± {spread:.2g}" if spread else ""))
            elif isinstance(value, str | int | float | bool):
                shown.append(f"{key}={value}")
        if shown:
            entries.append(f"{defense}: " + ", ".join(shown))
    return entries


def report_tables(report: dict[str, Any], risks: dict[str, RiskSpec], *, title: str) -> None:
    """Print the interaction matrix (defenses x risks) and the per-cell table of a report."""
    from ..runner.report import interaction_matrix

    console = _console()
    cells = report["cells"]
    matrix = interaction_matrix(report)
    columns = list(dict.fromkeys(c["risk"] for c in cells))
    if matrix:
        table = Table(
            title=f"interaction matrix: {title} (susceptibility vs. baseline, paired test)", title_justify="left"
        )
        table.add_column("defense", style="bold")
        for risk in columns:
            name = risks[risk].name if risk in risks else ""
            table.add_column(f"{risk} {name}".strip())
        intended = {(c["defense"], c["risk"]) for c in cells if c["intended"]}
        for defense, row in matrix.items():
            values = []
            for risk in columns:
                text = _ARROWS.get(row.get(risk, ""), "-")
                values.append(f"{INTENDED} {text}" if (defense, risk) in intended and risk in row else text)
            _add_row(table, defense, *values)
        console.print(table)
    detail = Table(title="cells (mean ± standard error over seeds)", title_justify="left")
    for column in ("defense", "attack", "metric", "risk", "baseline", "defended", "delta", "p", "susceptibility"):
        detail.add_column(column, overflow="fold")
    for cell in cells:
        delta = "-" if cell["delta"] is None or cell["defense"] == "none" else f"{cell['delta']:+.4f}"
        p_value = "-" if cell["p_value"] is None else f"{cell['p_value']:.3g}"
        verdict = (
            "failed"
            if cell["status"] == "failed"
            else ("" if cell["defense"] == "none" else _ARROWS.get(cell["susceptibility"], "(utility)"))
        )
        mark = f"{INTENDED} " if cell["intended"] else ""
        _add_row(
            detail,
            f"{mark}{cell['defense']}",
            cell["attack"],
            cell["metric"],
            cell["risk"],
            _stat(cell["baseline"]),
            _stat(cell["defended"]),
            delta,
            p_value,
            verdict,
        )
    console.print(detail)
    facts = _model_facts(report.get("models", {}))
    if facts:
        console.print("models: " + "; ".join(facts))
    console.print(
        f"{INTENDED} intended interaction (the defense targets the risk); significance at "
        f"p < {report['alpha']} ({report['test']})."
    )


def _add_row(table: Table, *cells: str) -> None:
    """Add a row whose text is printed as it is: names like ``attribute_auc[race]`` are not rich markup."""
    table.add_row(*(escape(cell) for cell in cells))
