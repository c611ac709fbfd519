"""Shared parts of the data-free query attacks: query sampling and the substitute's training loss.

Kept apart from :mod:`interplay_stolen_risks.query_attacks` so each module reads in one sitting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

from interplay.errors import ConfigError
from interplay.training import fit

if TYPE_CHECKING:
    from torch import nn

    from interplay import RunContext
    from interplay.artifacts import ModelAccess
    from interplay.modules import ModelFactory
    from interplay.training import LossFn

__all__ = [
    "Distribution",
    "SubstituteChoice",
    "SubstituteLoss",
    "fit_substitute",
    "sample_queries",
    "substitute_kind",
    "substitute_loss",
]

Distribution = Literal["uniform", "gaussian"]
SubstituteLoss = Literal["kl", "mse", "ce"]
#: The substitute's model family: ``auto`` follows the target's ``model_family`` fact.
SubstituteChoice = Literal["auto", "network", "xgboost"]


def sample_queries(
    n: int,
    shape: tuple[int, ...],
    *,
    distribution: Distribution,
    radius: float,
    std: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Draw ``n`` random inputs of ``shape`` with every coordinate in ``[-radius, radius]``.

    Args:
        n: Number of inputs.
        shape: Shape of one input (``(d,)`` for tabular data).
        distribution: ``uniform``: each coordinate uniform on ``[-radius, radius]``. ``gaussian``:
            each coordinate normal with mean 0 and standard deviation ``std``, truncated to
            ``[-radius, radius]`` (drawn exactly by inverting the normal CDF, no rejection loop).
        radius: Half-width of the query box.
        std: Standard deviation of the Gaussian before truncation (unused for ``uniform``).
        generator: Source of randomness (CPU).

    Returns:
        Float32 tensor of shape ``(n, *shape)`` on the CPU.
    """
    size = (n, *shape)
    u = torch.rand(size, generator=generator, dtype=torch.float64)
    if distribution == "uniform":
        return ((2.0 * u - 1.0) * radius).to(torch.float32)
    bound = torch.tensor(radius / std, dtype=torch.float64)
    low, high = torch.special.ndtr(-bound), torch.special.ndtr(bound)
    z: torch.Tensor = torch.special.ndtri(low + u * (high - low))
    return (std * z).clamp(-radius, radius).to(torch.float32)


def _kl(module: nn.Module, x: torch.Tensor, posteriors: torch.Tensor) -> torch.Tensor:
    return F.kl_div(torch.log_softmax(module(x), dim=1), posteriors, reduction="batchmean")


def _mse(module: nn.Module, x: torch.Tensor, posteriors: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(torch.softmax(module(x), dim=1), posteriors)


def _ce(module: nn.Module, x: torch.Tensor, posteriors: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(module(x), posteriors.argmax(dim=1))


_LOSSES: dict[str, LossFn] = {"kl": _kl, "mse": _mse, "ce": _ce}


def substitute_loss(name: SubstituteLoss) -> LossFn:
    """The substitute's training loss ``loss(module, x_batch, posteriors_batch)``.

    Args:
        name: ``kl``: ``KL(target || substitute)`` averaged over the batch, which has the gradients of
            the cross-entropy to the target's posteriors that Tramer et al.'s network extraction
            minimises (``neural-nets/theano_mlp.py`` of their code); ``mse``: squared error between
            the substitute's softmax and the posteriors; ``ce``: cross-entropy to the target's
            arg-max labels (what a label-only interface would allow).

    Returns:
        A loss usable as ``loss_fn`` of :func:`interplay.training.fit`.
    """
    return _LOSSES[name]


def substitute_kind(choice: SubstituteChoice, target: ModelAccess) -> Literal["network", "xgboost"]:
    """The substitute's model family: ``choice``, or for ``auto`` the target's ``model_family`` fact.

    The attacker "knows the category of the target model" (Qin et al., section 3.2): a target whose
    ``info`` says ``model_family: "xgboost"`` gets an XGBoost substitute, any other a network.
    """
    if choice != "auto":
        return choice
    return "xgboost" if target.info.get("model_family") == "xgboost" else "network"


def fit_substitute(
    context: RunContext,
    target: ModelAccess,
    x: torch.Tensor,
    posteriors: torch.Tensor,
    *,
    params: Any,
    name: str,
    round_: int | None = None,
    factory: ModelFactory | None = None,
) -> nn.Module:
    """Train a fresh substitute on the target's answers: a network or XGBoost, as ``params.substitute`` says.

    Args:
        context: Seed, device, the scenario's architecture and recipe.
        target: The target (its ``num_classes``, ``input_shape`` and ``info``).
        x: The queried inputs.
        posteriors: The target's answers.
        params: The attack's parameters: ``loss``, ``substitute`` (``auto`` when absent) and the
            recipe overrides ``epochs``, ``lr``, ``batch_size``.
        name: The attack's name (seeds are derived from it).
        round_: The training round of an iterative attack; ``None`` for a single training.
        factory: The network's model factory (``None``: the scenario's).

    Returns:
        The trained module: the network in evaluation mode, or a
        :class:`~interplay_stolen_risks._trees.TreeModule` (XGBoost's defaults, ``kl`` fitting the
        posteriors, ``ce`` their arg-max).

    Raises:
        ConfigError: When an XGBoost substitute is asked to fit the ``mse`` loss.
    """
    salt: tuple[object, ...] = ("substitute",) if round_ is None else ("substitute", round_)
    seed = context.derive_seed(name, *salt)
    if substitute_kind(getattr(params, "substitute", "auto"), target) == "xgboost":
        if params.loss == "mse":
            raise ConfigError("an XGBoost substitute fits loss 'kl' or 'ce', not 'mse'", path=f"{name}.params.loss")
        from ._trees import fit_xgboost

        return fit_xgboost(x, posteriors, seed=seed, soft=params.loss == "kl")
    recipe = context.recipe.overridden_by(params)
    init_seed = context.derive_seed(name, "substitute", "init")
    module = context.build_model(target.input_shape, target.num_classes, seed=init_seed, factory=factory)
    return fit(module, x, posteriors, recipe, seed=seed, device=context.device, loss_fn=substitute_loss(params.loss))
