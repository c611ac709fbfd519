"""Membership inference (P1) by the likelihood-ratio attack, LiRA (Carlini et al., S&P 2022).

LiRA trains shadow models on random halves of a data pool that contains the candidate
records, measures each shadow's logit-scaled confidence ``phi = log(p_y / (1 - p_y))`` on
every candidate, fits per-candidate Gaussians to the values of the shadows that trained on
it (IN) and of those that did not (OUT), and scores the target's own ``phi`` by a likelihood
ratio (online) or a one-sided test against the OUT Gaussian (offline). AMULET (Waheed et al.)
uses it as its membership-inference attack; its code follows the authors' reference
(``tensorflow/privacy``, ``research/mi_lira_2021``), as this module does where the two agree.

The shadows and their ``phi`` values are shared through :attr:`RunContext.memo`: online and
offline LiRA, and every defended target of one seed, reuse one set of shadow models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Self

import torch
from pydantic import Field, model_validator

from interplay.artifacts import LabeledData, MembershipScores, QueryAccess, TaskData, fingerprint
from interplay.context import Memo, RunContext
from interplay.errors import ArtifactError, ConfigError
from interplay.modules import Attack, Params

from ._membership import CANDIDATE_SALT, membership_candidates
from ._shadows import train_models

if TYPE_CHECKING:
    from torch import nn

    from interplay.modules import ModelFactory
    from interplay.recipe import TrainingRecipe

__all__ = ["LiRA", "ShadowSet", "lira_scores", "logit_confidence", "shadow_keep"]

Variant = Literal["online", "offline"]
QUERY_CHUNK = 1024
"""Inputs per query of the target, and per forward pass of a shadow model."""
PROBABILITY_FLOOR = 1e-45
"""Smallest probability in ``phi``'s logarithms (the reference code adds 1e-45 before taking logs)."""
SCALE_FLOOR = 1e-30
"""Added to every fitted standard deviation, as the reference code does, so a constant ``phi`` stays usable."""


