"""Discriminatory behaviour (F) defenses: adversarial debiasing (FD1, Zhang et al., 2018).

Reference:
    Brian Hu Zhang, Blake Lemoine and Margaret Mitchell. "Mitigating Unwanted Biases with Adversarial
    Learning". AAAI/ACM Conference on AI, Ethics, and Society (AIES) 2018. https://arxiv.org/abs/1801.07593
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field

from interplay import Defense, Params
from interplay._seeding import derive_seed
from interplay.artifacts import LabeledData, TaskData, TrainedModel
from interplay.errors import ArtifactError

from ._adversary import Fairness, train_debiased

if TYPE_CHECKING:
    from interplay import RunContext

__all__ = ["AdversarialDebiasing"]


class AdversarialDebiasing(Defense):
    """Adversarial debiasing: train the predictor against an adversary that guesses the sensitive attribute.

    FD1, the defense against discriminatory behaviour (F). Zhang et al. (2018) train a predictor
    (weights ``W``, loss ``L_P``) and an adversary (weights ``U``, loss ``L_A``) jointly. The
    adversary predicts the protected attribute ``Z`` from the predictor's output logits (for
    demographic parity) or from the logits and the true label (for equalized odds), and descends
    ``grad_U L_A``. The predictor descends::

        grad_W L_P - proj_{grad_W L_A} grad_W L_P - alpha * grad_W L_A

    The projection keeps the predictor from moving in a direction that helps the adversary, and the
    last term moves it to hurt the adversary. At equilibrium the prediction carries no information
    about ``Z`` (demographic parity) or none beyond the label (equalized odds).

    The predictor is the scenario's architecture (``context.build_model``, from the same initial
    weights as the undefended target), trained on the defender's rows with the scenario's recipe
    (optimizer, learning rate, epochs, batch size, and the same mini-batch order). The adversary is
    Zhang et al.'s census adversary, as in AIF360's reference implementation: ``s = sigmoid((1 + |c|)
    logit(y_hat))`` and a linear layer on ``s`` (demographic parity) or on ``[s, s*y, s*(1-y)]``
    (equalized odds). It is trained with the recipe's optimizer and, by default, learning rate, as
    AIF360 uses one Adam setting for both networks. ``alpha`` defaults to AIF360's
    ``adversary_loss_weight=0.1``.

    With several sensitive attributes, each gets its own adversary and ``L_A`` is the mean of their
    losses. By default every sensitive attribute of the task is protected: AMULET's census pipeline
    debiases race and sex together (one adversary output per attribute).

    Args:
        fairness: ``demographic_parity`` (the adversary sees the prediction) or ``equalized_odds``
            (the prediction and the true label; Zhang et al.'s UCI Adult experiment and AIF360).
        alpha: Weight of the term that hurts the adversary (AIF360's ``adversary_loss_weight``).
        adversary_lr: The adversary's learning rate; ``None`` uses the predictor's (AIF360). Zhang et
            al.'s guarantee assumes the adversary keeps up with the predictor: with few optimizer steps
            (small data, few epochs) a lagging adversary can be exploited and the bias can even grow.
            A faster adversary (about 50 times the predictor's rate on census) fixes it; see docs/fairness.md.
        attributes: Sensitive attributes to protect; ``None`` protects every one the task holds.
        epochs: Training epochs; ``None`` uses the scenario recipe's.
        lr: Learning rate of the predictor and the adversary; ``None`` uses the scenario recipe's.
        batch_size: Mini-batch size; ``None`` uses the scenario recipe's.

    Raises:
        ConfigError: When a parameter is invalid, or (from :meth:`apply`) when the context has no
            model factory.
        ArtifactError: (from :meth:`apply`) When the task has no sensitive attribute, lacks one that
            ``attributes`` names, or an attribute takes a single value on the defender's rows.
    """

    name = "adversarial_debiasing"
    risks = ("F",)
    Input = TaskData
    Output = TrainedModel
    summary = "adversarial debiasing with the projected gradient update (Zhang et al., 2018)"

    class Params(Params):
        """Hyper-parameters of :class:`AdversarialDebiasing` (see the class docstring for their sources).

        Attributes:
            fairness: ``demographic_parity`` or ``equalized_odds``: what the adversary sees.
            alpha: Weight of ``- alpha * grad_W L_A`` in the predictor's update (AIF360: 0.1).
            adversary_lr: The adversary's learning rate; ``None``: the predictor's (AIF360).
            attributes: Sensitive attributes to protect; ``None``: all of the task's (AMULET).
            epochs: Training epochs; ``None``: the scenario recipe's.
            lr: Learning rate; ``None``: the scenario recipe's.
            batch_size: Mini-batch size; ``None``: the scenario recipe's.
        """

        fairness: Fairness = "demographic_parity"
        alpha: float = Field(default=0.1, ge=0, allow_inf_nan=False)
        adversary_lr: float | None = Field(default=None, gt=0)
        attributes: tuple[str, ...] | None = Field(default=None, min_length=1)
        epochs: int | None = Field(default=None, ge=1)
        lr: float | None = Field(default=None, gt=0)
        batch_size: int | None = Field(default=None, ge=1)

    params: AdversarialDebiasing.Params

    def apply(
        self, target: TaskData, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> TrainedModel:
        """Train a debiased model on ``target.defender_train``.

        Args:
            target: The task; the model trains on the defender's rows (all training rows when the
                task has no partition) and their sensitive attributes.
            data: Unused (the task is ``target``).
            context: Seed, device, model factory and training recipe. Required.

        Returns:
            The trained predictor, with ``train_indices`` the defender's rows and ``info`` recording
            ``debias_fairness``, ``debias_alpha``, ``debias_adversary_lr``, ``debias_attributes`` (comma-separated),
            ``debias_steps``, and the last epoch's mean losses ``debias_predictor_loss`` and
            ``debias_adversary_loss``.

        Raises:
            ConfigError: When ``context`` is missing or names no model factory.
            ArtifactError: When the defender's rows are empty, have no sensitive attribute, lack one
                ``attributes`` names, or an attribute takes a single value there.
        """
        context = self.require_training_context(context)
        params = self.params
        rows = target.defender_train
        if len(rows) == 0:
            raise ArtifactError(f"defense {self.name!r}: the defender's share of the task is empty")
        names = self._attributes(rows)
        codes = [self._codes(rows, name) for name in names]
        recipe = context.recipe.overridden_by(params)
        seed = context.derive_seed("train")  # the undefended target's seed: same initial weights, same batches
        module = context.build_model(rows.input_shape, rows.num_classes, seed=derive_seed(seed, "init"))
        result = train_debiased(
            module,
            rows.x,
            rows.y,
            codes,
            recipe,
            num_classes=rows.num_classes,
            fairness=params.fairness,
            alpha=params.alpha,
            adversary_lr=params.adversary_lr,
            seed=seed,
            device=context.device,
        )
        factory = context.model
        return TrainedModel(
            module=result.module,
            num_classes=rows.num_classes,
            input_shape=rows.input_shape,
            recipe=recipe,
            train_indices=target.partition.defender if target.partition is not None else None,
            architecture=factory.name,
            architecture_params=factory.get_params(),
            info={
                "debias_fairness": params.fairness,
                "debias_alpha": params.alpha,
                "debias_adversary_lr": params.adversary_lr if params.adversary_lr is not None else recipe.lr,
                "debias_attributes": ",".join(names),
                "debias_steps": result.steps,
                "debias_predictor_loss": result.predictor_loss,
                "debias_adversary_loss": result.adversary_loss,
            },
        )

    def _attributes(self, rows: LabeledData) -> tuple[str, ...]:
        if not rows.sensitive:
            raise ArtifactError(
                f"defense {self.name!r} needs sensitive attributes to protect; the task's training split has none "
                "(LabeledData.sensitive is empty)"
            )
        names = self.params.attributes if self.params.attributes is not None else tuple(rows.sensitive)
        missing = [name for name in names if name not in rows.sensitive]
        if missing:
            raise ArtifactError(
                f"defense {self.name!r}: params.attributes names {missing}, not sensitive attributes of the task "
                f"(it has {sorted(rows.sensitive)})"
            )
        return names

    def _codes(self, rows: LabeledData, name: str) -> tuple[torch.Tensor, int]:
        """The attribute's values on the defender's rows, coded ``0 .. V-1``, and ``V``."""
        values, codes = torch.unique(rows.sensitive[name].detach().cpu(), sorted=True, return_inverse=True)
        if len(values) < 2:
            raise ArtifactError(
                f"defense {self.name!r}: sensitive attribute {name!r} takes the single value {int(values[0])} on the "
                "defender's rows; there is nothing to debias"
            )
        return codes, len(values)
