"""Shadow-model training: ``train_models`` vectorised (all models in one stack) against one ``fit`` per model.

Both sides train the same ``S`` models in one process: the same initial weights (``build(s)``),
the same rows (each shadow keeps a random half of the Census adversary rows, ``--pkeep 0.5``),
the same mini-batch order and the same optimizer (Adam, lr 1e-3, batch 256), so both do the same
work and must end with the same parameters up to floating-point rounding. The table reports the
seconds of each side, the speed-up ``sequential / vectorised``, the largest parameter difference
and the largest difference of the predicted probabilities on 2,000 test rows (``agree``: at most
``AGREEMENT``).

Architectures: AMULET's smallest MLP (``mlp`` capacity m1, hidden 128-256-128) and a 64-64 MLP.
Targets on 2 CPU cores at 16 shadows: a speed-up of at least 2 (m1) and 5 (64-64).

With ``--bare`` a third side is timed for reference: a plain torch.func loop (stacked parameters,
``vmap(grad(loss))``, torch.optim.Adam) in which every model is cut to the smallest model's rows,
so its batches line up without padding or masking: roughly the least a torch.func version can do.

Before timing, each side is warmed up on a tiny problem (the first ``torch.func`` call in a
process imports parts of torch that take seconds). Only ``--repeats`` alternating runs are timed;
the medians are compared.

Usage::

    python benchmarks/shadow_training.py                          # 16 and 64 shadows, 3 epochs, CPU
    python benchmarks/shadow_training.py --shadows 16 --epochs 2 --threads 2 --repeats 3 --bare
    python benchmarks/shadow_training.py --dtype float64      # the two sides agree to ~1e-8: the same maths
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
from torch.func import functional_call, grad, stack_module_state, vmap
from torch.nn import functional as F

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
# in float64 (--dtype float64) the same runs agree within ~1e-8, which shows the two sides do the same maths.
AGREEMENT = 1e-2


@dataclass
class Row:
    architecture: str
    shadows: int
    vectorised: list[float]
    sequential: list[float]
    param_diff: float
    prob_diff: float
    bare: list[float]

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


def _bare_torch_func(
    build: Callable[[int], nn.Module], x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor, epochs: int, device: str
) -> list[nn.Module]:
    """A plain torch.func loop, for reference: stacked parameters, ``vmap(grad(loss))``, torch.optim.Adam.

    Every model is cut to the smallest model's number of rows so that all batches line up (no
    padding, no masking, no per-model step counters); the trained weights are not written back.
    """
    models = [build(s).to(device) for s in range(len(keep))]
    params, _ = stack_module_state(models)
    names = list(params)
    leaves = [nn.Parameter(p.detach()) for p in params.values()]
    optimizer = torch.optim.Adam(leaves, lr=1e-3)

    def loss(p: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(models[0], p, (xb,)), yb)

    gradients = vmap(grad(loss))
    rows = [kept.nonzero().squeeze(1) for kept in keep]
    n = min(len(r) for r in rows)
    x, y = x.to(device), y.to(device)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.stack([r[torch.randperm(len(r), generator=generator)[:n]] for r in rows]).to(device)
        for start in range(0, n, 256):
            batch = order[:, start : start + 256]
            g = gradients({k: p.detach() for k, p in zip(names, leaves, strict=True)}, x[batch], y[batch])
            for p, k in zip(leaves, names, strict=True):
                p.grad = g[k]
            optimizer.step()
    return models


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

    def bare() -> list[nn.Module]:
        return _bare_torch_func(build, x, y, keep, args.epochs, args.device)

    sides = {"vectorised": vectorised, "sequential": sequential, **({"bare": bare} if args.bare else {})}
    times: dict[str, list[float]] = {side: [] for side in sides}
    results: dict[str, list[nn.Module]] = {}
    for _ in range(args.repeats):
        for side, fn in sides.items():
            seconds, results[side] = _timed(args.device, fn)
            times[side].append(seconds)
    test_x = task.test.x[:2000].to(args.device, dtype)
    param_diff, prob_diff = _largest_differences(results["vectorised"], results["sequential"], test_x)
    return Row(name, shadows, times["vectorised"], times["sequential"], param_diff, prob_diff, times.get("bare", []))


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
    parser.add_argument("--bare", action="store_true", help="also time a plain torch.func loop, for reference")
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
    columns += ["max d param", "max d prob"] + (["bare torch.func s", "bare speed-up"] if args.bare else [])
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
            ]
            if args.bare:
                bare_s = statistics.median(row.bare)
                cells += [f"{bare_s:>17.2f}", f"{statistics.median(row.sequential) / bare_s:>13.2f}"]
            cells.append(f"{'yes' if row.prob_diff <= AGREEMENT else 'NO':<5}")
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
