"""Unauthorized model ownership (S3) attacks: model extraction from a black-box target.

The adversary queries the target on its own auxiliary data, records the posteriors the
target returns and trains a surrogate ("stolen") model to reproduce them, as in
ML-Doctor (Liu et al., USENIX Security 2022, section 3.4 "Model Stealing") and AMULET
(Waheed et al., section 5: "We implement model extraction using ML-Doctor"), after Tramer et al.
(USENIX Security 2016).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from interplay.artifacts import QueryAccess, SurrogateModel, TaskData, TrainedModel
from interplay.context import RunContext
from interplay.errors import ArtifactError
from interplay.modules import Attack, Params
from interplay.training import fit

if TYPE_CHECKING:
    from torch import nn

    from interplay.training import LossFn

__all__ = ["ModelExtraction", "extraction_loss"]

ExtractionLoss = Literal["mse", "kl", "ce"]


def _mse(module: nn.Module, x: torch.Tensor, posteriors: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(torch.softmax(module(x), dim=1), posteriors)


def _kl(module: nn.Module, x: torch.Tensor, posteriors: torch.Tensor) -> torch.Tensor:
    return F.kl_div(torch.log_softmax(module(x), dim=1), posteriors, reduction="batchmean")


def _ce(module: nn.Module, x: torch.Tensor, posteriors: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(module(x), posteriors.argmax(dim=1))


_LOSSES: dict[str, LossFn] = {"mse": _mse, "kl": _kl, "ce": _ce}


def extraction_loss(name: ExtractionLoss) -> LossFn:
    """The surrogate's training loss ``loss(module, x_batch, posteriors_batch)``.

    Args:
        name: ``mse``: mean squared error between the surrogate's softmax output and the
            target's posteriors; ``kl``: ``KL(target || surrogate)``, averaged over the batch;
            ``ce``: cross-entropy to the target's arg-max labels.

    Returns:
        A loss usable as ``loss_fn`` of :func:`interplay.training.fit`.
    """
    return _LOSSES[name]


class ModelExtraction(Attack):
    """Model extraction: train a surrogate on the target's posteriors for the adversary's own data.

    ML-Doctor's ``<ModSteal, M^B, D_aux^S>``: "the adversary uses data samples from their
    auxiliary dataset to query the target model and gets the corresponding posteriors.
    Then, they use them to train the stolen model, with the posteriors as the ground truth"
    (Liu et al., section 3.4). The adversary knows the target's architecture (the scenario's,
    unless ``architecture`` names another) and holds a shadow data set, disjoint from the
    target's training rows (``data.adversary``). Only the target's posteriors are used: the
    adversary's own labels are not.

    The losses, and how the reference implementations define them:

    - ``mse`` (default): ``mean((softmax(f_s(x)) - p_t(x))^2)``. ML-Doctor's paper trains
      "using the MSE loss" (section 5.2: SGD, momentum 0.9, learning rate 1e-2, 50 epochs); its code
      (``doctor/modsteal.py``) has two paths: ``train`` applies a softmax to the surrogate's
      output before ``nn.MSELoss`` against the stored posteriors, while
      ``train_with_same_distribution`` (the one its demo runs) regresses the surrogate's raw
      outputs onto the target's softmax posteriors. AMULET's paper says "minimize the mean
      squared error (MSE) between its output logits and those of the target model", and its
      code (``amulet/unauth_model_ownership/attacks/model_extraction.py``) indeed regresses
      the surrogate's logits onto the target's *logits*, which a black-box adversary cannot
      see. We compare probabilities with probabilities: the surrogate's softmax against the
      posteriors the black-box interface returns (ML-Doctor's ``train`` path). Its output
      stays a proper logit vector, so the surrogate is a usable classifier downstream.
    - ``kl``: ``KL(p_t || softmax(f_s))`` summed over classes and averaged over the batch,
      exactly AMULET's ``kl`` option (``nn.KLDivLoss(reduction="batchmean")`` on the
      surrogate's log-softmax against the target's softmax).
    - ``ce``: cross-entropy of the surrogate's logits to the target's arg-max labels, AMULET's
      ``ce`` option (the setting of a label-only API, simulated from posteriors).

    Examples:
        With ``task`` a partitioned :class:`TaskData` and ``target`` the defender's model::

            context = RunContext(seed=0, model=interplay.get_registry().create("mlp"))
            stolen = ModelExtraction(loss="kl").run(target, data=task, context=context)
            assert stolen.queries == len(task.adversary)
    """

    name = "model_extraction"
    risks = ("S3",)
    Input = QueryAccess
    Output = SurrogateModel
    access = "black-box"
    knowledge = "shadow"
    conformance_params = {"epochs": 2}

    class Params(Params):
        """Hyper-parameters of :class:`ModelExtraction`.

        Attributes:
            loss: ``mse`` (softmax output against posteriors, ML-Doctor), ``kl`` (KL(target ||
                surrogate)) or ``ce`` (cross-entropy to the target's arg-max labels).
            architecture: Model factory of the surrogate; ``None`` uses the scenario's
                architecture (ML-Doctor: "the same architecture as the target model").
            architecture_params: Parameters of that factory; with ``architecture=None`` they
                override the scenario factory's parameters.
            epochs: Training epochs; ``None`` uses the scenario recipe's.
            lr: Learning rate; ``None`` uses the scenario recipe's.
            batch_size: Mini-batch size; ``None`` uses the scenario recipe's.
            query_budget: At most this many adversary inputs are queried (a seeded random
                subset); ``None`` queries them all.
        """

        loss: ExtractionLoss = "mse"
        architecture: str | None = None
        architecture_params: dict[str, Any] = Field(default_factory=dict)
        epochs: int | None = Field(default=None, ge=1)
        lr: float | None = Field(default=None, gt=0)
        batch_size: int | None = Field(default=None, ge=1)
        query_budget: int | None = Field(default=None, ge=1)

    params: ModelExtraction.Params

    def run(
        self, target: QueryAccess, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> SurrogateModel:
        """Query ``target`` on the adversary's rows and train a surrogate on its posteriors.

        Args:
            target: Black-box access to the target (a wider access is narrowed to this).
            data: The task; its partition's adversary rows are the queries.
            context: Seed, device, the scenario's architecture and training recipe.

        Returns:
            The surrogate (``train_indices`` are the queried rows of the partitioned split)
            and the number of inputs queried.

        Raises:
            ArtifactError: When ``data`` is missing or has no defender/adversary partition,
                the adversary's share is empty, or the target returns malformed posteriors.
            ConfigError: When no model factory is available for the surrogate.
        """
        context = context if context is not None else RunContext()
        indices = self._adversary_indices(data)
        path = f"{self.name}.params.architecture"  # configuration errors before any query is spent
        factory = context.model_factory(self.params.architecture, self.params.architecture_params, path=path)
        assert data is not None and data.partition is not None  # checked by _adversary_indices
        if self.params.query_budget is not None and self.params.query_budget < len(indices):
            generator = context.generator(self.name, "query_budget")
            chosen = torch.randperm(len(indices), generator=generator)[: self.params.query_budget]
            indices = indices[chosen.sort().values]
        x = data.splits[data.partition.split].x[indices]

        with torch.no_grad():  # checked by QueryAccess.query
            posteriors = target.query(x).detach().to(torch.float32)
        recipe = context.recipe.overridden_by(self.params)
        seed = context.derive_seed(self.name, "surrogate")
        init_seed = context.derive_seed(self.name, "surrogate", "init")
        module = context.build_model(target.input_shape, target.num_classes, seed=init_seed, factory=factory)
        fit(module, x, posteriors, recipe, seed=seed, device=context.device, loss_fn=extraction_loss(self.params.loss))
        surrogate = TrainedModel(
            module=module,
            num_classes=target.num_classes,
            input_shape=target.input_shape,
            recipe=recipe,
            train_indices=indices,
            architecture=factory.name,
            architecture_params=factory.get_params(),
            info={"extraction_loss": self.params.loss, "queries": len(indices)},
        )
        return SurrogateModel(model=surrogate, queries=len(indices))

    def _adversary_indices(self, data: TaskData | None) -> torch.Tensor:
        if data is None:
            raise ArtifactError(
                f"attack {self.name!r} needs data= (a TaskData whose partition gives the adversary's rows)"
            )
        if data.partition is None:
            raise ArtifactError(
                f"attack {self.name!r} needs a TaskData with a defender/adversary partition; "
                "call data.partitioned(...) first"
            )
        indices = data.partition.adversary
        if indices.numel() == 0:
            raise ArtifactError(f"attack {self.name!r}: the adversary's share of the data is empty")
        return indices
