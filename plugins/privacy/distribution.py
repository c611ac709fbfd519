"""Distribution (property) inference (P4): which of two training distributions produced a model?

The threat model is Suri and Evans's ("Formalizing and Estimating Distribution Inference Risks",
PETS 2022) as refined in Suri et al. ("Dissecting Distribution Inference", SaTML 2023; code
``iamgroot42/dissecting_distribution_inference``, which grew into ``iamgroot42/distribution_inference``):
the victim trains a model on data whose share of a binary sensitive attribute (``sex`` on Census, say)
is either ``r0`` or ``r1`` (0.1 vs 0.9 by default); the adversary draws its own data at each ratio,
trains shadow ("local") models on it and must tell which ratio each victim model was trained on.

How the trials are produced here:

- **Victims.** ``victims`` models per ratio, each trained on a fresh random sample of the defender's
  rows (``data.partition.defender``) resampled to the ratio, through
  :meth:`~interplay.context.RunContext.train_like_target`: in a study the runner sets it to the
  cell's defense chain, so the victims of a DP-SGD cell are DP-SGD models. The ``target`` handed to
  :meth:`run` is the cell's single model; it is only checked for shape (and, white-box, for its
  architecture): the trials are the victims, and the accuracy over them is the risk of the procedure
  (standard training plus the defense) that produced the target.
- **Shadows.** ``shadows`` models per ratio, each trained on a random sample of the adversary's rows
  (``data.adversary``) at the ratio, with the scenario's architecture and recipe, all in one
  :func:`~interplay.plugins.privacy._shadows.train_models` call. A share ``query_fraction`` of the
  adversary's rows is held out from shadow training: the black-box attack queries on it. Shadows do
  not depend on the defense, so they are computed once per seed and shared through
  ``context.memo`` by every cell and by both attacks.
- **Sizes.** Every victim and shadow trains on ``sample_size`` rows, by default the largest size that
  both ratios allow in both pools, so that the two ratios differ in composition only.

The two attacks:

- :class:`DistributionInference` (black-box): the KL-divergence test of "Dissecting Distribution
  Inference" (its "KL Divergence Attack").
- :class:`WhiteBoxDistributionInference`: the permutation-invariant meta-classifier of Ganju et al.
  (CCS 2018) in the variant Suri and Evans use, trained on the shadows' weights.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from interplay._seeding import derive_seed, seeded
from interplay.artifacts import PropertyGuesses, QueryAccess, TaskData, TrainedModel
from interplay.context import RunContext
from interplay.errors import ArtifactError
from interplay.progress import track

from ._distribution_trials import QUERY_CHUNK, DistributionAttack, DistributionParams, Setting
from ._kl_test import kl_test
from ._meta_classifier import PermutationInvariantNetwork, layer_shapes, linear_layers, weight_features
from ._property_samples import draw_samples, max_sample_size

__all__ = [
    "DistributionInference",
    "DistributionParams",
    "PermutationInvariantNetwork",
    "WhiteBoxDistributionInference",
    "kl_test",
    "max_sample_size",
]

# --------------------------------------------------------------------------------------------- black-box: KL test


def _posteriors(model: nn.Module, x: torch.Tensor, device: str) -> torch.Tensor:
    with torch.no_grad():
        out = [torch.softmax(model(chunk.to(device)), dim=1).cpu() for chunk in torch.split(x, QUERY_CHUNK)]
    return torch.cat(out).to(torch.float32)


class DistributionInference(DistributionAttack):
    """Black-box distribution inference: the KL-divergence test (Suri et al., "Dissecting Distribution Inference").

    The adversary queries every victim and every shadow on ``queries`` of its held-out rows drawn at
    each ratio, computes ``KL(shadow || victim)`` on the posteriors and decides by pairwise comparison
    (see :func:`kl_test`). Defaults follow the reference code (``BlackBoxAttackConfig``: ``kl_frac =
    0.8``, ``kl_voting = False``); its binary-task KL on sigmoid outputs is the two-class case of the
    multi-class KL used here. Deviation: probabilities are clipped to ``[1e-6, 1 - 1e-6]`` before
    the logarithms (the reference's clipped copies go unused, so a saturated posterior gives ``inf``).

    Examples:
        With ``task`` a partitioned Census task and ``target`` the cell's model::

            context = RunContext(seed=0, model=get_registry().create("mlp"), recipe=TrainingRecipe(epochs=5))
            guesses = DistributionInference(ratios=(0.1, 0.9)).run(target, data=task, context=context)
            accuracy = (guesses.predicted == guesses.truth).float().mean()
    """

    name = "distribution_inference"
    Input = QueryAccess
    access = "black-box"
    conformance_params = {"victims": 2, "shadows": 3}

    class Params(DistributionParams):
        """Hyper-parameters of :class:`DistributionInference` (besides :class:`DistributionParams`).

        Attributes:
            queries: Query rows per distribution; ``None`` is as many as the held-out pool allows
                at both ratios (the reference queries its whole test split at each ratio).
            pair_fraction: Share of shadow pairs compared (the reference's ``kl_frac = 0.8``).
            decision: ``difference`` (normalised KL differences, the reference default) or ``vote``.
        """

        queries: int | None = Field(default=None, ge=1)
        pair_fraction: float = Field(default=0.8, gt=0, le=1)
        decision: Literal["difference", "vote"] = "difference"

    params: DistributionInference.Params

    def run(
        self, target: QueryAccess, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> PropertyGuesses:
        """Train victims and shadows at both ratios and guess each victim's ratio from its posteriors.

        Args:
            target: The cell's model, checked for shape only: the trials are the victims.
            data: The partitioned task; ``data.adversary`` is the adversary's data.
            context: Seed, device, architecture and recipe; ``train_like_target`` makes the victims.

        Returns:
            One guess per victim: ratio-0 victims first.

        Raises:
            ArtifactError: When the task has no partition, lacks the attribute, or cannot meet the ratios.
        """
        context = context if context is not None else RunContext()
        setting = self._setting(data, context)
        assert data is not None
        self._check_target(self.name, target, data)
        queries = self._queries(setting, context)
        shadows, _ = self._shadows(data, setting, context)
        victims, truth = self._victims(data, setting, context)
        shadow_posteriors = [torch.stack([_posteriors(m, x, context.device) for m in shadows]) for x in queries]
        victim_posteriors = [torch.stack([self._query(v, x) for v in victims]) for x in queries]
        predicted = kl_test(
            shadow_posteriors,
            victim_posteriors,
            pair_fraction=self.params.pair_fraction,
            decision=self.params.decision,
            generator=context.generator(self.name, "pairs"),
        )
        return PropertyGuesses(predicted=predicted, truth=truth, ratios=self.params.ratios)

    def _queries(self, setting: Setting, context: RunContext) -> list[torch.Tensor]:
        groups = setting.groups(setting.query_pool)
        allowed = max_sample_size(len(groups[0]), len(groups[1]), self.params.ratios)
        n = allowed if self.params.queries is None else min(self.params.queries, allowed)
        if n < 1:
            raise ArtifactError(
                f"attack {self.name!r}: the adversary's held-out query rows cannot meet ratios {self.params.ratios} "
                f"of {setting.attribute!r}; raise query_fraction"
            )
        generator = context.generator(self.name, "queries")
        rows = [setting.query_pool[draw_samples(groups, r, n, 1, generator)[0]] for r in self.params.ratios]
        return [setting.split.x[r] for r in rows]

    @staticmethod
    def _query(victim: QueryAccess, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = torch.cat([victim.query(chunk) for chunk in torch.split(x, QUERY_CHUNK)]).detach().cpu()
        if tuple(out.shape) != (x.shape[0], victim.num_classes) or not bool(torch.isfinite(out).all()):
            raise ArtifactError(f"a victim returned posteriors of shape {tuple(out.shape)} or non-finite values")
        return out.to(torch.float32)


class WhiteBoxDistributionInference(DistributionAttack):
    """White-box distribution inference: a permutation-invariant meta-classifier on model weights.

    The meta-classifier (:class:`PermutationInvariantNetwork`) trains on the shadows' weights,
    labelled by ratio, and labels each victim. Hyper-parameters are the reference's
    (``PermInvModel(dims, dropout=0.5)``, ``inside_dims = [64, 8]``; ``train_meta_model``: Adam,
    learning rate 1e-3, weight decay 0.01, binary cross-entropy, batch size 1000, 100 epochs, the
    census script's default). Deviations: the reference keeps the meta-classifier with the best
    loss on 50 validation models per ratio; with the few shadows a study affords we train on all
    and keep the last epoch. Only ``nn.Linear`` layers are read (normalisation layers are ignored;
    other parameterised layers are refused), as the reference reads an MLP's weights and biases.
    """

    name = "distribution_inference_whitebox"
    Input = TrainedModel
    access = "white-box"
    victim_access = TrainedModel
    conformance_params = {"victims": 2, "shadows": 3, "epochs": 3}

    class Params(DistributionParams):
        """Hyper-parameters of :class:`WhiteBoxDistributionInference` (besides :class:`DistributionParams`).

        Attributes:
            inside_dims: Widths of each per-layer network ``phi_i`` (reference ``[64, 8]``).
            dropout: Dropout after ``phi_i`` (reference 0.5).
            epochs: Meta-classifier training epochs (reference census script: 100).
            batch_size: Models per meta-classifier step (reference 1000: full batch here).
            lr: Adam learning rate (reference 1e-3).
            weight_decay: Adam weight decay (reference 0.01).
        """

        inside_dims: tuple[int, ...] = Field(default=(64, 8), min_length=1)
        dropout: float = Field(default=0.5, ge=0, lt=1)
        epochs: int = Field(default=100, ge=1)
        batch_size: int = Field(default=1000, ge=1)
        lr: float = Field(default=1e-3, gt=0)
        weight_decay: float = Field(default=0.01, ge=0)

    params: WhiteBoxDistributionInference.Params

    def run(
        self, target: TrainedModel, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> PropertyGuesses:
        """Train shadows and a meta-classifier on their weights, then label victims trained like the target.

        Args:
            target: The cell's model, checked for shape and architecture only: the trials are the victims.
            data: The partitioned task; ``data.adversary`` is the adversary's data.
            context: Seed, device, architecture and recipe; ``train_like_target`` makes the victims.

        Returns:
            One guess per victim: ratio-0 victims first.

        Raises:
            ArtifactError: When the task has no partition, lacks the attribute or cannot meet the
                ratios, or when the target or a victim is not an MLP of the shadows' architecture.
        """
        context = context if context is not None else RunContext()
        setting = self._setting(data, context)
        assert data is not None
        self._check_target(self.name, target, data)
        target_shapes = layer_shapes(linear_layers(target.module, f"attack {self.name!r}, target"))
        shadows, labels = self._shadows(data, setting, context)
        shapes = layer_shapes(linear_layers(shadows[0], f"attack {self.name!r}, shadow model"))
        if target_shapes != shapes:
            raise ArtifactError(
                f"attack {self.name!r}: the target's linear layers {target_shapes} differ from the scenario "
                f"architecture's {shapes}, which the shadow models use"
            )
        network = self._fit(weight_features(shadows, f"attack {self.name!r}"), labels, shapes, context)
        victims, truth = self._victims(data, setting, context)
        for index, victim in enumerate(victims):
            found = layer_shapes(linear_layers(victim.module, f"attack {self.name!r}, victim {index}"))
            if found != shapes:
                raise ArtifactError(
                    f"attack {self.name!r}: victim {index} has linear layers {found}, expected {shapes}"
                )
        features = [f.to(context.device) for f in weight_features([v.module for v in victims], f"attack {self.name!r}")]
        network.eval()
        with torch.no_grad():
            predicted = (network(features) >= 0).to(torch.int64).cpu()
        return PropertyGuesses(predicted=predicted, truth=truth, ratios=self.params.ratios)

    def _fit(
        self, features: list[torch.Tensor], labels: torch.Tensor, shapes: list[tuple[int, int]], context: RunContext
    ) -> PermutationInvariantNetwork:
        """Train the meta-classifier as the reference's ``train_meta_model`` does (no validation split)."""
        seed = context.derive_seed(self.name, "meta")
        with seeded(derive_seed(seed, "init")):
            network = PermutationInvariantNetwork(
                shapes, inside_dims=self.params.inside_dims, dropout=self.params.dropout
            )
        network.to(context.device)
        features = [f.to(context.device) for f in features]
        targets = labels.to(torch.float32).to(context.device)
        optimizer = torch.optim.Adam(network.parameters(), lr=self.params.lr, weight_decay=self.params.weight_decay)
        loss_fn = nn.BCEWithLogitsLoss()
        generator = torch.Generator().manual_seed(derive_seed(seed, "order"))
        network.train()
        with seeded(derive_seed(seed, "dropout")):
            for _ in track(range(self.params.epochs), description="meta-classifier (epochs)"):
                order = torch.randperm(len(targets), generator=generator).to(context.device)
                for batch in torch.split(order, self.params.batch_size):
                    optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(network([f[batch] for f in features]), targets[batch])
                    loss.backward()  # type: ignore[no-untyped-call]
                    optimizer.step()
        return network
