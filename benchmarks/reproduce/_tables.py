"""Shared by the paper-table reproductions: run an example pipeline and format its cells like the paper."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from interplay.pipeline import Pipeline, load_pipeline, validate_plugins
from interplay.runner import Runner, RunSummary

ROOT = Path(__file__).resolve().parents[2]


def arguments(description: str, default_out: str) -> argparse.Namespace:
    """``--seeds``, ``--epochs``, ``--out`` and ``--device``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, help="override the pipeline's training epochs")
    parser.add_argument("--out", default=str(ROOT / "runs" / default_out))
    parser.add_argument("--device", default=None)
    return parser.parse_args()


def run_example(example: str, args: argparse.Namespace) -> RunSummary:
    """Run ``examples/<example>`` with the seeds and epochs of ``args``."""
    pipeline = load_pipeline(ROOT / "examples" / example)
    document = pipeline.model_dump(mode="json")
    document["scenario"]["seeds"] = list(range(args.seeds))
    if args.epochs:
        document["scenario"]["training"]["epochs"] = args.epochs
    pipeline = validate_plugins(Pipeline.from_dict(document))
    return Runner(pipeline, out=args.out, device=args.device).run()


def cell(report: dict[str, Any], defense: str, attack: str, metric: str, *, percent: bool = True) -> str:
    """``mean ± stderr`` of one report cell's defended values (percent, or raw with two decimals)."""
    for entry in report["cells"]:
        if (entry["defense"], entry["attack"], entry["metric"]) == (defense, attack, metric):
            stats = entry["defended"]
            if stats["mean"] is None:
                return "failed"
            scale = 100 if percent else 1
            return f"{scale * stats['mean']:.2f} ± {scale * (stats['stderr'] or 0.0):.2f}"
    return "-"


def print_table(title: str, columns: tuple[str, ...], rows: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]) -> None:
    """Print ``ours | paper`` per column for each row label."""
    print(title)
    print(f"{'':10}" + "".join(f"{c:>32}" for c in columns))
    for label, (ours, paper) in rows.items():
        print(f"{label:10}" + "".join(f"{o + ' | ' + p:>32}" for o, p in zip(ours, paper, strict=True)))
