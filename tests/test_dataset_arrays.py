"""Tests of the array-level dataset loaders and data-root resolution.

The loaders are checked against the real files in ``shared/data`` next to the
repository; those tests are skipped when that directory is absent. Nothing here
downloads anything.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from interplay.dataroot import require_file, resolve_data_root
from interplay.errors import DataNotFoundError, InputError
from interplay.plugins.datasets._census import CENSUS_ROWS, load_census_arrays, read_adult_frame
from interplay.plugins.datasets._fmnist import FMNIST_CLASS_NAMES, load_fmnist_arrays, read_idx

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: Number of one-hot features the CENSUS recipe gives on the UCI files (AMULET hard-codes 93 too).
CENSUS_N_FEATURES = 93


def _data_root(subdir: str) -> Path:
    if not (SHARED_DATA / subdir).is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA / subdir} does not exist")
    return SHARED_DATA


@pytest.fixture(scope="module")
def census() -> dict[str, Any]:
    return load_census_arrays(_data_root("adult"))


@pytest.fixture(scope="module")
def fmnist() -> dict[str, Any]:
    return load_fmnist_arrays(_data_root("fashion-mnist"))


# ---------------------------------------------------------------- data root


def test_resolve_data_root_param_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INTERPLAY_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_root(tmp_path / "param") == tmp_path / "param"
    assert resolve_data_root(str(tmp_path / "param")) == tmp_path / "param"


def test_resolve_data_root_env_over_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INTERPLAY_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_root() == tmp_path / "env"
    assert resolve_data_root(None) == tmp_path / "env"


def test_resolve_data_root_xdg_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("INTERPLAY_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_root() == tmp_path / "xdg" / "interplay"


def test_resolve_data_root_home_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INTERPLAY_DATA", "")  # empty counts as unset
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_root() == tmp_path / "home" / ".cache" / "interplay"


def test_resolve_data_root_expands_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_root("~/data") == tmp_path / "data"


def test_require_file_found(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.txt").write_text("x")
    assert require_file(tmp_path, "sub/f.txt") == tmp_path / "sub" / "f.txt"


def test_require_file_missing(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        require_file(tmp_path, "sub/f.txt", hint="get it from somewhere")
    message = str(info.value)
    assert "sub/f.txt" in message
    assert str(tmp_path) in message
    assert "get it from somewhere" in message
    assert "INTERPLAY_DATA" in message and "`root`" in message
    assert isinstance(info.value, InputError) and isinstance(info.value, FileNotFoundError)
    assert info.value.filename == "sub/f.txt" and info.value.root == tmp_path


def test_require_file_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "adult").mkdir()
    with pytest.raises(DataNotFoundError):
        require_file(tmp_path, "adult")


@pytest.mark.parametrize(
    ("loader", "relative"),
    [
        (load_census_arrays, "adult/adult.data"),
        (load_fmnist_arrays, "fashion-mnist/train-images-idx3-ubyte.gz"),
    ],
)
def test_loaders_missing_file(loader: Any, relative: str, tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        loader(tmp_path)
    message = str(info.value)
    assert relative in message
    assert str(tmp_path) in message
    assert "INTERPLAY_DATA" in message


# ---------------------------------------------------------------- census


def test_census_frame_rows_and_labels() -> None:
    frame = read_adult_frame(_data_root("adult"))
    assert len(frame) == CENSUS_ROWS == 46_447
    assert set(frame["race"]) == {"White", "Black"}
    # Trailing dots of adult.test are stripped: only two label values remain.
    assert set(frame["income"]) == {"<=50K", ">50K"}
    assert int((frame["income"] == ">50K").sum()) == 11_173


def test_census_split_sizes(census: dict[str, Any]) -> None:
    n_train, n_test = len(census["y_train"]), len(census["y_test"])
    assert n_train + n_test == 46_447
    assert (n_train, n_test) == (23_223, 23_224)
    assert census["x_train"].shape == (n_train, CENSUS_N_FEATURES)
    assert census["x_test"].shape == (n_test, CENSUS_N_FEATURES)


def test_census_features(census: dict[str, Any], record_property: Any) -> None:
    n_features = census["x_train"].shape[1]
    record_property("census_n_features", n_features)
    print(f"census feature count: {n_features}")
    assert n_features == CENSUS_N_FEATURES
    assert census["feature_names"][:5] == [
        "age",
        "education-num",
        "capital-gain",
        "capital-loss",
        "hours-per-week",
    ]
    assert len(census["feature_names"]) == n_features == len(set(census["feature_names"]))
    assert not any(name.startswith(("income", "fnlwgt", "race", "sex")) for name in census["feature_names"])
    for key in ("x_train", "x_test"):
        assert census[key].dtype == np.float32
        assert np.isfinite(census[key]).all()
    # Standardised with statistics of the training split.
    assert np.abs(census["x_train"].mean(axis=0)).max() < 1e-4
    assert census["class_names"] == ["<=50K", ">50K"]


def test_census_stratified(census: dict[str, Any]) -> None:
    for key in ("y_train", "y_test"):
        assert census[key].dtype == np.int64
        assert set(np.unique(census[key])) == {0, 1}
    assert abs(census["y_train"].mean() - census["y_test"].mean()) < 1e-3
    assert abs(census["y_train"].mean() - 11_173 / 46_447) < 1e-3


def test_census_sensitive_binary_and_aligned(census: dict[str, Any]) -> None:
    from sklearn.model_selection import train_test_split

    frame = read_adult_frame(_data_root("adult"))
    y = (frame["income"] == ">50K").to_numpy()
    idx_train, idx_test = train_test_split(np.arange(len(frame)), test_size=0.5, stratify=y, random_state=7)
    for split, idx in (("train", idx_train), ("test", idx_test)):
        s = census[f"s_{split}"]
        assert set(s) == {"race", "sex"}
        for name in ("race", "sex"):
            assert s[name].dtype == np.int64
            assert s[name].shape == census[f"y_{split}"].shape
            assert set(np.unique(s[name])) == {0, 1}
        # Same rows, same order as an independent split of the frame.
        np.testing.assert_array_equal(s["race"], (frame["race"].to_numpy()[idx] == "White").astype(np.int64))
        np.testing.assert_array_equal(s["sex"], (frame["sex"].to_numpy()[idx] == "Male").astype(np.int64))
        np.testing.assert_array_equal(census[f"y_{split}"], y[idx].astype(np.int64))
    assert int(census["s_train"]["race"].sum() + census["s_test"]["race"].sum()) == 41_762  # White rows


def test_census_seed(census: dict[str, Any]) -> None:
    root = _data_root("adult")
    again = load_census_arrays(root)
    np.testing.assert_array_equal(again["x_train"], census["x_train"])
    other = load_census_arrays(root, seed=8, test_fraction=0.25)
    assert len(other["y_test"]) == round(0.25 * 46_447)
    assert not np.array_equal(other["y_train"][:200], census["y_train"][:200])


# ---------------------------------------------------------------- fashion-mnist


def test_fmnist_shapes_and_range(fmnist: dict[str, Any]) -> None:
    assert fmnist["x_train"].shape == (60_000, 1, 28, 28)
    assert fmnist["x_test"].shape == (10_000, 1, 28, 28)
    for key in ("x_train", "x_test"):
        x = fmnist[key]
        assert x.dtype == np.float32
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    for key, n in (("y_train", 60_000), ("y_test", 10_000)):
        assert fmnist[key].dtype == np.int64
        assert fmnist[key].shape == (n,)
    assert fmnist["class_names"] == list(FMNIST_CLASS_NAMES)
    assert len(fmnist["class_names"]) == 10


def test_fmnist_class_counts(fmnist: dict[str, Any]) -> None:
    np.testing.assert_array_equal(np.bincount(fmnist["y_train"], minlength=10), [6_000] * 10)
    np.testing.assert_array_equal(np.bincount(fmnist["y_test"], minlength=10), [1_000] * 10)


# ---------------------------------------------------------------- read_idx


def _idx_bytes(array: np.ndarray, type_code: int) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_read_idx_roundtrip(tmp_path: Path) -> None:
    a = np.arange(24, dtype=np.int16).reshape(2, 3, 4) - 5
    plain = tmp_path / "a.idx"
    plain.write_bytes(_idx_bytes(a, 0x0B))
    packed = tmp_path / "a.idx.gz"
    packed.write_bytes(gzip.compress(_idx_bytes(a, 0x0B)))
    for path in (plain, packed):
        out = read_idx(path)
        assert out.shape == (2, 3, 4) and out.dtype == np.int16
        np.testing.assert_array_equal(out, a)
    u = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    plain.write_bytes(_idx_bytes(u, 0x08))
    out = read_idx(plain)
    assert out.dtype == np.uint8 and out.flags.writeable
    np.testing.assert_array_equal(out, u)


def test_read_idx_truncated_plain(tmp_path: Path) -> None:
    path = tmp_path / "truncated-images-idx3-ubyte"
    path.write_bytes(_idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8), 0x08)[:-10])
    with pytest.raises(ValueError, match=re.escape(path.name)):
        read_idx(path)


def test_read_idx_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "truncated-labels-idx1-ubyte.gz"
    data = gzip.compress(_idx_bytes(np.arange(1000, dtype=np.uint8) % 10, 0x08))
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(path.name)):
        read_idx(path)


def test_read_idx_trailing_bytes_and_bad_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(_idx_bytes(np.zeros(4, dtype=np.uint8), 0x08) + b"\x00")
    with pytest.raises(ValueError, match=re.escape(path.name)):
        read_idx(path)
    path.write_bytes(b"\x01\x00\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match="magic"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x07\x01" + bytes(8))
    with pytest.raises(ValueError, match="type code"):
        read_idx(path)
