"""scikit-learn's bundled handwritten digits: the embedded default (no download, no data root)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from interplay import Dataset
from interplay.artifacts import TaskData

from ._common import SubsetParams, build_task

__all__ = ["Digits"]


class Digits(Dataset):
    """Handwritten digits 0-9 as 1x8x8 images in [0, 1] (1,797 images, scikit-learn's copy of UCI's set)."""

    name = "digits"
    modality = "image"

    class Params(SubsetParams):
        """Hyper-parameters of :class:`Digits`.

        Attributes:
            test_fraction: Share of the images held out for testing (stratified).
            split_seed: Seed of the train/test split.
        """

        test_fraction: float = Field(default=0.3, gt=0, lt=1)
        split_seed: int = 0

    def load(self) -> TaskData:
        """Load the digits and split them into stratified ``train`` and ``test`` splits."""
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        bunch = load_digits()
        x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
        y = bunch.target.astype(np.int64)
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=self.params.test_fraction, random_state=self.params.split_seed, stratify=y
        )
        arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
        return build_task(
            "digits", arrays, modality="image", params=self.params, class_names=[str(d) for d in range(10)]
        )
