"""Shadow-model training: ``train_models`` vectorised (torch.func) against one ``fit`` per model.

Both sides train the same ``S`` models in one process: the same initial weights (``build(s)``),
the same rows (each shadow keeps a random half of the Census adversary rows, ``--pkeep 0.5``),
the same mini-batch order and the same optimizer (Adam, lr 1e-3, batch 256), so both do the same
work and must end with the same parameters up to floating-point rounding. The table reports the
seconds of each side, the speed-up ``sequential / vectorised``, the largest parameter difference
and the largest difference of the predicted probabilities on 2,000 test rows (``agree``: at most
``AGREEMENT``).

Architectures: AMULET's smallest MLP (``mlp`` capacity m1, hidden 128-256-128) and a 64-64 MLP.
Targets on 2 CPU cores at 16 shadows: a speed-up of at least 2 (m1) and 5 (64-64).

Before timing, each side is warmed up on a tiny problem (the first ``torch.func`` call in a
process imports parts of torch that take seconds). Only ``--repeats`` alternating runs are timed;
the medians are compared.

Usage::

    python benchmarks/shadow_training.py                          # 16 and 64 shadows, 3 epochs, CPU
    python benchmarks/shadow_training.py --shadows 16 --epochs 2 --threads 2
    python benchmarks/shadow_training.py --device cuda --shadows 16 64 256
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import interplay
from interplay import TrainingRecipe
from interplay._seeding import derive_seed, seeded
from interplay.artifacts import TaskData
from interplay.plugins.privacy._shadows import train_models

ARCHITECTURES: dict[str, dict[str, object]] = {
    "mlp m1 (128-256-128)": {"capacity": "m1"},
    "mlp 64-64": {"hidden_sizes": (64, 64)},
}
# Largest tolerated difference of predicted probabilities between the two sides. Adam turns float32 rounding
# in near-zero gradients into full-size steps, so a few of 64 m1 shadows differ by up to ~4e-3 after 3 epochs;
# in float64 (--dtype float64) the same runs agree within 1e-8, which shows the two sides do the same maths.
AGREEMENT = 1e-2


@dataclass
class Row:
    architecture: str
    shadows: int
    vectorised: list[float]
    sequential: list[float]
    param_diff: float
    prob_diff: float

    @property
    def ratio(self) -> float:
        return statistics.median(self.sequential) / statistics.median(self.vectorised)


def _load_census() -> TaskData:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not os.environ.get("INTERPLAY_DATA") and shared.is_dir():
        os.environ["INTERPLAY_DATA"] = str(shared)
    task: TaskData = interplay.get_registry().create("census").load()
    return task.partitioned(seed=0)


def _builder(task: TaskData, params: dict[str, object], dtype: torch.dtype) -> Callable[[int], nn.Module]:
    factory = interplay.get_registry().create("mlp", **params)

    def build(s: int) -> nn.Module:
        with seeded(derive_seed(0, "benchmark-init", s)):
            return factory.build(input_shape=task.input_shape, num_classes=task.num_classes).to(dtype)

    return build


def _timed(device: str, run: Callable[[], list[nn.Module]]) -> tuple[float, list[nn.Module]]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    models = run()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, models


def _largest_differences(a: list[nn.Module], b: list[nn.Module], x: torch.Tensor) -> tuple[float, float]:
    pairs = list(zip(a, b, strict=True))
    with torch.no_grad():
        params = max(
            float((p - q).abs().max()) for m, n in pairs for p, q in zip(m.parameters(), n.parameters(), strict=True)
        )
        probs = max(float((m(x).softmax(1) - n(x).softmax(1)).abs().max()) for m, n in pairs)
    return params, probs


def run_one(task: TaskData, name: str, shadows: int, args: argparse.Namespace) -> Row:
    dtype = getattr(torch, args.dtype)
    x, y = task.adversary.x.to(dtype), task.adversary.y
    generator = torch.Generator().manual_seed(derive_seed(0, "benchmark-keep", shadows))
    keep = torch.rand(shadows, len(x), generator=generator) < args.pkeep
    recipe = TrainingRecipe(optimizer="adam", lr=1e-3, batch_size=256, epochs=args.epochs)
    build = _builder(task, ARCHITECTURES[name], dtype)

    def vectorised() -> list[nn.Module]:
        return train_models(build, x, y, keep, recipe, seed=1, device=args.device, vectorize=True)

    def sequential() -> list[nn.Module]:
        return train_models(build, x, y, keep, recipe, seed=1, device=args.device, vectorize=False)

    times: dict[str, list[float]] = {"vectorised": [], "sequential": []}
    results: dict[str, list[nn.Module]] = {}
    for _ in range(args.repeats):
        for side, fn in (("vectorised", vectorised), ("sequential", sequential)):
            seconds, results[side] = _timed(args.device, fn)
            times[side].append(seconds)
    test_x = task.test.x[:2000].to(args.device, dtype)
    param_diff, prob_diff = _largest_differences(results["vectorised"], results["sequential"], test_x)
    return Row(name, shadows, times["vectorised"], times["sequential"], param_diff, prob_diff)


def _warm_up(task: TaskData, device: str) -> None:
    x, y = task.adversary.x[:512], task.adversary.y[:512]
    keep = torch.ones(2, len(x), dtype=torch.bool)
    recipe = TrainingRecipe(epochs=1, batch_size=256)
    for params in ARCHITECTURES.values():
        build = _builder(task, params, torch.float32)
        for vectorize in (True, False):
            train_models(build, x, y, keep, recipe, seed=0, device=device, vectorize=vectorize)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shadows", type=int, nargs="+", default=[16, 64], help="numbers of shadow models")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per shadow model")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--pkeep", type=float, default=0.5, help="share of the adversary rows each shadow keeps")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per side (alternating); medians reported")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="parameters and inputs")
    parser.add_argument("--architectures", nargs="+", choices=sorted(ARCHITECTURES), default=list(ARCHITECTURES))
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    task = _load_census()
    _warm_up(task, args.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"census adversary rows {len(task.adversary)} ({task.adversary.x.shape[1]} features), pkeep {args.pkeep}, "
        f"Adam lr 1e-3 batch 256, {args.epochs} epochs, {args.dtype}, device {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads, load average {load:.1f}, median of {args.repeats}"
    )
    columns = ["architecture".ljust(20), "shadows", "vectorised s", "sequential s", "speed-up"]
    columns += ["max d param", "max d prob"]
    print("| " + " | ".join(columns) + " | agree |")
    print("|" + "|".join("-" * (len(c) + 2) for c in [*columns, "agree"]) + "|")
    for name in args.architectures:
        for shadows in args.shadows:
            row = run_one(task, name, shadows, args)
            cells = [
                f"{row.architecture:<20}",
                f"{row.shadows:>7}",
                f"{statistics.median(row.vectorised):>12.2f}",
                f"{statistics.median(row.sequential):>12.2f}",
                f"{row.ratio:>8.2f}",
                f"{row.param_diff:>11.2e}",
                f"{row.prob_diff:>10.2e}",
                f"{'yes' if row.prob_diff <= AGREEMENT else 'NO':<5}",
            ]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
