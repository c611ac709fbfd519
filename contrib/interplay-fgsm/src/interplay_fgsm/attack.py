"""The Fast Gradient Sign Method (FGSM), an evasion (S1) attack.

Reference:
    Ian J. Goodfellow, Jonathon Shlens and Christian Szegedy. "Explaining and Harnessing
    Adversarial Examples". ICLR 2015. https://arxiv.org/abs/1412.6572

FGSM takes one step of size ``eps`` in the direction of the sign of the input gradient
of the classification loss (Goodfellow et al., Eq. 3)::

    x_adv = clip(x + eps * sign(grad_x J(theta, x, y)), clip_min, clip_max)

It is the L-infinity-optimal step for a model that is linear around ``x``, and the
single-step special case of PGD (Madry et al., 2018) without random start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

import torch
from pydantic import Field, model_validator

from interplay import Attack, Params
from interplay.artifacts import AdversarialExamples, LabeledData, TaskData, TrainedModel
from interplay.errors import ArtifactError

if TYPE_CHECKING:
    from interplay import RunContext

__all__ = ["FGSM"]


class FGSM(Attack):
    """Fast Gradient Sign Method: one L-infinity step up the loss (Goodfellow et al., 2015).

    White-box: the attack needs the model's input gradient, so its input is a
    :class:`~interplay.artifacts.TrainedModel`. It perturbs every row of one split of the
    task (``test`` by default) and returns the perturbed inputs with the model's
    predictions on them and on the clean inputs.

    The gradient is computed in evaluation mode, in batches, on the device that holds the
    model. Neither the model (parameters, buffers, ``.grad``, train/eval mode) nor the
    task is modified.

    Args:
        eps: L-infinity perturbation budget, on inputs scaled to ``[0, 1]``.
        targeted: Step *down* the loss of the target label ``(y + 1) % num_classes``
            instead of up the loss of the true label.
        clip_min: Lower bound of valid inputs, or ``None`` for none.
        clip_max: Upper bound of valid inputs, or ``None`` for none.
        split: Name of the task's split to attack.
        batch_size: Rows per forward/backward pass.

    Raises:
        ConfigError: When a parameter is unknown or invalid (``eps < 0``, ``clip_min > clip_max``, ...).

    Examples:
        >>> import interplay
        >>> from interplay.testing.synthetic import synthetic_task, tiny_context, tiny_model
        >>> from interplay_fgsm import FGSM
        >>> task = synthetic_task("image")
        >>> context = tiny_context()
        >>> model = tiny_model(task, context)
        >>> adv = FGSM(eps=0.1).run(model, data=task, context=context)
        >>> bool((adv.x_adv - task.test.x).abs().max() <= 0.1 + 1e-6)
        True
    """

    name = "fgsm"
    risks = ("S1",)
    Input = TrainedModel
    Output = AdversarialExamples
    access = "white-box"
    knowledge = "none"
    summary = "Fast Gradient Sign Method, one L-inf step (Goodfellow et al., 2015)"
    # The conformance kit attacks a tabular synthetic task whose features are not in [0, 1].
    conformance_params = {"clip_min": None, "clip_max": None}

    class Params(Params):
        """Hyper-parameters of :class:`FGSM`.

        Attributes:
            eps: L-infinity budget. 0.1 on inputs scaled to ``[0, 1]`` is AMULET's evasion default.
            targeted: Targeted variant: minimise the loss of label ``(y + 1) % num_classes``.
            clip_min: Lower bound of the valid input range (``None``: unbounded).
            clip_max: Upper bound of the valid input range (``None``: unbounded).
            split: The task split whose rows are perturbed.
            batch_size: Rows per forward/backward pass.
        """

        eps: float = Field(default=0.1, ge=0, allow_inf_nan=False)
        targeted: bool = False
        clip_min: float | None = Field(default=0.0, allow_inf_nan=False)
        clip_max: float | None = Field(default=1.0, allow_inf_nan=False)
        split: str = Field(default="test", min_length=1)
        batch_size: int = Field(default=512, ge=1)

        @model_validator(mode="after")
        def _check_range(self) -> Self:
            if self.clip_min is not None and self.clip_max is not None and self.clip_min > self.clip_max:
                raise ValueError(f"clip_min ({self.clip_min}) must not exceed clip_max ({self.clip_max})")
            return self

    def run(
        self, target: TrainedModel, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> AdversarialExamples:
        """Perturb every row of ``data.splits[split]`` with one signed-gradient step.

        Args:
            target: White-box access to the model under attack.
            data: The task; the rows of split ``params.split`` are attacked. Required.
            context: Unused (FGSM is deterministic); accepted for the common signature.

        Returns:
            The adversarial inputs (on the clean inputs' device), their true labels, the
            model's predictions on them and on the clean inputs, ``norm="linf"`` and ``eps``.

        Raises:
            ArtifactError: When ``data`` is missing, has no such split, or its inputs or
                labels do not fit the model.
        """
        rows = self._rows(target, data)
        x_adv, clean_predictions = self._perturb(target, rows.x, rows.y)
        return AdversarialExamples(
            x_adv=x_adv,
            y=rows.y,
            predictions=target.predict(x_adv),
            clean_predictions=clean_predictions,
            norm="linf",
            eps=self.params.eps,
        )

    def _rows(self, target: TrainedModel, data: TaskData | None) -> LabeledData:
        if data is None:
            raise ArtifactError(
                f"attack {self.name!r} needs the task to attack: call run(model, data=task_data) "
                f"(it perturbs the rows of split {self.params.split!r})"
            )
        split = self.params.split
        if split not in data.splits:
            raise ArtifactError(
                f"attack {self.name!r}: the task has no split {split!r}; available: {sorted(data.splits)}"
            )
        rows = data.splits[split]
        if rows.input_shape != tuple(target.input_shape):
            raise ArtifactError(
                f"attack {self.name!r}: split {split!r} has inputs of shape {rows.input_shape}, "
                f"the model takes {tuple(target.input_shape)}"
            )
        if len(rows) and int(rows.y.max()) >= target.num_classes:
            raise ArtifactError(
                f"attack {self.name!r}: split {split!r} has label {int(rows.y.max())}, "
                f"but the model has {target.num_classes} classes"
            )
        return rows

    def _perturb(self, target: TrainedModel, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x_adv, clean predictions)``, both on ``x``'s device."""
        params = self.params
        module = target.module
        device = target.device
        was_training = module.training
        adversarial: list[torch.Tensor] = []
        predictions: list[torch.Tensor] = []
        module.eval()
        try:
            for x_batch, y_batch in zip(
                torch.split(x, params.batch_size), torch.split(y, params.batch_size), strict=True
            ):
                x_dev = x_batch.detach().to(device)
                y_dev = y_batch.to(device)
                labels = (y_dev + 1) % target.num_classes if params.targeted else y_dev
                grad, logits = _input_gradient(module, x_dev, labels)
                step = -params.eps if params.targeted else params.eps
                x_new = x_dev + step * grad.sign()
                if params.clip_min is not None or params.clip_max is not None:
                    x_new = x_new.clamp(min=params.clip_min, max=params.clip_max)
                adversarial.append(x_new.to(x.device))
                predictions.append(logits.argmax(dim=1).to(x.device))
        finally:
            module.train(was_training)
        if not adversarial:  # an empty split
            return x.detach().clone(), torch.empty(0, dtype=torch.int64, device=x.device)
        return torch.cat(adversarial), torch.cat(predictions)


def _input_gradient(
    module: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed cross-entropy with respect to ``x`` only, and the logits.

    ``torch.autograd.grad`` with ``inputs=x`` leaves every parameter's ``.grad`` untouched.
    The loss is summed, not averaged, so each row's gradient does not shrink with the batch
    size (only its sign is used, but averaging can underflow small gradients to zero).
    """
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        logits: torch.Tensor = module(x)
        loss = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad.detach(), logits.detach()
