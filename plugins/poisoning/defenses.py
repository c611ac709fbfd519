"""Poisoning (S2) defenses: outlier removal by KNN-Shapley data valuation (SD2).

References:
    Ruoxi Jia, David Dao, Boxin Wang, Frances Ann Hubis, Nezihe Merve Gurel, Bo Li, Ce Zhang, Costas Spanos
    and Dawn Song. "Efficient Task-Specific Data Valuation for Nearest Neighbor Algorithms". PVLDB 12(11),
    2019. https://arxiv.org/abs/1908.08619

    Asim Waheed, Vasisht Duddu, Rui Zhang, Sebastian Szyller and N. Asokan. "AMULET: a Python Library for
    Assessing Interactions Among ML Defenses and Risks" (SD2; ``amulet/poisoning/defenses/outlier_removal.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field

from interplay import Defense, Params as BaseParams
from interplay.artifacts import LabeledData, PoisonedData, TaskData
from interplay.context import Memo
from interplay.errors import ConfigError

from ._knn_shapley import knn_shapley

if TYPE_CHECKING:
    from interplay import RunContext

__all__ = ["OutlierRemoval"]

_EMBED_BATCH = 1024
"""Rows per forward pass when computing embeddings."""


class OutlierRemoval(Defense):
    """Remove the defender's training records with the most extreme KNN-Shapley values (SD2, AMULET).

    SD2, the defense against poisoning (S2). Every row of the defender's training data gets its exact
    KNN-Shapley value (Jia et al., 2019, Theorem 1) for a K-nearest-neighbour classifier, averaged over
    the points of a valuation split; the ``percent`` % of rows at the chosen end of the ranking are
    removed, and the reduced task continues to the scenario's standard training (or to any training
    defense chained after this one).

    As in AMULET, the values are computed on the penultimate-layer features (``embed(x)``) of a model
    trained on the defender's data: the scenario's architecture, trained with the scenario's recipe and
    seed on ``target.defender_train``, which is the model standard training would produce (on poisoned
    data when the input is poisoned). ``features="input"`` values the flattened raw inputs instead.

    Direction: AMULET's paper says it deletes "records with the highest Shapley values"; a low (negative)
    KNN-Shapley value marks a record whose label disagrees with its neighbourhood in the valuation data,
    which is how Jia et al. detect mislabeled and poisoned records, and AMULET's current code removes the
    lowest-valued records. ``remove="lowest"`` (default) is the defense against BadNets
    (docs/poisoning.md, "Outlier removal"); ``remove="highest"`` reproduces the paper's wording.

    Args:
        percent: Percentage of the defender's training rows to remove (AMULET's default 10; its
            Table 8 sweeps 10-40).
        k: Neighbours of the KNN utility (AMULET's and Jia et al.'s K = 5).
        remove: ``"lowest"`` or ``"highest"``: which end of the value ranking is removed.
        features: ``"embedding"`` (penultimate layer of a model trained on the defender's data) or
            ``"input"`` (raw inputs, flattened).
        valuation_split: Name of the task split the values are averaged over (AMULET: the test split).

    Raises:
        ConfigError: When a parameter is invalid, when ``valuation_split`` names no split of the task,
            or (embeddings) when the context has no model factory or the model has no ``embed``.
    """

    name = "outlier_removal"
    risks = ("S2",)
    Input = TaskData
    Output = TaskData
    summary = "remove records by KNN-Shapley value on model embeddings (Jia et al., 2019; AMULET SD2)"

    class Params(BaseParams):
        """Hyper-parameters of :class:`OutlierRemoval`.

        Attributes:
            percent: Percentage of the defender's training rows removed, in ``[0, 100)``
                (AMULET's ``percent=10``).
            k: Number of nearest neighbours of the valued KNN classifier (K = 5).
            remove: ``"lowest"`` removes the lowest-valued rows (harmful: mislabeled or poisoned),
                ``"highest"`` the highest-valued ones (AMULET's paper text).
            features: ``"embedding"`` values penultimate-layer features of a model trained on the
                defender's rows; ``"input"`` values the raw inputs.
            valuation_split: The split whose points the values are averaged over.
        """

        percent: float = Field(default=10.0, ge=0, lt=100, allow_inf_nan=False)
        k: int = Field(default=5, ge=1)
        remove: Literal["lowest", "highest"] = "lowest"
        features: Literal["embedding", "input"] = "embedding"
        valuation_split: str = Field(default="test", min_length=1)

    params: OutlierRemoval.Params

    def apply(
        self, target: TaskData, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> TaskData:
        """Value the defender's training rows and return the task without the removed ones.

        Args:
            target: The (possibly poisoned) task. Only the defender's training rows are valued and removed.
            data: Unused (the task is ``target``).
            context: Seed, device, model factory and recipe; required for ``features="embedding"``.

        Returns:
            The task of the same type without the removed rows. With a partition, the split is unchanged
            and ``partition.defender`` loses the removed rows (so models keep recording original row
            indices); without one, the rows are dropped from ``train``. A :class:`PoisonedData` keeps its
            fields, with ``poisoned_indices`` limited to, and renumbered for, the rows that remain, and
            ``details["outlier_removal"]`` counting what was removed.

        Raises:
            ConfigError: See the class.
        """
        params = self.params
        rows = target.partition.defender if target.partition is not None else torch.arange(len(target.train))
        n_remove = round(params.percent / 100 * len(rows))
        if n_remove == 0:
            return target
        values = self.values(target, context=context)
        ranking = values.argsort(stable=True, descending=params.remove == "highest").cpu()
        keep = torch.ones(len(rows), dtype=torch.bool)
        keep[ranking[:n_remove]] = False
        return _without(target, rows[~keep], keep)

    def values(self, target: TaskData, *, context: RunContext | None = None) -> torch.Tensor:
        """KNN-Shapley values of ``target.defender_train``'s rows, in row order (float64, ``(N,)``).

        Shared through ``context.memo`` by every outlier removal of the seed that values the same data the
        same way (a sweep over ``percent`` or ``remove`` computes them once).

        Raises:
            ConfigError: See the class.
        """
        params = self.params
        if params.valuation_split not in target.splits:
            raise ConfigError(
                f"no split {params.valuation_split!r} to value against; the task has {sorted(target.splits)}",
                path=f"{self.name}.params.valuation_split",
            )
        train, valuation = target.defender_train, target.splits[params.valuation_split]
        if params.features == "input":
            return knn_shapley(train.x, train.y, valuation.x, valuation.y, k=params.k)
        if context is None or context.model is None:
            raise ConfigError(
                f"defense {self.name!r} values embeddings of a model trained on the defender's data: pass a "
                "RunContext with a model factory, or set features='input'",
                path="context.model",
            )
        key = Memo.key(
            self.name, params.k, params.valuation_split, context.recipe, context.model.name,
            context.model.get_params(), _digest(train, valuation),
        )  # fmt: skip

        def compute() -> torch.Tensor:
            indices = target.partition.defender if target.partition is not None else None
            module = context.train(train, train_indices=indices).module.eval()
            embed = getattr(module, "embed", None)
            if not callable(embed):
                raise ConfigError(
                    f"model {context.model.name!r} has no embed(x) method; use features='input'",  # type: ignore[union-attr]
                    path=f"{self.name}.params.features",
                )
            device = next(module.parameters()).device
            train_features, valuation_features = _embed(embed, train.x, device), _embed(embed, valuation.x, device)
            return knn_shapley(train_features, train.y, valuation_features, valuation.y, k=params.k).cpu()

        return context.memo.get_or_compute(key, compute)


def _embed(embed: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``embed(x)`` in batches on ``device``, without gradients."""
    with torch.no_grad():
        parts = [embed(x[i : i + _EMBED_BATCH].to(device)) for i in range(0, len(x), _EMBED_BATCH)]
    return torch.cat(parts).reshape(len(x), -1)


def _digest(*datasets: LabeledData) -> str:
    """A content hash of the inputs and labels (the memo key of the values)."""
    digest = hashlib.sha256()
    for part in datasets:
        for tensor in (part.x, part.y):
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _without(target: TaskData, removed: torch.Tensor, keep: torch.Tensor) -> TaskData:
    """``target`` without the defender rows ``removed`` (indices into the partition's split, or ``train``)."""
    if target.partition is not None:
        partition = target.partition.model_copy(update={"defender": target.partition.defender[keep]})
        update: dict[str, object] = {"partition": partition}
        renumber = None
        dropped = removed if partition.split == "train" else removed[:0]
    else:
        update = {"splits": {**target.splits, "train": target.train.subset(torch.nonzero(keep).flatten())}}
        renumber = torch.cumsum(keep.long(), 0) - 1  # old train row -> new train row
        dropped = removed
    if isinstance(target, PoisonedData):
        poisoned = target.poisoned_indices
        remains = ~torch.isin(poisoned, dropped)
        poisoned = poisoned[remains] if renumber is None else renumber[poisoned[remains]]
        record = {"removed": int(removed.numel()), "removed_poisoned": int((~remains).sum())}
        update["poisoned_indices"] = poisoned
        update["details"] = {**target.details, "outlier_removal": record}
    return target.model_copy(update=update)
