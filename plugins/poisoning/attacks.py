"""Poisoning (S2) attacks: the BadNets backdoor (Gu et al., 2017), as AMULET implements it.

The adversary stamps a fixed trigger onto a random share of the defender's training rows and
relabels them to one target class (an all-to-one backdoor). A model trained on the poisoned data
keeps its accuracy on clean inputs but classifies triggered inputs as the target class.
"""

from __future__ import annotations

import torch
from pydantic import Field

from interplay.artifacts import LabeledData, PoisonedData, TaskData
from interplay.context import RunContext
from interplay.errors import ArtifactError, ConfigError
from interplay.modules import Attack, Params

from ._trigger import Trigger, success_and_accuracy

__all__ = ["BadNets"]


class BadNets(Attack):
    """BadNets: poison a share of the defender's training rows with a trigger and the target label.

    Gu, Dolan-Gavitt and Garg, "BadNets: Identifying Vulnerabilities in the Machine Learning Model
    Supply Chain" (2017; IEEE Access 2019), as AMULET (Waheed et al., section 5, "S2 (Poisoning)")
    adopts it from the implementation it cites (``Billy1900/BadNet``): a random
    ``int(poison_fraction * n)`` of the ``n`` training rows, drawn from every class, get the trigger
    and the label ``target_label``; the rows are modified in place, so the training set keeps its
    size. The trigger is

    - images: a ``trigger_size x trigger_size`` square, ``trigger_margin`` pixels from the bottom and
      right edges, set to ``trigger_value`` on every channel. The defaults (a 2x2 square one pixel
      from the corner) are those of both reference implementations; the value defaults to the
      largest pixel value of the training split, i.e. white, as in ``Billy1900/BadNet`` (255 on raw
      pixels) and the BadNets paper's bright "pattern" trigger;
    - tabular data: the last fifth of the features (``tabular_trigger_fraction``) set to
      ``trigger_value``, 0.0 by default (AMULET's tabular trigger).

    The adversary poisons only the defender's rows (``data.partition.defender``, or the whole
    ``train`` split when the task has no partition). The triggered test set holds the test inputs
    whose true class is not the target, with the trigger applied and their *true* labels: the attack
    succeeds on a row when the model predicts ``target_label`` for it (AMULET's ``Acc_pois``).

    With ``reference_model`` the attack also trains a model on the *clean* defender rows, with the
    scenario's architecture, recipe and the seed standard training uses, and records how often that
    model maps triggered inputs to the target class (AMULET's ``Acc_pois(M_std)``, which confirms the
    trigger alone does not cause the target prediction); see
    :class:`~interplay.plugins.poisoning.metrics.CleanModelSuccessRate`.

    Args:
        poison_fraction: Share of the defender's training rows that get the trigger and the target label (AMULET: 0.1).
        target_label: The class every triggered input should be mapped to (all-to-one).
        trigger_size: Side of the square image trigger, in pixels.
        trigger_margin: Pixels between the image trigger and the bottom and right edges.
        trigger_value: Value written into the trigger; ``None``: the largest pixel value of the
            training split for images (white), 0.0 for tabular data.
        tabular_trigger_fraction: Share of the features, counted from the last, that form the tabular trigger.
        reference_model: Also train a model on the clean defender rows and record its success rate
            (``details["clean_model"]``).

    Examples:
        With ``task`` a digits :class:`TaskData` and ``context`` a :class:`RunContext` with a model::

            poisoned = BadNets(poison_fraction=0.1, target_label=0).run(task, data=task, context=context)
            model = context.train(poisoned.defender_train)
    """

    name = "badnets"
    risks = ("S2",)
    Input = TaskData
    Output = PoisonedData
    access = "data"
    knowledge = "partial"
    conformance_params = {"poison_fraction": 0.2}

    class Params(Params):
        """Hyper-parameters of :class:`BadNets` (defaults: AMULET's ``run_poisoning.py`` and ``BadNets``).

        Attributes:
            poison_fraction: Share of the defender's training rows that are poisoned (AMULET: 0.1).
            target_label: The class triggered inputs are relabelled to (AMULET: 0).
            trigger_size: Side of the square image trigger in pixels (AMULET: 2).
            trigger_margin: Pixels between the image trigger and the bottom/right edges (AMULET: 1).
            trigger_value: Value written into the trigger; ``None`` means the largest value of the
                training inputs (white) for images and 0.0 for tabular data (AMULET's).
            tabular_trigger_fraction: Share of trailing features the tabular trigger covers (AMULET: a fifth).
            reference_model: Also train a model on the clean defender rows and record its success
                rate and accuracy on the triggered test set in ``details["clean_model"]``.
        """

        poison_fraction: float = Field(default=0.1, gt=0, le=1)
        target_label: int = Field(default=0, ge=0)
        trigger_size: int = Field(default=2, ge=1)
        trigger_margin: int = Field(default=1, ge=0)
        trigger_value: float | None = None
        tabular_trigger_fraction: float = Field(default=0.2, gt=0, le=1)
        reference_model: bool = True

    params: BadNets.Params

    def run(
        self, target: TaskData, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> PoisonedData:
        """Poison the defender's rows of ``target``.

        Args:
            target: The clean task; its partition says which rows the defender trains on.
            data: Unused (the task is ``target``).
            context: Seed (which rows are poisoned), and with ``reference_model`` the architecture
                and recipe of the clean reference model.

        Returns:
            The poisoned task (same splits and partition, defender rows poisoned), with
            ``poisoned_indices`` (rows of the partitioned split), ``target_label``, ``triggered_test``
            and ``details``.

        Raises:
            ConfigError: When ``target_label`` is not a class of the task, or ``reference_model`` is
                set but the context has no model factory.
            ArtifactError: When the trigger does not fit the inputs or no row would be poisoned.
        """
        del data
        context = context if context is not None else RunContext()
        p = self.params
        if p.target_label >= target.num_classes:
            raise ConfigError(
                f"target label {p.target_label} is not a class of a task with {target.num_classes} classes",
                path=f"{self.name}.params.target_label",
            )
        if p.reference_model and context.model is None:
            raise ConfigError(
                "the clean reference model needs the context's model factory (RunContext.model); "
                "set reference_model=False to skip it",
                path=f"{self.name}.params.reference_model",
            )
        split_name = target.partition.split if target.partition is not None else "train"
        source = target.splits[split_name]
        defender = target.partition.defender if target.partition is not None else torch.arange(len(source))
        n_poison = int(len(defender) * p.poison_fraction)
        if n_poison == 0:
            raise ArtifactError(
                f"{self.name}: poison_fraction {p.poison_fraction} of {len(defender)} defender rows poisons no row"
            )
        trigger = self._trigger(target)
        order = torch.randperm(len(defender), generator=context.generator(self.name, "poison"))
        rows = defender[order[:n_poison]].sort().values

        x, y = source.x.clone(), source.y.clone()
        x[rows] = trigger.apply(source.x[rows])
        y[rows] = p.target_label
        poisoned_split = source.model_copy(update={"x": x, "y": y})
        others = torch.nonzero(target.test.y != p.target_label).flatten()
        triggered_test = trigger.apply_to(target.test.subset(others))

        details = {
            "poison_fraction": p.poison_fraction,
            "n_poisoned": n_poison,
            "n_defender": len(defender),
            "split": split_name,
            "trigger": trigger.region,
            "n_triggered_test": len(triggered_test),
        }
        if p.reference_model:
            details["clean_model"] = self._reference(target, triggered_test, context)
        return PoisonedData(
            splits={**target.splits, split_name: poisoned_split},
            partition=target.partition,
            name=target.name,
            poisoned_indices=rows,
            target_label=p.target_label,
            triggered_test=triggered_test,
            details=details,
        )

    def _trigger(self, task: TaskData) -> Trigger:
        p = self.params
        value = p.trigger_value
        if value is None:
            value = float(task.train.x.max()) if task.modality == "image" else 0.0
        return Trigger(
            modality=task.modality,
            input_shape=task.input_shape,
            value=value,
            size=p.trigger_size,
            margin=p.trigger_margin,
            tabular_fraction=p.tabular_trigger_fraction,
            owner=self.name,
        )

    def _reference(self, task: TaskData, triggered: LabeledData, context: RunContext) -> dict[str, float]:
        """Train the standard model on the clean defender rows and measure it on the triggered test set."""
        indices = task.partition.defender if task.partition is not None else None
        model = context.train(task.defender_train, train_indices=indices)  # the seed standard training uses
        success, triggered_accuracy = success_and_accuracy(model, triggered, self.params.target_label)
        test = task.test
        accuracy = float((model.predict(test.x).to(test.y.device) == test.y).float().mean()) if len(test) else 0.0
        return {
            "attack_success_rate": success,
            "triggered_accuracy": triggered_accuracy,
            "test_accuracy": accuracy,
        }
