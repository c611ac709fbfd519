"""Knowledge distillation as a membership-inference defense (KD; Hinton et al., 2015; ML-Doctor section 7.1.2).

A student model is trained on the teacher's softened posteriors, ``softmax(teacher_logits / T)``, mixed
with the true labels, and released instead of the teacher. ML-Doctor (Liu et al., USENIX Security 2022)
distills its VGG19 target into a VGG11 "with the temperature set to 20 ... We set alpha to 0.7 for the
ratio of the soft target loss", and finds the distilled model somewhat less exposed to membership
inference, not to the other inference attacks.

References:
    Geoffrey Hinton, Oriol Vinyals and Jeff Dean. "Distilling the Knowledge in a Neural Network".
    NIPS Deep Learning Workshop 2014 (arXiv 2015). https://arxiv.org/abs/1503.02531

    Yugeng Liu, Rui Wen, Xinlei He, Ahmed Salem, Zhikun Zhang, Michael Backes, Emiliano De Cristofaro,
    Mario Fritz and Yang Zhang. "ML-Doctor: Holistic Risk Assessment of Inference Attacks Against
    Machine Learning Models". USENIX Security 2022. Code: https://github.com/liuyugeng/ML-Doctor
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field
from torch.nn import functional as F

from interplay import Defense, Params
from interplay._seeding import derive_seed
from interplay.artifacts import LabeledData, TaskData, TrainedModel
from interplay.errors import ArtifactError, ConfigError
from interplay.training import fit

if TYPE_CHECKING:
    from torch import nn

    from interplay import RunContext
    from interplay.training import LossFn

__all__ = ["Distillation", "distillation_loss"]

Split = Literal["teacher", "defender"]


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
    soft_scale: float = 2.0,
) -> torch.Tensor:
    """ML-Doctor's distillation loss: a weighted sum of a soft (teacher) and a hard (label) term.

    ``soft_scale * alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, y)``,
    with the KL divergence summed over classes and averaged over the batch (``KLDivLoss(reduction="batchmean")``)
    and the cross-entropy at temperature 1. The ``T^2`` factor is Hinton et al.'s: it keeps the soft
    term's gradients on the scale of the hard term's as ``T`` changes. ML-Doctor's code
    (``demoloader/train.py``, ``distillation_training.distillation_loss``) multiplies the soft term by
    ``T * T * 2.0 * alpha``, the extra 2.0 being ``soft_scale``'s default; ``soft_scale=1`` gives Hinton's weighting.

    Args:
        student_logits: ``(N, C)`` logits of the student.
        teacher_logits: ``(N, C)`` logits of the teacher (treated as constants).
        labels: ``(N,)`` int64 true labels.
        temperature: Softmax temperature ``T`` of both soft distributions.
        alpha: Weight of the soft term; ``1 - alpha`` weighs the hard term.
        soft_scale: Extra factor of the soft term (ML-Doctor: 2.0).

    Returns:
        The scalar loss.
    """
    soft_student = F.log_softmax(student_logits / temperature, dim=1)
    soft_teacher = F.softmax(teacher_logits.detach() / temperature, dim=1)
    soft = F.kl_div(soft_student, soft_teacher, reduction="batchmean")
    hard = F.cross_entropy(student_logits, labels)
    return soft * (soft_scale * alpha * temperature**2) + hard * (1.0 - alpha)


class Distillation(Defense):
    """Knowledge distillation: release a student trained on the target's softened posteriors (Hinton et al.).

    KD, ML-Doctor's second defense against membership inference (P1). The input is the trained
    target (the teacher, the scenario's model after standard training, or after the defenses before
    this one in a chain). Its logits on the student's training rows are computed once, in evaluation
    mode and without gradients (the teacher is left untouched), and a fresh student is trained with
    :func:`distillation_loss` by :func:`interplay.training.fit` under the scenario's recipe
    ("Other settings are the same as the target model's training phase", ML-Doctor section 7.2).

    Defaults are ML-Doctor's: temperature 20, ``alpha`` 0.7 (paper, section 7.2, and code), and the
    soft term scaled by ``2 * alpha * T^2`` as in its code. ML-Doctor distills VGG19 into VGG11: the
    student is the scenario's architecture unless ``architecture`` (a registered model factory) and
    ``architecture_params`` name a smaller one (e.g. ``architecture="vgg", architecture_params={"depth": 11}``).

    The student trains on the rows the teacher trained on (``split="teacher"``: the teacher's
    ``train_indices``, or the task's defender rows when it does not record them), which is ML-Doctor's
    setting (the student sees the target's training data). ``split="defender"`` uses all defender rows
    of the task instead; the two differ only when the teacher trained on a subset of them (after a
    data defense such as outlier removal). The student's ``train_indices`` are those rows, so
    membership attacks on the student are scored against the data it (and its teacher) learnt from.

    Args:
        temperature: Softmax temperature ``T`` (ML-Doctor: 20).
        alpha: Weight of the soft (teacher) term; ``1 - alpha`` weighs the labels (ML-Doctor: 0.7).
        soft_scale: Extra factor of the soft term: 2.0 in ML-Doctor's code, 1.0 for Hinton et al.'s ``T^2`` only.
        architecture: Model factory of the student; ``None`` uses the scenario's.
        architecture_params: Parameters of that factory; with ``architecture=None`` they override the
            scenario factory's parameters (e.g. ``{"capacity": "m1"}`` for a smaller MLP).
        split: ``teacher`` (the teacher's training rows) or ``defender`` (all defender rows of the task).
        epochs: Training epochs; ``None`` uses the scenario recipe's.
        lr: Learning rate; ``None`` uses the scenario recipe's.
        batch_size: Mini-batch size; ``None`` uses the scenario recipe's.

    Raises:
        ConfigError: (from :meth:`apply`) When no model factory is available for the student.
        ArtifactError: (from :meth:`apply`) When ``data`` is missing, or the rows do not fit the teacher.
    """

    name = "distillation"
    risks = ("P1",)
    Input = TrainedModel
    Output = TrainedModel
    summary = "student trained on the target's softened posteriors (Hinton et al., 2015; ML-Doctor)"

    class Params(Params):
        """Hyper-parameters of :class:`Distillation` (see the class docstring for their sources)."""

        temperature: float = Field(default=20.0, gt=0)
        alpha: float = Field(default=0.7, ge=0, le=1)
        soft_scale: float = Field(default=2.0, gt=0)
        architecture: str | None = None
        architecture_params: dict[str, Any] = Field(default_factory=dict)
        split: Split = "teacher"
        epochs: int | None = Field(default=None, ge=1)
        lr: float | None = Field(default=None, gt=0)
        batch_size: int | None = Field(default=None, ge=1)

    params: Distillation.Params

    def apply(
        self, target: TrainedModel, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> TrainedModel:
        """Distill ``target`` into a fresh student trained on ``split``'s rows of ``data``.

        Args:
            target: The teacher; it is not modified.
            data: The task whose partitioned split holds the training rows.
            context: Seed, device, the scenario's architecture and training recipe. Required.

        Returns:
            The student, with ``train_indices`` the rows it trained on and ``info`` recording
            ``distill_temperature``, ``distill_alpha``, ``distill_soft_scale``, ``distill_student``
            (its architecture) and ``distill_split``.

        Raises:
            ConfigError: When ``context`` is missing or no model factory is available for the student.
            ArtifactError: When ``data`` is missing, the rows are empty or out of range, or their shape or
                classes do not match the teacher.
        """
        if context is None:
            raise ConfigError(f"defense {self.name!r} trains a student: pass a RunContext", path="context")
        factory = context.model_factory(
            self.params.architecture, self.params.architecture_params, path=f"{self.name}.params.architecture"
        )
        rows, indices = self._rows(target, data)
        params = self.params
        teacher_logits = target.logits(rows.x).detach().to(torch.float32)
        labels = rows.y.to(torch.float32).unsqueeze(1)  # packed with the logits: fit() indexes one target tensor
        targets = torch.cat([teacher_logits.to(labels.device), labels], dim=1)
        recipe = context.recipe.overridden_by(self.params)
        seed = context.derive_seed("defense", self.name)
        init = derive_seed(seed, "init")
        module = context.build_model(target.input_shape, target.num_classes, seed=init, factory=factory)
        fit(module, rows.x, targets, recipe, seed=seed, device=context.device, loss_fn=self._loss())
        return TrainedModel(
            module=module,
            num_classes=target.num_classes,
            input_shape=target.input_shape,
            recipe=recipe,
            train_indices=indices,
            architecture=factory.name,
            architecture_params=factory.get_params(),
            info={
                "distill_temperature": params.temperature,
                "distill_alpha": params.alpha,
                "distill_soft_scale": params.soft_scale,
                "distill_student": factory.name,
                "distill_split": params.split,
            },
        )

    def _loss(self) -> LossFn:
        params = self.params

        def loss(module: nn.Module, x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
            teacher_logits, labels = packed[:, :-1], packed[:, -1].to(torch.int64)
            return distillation_loss(
                module(x),
                teacher_logits,
                labels,
                temperature=params.temperature,
                alpha=params.alpha,
                soft_scale=params.soft_scale,
            )

        return loss

    def _rows(self, teacher: TrainedModel, data: TaskData | None) -> tuple[LabeledData, torch.Tensor | None]:
        """The student's training rows (a LabeledData) and their indices in the partitioned split."""
        if data is None:
            raise ArtifactError(f"defense {self.name!r} needs data= (the task whose rows the student trains on)")
        source = data.splits[data.partition.split] if data.partition is not None else data.train
        indices: torch.Tensor | None
        if self.params.split == "teacher" and teacher.train_indices is not None:
            indices = teacher.train_indices
        else:
            indices = data.partition.defender if data.partition is not None else None
        if indices is not None:
            if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= len(source)):
                raise ArtifactError(
                    f"defense {self.name!r}: the teacher's train_indices go beyond the {len(source)} rows of the "
                    "task's partitioned split; pass the task the teacher was trained on as data="
                )
            rows = source.subset(indices)
        else:
            rows = source
        if len(rows) == 0:
            raise ArtifactError(f"defense {self.name!r}: no rows to train the student on")
        if rows.input_shape != teacher.input_shape or rows.num_classes > teacher.num_classes:
            raise ArtifactError(
                f"defense {self.name!r}: the task's rows (input shape {rows.input_shape}, {rows.num_classes} "
                f"classes) do not fit the teacher (input shape {teacher.input_shape}, {teacher.num_classes} classes)"
            )
        return rows, indices
