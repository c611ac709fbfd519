"""Framework overhead: one quickstart cell through interplay's runner vs the same work as a plain script.

The cell is (baseline, pgd, robust_accuracy) on digits with the quickstart's MLP and recipe, one seed.
The plain script loads digits with scikit-learn, splits it, trains the same MLP with a hand-written
loop and runs a hand-written PGD; interplay does the same through ``Runner`` (store, model cache,
report included). Both run in this process, alternately, several times; the ratio of the medians is
reported (target: interplay / plain <= 1.05).

    python benchmarks/framework_overhead.py [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from interplay.pipeline import Pipeline, validate_plugins
from interplay.runner import Runner

EPOCHS, BATCH, LR, EPS, STEP, ITERS = 30, 64, 1e-3, 0.1, 0.01, 40

PIPELINE = {
    "name": "overhead",
    "scenario": {
        "dataset": "digits",
        "model": {"name": "mlp", "params": {"hidden_sizes": [128, 64]}},
        "training": {"optimizer": "adam", "lr": LR, "epochs": EPOCHS, "batch_size": BATCH},
        "seeds": [0],
    },
    "attacks": [{"name": "pgd", "params": {"eps": EPS, "step": STEP, "iterations": ITERS},
                 "metrics": ["robust_accuracy"]}],
}


def plain(device: str) -> float:
    """The cell written as a plain PyTorch script; returns robust accuracy."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.3, random_state=0,
                                                        stratify=digits.target)
    x_train, y_train = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    x_test, y_test = torch.from_numpy(x_test).to(device), torch.from_numpy(y_test).long().to(device)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(x_train), generator=generator)[: len(x_train) // 2]
    x_def, y_def = x_train[order].to(device), y_train[order].to(device)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    for _ in range(EPOCHS):
        for index in torch.randperm(len(x_def), generator=generator).split(BATCH):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x_def[index]), y_def[index]).backward()
            optimizer.step()
    model.eval()
    x_adv = (x_test + torch.empty_like(x_test).uniform_(-EPS, EPS)).clamp(0, 1)
    for _ in range(ITERS):
        x_adv.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x_adv), y_test)
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = torch.min(torch.max(x_adv + STEP * grad.sign(), x_test - EPS), x_test + EPS).clamp(0, 1)
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y_test).float().mean())


def framework(device: str) -> float:
    """The same cell through interplay's runner; returns robust accuracy."""
    document = {**PIPELINE, "scenario": {**PIPELINE["scenario"], "device": device}}
    pipeline = validate_plugins(Pipeline.from_dict(document))
    with tempfile.TemporaryDirectory() as out:
        summary = Runner(pipeline, out=out, progress=False, reuse_models=False).run()
    return next(r.value for r in summary.rows if r.value_name == "robust_accuracy" and r.defense == "none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    plain(args.device), framework(args.device)  # warm-up: imports, allocator, registry
    times: dict[str, list[float]] = {"plain": [], "interplay": []}
    accuracy: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, fn in (("plain", plain), ("interplay", framework)):
            started = time.perf_counter()
            accuracy[name] = fn(args.device)
            times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} repeats")
    print(f"{'':10} {'median s':>9} {'min s':>7} {'robust acc':>10}")
    for name in ("plain", "interplay"):
        print(f"{name:10} {medians[name]:9.3f} {min(times[name]):7.3f} {accuracy[name]:10.4f}")
    print(f"overhead ratio interplay / plain: {medians['interplay'] / medians['plain']:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
