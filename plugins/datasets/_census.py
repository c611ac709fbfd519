"""Array-level loader for AMULET's CENSUS dataset, built from the UCI Adult files.

This module is pure data preparation: no torch, no downloads. It reads
``adult/adult.data`` and ``adult/adult.test`` under the data root and applies
AMULET's ``load_census`` recipe to them (see :func:`load_census_arrays`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from interplay.dataroot import require_file

__all__ = ["ADULT_COLUMNS", "CENSUS_CLASS_NAMES", "CENSUS_ROWS", "load_census_arrays", "read_adult_frame"]

#: The 15 columns of the UCI Adult files, with the hyphenated names AMULET uses.
ADULT_COLUMNS: tuple[str, ...] = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)

_NUMERIC_COLUMNS = frozenset(
    {"age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"}
)

#: Class names, indexed by label.
CENSUS_CLASS_NAMES: tuple[str, str] = ("<=50K", ">50K")

#: Rows left after combining adult.data and adult.test and keeping race in {White, Black}.
CENSUS_ROWS = 46_447

_HINT = (
    "CENSUS needs the UCI Adult files adult/adult.data and adult/adult.test "
    "(https://archive.ics.uci.edu/dataset/2/adult)"
)


def _read_adult_file(path: Path, *, skiprows: int) -> pd.DataFrame:
    dtypes: dict[str, Any] = {c: ("int64" if c in _NUMERIC_COLUMNS else "object") for c in ADULT_COLUMNS}
    return pd.read_csv(
        path,
        header=None,
        names=list(ADULT_COLUMNS),
        dtype=dtypes,
        skiprows=skiprows,
        sep=",",
        skipinitialspace=True,  # every value after the first has a leading space
        na_values=["?"],
        keep_default_na=False,  # only "?" means missing
        skip_blank_lines=True,  # both files end with a blank line
        engine="c",
    )


def read_adult_frame(root: Path) -> pd.DataFrame:
    """Read and combine UCI Adult's two files, as AMULET's cached ``adult.csv``.

    Concatenates ``adult.data`` (32,561 rows) and ``adult.test`` (16,281 rows,
    after its first junk line ``|1x3 Cross validator``), maps ``?`` to NaN and
    keeps only the rows whose race is White or Black (46,447 rows).

    Unlike the file AMULET builds from ``ucimlrepo``, the trailing dot of
    adult.test's labels (``<=50K.`` / ``>50K.``) is stripped here, so that
    ``income == ">50K"`` labels the test-derived rows correctly. This deliberately
    fixes the caveat recorded in ``shared/data/SOURCES.md`` section 2.

    Args:
        root: The data root; the files are read from ``root / "adult"``.

    Returns:
        A frame with the 15 hyphenated columns of :data:`ADULT_COLUMNS` and a
        fresh ``RangeIndex``.

    Raises:
        DataNotFoundError: If either file is missing.
    """
    data_path = require_file(root, "adult/adult.data", hint=_HINT)
    test_path = require_file(root, "adult/adult.test", hint=_HINT)
    frame = pd.concat(
        [_read_adult_file(data_path, skiprows=0), _read_adult_file(test_path, skiprows=1)],
        ignore_index=True,
    )
    # Deliberate fix of the SOURCES.md caveat: adult.test writes ">50K." / "<=50K.";
    # strip the dot so ">50K." counts as positive (AMULET's ucimlrepo-based file may not).
    frame["income"] = frame["income"].str.rstrip(".")
    frame = frame.loc[frame["race"].isin(["White", "Black"])].reset_index(drop=True)
    return frame


def load_census_arrays(root: Path, *, seed: int = 7, test_fraction: float = 0.5) -> dict[str, Any]:
    """Load CENSUS (UCI Adult, White/Black only) as NumPy arrays, following AMULET.

    Recipe (AMULET ``amulet.datasets.load_census``):

    1. :func:`read_adult_frame`: adult.data + adult.test, ``?`` -> NaN, race in
       {White, Black} (46,447 rows; labels' trailing dots stripped, see there).
    2. Target ``y = income == ">50K"``; sensitive attributes ``race`` (White=1,
       Black=0) and ``sex`` (Male=1, Female=0).
    3. Features: drop ``income``, ``fnlwgt``, ``race``, ``sex``; ``fillna("Unknown")``;
       one-hot encode with ``pandas.get_dummies(drop_first=True)`` (the five
       numeric columns come first, then the dummies).
    4. Stratified split (``train_test_split(stratify=y, random_state=seed,
       test_size=test_fraction)``); features, labels and sensitive attributes
       are split together so they stay aligned.
    5. Like AMULET, standardise the features with a ``StandardScaler`` fitted on
       the training split only and applied to both splits (zero-variance
       columns are only centred).

    Args:
        root: The data root; the files are read from ``root / "adult"``.
        seed: Random state of the split (AMULET's default is 7).
        test_fraction: Fraction of rows in the test split (AMULET's default is 0.5).

    Returns:
        A dict with ``x_train``/``x_test`` (float32, ``(n, n_features)``),
        ``y_train``/``y_test`` (int64), ``s_train``/``s_test`` (dicts
        ``{"race": int64, "sex": int64}``), ``feature_names`` (list of str) and
        ``class_names`` (``["<=50K", ">50K"]``).

    Raises:
        DataNotFoundError: If ``adult/adult.data`` or ``adult/adult.test`` is missing.
    """
    frame = read_adult_frame(root)  # first, so that missing files are reported quickly

    # Imported here: scikit-learn is slow to import and only needed once the data is read.
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    y = (frame["income"] == ">50K").to_numpy(dtype=np.int64)
    race = (frame["race"] == "White").to_numpy(dtype=np.int64)
    sex = (frame["sex"] == "Male").to_numpy(dtype=np.int64)
    features = pd.get_dummies(
        frame.drop(columns=["income", "fnlwgt", "race", "sex"]).fillna("Unknown"),
        drop_first=True,
    )
    feature_names = [str(c) for c in features.columns]
    x = features.to_numpy(dtype=np.float64)

    x_train, x_test, y_train, y_test, race_train, race_test, sex_train, sex_test = train_test_split(
        x, y, race, sex, test_size=test_fraction, stratify=y, random_state=seed
    )
    scaler = StandardScaler().fit(x_train)
    return {
        "x_train": scaler.transform(x_train).astype(np.float32),
        "y_train": y_train,
        "s_train": {"race": race_train, "sex": sex_train},
        "x_test": scaler.transform(x_test).astype(np.float32),
        "y_test": y_test,
        "s_test": {"race": race_test, "sex": sex_test},
        "feature_names": feature_names,
        "class_names": list(CENSUS_CLASS_NAMES),
    }
