"""Throughput of interplay's ``pgd`` attack against a plain hand-written PyTorch PGD loop.

Both run in one process on the same trained model, the same inputs (already on the device) and
the same settings (L-infinity, eps 0.1, step 0.01, 40 iterations, uniform random start, inputs
clipped to [0, 1], true labels, batches of ``--batch-size`` rows). Each side is warmed up once, then
the two are timed alternately ``--repeats`` times; the table reports the median seconds, the
throughput ratio ``plain_time / interplay_time`` of the medians and of the fastest runs ("best",
the estimate least disturbed by other load on the machine; 1.0 = as fast as plain PyTorch, the
target is >= 0.95) and both robust accuracies, which must agree within 0.5 points (both sides draw their
uniform random start from the same seeded generator, so they normally agree exactly).

The interplay side is the whole public call, ``PGD(...).run(model, data=task, context=context)``:
parameter and input checks, seeding, PGD, predictions on the adversarial *and* the clean inputs,
and the validated ``AdversarialExamples`` artifact. The plain side generates the examples and
computes the robust accuracy.

Scenarios: digits with an MLP (always); Fashion-MNIST with the two-layer CNN when its files are
under the data root (``INTERPLAY_DATA``).

Usage::

    python benchmarks/pgd_throughput.py                    # CPU
    python benchmarks/pgd_throughput.py --device cuda --n 10000 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

import interplay
from interplay import Dataset, RunContext, TrainingRecipe
from interplay.artifacts import LabeledData, TaskData, TrainedModel
from interplay.errors import DataNotFoundError
from interplay.plugins.evasion.attacks import PGD

EPS, STEP, ITERATIONS = 0.1, 0.01, 40


@dataclass(frozen=True)
class Scenario:
    label: str
    dataset: str
    architecture: str
    dataset_params: dict[str, int]
    cpu_rows: int  # default number of attacked rows on the CPU (all of them on a GPU)


SCENARIOS = [
    Scenario("digits + mlp", "digits", "mlp", {}, cpu_rows=540),
    # The attacked model only needs to be a trained CNN: 10,000 training images keep training short.
    Scenario("fmnist + simple_cnn", "fmnist", "simple_cnn", {"train_size": 10_000}, cpu_rows=256),
]


@dataclass
class Row:
    scenario: str
    n: int
    interplay_times: list[float]
    plain_times: list[float]
    interplay_acc: float
    plain_acc: float

    @property
    def interplay_s(self) -> float:
        return statistics.median(self.interplay_times)

    @property
    def plain_s(self) -> float:
        return statistics.median(self.plain_times)

    @property
    def ratio(self) -> float:
        """Throughput ratio of the medians."""
        return self.plain_s / self.interplay_s

    @property
    def ratio_best(self) -> float:
        """Throughput ratio of the fastest runs (least disturbed by other load on the machine)."""
        return min(self.plain_times) / min(self.interplay_times)

    @property
    def diff_points(self) -> float:
        return 100 * abs(self.interplay_acc - self.plain_acc)


def plain_pgd_accuracy(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, generator: torch.Generator
) -> float:
    """Textbook PGD (Madry et al.) written directly in PyTorch; returns the robust accuracy."""
    adversarial = []
    for xb, yb in zip(torch.split(x, batch_size), torch.split(y, batch_size), strict=True):
        start = torch.rand(xb.shape, generator=generator).to(xb.device) * (2 * EPS) - EPS
        adv = (xb + start).clamp(0.0, 1.0)
        for _ in range(ITERATIONS):
            adv.requires_grad_(True)
            loss = F.cross_entropy(model(adv), yb)
            (grad,) = torch.autograd.grad(loss, adv)
            adv = adv.detach() + STEP * grad.sign()
            adv = torch.min(torch.max(adv, xb - EPS), xb + EPS).clamp(0.0, 1.0)
        adversarial.append(adv.detach())
    x_adv = torch.cat(adversarial)
    with torch.no_grad():
        correct = torch.cat([model(chunk).argmax(1) for chunk in torch.split(x_adv, batch_size)]) == y
    return float(correct.float().mean())


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn: Callable[[], float], device: str) -> tuple[float, float]:
    _sync(device)
    start = time.perf_counter()
    value = fn()
    _sync(device)
    return time.perf_counter() - start, value


def _tile(task: TaskData, n: int) -> TaskData:
    """The task with a test split of exactly ``n`` rows (the test set repeated when it is smaller)."""
    test = task.test
    index = torch.arange(n) % len(test)
    return task.with_split("test", LabeledData(x=test.x[index], y=test.y[index], modality=test.modality))


def run_scenario(label: str, task: TaskData, context: RunContext, *, n: int, repeats: int, batch_size: int) -> Row:
    device = context.device
    model: TrainedModel = context.train(task.defender_train)
    model.module.eval()
    task = _tile(task, n).to(device)
    x, y = task.test.x, task.test.y
    attack = PGD(eps=EPS, step=STEP, iterations=ITERATIONS, batch_size=batch_size)

    def ours() -> float:
        adv = attack.run(model, data=task, context=context)
        return float((adv.predictions == adv.y).float().mean())

    def plain() -> float:
        # The generator the attack seeds its random start with (RunContext.generator with the attack's
        # salt): both sides then start from the same points, and their accuracies should agree to
        # rounding. Were the salt to change, the difference would only become statistical.
        generator = context.generator("attack", "pgd", "random_start")
        return plain_pgd_accuracy(model.module, x, y, batch_size=batch_size, generator=generator)

    ours(), plain()  # warm-up
    ours_times, plain_times = [], []
    ours_acc = plain_acc = 0.0
    for _ in range(repeats):  # alternate, so that drifts in machine load hit both sides alike
        elapsed, ours_acc = _timed(ours, device)
        ours_times.append(elapsed)
        elapsed, plain_acc = _timed(plain, device)
        plain_times.append(elapsed)
    return Row(
        scenario=label,
        n=len(x),
        interplay_times=ours_times,
        plain_times=plain_times,
        interplay_acc=ours_acc,
        plain_acc=plain_acc,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument(
        "--n",
        type=int,
        default=None,
        help="rows to attack (test split tiled if larger); default: all on cuda, capped on cpu",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per side (median reported)")
    parser.add_argument("--batch-size", type=int, default=1024, help="rows per PGD batch (both sides)")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of the attacked model")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[s.dataset for s in SCENARIOS],
        help="run only this scenario (repeatable); default: all whose data is present",
    )
    args = parser.parse_args()

    registry = interplay.get_registry()
    recipe = TrainingRecipe(epochs=args.epochs, batch_size=128)
    on_cpu = not args.device.startswith("cuda")
    rows = []
    for scenario in SCENARIOS:
        if args.scenario and scenario.dataset not in args.scenario:
            continue
        try:
            dataset = registry.create(scenario.dataset, "dataset", **scenario.dataset_params)
            assert isinstance(dataset, Dataset)
            task = dataset.load()
        except DataNotFoundError as exc:
            print(f"skipping {scenario.label}: {exc}")
            continue
        task = task.partitioned(defender=0.5, adversary=0.5, seed=0)
        n = args.n or (min(len(task.test), scenario.cpu_rows) if on_cpu else len(task.test))
        context = RunContext(seed=0, device=args.device, model=registry.create(scenario.architecture), recipe=recipe)
        rows.append(run_scenario(scenario.label, task, context, n=n, repeats=args.repeats, batch_size=args.batch_size))

    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(
        f"\nPGD L-inf eps={EPS} step={STEP} iterations={ITERATIONS}, batch {args.batch_size}, "
        f"device {args.device} ({device_name}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"median of {args.repeats}"
    )
    header = (
        f"| {'scenario':<20} | {'n':>6} | {'interplay s':>11} | {'plain s':>8} | {'ratio':>5} | {'ratio best':>10} "
        f"| {'acc interplay':>13} | {'acc plain':>9} | {'diff (pts)':>10} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for row in rows:
        print(
            f"| {row.scenario:<20} | {row.n:>6} | {row.interplay_s:>11.3f} | {row.plain_s:>8.3f} "
            f"| {row.ratio:>5.2f} | {row.ratio_best:>10.2f} | {row.interplay_acc:>13.4f} | {row.plain_acc:>9.4f} "
            f"| {row.diff_points:>10.2f} |"
        )


if __name__ == "__main__":
    main()
