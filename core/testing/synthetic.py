"""Tiny synthetic tasks, models and artifacts for conformance checks and plugin authors' tests."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from ..artifacts import (
    AdversarialExamples,
    Artifact,
    AttributeGuesses,
    LabeledData,
    LabelOnlyAccess,
    MembershipScores,
    Modality,
    OwnershipEvidence,
    PoisonedData,
    PropertyGuesses,
    QueryAccess,
    Reconstructions,
    SurrogateModel,
    TaskData,
    TrainedModel,
)
from ..context import RunContext
from ..errors import PluginError
from ..modules import ModelFactory, Params
from ..recipe import TrainingRecipe

__all__ = ["TinyMLP", "example_artifact", "synthetic_task", "tiny_context", "tiny_model"]


class TinyMLP(ModelFactory):
    """A one-hidden-layer network used by the conformance kit (fast on any machine)."""

    name = "tiny_mlp"
    modalities = ("tabular", "image")

    class Params(Params):
        """Hyper-parameters of :class:`TinyMLP`.

        Attributes:
            hidden: Width of the hidden layer.
        """

        hidden: int = Field(default=16, ge=1)

    def build(self, *, input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
        """Build ``Flatten -> Linear -> ReLU -> Linear`` with an ``embed`` method."""
        return _TinyNet(int(torch.Size(input_shape).numel()), self.params.hidden, num_classes)


class _TinyNet(torch.nn.Module):
    def __init__(self, in_features: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_features, hidden), torch.nn.ReLU())
        self.head = torch.nn.Linear(hidden, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.features(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.embed(x))
        return out


def synthetic_task(
    modality: Modality = "tabular", *, n_train: int = 120, n_test: int = 60, num_classes: int = 3, seed: int = 0
) -> TaskData:
    """A small, learnable, partitioned task with one binary sensitive attribute ``group``.

    Tabular inputs have 10 features in [0, 1]; images are 1x8x8 in [0, 1]. Classes are Gaussian
    blobs, and ``group`` is correlated with the label so that attribute and fairness
    attacks have something to find.
    """
    generator = torch.Generator().manual_seed(seed)
    features = 10 if modality == "tabular" else 64
    centers = torch.randn(num_classes, features, generator=generator) * 1.5

    def split(n: int) -> LabeledData:
        y = torch.arange(n) % num_classes
        x = centers[y] + torch.randn(n, features, generator=generator)
        group = ((y % 2) ^ (torch.rand(n, generator=generator) < 0.2).long()).long()
        x = torch.sigmoid(x)  # features in [0, 1], like scaled images, so clipping attacks apply as-is
        if modality == "image":
            x = x.reshape(n, 1, 8, 8)
        return LabeledData(x=x, y=y, sensitive={"group": group}, modality=modality, num_classes=num_classes)

    task = TaskData(splits={"train": split(n_train), "test": split(n_test)}, name=f"synthetic-{modality}")
    return task.partitioned(defender=0.5, adversary=0.5, seed=seed)


def tiny_context(seed: int = 0, *, epochs: int = 3) -> RunContext:
    """A CPU context with :class:`TinyMLP` and a short recipe."""
    return RunContext(
        seed=seed, device="cpu", model=TinyMLP(), recipe=TrainingRecipe(epochs=epochs, batch_size=32, lr=1e-2)
    )


def tiny_model(task: TaskData, context: RunContext | None = None) -> TrainedModel:
    """Train the context's model on the defender's share of ``task``."""
    context = context or tiny_context()
    indices = task.partition.defender if task.partition is not None else None
    return context.train(task.defender_train, train_indices=indices)


def example_artifact(kind: type[Artifact], task: TaskData, model: TrainedModel, context: RunContext) -> Artifact:
    """A valid instance of core artifact type ``kind`` built from ``task`` and ``model``.

    Raises:
        PluginError: When ``kind`` is not a core type; plugins with their own artifact
            types provide a ``conformance_example(task, model, context)`` classmethod instead.
    """
    generator = context.generator("example", kind.__name__)
    test = task.test
    n = len(test)
    builders: dict[type[Artifact], Any] = {
        TaskData: lambda: task,
        TrainedModel: lambda: model,
        QueryAccess: lambda: model.narrow(QueryAccess),
        LabelOnlyAccess: lambda: model.narrow(LabelOnlyAccess),
    }
    if kind in builders:
        return builders[kind]()  # type: ignore[no-any-return]
    if kind is PoisonedData:
        return PoisonedData(
            splits=task.splits,
            partition=task.partition,
            name=task.name,
            poisoned_indices=torch.arange(4),
            target_label=0,
            triggered_test=test,
        )
    if kind is AdversarialExamples:
        x_adv = test.x + 0.1 * torch.randn(test.x.shape, generator=generator)
        return AdversarialExamples(
            x_adv=x_adv, y=test.y, predictions=model.predict(x_adv), clean_predictions=model.predict(test.x), eps=0.1
        )
    if kind is SurrogateModel:
        return SurrogateModel(model=context.train(task.adversary, seed=context.derive_seed("surrogate")), queries=n)
    if kind is MembershipScores:
        member = torch.arange(n) % 2 == 0
        return MembershipScores(scores=torch.rand(n, generator=generator) + 0.3 * member, is_member=member)
    if kind is AttributeGuesses:
        truth = {name: values for name, values in test.sensitive.items()}
        scores = {name: torch.rand(n, generator=generator) for name in truth}
        return AttributeGuesses(scores=scores, truth=truth, threshold={name: 0.5 for name in truth})
    if kind is Reconstructions:
        classes = torch.arange(task.num_classes)
        reference = torch.stack([test.x[test.y == c].mean(0) for c in classes])
        return Reconstructions(
            x_rec=reference + 0.1 * torch.randn(reference.shape, generator=generator),
            reference=reference,
            classes=classes,
        )
    if kind is PropertyGuesses:
        trials = torch.arange(8) % 2
        guesses = torch.randint(0, 2, (8,), generator=generator)
        return PropertyGuesses(predicted=guesses, truth=trials, ratios=(0.1, 0.9))
    if kind is OwnershipEvidence:
        return OwnershipEvidence(
            verdicts={"surrogate": True, "independent": False}, p_values={"surrogate": 0.001, "independent": 0.4}
        )
    raise PluginError(f"no example of artifact type {kind.__name__}; give the plugin a conformance_example classmethod")
