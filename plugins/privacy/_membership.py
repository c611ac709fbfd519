"""The candidate records a membership attack is evaluated on: balanced members and non-members.

Members are rows the target trained on (its ``train_indices``, evaluation ground truth that
survives narrowing to black-box access); non-members are rows of the held-out ``test`` split,
which no model in a study trains on. Both sets have the same size, so 50 % is chance, and the
artifact discloses which is which (``MembershipScores.is_member``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interplay.artifacts import LabeledData, ModelAccess, TaskData
from interplay.errors import ArtifactError

__all__ = ["CANDIDATE_SALT", "Candidates", "membership_candidates"]

CANDIDATE_SALT = ("membership", "candidates")
"""Salt of the candidates' generator (``context.generator(*CANDIDATE_SALT)``): every membership attack
of a seed scores the same candidates, so their results are paired."""


@dataclass(frozen=True)
class Candidates:
    """Balanced membership candidates.

    Attributes:
        data: The candidate records (members first, then non-members), sensitive attributes included.
        is_member: Ground truth, bool ``(2n,)``.
        member_rows: Rows of the partitioned split (``data.partition.split``) the members come from.
        nonmember_rows: Rows of the ``test`` split the non-members come from.
    """

    data: LabeledData
    is_member: torch.Tensor
    member_rows: torch.Tensor
    nonmember_rows: torch.Tensor


def membership_candidates(
    attack: str, target: ModelAccess, data: TaskData | None, *, limit: int | None, generator: torch.Generator
) -> Candidates:
    """Draw ``n`` members of ``target``'s training rows and ``n`` non-members from the test split.

    Args:
        attack: The attack's name, for error messages.
        target: The model under attack; its ``train_indices`` (or, when unknown, the task's
            defender rows) are the members.
        data: The task.
        limit: At most this many candidates per side (``None``: as many as both sides allow).
        generator: Source of the random choice of candidates.

    Raises:
        ArtifactError: When ``data`` is missing or neither the model nor the task says which rows were trained on.
    """
    if data is None:
        raise ArtifactError(f"attack {attack!r} needs data= (the task whose rows are the membership candidates)")
    members = target.train_indices
    if members is None:
        if data.partition is None:
            raise ArtifactError(
                f"attack {attack!r}: the target does not record its train_indices and the task has no partition, "
                "so there is no membership ground truth"
            )
        members = data.partition.defender
    source = data.splits[data.partition.split] if data.partition is not None else data.train
    test = data.test
    n = min(len(members), len(test), limit if limit is not None else len(test))
    if n == 0:
        raise ArtifactError(f"attack {attack!r}: no membership candidates (members {len(members)}, test {len(test)})")
    member_rows = members[torch.randperm(len(members), generator=generator)[:n]].sort().values
    nonmember_rows = torch.randperm(len(test), generator=generator)[:n].sort().values
    inside, outside = source.subset(member_rows), test.subset(nonmember_rows)
    joined = inside.model_copy(
        update={
            "x": torch.cat([inside.x, outside.x]),
            "y": torch.cat([inside.y, outside.y]),
            "sensitive": {k: torch.cat([v, outside.sensitive[k]]) for k, v in inside.sensitive.items()},
        }
    )
    is_member = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)])
    return Candidates(data=joined, is_member=is_member, member_rows=member_rows, nonmember_rows=nonmember_rows)
