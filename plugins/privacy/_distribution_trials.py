"""The trials both distribution inference attacks share: the setting, the victims and the shadows.

:class:`DistributionAttack` derives from the task the attribute, the adversary's shadow and query
pools and the common sample size (:class:`Setting`); trains the victims the way the target was
trained and the shadows with the scenario's architecture, once per seed and shared through
``context.memo``. The attacks themselves (the KL test and the weight meta-classifier) are in
:mod:`interplay.plugins.privacy.distribution`, whose docstring describes the threat model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch
from pydantic import Field, model_validator
from torch import nn

from interplay._seeding import derive_seed
from interplay.artifacts import (
    LabeledData,
    ModelAccess,
    Partition,
    PropertyGuesses,
    QueryAccess,
    TaskData,
    TrainedModel,
    fingerprint,
)
from interplay.context import Memo, RunContext
from interplay.errors import ArtifactError, ConfigError
from interplay.modules import Attack, Params
from interplay.progress import step

from ._property_samples import draw_samples, max_sample_size
from ._shadows import train_models

__all__ = ["QUERY_CHUNK", "SHADOW_SALT", "VICTIM_SALT", "DistributionAttack", "DistributionParams", "Setting"]

SHADOW_SALT = "distribution_shadows"
"""Seed salt of the shadow models and of the adversary's row split (shared by both attacks)."""
VICTIM_SALT = "distribution_victims"
"""Seed salt of the victim models (shared by both attacks, so they attack the same victims)."""
QUERY_CHUNK = 2048


class DistributionParams(Params):
    """Hyper-parameters shared by both distribution inference attacks.

    Attributes:
        attribute: Binary sensitive attribute whose share is the property; ``None`` picks ``sex``
            when the data set has it, else its first sensitive attribute.
        ratios: The two candidate shares of rows whose attribute is 1 (Suri and Evans's Census
            ``sex`` experiments compare 0.5 with 0.0-1.0; 0.1 vs 0.9 is a clear-cut pair).
        victims: Victim models per ratio (the papers evaluate hundreds; 8 keeps a study affordable).
        shadows: Shadow models per ratio (``num_adv_models = 50`` in the reference black-box config;
            its meta-classifiers train on 700-750 per ratio).
        sample_size: Training rows of every victim and shadow; ``None`` is the largest size both
            ratios allow in both the defender's and the adversary's pools.
        query_fraction: Share of the adversary's rows held out from shadow training, which the
            black-box attack queries victims and shadows on.
    """

    attribute: str | None = None
    ratios: tuple[float, float] = (0.1, 0.9)
    victims: int = Field(default=8, ge=1)
    shadows: int = Field(default=50, ge=2)
    sample_size: int | None = Field(default=None, ge=2)
    query_fraction: float = Field(default=0.2, gt=0, lt=1)

    @model_validator(mode="after")
    def _check_ratios(self) -> Self:
        r0, r1 = self.ratios
        if not (0.0 <= r0 <= 1.0 and 0.0 <= r1 <= 1.0):
            raise ValueError(f"ratios must lie in [0, 1], got {self.ratios}")
        if r0 == r1:
            raise ValueError(f"the two ratios must differ, got {self.ratios}")
        return self


