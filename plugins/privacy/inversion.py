"""Data reconstruction (P3): model inversion by gradient descent on the input (Fredrikson et al., CCS 2015).

References:
    Matt Fredrikson, Somesh Jha and Thomas Ristenpart. "Model Inversion Attacks that Exploit
    Confidence Information and Basic Countermeasures". CCS 2015, Algorithm 1 (MI-FACE).

    ML-Doctor (Liu et al., USENIX Security 2022, section 3.2, ``<ModInv, M^W, D_aux^N>``;
    code ``doctor/modinv.py``) and AMULET (Waheed et al.; "We use the implementation from
    ML-Doctor", code ``amulet/data_reconstruction/attacks/fredrikson_ccs_2015.py``).

Algorithm 1 of Fredrikson et al., for one class ``c``::

    c(x) := 1 - softmax(f(x))_c + AUXTERM(x)
    x_0 <- 0
    for i = 1 .. alpha:
        x_i <- PROCESS(x_{i-1} - lambda * grad c(x_{i-1}))
        if c(x_i) >= max(c(x_{i-1}), ..., c(x_{i-beta})): break
        if c(x_i) <= gamma: break
    return argmin_i c(x_i)

ML-Doctor and AMULET use no auxiliary term and no processing (``AUXTERM = 0``, ``PROCESS`` the
identity; the paper's denoising ``PROCESS-DAE`` belongs to its autoencoder variant), no clipping,
and AMULET's defaults ``alpha = 3000`` (its examples and ML-Doctor's paper: "maximum iteration to
3,000"), ``beta = 100`` (ML-Doctor: "early stop criteria to 100"), ``gamma = 0.001`` (a target
*cost*, i.e. confidence 0.999, ML-Doctor's "threshold to 0.999") and ``lambda = 0.003``, a plain
gradient step (``x - lambda * grad``, no sign, no normalisation).

Deliberate differences from the reference code (see ``docs/privacy/inversion.md``):

* the cost is computed on the softmax of the logits our models return; ML-Doctor's code reads the
  model's output as probabilities and tells users to append a softmax, which AMULET's scripts do;
* the stopping window is the paper's sliding window over the last ``beta`` costs; ML-Doctor's
  code compares with the maximum of all costs since iteration ``beta`` (a growing window), and
  returns the best iterate among all but the last one evaluated. We return the best of all;
* all classes are inverted together in one batch (one forward and one backward pass per
  iteration for every class), each class stopping on its own; the reference code inverts the
  classes one after another. The result per class is the same, since a model in evaluation mode
  treats each row of a batch independently.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from pydantic import Field, field_validator, model_validator

from interplay.artifacts import Reconstructions, TaskData, TrainedModel
from interplay.context import RunContext
from interplay.errors import ArtifactError, ConfigError
from interplay.modules import Attack, Params

__all__ = ["InversionTrace", "ModelInversion", "class_means", "invert"]

_CHECK_EVERY = 25
"""Iterations between checks whether every class has stopped (each check synchronises with the device)."""


@dataclass(frozen=True)
class InversionTrace:
    """What :func:`invert` returns, one row per inverted class.

    Attributes:
        x: The lowest-cost input found per class, shape ``(K, *input_shape)``.
        cost: Its cost ``1 - softmax(f(x))_c``, shape ``(K,)``.
        steps: Gradient steps taken before the class stopped, shape ``(K,)``, at most ``max_iterations``.
        reached_target: Whether the class stopped because its cost fell to ``target_cost``, shape ``(K,)``.
    """

    x: torch.Tensor
    cost: torch.Tensor
    steps: torch.Tensor
    reached_target: torch.Tensor


def _module_device(module: torch.nn.Module) -> torch.device | None:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return None


@contextlib.contextmanager
def _evaluation_module(module: torch.nn.Module, device: torch.device) -> Iterator[torch.nn.Module]:
    """``module`` in evaluation mode for the block when it lives on ``device``, else an evaluation copy there."""
    current = _module_device(module)
    if current is not None and current != device and not (current.type == device.type and device.index is None):
        yield copy.deepcopy(module).to(device).eval()
        return
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def invert(
    module: torch.nn.Module,
    classes: torch.Tensor,
    input_shape: tuple[int, ...],
    *,
    max_iterations: int = 3000,
    window: int = 100,
    target_cost: float = 0.001,
    lr: float = 0.003,
    clip_min: float | None = None,
    clip_max: float | None = None,
    device: torch.device | str | None = None,
) -> InversionTrace:
    """Fredrikson et al.'s MI-FACE for every class of ``classes`` at once.

    One tensor holds one input per class, all starting at zero. Each iteration evaluates the
    cost ``1 - softmax(module(x))_c`` of every row, takes its gradient with respect to the inputs
    only (:func:`torch.autograd.grad`; parameters' ``.grad`` is never touched), records each row's
    lowest-cost input, and moves the rows still running by ``-lr * gradient``. A row stops when
    its cost falls to ``target_cost`` or when it is no lower than the highest of the row's previous
    ``window`` costs; a stopped row keeps its best input. The module runs in evaluation mode and
    is restored to its previous mode afterwards.

    Args:
        module: The classifier; ``module(x)`` returns logits ``(N, num_classes)``.
        classes: The class to invert per row, int64 of shape ``(K,)``.
        input_shape: Shape of one input, without the batch dimension.
        max_iterations: At most this many gradient steps per class (Fredrikson's ``alpha``).
        window: Fredrikson's ``beta``: stop a class once its cost is no lower than each of its
            previous ``window`` costs.
        target_cost: Fredrikson's ``gamma``: stop a class once its cost is at most this.
        lr: Step size ``lambda`` of the gradient step.
        clip_min: Lower bound each step is clipped to, or ``None`` (the reference: no clipping).
        clip_max: Upper bound each step is clipped to, or ``None``.
        device: Where to run; defaults to the module's device.

    Returns:
        An :class:`InversionTrace` whose tensors live on ``device``.
    """
    run_on = torch.device(device) if device is not None else (_module_device(module) or torch.device("cpu"))
    classes = classes.to(device=run_on, dtype=torch.int64)
    count = int(classes.shape[0])
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    x = torch.zeros((count, *input_shape), dtype=dtype, device=run_on)
    best_x = x.clone()
    best_cost = torch.full((count,), float("inf"), dtype=dtype, device=run_on)
    recent = torch.full((count, window), float("inf"), dtype=dtype, device=run_on)  # inf: not yet a full window
    active = torch.ones(count, dtype=torch.bool, device=run_on)
    reached = torch.zeros(count, dtype=torch.bool, device=run_on)
    steps = torch.zeros(count, dtype=torch.int64, device=run_on)
    row_shape = (count,) + (1,) * len(input_shape)
    with _evaluation_module(module, run_on) as net:
        for iteration in range(max_iterations + 1):
            x.requires_grad_(True)
            probabilities = torch.softmax(net(x), dim=1)
            cost = 1.0 - probabilities.gather(1, classes[:, None]).squeeze(1)
            (gradient,) = torch.autograd.grad(cost.sum(), x)
            x, cost = x.detach(), cost.detach()
            improved = active & (cost < best_cost)
            best_cost = torch.where(improved, cost, best_cost)
            best_x = torch.where(improved.view(row_shape), x, best_x)
            hit = cost <= target_cost
            stop = hit | (cost >= recent.max(dim=1).values)
            reached |= active & hit
            active &= ~stop
            recent[:, iteration % window] = cost
            if iteration == max_iterations:
                break
            if iteration % _CHECK_EVERY == 0 and not bool(active.any()):
                break
            moved = x - lr * gradient
            if clip_min is not None or clip_max is not None:
                moved = moved.clamp(min=clip_min, max=clip_max)
            x = torch.where(active.view(row_shape), moved, x)
            steps += active
    return InversionTrace(x=best_x, cost=best_cost, steps=steps, reached_target=reached)


def class_means(target: TrainedModel, data: TaskData, classes: torch.Tensor) -> torch.Tensor:
    """The mean training input of each class of ``classes`` over the rows the target trained on.

    The rows are ``target.train_indices`` of the partitioned split (the ``train`` split without a
    partition); without training indices, the defender's rows ``data.defender_train``. They are
    evaluation ground truth: the attack itself never sees them.

    Raises:
        ArtifactError: When the data's input shape differs from the model's, the training indices
            fall outside the split, or a class has no training row.
    """
    if data.input_shape != target.input_shape:
        raise ArtifactError(f"data has input shape {data.input_shape} but the target model takes {target.input_shape}")
    if target.train_indices is None:
        x, y = data.defender_train.x, data.defender_train.y
    else:
        split = data.partition.split if data.partition is not None else "train"
        source = data.splits[split]
        index = target.train_indices.to(torch.int64).cpu()
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= len(source)):
            raise ArtifactError(f"target.train_indices refer to rows outside split {split!r} of {len(source)} rows")
        x, y = source.x[index], source.y[index]
    num_classes = max(target.num_classes, data.num_classes)
    flat = x.reshape(x.shape[0], -1).to(torch.float64)
    sums = torch.zeros((num_classes, flat.shape[1]), dtype=torch.float64).index_add_(0, y.cpu(), flat.cpu())
    counts = torch.bincount(y.cpu(), minlength=num_classes)
    chosen = classes.cpu()
    missing = chosen[counts[chosen] == 0].tolist()
    if missing:
        raise ArtifactError(f"no training rows of class(es) {missing}: their reference (class mean) is undefined")
    means = sums[chosen] / counts[chosen, None].to(torch.float64)
    return means.to(x.dtype).reshape(len(chosen), *x.shape[1:])


class ModelInversion(Attack):
    """Model inversion (Fredrikson et al., 2015): the input that maximises each class's confidence.

    For every class, gradient descent on the input minimises ``1 - softmax(f(x))_c`` from an
    all-zero start, as in ML-Doctor's ``<ModInv, M^W, D_aux^N>`` and AMULET's P3 attack: "For
    each class of the target model, the adversary ... optimize[s] the input sample so that the
    corresponding posterior of the class can exceed a pre-set threshold" (Liu et al., section 3.2).
    The adversary needs white-box access (gradients) and no data. All classes run in one batch on
    the context's device (see :func:`invert`).

    Each reconstruction is returned with its reference, the mean training input of its class over
    the rows the target trained on (:func:`class_means`), which the P3 metrics compare it with
    (ML-Doctor and AMULET: MSE and SSIM to the class average).

    Examples:
        With ``task`` a partitioned digits task and ``target`` a model trained on it::

            rec = ModelInversion(max_iterations=1000).run(target, data=task, context=RunContext())
            assert rec.x_rec.shape == (10, 1, 8, 8)
    """

    name = "model_inversion"
    risks = ("P3",)
    Input = TrainedModel
    Output = Reconstructions
    access = "white-box"
    knowledge = "none"
    conformance_params = {"max_iterations": 20, "window": 5}

    class Params(Params):
        """Hyper-parameters of :class:`ModelInversion` (defaults: AMULET's ``FredriksonCCS2015``).

        Attributes:
            max_iterations: At most this many gradient steps per class (``alpha``; 3000 in AMULET's
                examples and ML-Doctor's paper).
            window: ``beta`` (100): a class stops once its cost is no lower than each of its
                previous ``window`` costs (Fredrikson et al.'s Algorithm 1).
            target_cost: ``gamma`` (0.001): a class stops once ``1 - confidence`` is at most this,
                i.e. confidence 0.999 (ML-Doctor's "threshold to 0.999").
            lr: ``lambda`` (0.003): the step ``x <- x - lr * grad``.
            clip_min: Clip each step's input from below; ``None`` (the reference): no clipping.
            clip_max: Clip each step's input from above; ``None``: no clipping.
            classes: The classes to invert; ``None``: every class of the model.
        """

        max_iterations: int = Field(default=3000, ge=0)
        window: int = Field(default=100, ge=1)
        target_cost: float = Field(default=0.001, ge=0, le=1, allow_inf_nan=False)
        lr: float = Field(default=0.003, gt=0, allow_inf_nan=False)
        clip_min: float | None = Field(default=None, allow_inf_nan=False)
        clip_max: float | None = Field(default=None, allow_inf_nan=False)
        classes: tuple[int, ...] | None = None

        @field_validator("classes")
        @classmethod
        def _check_classes(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
            if value is None:
                return value
            if not value:
                raise ValueError("must name at least one class (or be null for all)")
            if min(value) < 0:
                raise ValueError(f"class indices must be non-negative, got {list(value)}")
            if len(set(value)) != len(value):
                raise ValueError(f"class indices must be distinct, got {list(value)}")
            return value

        @model_validator(mode="after")
        def _check_clip(self) -> ModelInversion.Params:
            if self.clip_min is not None and self.clip_max is not None and self.clip_min > self.clip_max:
                raise ValueError(f"clip_min ({self.clip_min}) must not exceed clip_max ({self.clip_max})")
            return self

    params: ModelInversion.Params

    def run(
        self, target: TrainedModel, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> Reconstructions:
        """Invert every requested class of ``target`` and pair each result with its class mean.

        Args:
            target: White-box access to the model under attack.
            data: The task; only its training rows of each class serve as the reference (evaluation
                ground truth), never as input to the attack.
            context: The device to run on; without one, the model's own device.

        Returns:
            ``x_rec`` (on the CPU), ``reference`` and ``classes``, one row per class.

        Raises:
            ArtifactError: When ``data`` is missing, does not fit the model, or lacks a class.
            ConfigError: When ``classes`` names a class the model does not have.
        """
        if data is None:
            raise ArtifactError(
                f"attack {self.name!r} needs data= (a TaskData: each class's mean training input is the reference)"
            )
        classes = self._classes(target)
        reference = class_means(target, data, classes)
        device = torch.device(context.device) if context is not None else target.device
        trace = invert(
            target.module,
            classes,
            target.input_shape,
            max_iterations=self.params.max_iterations,
            window=self.params.window,
            target_cost=self.params.target_cost,
            lr=self.params.lr,
            clip_min=self.params.clip_min,
            clip_max=self.params.clip_max,
            device=device,
        )
        x_rec = trace.x.detach().cpu().to(reference.dtype)
        return Reconstructions(x_rec=x_rec, reference=reference, classes=classes)

    def _classes(self, target: TrainedModel) -> torch.Tensor:
        if self.params.classes is None:
            return torch.arange(target.num_classes)
        unknown = [c for c in self.params.classes if c >= target.num_classes]
        if unknown:
            raise ConfigError(
                f"class(es) {unknown} do not exist: the target has {target.num_classes} classes",
                path=f"{self.name}.params.classes",
            )
        return torch.tensor(self.params.classes, dtype=torch.int64)
