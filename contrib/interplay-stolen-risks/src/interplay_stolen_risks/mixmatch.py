"""MixMatch as a model-stealing baseline: the base attack, then semi-supervised training on Q unlabelled inputs.

Stolen Risks (Qin et al., CCS 2023, section 4.2, "Baseline") compares MaskedThief with MixMatch
(Berthelot et al., "MixMatch: A Holistic Approach to Semi-Supervised Learning", NeurIPS 2019): the
base attack runs until the query budget ``Q`` is spent, giving a labelled set ``X`` (the target's
answers) and a substitute; the base attack's synthesis then gives ``Q`` more inputs, the unlabelled
set ``U``; MixMatch guesses their labels (the substitute's average over ``K`` augmentations,
sharpened with temperature ``T``), mixes labelled and unlabelled inputs with MixUp, and updates the
substitute with ``L_X + lambda_u * L_U``. No further query is sent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from interplay import Attack, RunContext
from interplay.artifacts import QueryAccess, SurrogateModel, TaskData
from interplay.errors import ConfigError
from interplay.training import make_optimizer

from ._substitute import substitute_kind
from .maskedthief import StealingParams, collect, wrap_substitute

__all__ = ["MixMatchStealing", "mixup", "sharpen"]


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """MixMatch's ``Sharpen(p, T)_i = p_i^(1/T) / sum_j p_j^(1/T)`` (equation 7)."""
    powered = p.clamp_min(1e-12) ** (1.0 / temperature)
    return powered / powered.sum(dim=1, keepdim=True)