def logit_confidence(posteriors: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """LiRA's statistic ``phi = log(p_y) - log(sum_{c != y} p_c)``, in float64.

    The wrong-class mass is summed from the other classes' probabilities rather than taken as
    ``1 - p_y``, which would round to 0 for confident predictions (the reference ``score.py``
    does the same, on float64 softmax outputs). Both terms are clamped at
    :data:`PROBABILITY_FLOOR`, so ``|phi| <= 103.7``.

    Args:
        posteriors: Probabilities ``(N, C)``, as a black-box interface returns them.
        labels: True classes ``(N,)``.

    Returns:
        ``phi`` of shape ``(N,)``.
    """
    p = posteriors.detach().to(torch.float64)
    index = labels.to(p.device, torch.int64).unsqueeze(1)
    p_true = p.gather(1, index).squeeze(1)
    p_other = p.scatter(1, index, 0.0).sum(1)
    return p_true.clamp_min(PROBABILITY_FLOOR).log() - p_other.clamp_min(PROBABILITY_FLOOR).log()


def shadow_keep(n_shadows: int, n_records: int, pkeep: float, *, generator: torch.Generator) -> torch.Tensor:
    """Which records each shadow trains on, every record IN for exactly ``int(pkeep * n_shadows)`` shadows.

    As the reference ``train.py``: draw a uniform ``(S, N)`` matrix, arg-sort each column over
    the shadows and keep the entries whose rank is below ``int(pkeep * S)``.

    Returns:
        Boolean ``(S, N)``.
    """
    order = torch.rand(n_shadows, n_records, generator=generator, dtype=torch.float64).argsort(dim=0)
    return order < int(pkeep * n_shadows)


def _gaussian_fit(phi: torch.Tensor, mask: torch.Tensor, *, fix_variance: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Median and standard deviation of ``phi[s, i, a]`` over the shadows ``s`` with ``mask[s, i]``.

    Per-example scales are the population standard deviation over those shadows; with
    ``fix_variance`` one scale for every example: the standard deviation of all deviations
    from the per-example medians (``tensorflow_privacy``'s ``compute_score_lira``).
    """
    values = phi.masked_fill(~mask.unsqueeze(-1), math.nan)
    location = torch.nanquantile(values, 0.5, dim=0)  # the average of the two middle values, as np.median
    if fix_variance:
        deviations = (values - location)[mask]
        scale = torch.full_like(location, float(deviations.std(correction=0)))
    else:
        centred = values - values.nanmean(dim=0)
        scale = centred.pow(2).nanmean(dim=0).sqrt()
    return location, scale + SCALE_FLOOR


def _log_normal(x: torch.Tensor, location: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((x - location) / scale).pow(2) - scale.log() - 0.5 * math.log(2 * math.pi)


def lira_scores(
    target_phi: torch.Tensor,
    shadow_phi: torch.Tensor,
    keep: torch.Tensor,
    *,
    variant: Variant = "online",
    fix_variance: bool = False,
) -> torch.Tensor:
    """LiRA's membership score per example (higher = more likely a member).

    Args:
        target_phi: The target's ``phi``, ``(N, A)`` for ``A`` query augmentations.
        shadow_phi: The shadows' ``phi``, ``(S, N, A)``.
        keep: ``keep[s, i]`` when shadow ``s`` trained on example ``i``, ``(S, N)``.
        variant: ``online``: ``log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out)``;
            ``offline``: ``-log(1 - CDF_out(phi))``, the one-sided test's ``-log p``.
        fix_variance: One global scale per Gaussian instead of per-example scales.

    Returns:
        Float64 scores ``(N,)``, averaged over the augmentations.

    Raises:
        ArtifactError: When some example has no IN (online) or no OUT shadow.
    """
    needed = [("OUT", ~keep)] + ([("IN", keep)] if variant == "online" else [])
    for side, mask in needed:
        if not bool(mask.any(dim=0).all()):
            raise ArtifactError(f"LiRA: some example has no {side} shadow model; use more shadows")
    out_location, out_scale = _gaussian_fit(shadow_phi, ~keep, fix_variance=fix_variance)
    if variant == "offline":
        z = (target_phi - out_location) / out_scale
        return (-torch.special.log_ndtr(-z)).mean(dim=-1)
    in_location, in_scale = _gaussian_fit(shadow_phi, keep, fix_variance=fix_variance)
    ratio = _log_normal(target_phi, in_location, in_scale) - _log_normal(target_phi, out_location, out_scale)
    return ratio.mean(dim=-1)


@dataclass(frozen=True)
class ShadowSet:
    """Shadow models of one LiRA pool, as cached in the run's memo.

    Attributes:
        models: The ``S`` trained shadow models (evaluation mode).
        keep: Boolean ``(S, P)``: which pool rows each shadow trained on; the candidates are the first rows.
        n_candidates: Number of candidate rows at the head of the pool.
    """

    models: tuple[nn.Module, ...]
    keep: torch.Tensor
    n_candidates: int


class LiRA(Attack):
    """Likelihood-ratio membership inference (Carlini et al., "Membership Inference Attacks From First Principles").

    The candidates are ``n`` of the target's training rows and ``n`` test rows
    (:func:`membership_candidates`). The adversary's pool is the candidates plus its own rows
    (``data.adversary``); ``n_shadows`` shadow models of the scenario's architecture and
    recipe each train on half of the pool, chosen so that every record is IN for exactly
    ``int(pkeep * n_shadows)`` shadows (the reference ``train.py``). For every candidate, LiRA
    fits a Gaussian to the shadows' logit-scaled confidences ``phi`` on it, IN and OUT
    separately (location: the median, as the reference ``plot.py``; scale: the standard
    deviation), queries the target's posteriors and scores its ``phi``:

    - ``online`` (default, AMULET's headline attack): the log-likelihood ratio
      ``log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out)``;
    - ``offline``: only OUT shadows; the one-sided test of the paper's Algorithm 1 that ``phi``
      exceeds the OUT distribution, scored as ``-log(1 - CDF_out(phi))``. The reference
      ``generate_ours_offline`` scores the two-sided ``-log N(phi; mu_out, s_out)`` instead; the
      paper's one-sided test does not flag records the target is *less* confident on.

    Defaults follow AMULET: 64 shadows, ``pkeep = 0.5``, no query augmentation, per-example
    variances. Shadows are trained with :func:`train_models` (vectorised where the architecture
    allows) and cached in ``context.memo`` under everything that determines them (pool, shadow
    count, ``pkeep``, architecture and its parameters, recipe, seed), but neither the variant nor
    the defense: the adversary does not know the defense, so every defended target of a seed
    shares the shadows of the undefended one.

    Examples:
        With ``task`` a partitioned digits task and ``target`` a model trained on its defender rows::

            context = RunContext(seed=0, model=get_registry().create("mlp"), recipe=TrainingRecipe(epochs=30))
            scores = LiRA(n_shadows=16).run(target, data=task, context=context)
            auc = MembershipAUC().compute(scores).value
    """

    name = "lira"
    risks = ("P1",)
    Input = QueryAccess
    Output = MembershipScores
    access = "black-box"
    knowledge = "shadow"
    conformance_params = {"n_shadows": 4, "epochs": 2}

    class Params(Params):
        """Hyper-parameters of :class:`LiRA`.

        Attributes:
            variant: ``online`` (IN and OUT shadows) or ``offline`` (OUT shadows only).
            n_shadows: Number of shadow models (AMULET: 64; Carlini et al. use up to 256).
            pkeep: Share of the pool each shadow trains on (0.5, as AMULET and the reference).
            fix_variance: One global scale per Gaussian (IN and OUT separately) instead of per-example
                scales, for few shadow models: the standard deviation of every shadow's deviation from
                its example's median, as ``tensorflow_privacy``'s ``compute_score_lira``.
            augment: Also query the horizontally mirrored image and average the per-view scores
                (the reference's inference-time augmentation; image data only; default off).
            max_candidates: At most this many members and as many non-members are candidates
                (``None``: as many as the target's training rows and the test split allow).
            epochs: Shadow training epochs; ``None`` uses the scenario recipe's.
            lr: Shadow learning rate; ``None`` uses the scenario recipe's.
            batch_size: Shadow mini-batch size; ``None`` uses the scenario recipe's.
        """

        variant: Variant = "online"
        n_shadows: int = Field(default=64, ge=2)
        pkeep: float = Field(default=0.5, gt=0, lt=1)
        fix_variance: bool = False
        augment: bool = False
        max_candidates: int | None = Field(default=None, ge=1)
        epochs: int | None = Field(default=None, ge=1)
        lr: float | None = Field(default=None, gt=0)
        batch_size: int | None = Field(default=None, ge=1)

        @model_validator(mode="after")
        def _both_sides(self) -> Self:
            n_in = int(self.pkeep * self.n_shadows)
            if not 1 <= n_in <= self.n_shadows - 1:
                raise ValueError(
                    f"pkeep={self.pkeep} with n_shadows={self.n_shadows} gives {n_in} IN shadows per record; "
                    "LiRA needs at least one IN and one OUT shadow per record"
                )
            return self

    params: LiRA.Params

    def run(
        self, target: QueryAccess, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> MembershipScores:
        """Score the membership candidates of ``target``.

        Args:
            target: Black-box access to the target (a wider access is narrowed to this).
            data: The task: its ``test`` split gives the non-members, its partition the adversary's rows.
            context: Seed, device, the scenario's architecture and recipe, and the memo of shared shadows.

        Returns:
            One score per candidate (members first), with the ground truth.

        Raises:
            ArtifactError: When ``data`` is missing, there is no membership ground truth, or the
                target returns malformed posteriors.
            ConfigError: When no model factory is available, or ``augment`` is set for non-image data.
        """
        context = context if context is not None else RunContext()
        if context.model is None:
            raise ConfigError(
                "LiRA trains shadow models of the target's architecture: set RunContext.model", path="context.model"
            )
        candidates = membership_candidates(
            self.name,
            target,
            data,
            limit=self.params.max_candidates,
            generator=context.generator(*CANDIDATE_SALT),
        )
        assert data is not None  # checked by membership_candidates
        if self.params.augment and data.modality != "image":
            raise ConfigError("mirror augmentation needs image data", path=f"{self.name}.params.augment")
        pool = self._pool(candidates.data, data)
        views = self._views(candidates.data.x)
        shadow_key = self._shadow_key(
            pool, len(candidates.data), context.model, context.recipe.overridden_by(self.params), context
        )
        shadows = context.memo.get_or_compute(shadow_key, lambda: self._train(pool, len(candidates.data), context))
        shadow_phi = context.memo.get_or_compute(
            Memo.key(shadow_key, "phi", self.params.augment),
            lambda: self._shadow_phi(shadows, views, candidates.data.y, context.device),
        )
        target_phi = torch.stack([logit_confidence(_posteriors(target, v), candidates.data.y) for v in views], dim=1)
        scores = lira_scores(
            target_phi,
            shadow_phi,
            shadows.keep[:, : shadows.n_candidates],
            variant=self.params.variant,
            fix_variance=self.params.fix_variance,
        )
        return MembershipScores(scores=scores, is_member=candidates.is_member)

    @staticmethod
    def _pool(candidates: LabeledData, data: TaskData) -> LabeledData:
        """The candidates followed by the adversary's own rows (none when the task has no partition)."""
        if data.partition is None or data.partition.adversary.numel() == 0:
            return candidates
        own = data.adversary
        return candidates.model_copy(
            update={"x": torch.cat([candidates.x, own.x]), "y": torch.cat([candidates.y, own.y]), "sensitive": {}}
        )

    def _views(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The queried inputs: the candidates, and with ``augment`` their horizontal mirror images."""
        return [x, x.flip(-1)] if self.params.augment else [x]

    def _shadow_key(
        self, pool: LabeledData, n_candidates: int, factory: ModelFactory, recipe: TrainingRecipe, context: RunContext
    ) -> str:
        """Memo key of the shadows: pool content, shadow count, pkeep, architecture, recipe and seed."""
        return Memo.key(
            "lira/shadows",
            fingerprint([pool.x, pool.y]),
            n_candidates,
            self.params.n_shadows,
            self.params.pkeep,
            factory.name,
            factory.get_params(),
            recipe,
            context.derive_seed(self.name, "shadows"),
        )

    def _train(self, pool: LabeledData, n_candidates: int, context: RunContext) -> ShadowSet:
        assert context.model is not None
        seed = context.derive_seed(self.name, "shadows")
        keep = shadow_keep(
            self.params.n_shadows, len(pool), self.params.pkeep, generator=context.generator(self.name, "keep")
        )

        def build(s: int) -> nn.Module:
            return context.build_model(
                pool.input_shape, pool.num_classes, seed=context.derive_seed(self.name, "init", s)
            )

        models = train_models(
            build, pool.x, pool.y, keep, context.recipe.overridden_by(self.params), seed=seed, device=context.device
        )
        return ShadowSet(models=tuple(models), keep=keep, n_candidates=n_candidates)

    @staticmethod
    def _shadow_phi(shadows: ShadowSet, views: list[torch.Tensor], y: torch.Tensor, device: str) -> torch.Tensor:
        """``phi`` of every shadow on every candidate and view, ``(S, N, A)`` float64 on the CPU."""
        phi = torch.empty(len(shadows.models), len(y), len(views), dtype=torch.float64)
        with torch.no_grad():
            for s, model in enumerate(shadows.models):
                model.eval()
                for a, view in enumerate(views):
                    posteriors = torch.cat(
                        [
                            torch.softmax(model(chunk.to(device)), dim=1).cpu()
                            for chunk in torch.split(view, QUERY_CHUNK)
                        ]
                    )
                    phi[s, :, a] = logit_confidence(posteriors, y)
        return phi


def _posteriors(target: QueryAccess, x: torch.Tensor) -> torch.Tensor:
    """The target's posteriors for ``x`` on the CPU (shape and values are checked by ``QueryAccess.query``)."""
    with torch.no_grad():
        return target.query(x).detach().cpu()