@dataclass(frozen=True)
class Setting:
    """Everything both attacks derive from the task before training anything."""

    attribute: str
    split: LabeledData
    defender: torch.Tensor
    shadow_pool: torch.Tensor
    query_pool: torch.Tensor
    sample_size: int

    def groups(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions within ``rows`` whose attribute is 0 and 1."""
        values = self.split.sensitive[self.attribute][rows]
        return (values == 0).nonzero().squeeze(1), (values == 1).nonzero().squeeze(1)


class DistributionAttack(Attack):
    """Victims, shadows and sampling shared by both distribution inference attacks."""

    __abstract__ = True
    risks = ("P4",)
    Output = PropertyGuesses
    knowledge = "shadow"
    victim_access: ClassVar[type[ModelAccess]] = QueryAccess

    params: DistributionParams

    # ----------------------------------------------------------------------------------- setting
    def _setting(self, data: TaskData | None, context: RunContext) -> Setting:
        if data is None:
            raise ArtifactError(f"attack {self.name!r} needs data= (a TaskData with a defender/adversary partition)")
        if data.partition is None:
            raise ArtifactError(
                f"attack {self.name!r} needs a TaskData with a defender/adversary partition; call data.partitioned(...)"
            )
        split = data.splits[data.partition.split]
        attribute = self._attribute(split)
        values = split.sensitive[attribute]
        if bool(((values != 0) & (values != 1)).any()):
            raise ArtifactError(f"attack {self.name!r}: sensitive attribute {attribute!r} must be binary (0/1)")
        adversary = data.partition.adversary
        order = torch.randperm(len(adversary), generator=context.generator(SHADOW_SALT, "query_split"))
        n_query = max(1, round(self.params.query_fraction * len(adversary)))
        query_pool, shadow_pool = adversary[order[:n_query]].sort().values, adversary[order[n_query:]].sort().values
        sizes = {}
        for pool_name, rows in (("defender", data.partition.defender), ("adversary (shadow training)", shadow_pool)):
            n1 = int(values[rows].sum())
            sizes[pool_name] = (len(rows) - n1, n1, max_sample_size(len(rows) - n1, n1, self.params.ratios))
        allowed = min(size for _, _, size in sizes.values())
        counts = "; ".join(
            f"{k}: {n0} rows with {attribute}=0, {n1} with {attribute}=1" for k, (n0, n1, _) in sizes.items()
        )
        if allowed < 2:
            raise ArtifactError(
                f"attack {self.name!r}: ratios {self.params.ratios} of {attribute!r} cannot be met ({counts})"
            )
        size = self.params.sample_size
        if size is not None and size > allowed:
            raise ArtifactError(
                f"attack {self.name!r}: sample_size {size} at ratios {self.params.ratios} of {attribute!r} exceeds "
                f"the {allowed} rows the data allow ({counts})"
            )
        return Setting(
            attribute=attribute,
            split=split,
            defender=data.partition.defender,
            shadow_pool=shadow_pool,
            query_pool=query_pool,
            sample_size=size if size is not None else allowed,
        )

    def _attribute(self, split: LabeledData) -> str:
        available = list(split.sensitive)
        chosen = self.params.attribute
        if chosen is None:
            if not available:
                raise ArtifactError(
                    f"attack {self.name!r}: the data set has no sensitive attribute to infer the ratio of"
                )
            return "sex" if "sex" in available else available[0]
        if chosen not in available:
            raise ArtifactError(
                f"attack {self.name!r}: the data set has no sensitive attribute {chosen!r} "
                f"(it has {sorted(available) or 'none'})"
            )
        return chosen

    @staticmethod
    def _check_target(name: str, target: ModelAccess, data: TaskData) -> None:
        if target.input_shape != data.input_shape or target.num_classes != data.num_classes:
            raise ArtifactError(
                f"attack {name!r}: the target takes inputs {target.input_shape} with {target.num_classes} classes, "
                f"the task has {data.input_shape} with {data.num_classes}"
            )

    # ----------------------------------------------------------------------------------- victims
    def _victims(self, data: TaskData, setting: Setting, context: RunContext) -> tuple[list[Any], torch.Tensor]:
        """Train ``victims`` models per ratio the way the target was trained; ratio-0 victims come first."""
        assert data.partition is not None
        groups = setting.groups(setting.defender)
        generator = context.generator(VICTIM_SALT, "rows")
        models: list[Any] = []
        with step("train victims", total=len(self.params.ratios) * self.params.victims) as victims:
            for index, ratio in enumerate(self.params.ratios):
                rows = draw_samples(groups, ratio, setting.sample_size, self.params.victims, generator)
                for k in range(self.params.victims):
                    partition = Partition(
                        defender=setting.defender[rows[k]],
                        adversary=data.partition.adversary,
                        split=data.partition.split,
                    )
                    task = data.model_copy(update={"partition": partition})
                    victim = context.train_like_target(task, seed=context.derive_seed(VICTIM_SALT, index, k))
                    models.append(self._narrow_victim(victim))
                    victims.advance()
        truth = torch.arange(2).repeat_interleave(self.params.victims)
        return models, truth

    def _narrow_victim(self, victim: ModelAccess) -> Any:
        wanted = type(self).victim_access
        if isinstance(victim, wanted):
            return victim
        if wanted is QueryAccess and isinstance(victim, TrainedModel):
            return victim.narrow(QueryAccess)
        raise ArtifactError(
            f"attack {self.name!r} needs {wanted.__name__} victims, but training like the target produced "
            f"{type(victim).__name__} (the cell's defense exposes less than this attack's access)"
        )

    # ----------------------------------------------------------------------------------- shadows
    def _shadows(self, data: TaskData, setting: Setting, context: RunContext) -> tuple[list[nn.Module], torch.Tensor]:
        """Train (or fetch from ``context.memo``) ``shadows`` models per ratio; ratio-0 shadows come first."""
        factory = context.model
        if factory is None:
            raise ConfigError("no model factory for the shadow models: set RunContext.model", path="context.model")
        key = Memo.key(
            SHADOW_SALT,
            data.name,
            setting.attribute,
            list(self.params.ratios),
            self.params.shadows,
            setting.sample_size,
            factory.name,
            factory.get_params(),
            context.recipe,
            fingerprint([setting.shadow_pool, setting.split.sensitive[setting.attribute], len(setting.split)]),
        )
        models = context.memo.get_or_compute(key, lambda: self._train_shadows(setting, context))
        return models, torch.arange(2).repeat_interleave(self.params.shadows)

    def _train_shadows(self, setting: Setting, context: RunContext) -> list[nn.Module]:
        pool = setting.shadow_pool
        groups = setting.groups(pool)
        generator = context.generator(SHADOW_SALT, "rows")
        rows = torch.cat(
            [draw_samples(groups, r, setting.sample_size, self.params.shadows, generator) for r in self.params.ratios]
        )
        keep = torch.zeros(rows.shape[0], len(pool), dtype=torch.bool).scatter_(1, rows, True)
        seed = context.derive_seed(SHADOW_SALT, "train")
        shape, classes = setting.split.input_shape, setting.split.num_classes

        def build(s: int) -> nn.Module:
            return context.build_model(shape, classes, seed=derive_seed(seed, "init", s))

        x, y = setting.split.x[pool], setting.split.y[pool]
        return train_models(build, x, y, keep, context.recipe, seed=seed, device=context.device)
