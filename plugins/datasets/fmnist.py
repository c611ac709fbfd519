"""Fashion-MNIST read from its original IDX files."""

from __future__ import annotations

from interplay import Dataset
from interplay.artifacts import TaskData
from interplay.dataroot import resolve_data_root

from ._common import SubsetParams, build_task

__all__ = ["FashionMNIST"]


class FashionMNIST(Dataset):
    """Fashion-MNIST: 60,000 training and 10,000 test 1x28x28 grayscale images in [0, 1], 10 classes."""

    name = "fmnist"
    modality = "image"

    class Params(SubsetParams):
        """Hyper-parameters of :class:`FashionMNIST`.

        Attributes:
            root: Data root holding ``fashion-mnist/*-ubyte.gz``; defaults to ``INTERPLAY_DATA``,
                then the user cache directory.
            download: Fetch the files with torchvision when they are missing (needs network).
        """

        root: str | None = None
        download: bool = False

    def load(self) -> TaskData:
        """Read the four IDX files (downloading them first only when ``download`` is set)."""
        from ._fmnist import download_fmnist, load_fmnist_arrays

        root = resolve_data_root(self.params.root)
        if self.params.download and not (root / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").exists():
            download_fmnist(root)
        arrays = load_fmnist_arrays(root)
        return build_task("fmnist", arrays, modality="image", params=self.params, class_names=arrays["class_names"])
