"""Array-level loader for Fashion-MNIST from its original IDX files.

Reading uses only :mod:`gzip` and NumPy (importing torchvision is slow), so the
loader is cheap to call. :func:`download_fmnist` is the one place that touches
torchvision, to fetch the raw files on request; loaders never download.
"""

from __future__ import annotations

import gzip
import math
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from interplay.dataroot import require_file

__all__ = ["FMNIST_CLASS_NAMES", "FMNIST_FILES", "download_fmnist", "load_fmnist_arrays", "read_idx"]

#: Class names of Fashion-MNIST, indexed by label.
FMNIST_CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: The four raw files, relative to the data root.
FMNIST_FILES: dict[str, str] = {
    "train_images": "fashion-mnist/train-images-idx3-ubyte.gz",
    "train_labels": "fashion-mnist/train-labels-idx1-ubyte.gz",
    "test_images": "fashion-mnist/t10k-images-idx3-ubyte.gz",
    "test_labels": "fashion-mnist/t10k-labels-idx1-ubyte.gz",
}

_HINT = (
    "Fashion-MNIST needs the original IDX files "
    "fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "
    "(https://github.com/zalandoresearch/fashion-mnist); "
    "interplay.plugins.datasets._fmnist.download_fmnist(root) can fetch them"
)

# IDX type codes -> big-endian NumPy dtypes.
_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or plain.

    Compression is detected from the gzip magic bytes, not the file name. The
    header is two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, then one
    big-endian uint32 per dimension; the data follow in big-endian C order.

    Args:
        path: The file to read.

    Returns:
        The array, with the file's shape and a native-byte-order dtype.

    Raises:
        ValueError: If the file is not a valid IDX file: bad magic number,
            unknown type code, corrupt or truncated gzip stream, or a byte length
            that does not match the header. The message names the file.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise ValueError(f"{str(path)!r}: corrupt or truncated gzip stream ({exc})") from exc
    if len(raw) < 4:
        raise ValueError(f"{str(path)!r}: too short for an IDX header ({len(raw)} bytes)")
    zero0, zero1, type_code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0:
        raise ValueError(f"{str(path)!r}: bad IDX magic number 0x{raw[:4].hex()}")
    dtype = _IDX_DTYPES.get(type_code)
    if dtype is None:
        raise ValueError(f"{str(path)!r}: unknown IDX type code 0x{type_code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{str(path)!r}: truncated IDX header ({len(raw)} of {header} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{str(path)!r}: IDX byte length {len(raw)} does not match the header "
            f"(shape {shape}, dtype {dtype.name}: expected {expected} bytes)"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    # astype copies: the result is writable, native-endian and independent of the file bytes.
    return data.astype(dtype.newbyteorder("="))


def _load_split(root: Path, images_key: str, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = require_file(root, FMNIST_FILES[images_key], hint=_HINT)
    labels_path = require_file(root, FMNIST_FILES[labels_key], hint=_HINT)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(
            f"{str(images_path)!r}: expected uint8 images of shape (n, 28, 28), "
            f"got {images.dtype.name} {images.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"{str(labels_path)!r}: expected {images.shape[0]} labels, got shape {labels.shape}")
    x = images.reshape(images.shape[0], 1, 28, 28).astype(np.float32)
    x *= np.float32(1.0 / 255.0)
    return x, labels.astype(np.int64)


def load_fmnist_arrays(root: Path) -> dict[str, Any]:
    """Load Fashion-MNIST from ``root / "fashion-mnist"`` as NumPy arrays.

    Args:
        root: The data root.

    Returns:
        A dict with ``x_train`` (float32, ``(60000, 1, 28, 28)``, values in
        ``[0, 1]``), ``y_train`` (int64, ``(60000,)``), ``x_test`` (float32,
        ``(10000, 1, 28, 28)``), ``y_test`` (int64) and ``class_names`` (the ten
        class names, indexed by label).

    Raises:
        DataNotFoundError: If one of the four files is missing.
        ValueError: If a file is corrupt or has unexpected shapes.
    """
    x_train, y_train = _load_split(root, "train_images", "train_labels")
    x_test, y_test = _load_split(root, "test_images", "test_labels")
    return {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
        "class_names": list(FMNIST_CLASS_NAMES),
    }


def download_fmnist(root: Path) -> None:
    """Download the raw Fashion-MNIST files into ``root / "fashion-mnist"``.

    Uses ``torchvision.datasets.FashionMNIST(download=True)`` (which checks the
    files' MD5 sums) in a temporary directory under ``root``, then moves the four
    ``.gz`` files into place. Files already present are kept. Needs network
    access; nothing in the library calls this implicitly.

    Args:
        root: The data root.
    """
    from torchvision.datasets import FashionMNIST  # slow import: only when downloading

    target = Path(root) / "fashion-mnist"
    target.mkdir(parents=True, exist_ok=True)
    missing = [rel for rel in FMNIST_FILES.values() if not (Path(root) / rel).is_file()]
    if not missing:
        return
    with tempfile.TemporaryDirectory(dir=root, prefix=".fmnist-download-") as tmp:
        FashionMNIST(root=tmp, train=True, download=True)  # fetches all four files
        raw = Path(tmp) / "FashionMNIST" / "raw"
        for rel in missing:
            name = Path(rel).name
            shutil.move(str(raw / name), str(target / name))
