"""Evasion (S1) attacks: projected gradient descent (Madry et al., 2018).

Reference:
    Aleksander Madry, Aleksandar Makelov, Ludwig Schmidt, Dimitris Tsipras and Adrian Vladu.
    "Towards Deep Learning Models Resistant to Adversarial Attacks". ICLR 2018.
    https://arxiv.org/abs/1706.06083
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from pydantic import Field

from interplay import Attack
from interplay.artifacts import AdversarialExamples, LabeledData, TaskData, TrainedModel
from interplay.errors import ArtifactError

from ._pgd import PGDParams, evaluation_mode, pgd_batched, predict_batched

if TYPE_CHECKING:
    from interplay import RunContext

__all__ = ["PGD"]


class PGD(Attack):
    """Projected gradient descent: iterated gradient steps projected onto an eps-ball (Madry et al., 2018).

    White-box evasion (S1), AMULET's attack for S1. Every row of one split of the task (``test``
    by default) is perturbed to maximise the cross-entropy of its true label within an L-infinity
    or L2 ball of radius ``eps`` (with ``targeted=True``: to minimise the loss of the label
    ``(y + 1) % num_classes``). The algorithm and its defaults follow the CleverHans
    ``projected_gradient_descent`` that AMULET calls (see :mod:`interplay.plugins.evasion._pgd` for
    the exact semantics and the few deliberate differences).

    The model runs in evaluation mode on ``context.device`` (the model's own device when no
    context is given), in batches of ``batch_size`` rows. When the model lives elsewhere it is
    copied there; the caller's model (parameters, buffers, ``.grad``, device, train/eval mode) and
    the task are never modified. The random start is drawn from a generator seeded by the context,
    so the same seed gives the same adversarial examples.

    Args:
        eps: Perturbation budget on inputs in ``[0, 1]`` (AMULET's default 0.1).
        step: Step size per iteration (AMULET's default 0.01); at most ``eps``.
        iterations: Number of iterations (AMULET's default 40).
        norm: ``"linf"`` or ``"l2"``.
        random_start: Start from a uniformly random point of the ball (Madry et al.); ``False``
            gives the Basic Iterative Method (Kurakin et al., 2016).
        clip_min: Lower bound of valid inputs, or ``None``.
        clip_max: Upper bound of valid inputs, or ``None``.
        targeted: Targeted variant (label ``(y + 1) % num_classes``).
        split: The task split whose rows are attacked.
        batch_size: Rows per forward/backward pass.

    Raises:
        ConfigError: When a parameter is unknown or invalid (``step > eps``, ``clip_min > clip_max``, ...).

    Examples:
        >>> from interplay.testing.synthetic import synthetic_task, tiny_context, tiny_model
        >>> task = synthetic_task("image")
        >>> context = tiny_context()
        >>> model = tiny_model(task, context)
        >>> adv = PGD(eps=0.1, iterations=5).run(model, data=task, context=context)
        >>> bool((adv.x_adv - task.test.x).abs().max() <= 0.1 + 1e-6)
        True
    """

    name = "pgd"
    risks = ("S1",)
    Input = TrainedModel
    Output = AdversarialExamples
    access = "white-box"
    knowledge = "none"
    summary = "projected gradient descent, L-inf or L2 (Madry et al., 2018)"
    # Few iterations keep the kit fast; its tabular synthetic task is not scaled to [0, 1].
    conformance_params = {"iterations": 3, "clip_min": None, "clip_max": None}

    class Params(PGDParams):
        """Hyper-parameters of :class:`PGD` (the PGD settings are documented on :class:`PGDParams`).

        Attributes:
            targeted: Minimise the loss of label ``(y + 1) % num_classes`` instead of maximising
                the loss of the true label.
            split: The task split whose rows are perturbed.
            batch_size: Rows per forward/backward pass.
        """

        targeted: bool = False
        split: str = Field(default="test", min_length=1)
        batch_size: int = Field(default=1024, ge=1)

    params: PGD.Params

    def run(
        self, target: TrainedModel, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> AdversarialExamples:
        """Perturb every row of ``data.splits[split]`` with PGD.

        Args:
            target: White-box access to the model under attack.
            data: The task; the rows of split ``params.split`` are attacked. Required.
            context: Seed (of the random start) and device. Optional.

        Returns:
            The adversarial inputs (on the clean inputs' device), the true labels, the model's
            predictions on the adversarial and on the clean inputs, the norm and ``eps``.

        Raises:
            ArtifactError: When ``data`` is missing, has no such split, or its inputs or labels do
                not fit the model.
        """
        params = self.params
        rows = self._rows(target, data)
        device = torch.device(context.device) if context is not None else target.device
        generator = _random_start_generator(context, "attack", self.name, "random_start")
        labels = (rows.y + 1) % target.num_classes if params.targeted else rows.y
        with _evaluation_copy(target.module, device) as (module, device):
            x_adv = pgd_batched(
                module,
                rows.x,
                labels,
                **params.pgd_kwargs(),
                targeted=params.targeted,
                generator=generator,
                batch_size=params.batch_size,
                device=device,
            )
            predictions = predict_batched(module, x_adv, batch_size=params.batch_size, device=device)
            clean_predictions = predict_batched(module, rows.x, batch_size=params.batch_size, device=device)
        return AdversarialExamples(
            x_adv=x_adv,
            y=rows.y,
            predictions=predictions,
            clean_predictions=clean_predictions,
            norm=params.norm,
            eps=params.eps,
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


def _random_start_generator(context: RunContext | None, *salt: object) -> torch.Generator:
    """The context's generator for ``salt``; without a context, the one a default context (seed 0) gives."""
    if context is None:
        from interplay import RunContext

        context = RunContext()
    return context.generator(*salt)


def _module_device(module: torch.nn.Module) -> torch.device | None:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return None


@contextlib.contextmanager
def _evaluation_copy(module: torch.nn.Module, device: torch.device) -> Iterator[tuple[torch.nn.Module, torch.device]]:
    """``module`` in evaluation mode on ``device`` and the device it runs on.

    The module itself when it is there already (``cuda`` matches any ``cuda:N``), in evaluation
    mode for the block only; otherwise an evaluation-mode copy moved to ``device``.
    """
    current = _module_device(module)
    if current is None:
        with evaluation_mode(module):
            yield module, device
    elif current == device or (current.type == device.type and device.index is None):
        with evaluation_mode(module):
            yield module, current
    else:
        yield copy.deepcopy(module).to(device).eval(), device
