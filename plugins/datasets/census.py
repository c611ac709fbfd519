"""UCI Adult ("CENSUS") with AMULET's recipe: race and sex as sensitive attributes."""

from __future__ import annotations

from pydantic import Field

from interplay import Dataset
from interplay.artifacts import TaskData
from interplay.dataroot import resolve_data_root

from ._common import SubsetParams, build_task

__all__ = ["Census"]


class Census(Dataset):
    """UCI Adult income (>50K) prediction, 46,447 White/Black records, 93 standardised features."""

    name = "census"
    modality = "tabular"

    class Params(SubsetParams):
        """Hyper-parameters of :class:`Census`.

        Attributes:
            root: Data root holding ``adult/adult.data`` and ``adult/adult.test``; defaults to
                ``INTERPLAY_DATA``, then the user cache directory.
            split_seed: Seed of the stratified 50/50 train/test split (AMULET uses 7).
            test_fraction: Share of records held out for testing.
        """

        root: str | None = None
        split_seed: int = 7
        test_fraction: float = Field(default=0.5, gt=0, lt=1)

    def load(self) -> TaskData:
        """Read the UCI files, apply the recipe and return ``train``/``test`` with ``race`` and ``sex``."""
        from ._census import load_census_arrays

        root = resolve_data_root(self.params.root)
        arrays = load_census_arrays(root, seed=self.params.split_seed, test_fraction=self.params.test_fraction)
        return build_task(
            "census",
            arrays,
            modality="tabular",
            params=self.params,
            feature_names=arrays["feature_names"],
            class_names=arrays["class_names"],
        )
