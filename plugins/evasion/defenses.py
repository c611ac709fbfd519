"""Evasion (S1) defenses: PGD adversarial training (SD1, Madry et al., 2018).

Reference:
    Aleksander Madry, Aleksandar Makelov, Ludwig Schmidt, Dimitris Tsipras and Adrian Vladu.
    "Towards Deep Learning Models Resistant to Adversarial Attacks". ICLR 2018.
    https://arxiv.org/abs/1706.06083
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field
from torch.nn import functional as F

from interplay import Defense
from interplay.artifacts import TaskData, TrainedModel

from ._pgd import PGDParams, evaluation_mode, pgd

if TYPE_CHECKING:
    from interplay import RunContext
    from interplay.training import LossFn

__all__ = ["AdversarialTraining"]


class AdversarialTraining(Defense):
    """PGD adversarial training: minimise the loss on worst-case perturbed inputs (Madry et al., 2018).

    SD1, the defense against evasion (S1). It trains the scenario's architecture
    (``context.build_model``) on the defender's rows with the scenario's recipe
    (``context.recipe``: optimizer, learning rate, epochs, batch size), solving Madry et al.'s
    saddle-point problem (their Eq. 2): for each mini-batch, the inner maximisation is
    approximated by PGD within the ``eps``-ball, and the optimizer step minimises the
    cross-entropy on the resulting adversarial examples.

    The PGD is the same as the ``pgd`` attack's, which is the PGD AMULET's ``AdversarialTrainingPGD``
    uses (CleverHans's ``projected_gradient_descent``), with AMULET's defaults: ``eps=0.1``,
    ``step=0.01``, ``iterations=40``, inputs clipped to ``[0, 1]``. Adversarial examples are
    generated with the model in evaluation mode (batch-norm statistics and dropout frozen), from
    the true labels, and the model returns to training mode for the update; the input gradient is
    taken with ``torch.autograd.grad``, so generation never touches parameter gradients.

    ``adv_fraction`` sets how much of each batch is replaced by adversarial examples: 1.0 is pure
    Madry training; 0.5 trains on half clean, half adversarial rows (the mixture of Goodfellow et
    al., 2015, with equal weights). AMULET's loop differs slightly: it takes one optimizer step on
    the clean batch and then one on its adversarial version (two updates per batch), and crafts
    the examples in training mode from the model's own predictions.

    Args:
        eps: Perturbation budget of the training adversary, on inputs in ``[0, 1]``.
        step: PGD step size; at most ``eps``.
        iterations: PGD iterations per mini-batch.
        norm: ``"linf"`` or ``"l2"``.
        random_start: Start PGD from a uniformly random point of the ball.
        clip_min: Lower bound of valid inputs, or ``None``.
        clip_max: Upper bound of valid inputs, or ``None``.
        adv_fraction: Share of each mini-batch replaced by its adversarial version.

    Raises:
        ConfigError: When a parameter is invalid, or (from :meth:`apply`) when the context has no
            model factory.
    """

    name = "adversarial_training"
    risks = ("S1",)
    Input = TaskData
    Output = TrainedModel
    summary = "PGD adversarial training (Madry et al., 2018)"
    # The kit's tabular synthetic task is not scaled to [0, 1]; two PGD iterations keep it fast.
    conformance_params = {"iterations": 2, "clip_min": None, "clip_max": None}

    class Params(PGDParams):
        """Hyper-parameters of :class:`AdversarialTraining` (PGD settings documented on :class:`PGDParams`).

        Attributes:
            adv_fraction: Share of each mini-batch replaced by adversarial examples (1.0: pure
                Madry adversarial training; 0.0: standard training).
        """

        adv_fraction: float = Field(default=1.0, ge=0, le=1)

    params: AdversarialTraining.Params

    def apply(
        self, target: TaskData, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> TrainedModel:
        """Adversarially train a model on ``target.defender_train``.

        Args:
            target: The task; the model trains on the defender's rows (all training rows when
                the task has no partition).
            data: Unused (the task is ``target``).
            context: Seed, device, model factory and training recipe. Required.

        Returns:
            The trained model, with ``train_indices`` the defender's rows and ``info`` recording the
            training adversary (``adv_eps``, ``adv_norm``, ``adv_step``, ``adv_iterations``,
            ``adv_fraction``).

        Raises:
            ConfigError: When ``context`` is missing or names no model factory.
        """
        context = self.require_training_context(context)
        params = self.params
        indices = target.partition.defender if target.partition is not None else None
        return context.train(
            target.defender_train,
            loss_fn=self._loss(context.generator("defense", self.name, "random_start")),
            train_indices=indices,
            info={
                "adv_eps": params.eps,
                "adv_norm": params.norm,
                "adv_step": params.step,
                "adv_iterations": params.iterations,
                "adv_fraction": params.adv_fraction,
            },
        )

    def _loss(self, generator: torch.Generator) -> LossFn:
        """The training loss: cross-entropy on the batch with its first rows made adversarial.

        Mini-batches come shuffled, so the first ``round(adv_fraction * n)`` rows are a random share.
        """
        params = self.params
        settings = params.pgd_kwargs()

        def loss(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            n_adv = round(params.adv_fraction * x.shape[0])
            if n_adv > 0:
                with evaluation_mode(module):
                    x_adv = pgd(module, x[:n_adv], y[:n_adv], **settings, generator=generator)
                x = x_adv if n_adv == x.shape[0] else torch.cat([x_adv, x[n_adv:]])
            return F.cross_entropy(module(x), y)

        return loss
