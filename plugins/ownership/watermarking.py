"""Watermarking by backdooring (SD4, Adi et al., 2018), a defense against unauthorized model ownership (S3).

The owner picks a secret trigger set (the watermark key): inputs unrelated to the task, each
with a label drawn at random. Training the model on its data together with the trigger set
makes it memorise the random labels, a backdoor that only the owner can query for; a model
that returns the trigger labels far more often than chance is claimed as the owner's.

References:
    Yossi Adi, Carsten Baum, Moustapha Cisse, Benny Pinkas and Joseph Keshet. "Turning Your
    Weakness Into a Strength: Watermarking Deep Neural Networks by Backdooring". USENIX Security
    2018. https://arxiv.org/abs/1802.04633 (code: https://github.com/adiyoss/WatermarkNN)

    AMULET's ``amulet/unauth_model_ownership/defenses/watermark.py`` (``WatermarkNN``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field
from torch.nn import functional as F

from interplay import Defense, Params
from interplay.artifacts import TaskData, TrainedModel

from ._triggers import DEFAULT_TRIGGER_SIZE, INFO_SEED, INFO_SIZE, default_trigger_seed, trigger_set

if TYPE_CHECKING:
    from interplay import RunContext

__all__ = ["INFO_TRIGGER_BATCH", "Watermarking"]

INFO_TRIGGER_BATCH = "watermark_trigger_batch_size"
"""Key of ``TrainedModel.info`` holding the number of triggers appended to each mini-batch."""


class Watermarking(Defense):
    """Train the model from scratch on the defender's rows with a trigger set mixed into every mini-batch.

    SD4 of AMULET, Adi et al.'s backdoor watermark in their *FromScratch* setting: the scenario's
    architecture (``context.build_model``) is trained with the scenario's recipe on
    ``target.defender_train``, and every mini-batch of the training rows is extended with a
    batch of trigger samples (``torch.cat`` of the two, one cross-entropy over the union), as in
    Adi et al.'s ``trainer.train``. At the start of each pass over the training rows the trigger
    set is shuffled, cut into batches of ``trigger_batch_size`` and the batches are then used in
    turn from a random starting batch, wrapping around (Adi et al.'s ``wm_idx + batch_idx``).

    The trigger set (see :func:`~interplay.plugins.ownership._triggers.trigger_set`) has
    ``trigger_size`` inputs with uniformly random labels: procedurally drawn abstract images for
    image data (random shapes with striped fills on a smooth background, in place of Adi et al.'s
    100 abstract pictures) and rows uniform in ``[0, 1]`` for tabular data (AMULET). Only its seed
    and size are recorded in the returned model's ``info``; the watermark metrics regenerate it
    from them.

    Defaults: 100 triggers (Adi et al., AMULET). ``trigger_batch_size=None`` appends as many
    triggers per mini-batch as the training batch holds rows, up to the whole trigger set: AMULET
    loads the trigger set with the training batch size (256 by default, so all 100 triggers join
    every batch). Adi et al.'s CIFAR-10 run appends 2 triggers to each batch of 100
    (``--wm_batch_size 2``) over 60 epochs, which embeds the watermark only when the training runs
    for many mini-batches; set ``trigger_batch_size=2`` for that setting.

    Args:
        trigger_size: Number of trigger samples (the watermark key's size).
        trigger_batch_size: Triggers appended to each mini-batch; ``None``: the recipe's batch size
            (capped at ``trigger_size``), as AMULET does.
        trigger_seed: Seed of the trigger set; ``None`` derives it from the run's seed.

    Raises:
        ConfigError: When a parameter is invalid, or (from :meth:`apply`) when the context has no
            model factory.
    """

    name = "watermarking"
    risks = ("S3",)
    Input = TaskData
    Output = TrainedModel
    summary = "backdoor watermark: train with a trigger set of random labels (Adi et al., 2018)"

    class Params(Params):
        """Hyper-parameters of :class:`Watermarking`.

        Attributes:
            trigger_size: Number of trigger samples (Adi et al. and AMULET: 100).
            trigger_batch_size: Trigger samples appended to each training mini-batch; ``None`` uses the
                recipe's batch size, capped at ``trigger_size`` (AMULET); Adi et al.'s code uses 2.
            trigger_seed: Seed of the trigger set (the owner's secret key); ``None`` derives one from the
                run's seed.
        """

        trigger_size: int = Field(default=DEFAULT_TRIGGER_SIZE, ge=1)
        trigger_batch_size: int | None = Field(default=None, ge=1)
        trigger_seed: int | None = Field(default=None, ge=0)

    params: Watermarking.Params

    def apply(
        self, target: TaskData, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> TrainedModel:
        """Train a watermarked model on ``target.defender_train`` plus the trigger set.

        Args:
            target: The task; the model trains on the defender's rows (all training rows when
                the task has no partition).
            data: Unused (the task is ``target``).
            context: Seed, device, model factory and training recipe. Required.

        Returns:
            The watermarked model, with ``train_indices`` the defender's rows and ``info`` recording
            the trigger set (``watermark_seed``, ``watermark_size``) and the triggers per mini-batch
            (``watermark_trigger_batch_size``).

        Raises:
            ConfigError: When ``context`` is missing or names no model factory.
            ArtifactError: When the task's inputs are neither tabular rows nor images.
        """
        context = self.require_training_context(context)
        params = self.params
        seed = params.trigger_seed if params.trigger_seed is not None else default_trigger_seed(context)
        x_wm, y_wm = trigger_set(seed, params.trigger_size, target.input_shape, target.num_classes)
        per_batch = min(params.trigger_batch_size or context.recipe.batch_size, params.trigger_size)
        train = target.defender_train
        batches_per_pass = max(1, -(-len(train) // context.recipe.batch_size))
        loss = _TriggerMixer(
            x_wm.to(context.device),
            y_wm.to(context.device),
            per_batch,
            batches_per_pass,
            context.generator("defense", self.name, "trigger_order"),
        )
        indices = target.partition.defender if target.partition is not None else None
        return context.train(
            train,
            loss_fn=loss,
            train_indices=indices,
            info={INFO_SEED: seed, INFO_SIZE: params.trigger_size, INFO_TRIGGER_BATCH: per_batch},
        )


class _TriggerMixer:
    """Cross-entropy on each mini-batch extended with the next batch of triggers (Adi et al.'s ``train``).

    Used as the ``loss_fn`` of :func:`~interplay.training.fit`. It counts its calls: every
    ``batches_per_pass`` calls (one pass of ``fit`` over the training rows) it reshuffles the
    trigger set into batches of ``per_batch`` and draws a new starting batch.
    """

    def __init__(
        self, x_wm: torch.Tensor, y_wm: torch.Tensor, per_batch: int, batches_per_pass: int, generator: torch.Generator
    ) -> None:
        self.x_wm, self.y_wm = x_wm, y_wm
        self.per_batch, self.batches_per_pass = per_batch, batches_per_pass
        self.generator = generator
        self.step = 0
        self.chunks: tuple[torch.Tensor, ...] = ()
        self.start = 0

    def __call__(self, module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        position = self.step % self.batches_per_pass
        if position == 0:
            order = torch.randperm(len(self.x_wm), generator=self.generator)
            self.chunks = torch.split(order, self.per_batch)
            self.start = int(torch.randint(len(self.chunks), (1,), generator=self.generator))
        chosen = self.chunks[(self.start + position) % len(self.chunks)]
        self.step += 1
        inputs = torch.cat([x, self.x_wm[chosen].to(x.device)])
        labels = torch.cat([y, self.y_wm[chosen].to(y.device)])
        return F.cross_entropy(module(inputs), labels)