def mixup(
    x1: torch.Tensor, p1: torch.Tensor, x2: torch.Tensor, p2: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """MixMatch's MixUp (equations 8-11): ``lambda' = max(lambda, 1 - lambda)``, ``lambda ~ Beta(alpha, alpha)``.

    ``lambda'`` keeps each mixed input closer to its first argument, so mixed labelled inputs stay
    labelled ones and mixed unlabelled inputs stay unlabelled ones. One ``lambda`` per pair.
    """
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    lam = torch.as_tensor(rng.beta(alpha, alpha, size=len(x1)), dtype=x1.dtype)
    lam = torch.maximum(lam, 1.0 - lam).to(x1.device)
    shape = (-1,) + (1,) * (x1.dim() - 1)
    return lam.view(shape) * x1 + (1 - lam.view(shape)) * x2, lam[:, None] * p1 + (1 - lam[:, None]) * p2


class MixMatchStealing(Attack):
    """The MixMatch baseline of Stolen Risks: base attack up to ``Q`` queries, then MixMatch on ``Q`` unlabelled inputs.

    1. Run the base attack (``base``, as :class:`~interplay_stolen_risks.maskedthief.MaskedThief` runs
       it without inference): exactly ``query_budget`` queries; train the substitute on them.
    2. Synthesise ``Q`` more inputs with the base attack's synthesis step (the unlabelled set ``U``).
    3. For ``mixmatch_epochs`` passes over ``X``: per batch, augment (Gaussian noise of standard
       deviation ``augment_std``) the labelled inputs once and the unlabelled ones ``K`` times; guess
       each unlabelled input's label as the sharpened mean of the substitute's posteriors over its
       augmentations; MixUp the labelled and unlabelled inputs with a shuffle of both; minimise the
       cross-entropy on mixed labelled inputs plus ``lambda_u`` (ramped up linearly over the
       ``rampup`` fraction of training, as MixMatch's code does) times the squared error on mixed
       unlabelled ones.
    """

    name = "mixmatch"
    summary = "base attack, then MixMatch on Q more synthesised unlabelled inputs (Berthelot et al., 2019)"
    risks = ("S3",)
    Input = QueryAccess
    Output = SurrogateModel
    access = "black-box"
    knowledge = "partial"
    conformance_params = {"epochs": 2, "mixmatch_epochs": 1, "base": "uniform"}

    class Params(StealingParams):
        """Hyper-parameters of :class:`MixMatchStealing` (the base attack's on :class:`StealingParams`).

        Attributes:
            temperature: Sharpening temperature ``T`` (MixMatch's and the paper's 0.5).
            augmentations: ``K`` augmentations per unlabelled input (MixMatch's 2).
            alpha: MixUp's Beta parameter (MixMatch's 0.75; the paper tunes it in [0.1, 1]).
            lambda_u: Weight of the unlabelled loss (MixMatch's 100; the paper tunes it in [10, 100]).
            rampup: Fraction of the MixMatch epochs over which ``lambda_u`` ramps up linearly.
            augment_std: Standard deviation of the Gaussian noise that augments an input.
            mixmatch_epochs: Passes over the labelled set with the MixMatch loss.
        """

        temperature: float = Field(default=0.5, gt=0, allow_inf_nan=False)
        augmentations: int = Field(default=2, ge=1)
        alpha: float = Field(default=0.75, gt=0, allow_inf_nan=False)
        lambda_u: float = Field(default=100.0, ge=0, allow_inf_nan=False)
        rampup: float = Field(default=1.0, ge=0, le=1)
        augment_std: float = Field(default=0.05, ge=0, allow_inf_nan=False)
        mixmatch_epochs: int = Field(default=50, ge=0)

    params: MixMatchStealing.Params

    def run(
        self, target: QueryAccess, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> SurrogateModel:
        """Spend the budget with the base attack, then update its substitute with MixMatch.

        Args:
            target: Black-box access to the target.
            data: The partitioned task (JBA's seed rows); unused by the random bases.
            context: Seed, device, the scenario's architecture and training recipe.

        Returns:
            The substitute; ``queries`` equals ``query_budget``.

        Raises:
            ConfigError: When no model factory is available, or the substitute would be XGBoost.
            ArtifactError: When JBA's seed set cannot be drawn.
        """
        context = context if context is not None else RunContext()
        p = self.params
        if substitute_kind(p.substitute, target) == "xgboost":  # before any query is spent
            raise ConfigError(
                "MixMatch trains a network substitute by gradient steps", path=f"{self.name}.params.substitute"
            )
        out = collect(self.name, p, target, data, context)
        module = out.train(out.x, out.targets, out.rounds)
        unlabelled = out.synth.synthesise(out.x, out.labels, module)
        while len(unlabelled) < p.query_budget:  # a base whose rounds give fewer inputs than asked
            unlabelled = torch.cat([unlabelled, out.synth.synthesise(out.x, out.labels, module)])
        unlabelled = unlabelled[: p.query_budget]
        recipe = out.facts["recipe"]
        self._mixmatch(module, out.x, out.targets, unlabelled, recipe, context)
        info: dict[str, Any] = {
            "attack": self.name,
            "base": p.base,
            "queries": int(out.queried.sum()),
            "unlabelled": len(unlabelled),
            "rounds": out.rounds,
            "substitute_loss": p.loss,
        }
        substitute = wrap_substitute(out, module, target, info)
        return SurrogateModel(model=substitute, queries=int(out.queried.sum()))

    def _mixmatch(
        self,
        module: torch.nn.Module,
        x: torch.Tensor,
        targets: torch.Tensor,
        unlabelled: torch.Tensor,
        recipe: Any,
        context: RunContext,
    ) -> None:
        p = self.params
        device = context.device
        generator = context.generator(self.name, "mixmatch")
        x, targets, unlabelled = x.to(device), targets.to(device), unlabelled.to(device)
        optimizer = make_optimizer(module.parameters(), recipe)
        batch = recipe.batch_size
        steps_per_epoch = max(1, -(-len(x) // batch))
        total = max(1, p.mixmatch_epochs * steps_per_epoch)

        def noisy(z: torch.Tensor) -> torch.Tensor:
            noise = torch.randn(z.shape, generator=generator).to(device)
            return z + p.augment_std * noise

        step = 0
        module.train()
        for _ in range(p.mixmatch_epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), batch):
                index = order[start : start + batch]
                u_index = torch.randint(0, len(unlabelled), (len(index),), generator=generator)
                x_hat, p_x = noisy(x[index]), targets[index]
                u = unlabelled[u_index]
                views = [noisy(u) for _ in range(p.augmentations)]
                with torch.no_grad():
                    guess = torch.stack([F.softmax(module(v), dim=1) for v in views]).mean(0)
                    q = sharpen(guess, p.temperature)
                all_x = torch.cat([x_hat, *views])
                all_p = torch.cat([p_x, *([q] * p.augmentations)])
                shuffle = torch.randperm(len(all_x), generator=generator).to(device)
                mixed_x, mixed_p = mixup(all_x, all_p, all_x[shuffle], all_p[shuffle], p.alpha, generator)
                logits = module(mixed_x)
                n = len(index)
                loss_x = -(mixed_p[:n] * F.log_softmax(logits[:n], dim=1)).sum(1).mean()
                loss_u = F.mse_loss(F.softmax(logits[n:], dim=1), mixed_p[n:])
                ramp = min(1.0, step / (p.rampup * total)) if p.rampup > 0 else 1.0
                loss = loss_x + p.lambda_u * ramp * loss_u
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                step += 1
        optimizer.zero_grad(set_to_none=True)
        module.eval()
