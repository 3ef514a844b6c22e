"""Tables: scikit-learn's bundled sets, generated data, and a user's CSV files."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field

from regbench.config.schema import MAX_WIDTH, Seed, StrictModel
from regbench.data.base import DataSpec, RawData, register_dataset
from regbench.errors import DataError
from regbench.registry import did_you_mean

MAX_ROWS = 10_000_000   # generated rows (10M × 20 features is 1.6 GB as float64)


def bundled_file(name: str) -> Optional[Path]:
    """A data file scikit-learn ships in sklearn/datasets/data/, found without importing
    scikit-learn (its import, with scipy.stats, is most of a small run's start-up); None when
    this scikit-learn keeps it elsewhere."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / name
        if path.is_file():
            return path
    return None


@register_dataset("digits", summary="scikit-learn's bundled 8×8 handwritten digits (1,797 "
                  "images, 10 classes); works offline",
                  spec=DataSpec("classification", (1, 8, 8), 10, mirror_changes_class=True))
def load_digits() -> RawData:
    path = bundled_file("digits.csv.gz")
    if path is not None:   # 64 pixel columns then the label, what load_digits reads
        table = np.loadtxt(path, delimiter=",")
        images, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)
    else:
        from sklearn.datasets import load_digits as sk_digits

        bunch = sk_digits()
        images, target = bunch.images, bunch.target
    return RawData(x_train=images[:, None, :, :], y_train=target, task="classification",
                   num_classes=10)


@register_dataset("breast_cancer", summary="scikit-learn's bundled Wisconsin breast cancer "
                  "table (569 × 30, 2 classes)", spec=DataSpec("classification", (30,), 2))
def load_breast_cancer() -> RawData:
    path = bundled_file("breast_cancer.csv")
    if path is not None:   # a header "569,30,malignant,benign", then 30 features and the label
        with path.open() as handle:
            names = handle.readline().strip().split(",")[2:]
        table = np.loadtxt(path, delimiter=",", skiprows=1)
        data, target = table[:, :-1], table[:, -1].astype(int)
    else:
        from sklearn.datasets import load_breast_cancer as sk_cancer

        bunch = sk_cancer()
        data, target, names = bunch.data, bunch.target, list(bunch.target_names)
    return RawData(x_train=data, y_train=target, task="classification", num_classes=2,
                   class_names=names)


@register_dataset("diabetes", summary="scikit-learn's bundled diabetes progression table "
                  "(442 × 10, regression)", spec=DataSpec("regression", (10,)))
def load_diabetes() -> RawData:
    data_path, target_path = bundled_file("diabetes_data_raw.csv.gz"), \
        bundled_file("diabetes_target.csv.gz")
    if data_path is not None and target_path is not None:
        data, target = np.loadtxt(data_path), np.loadtxt(target_path)
        # load_diabetes' scaling: each column centred, of unit norm (std · √n)
        data = (data - data.mean(axis=0)) / data.std(axis=0) / np.sqrt(len(data))
    else:
        from sklearn.datasets import load_diabetes as sk_diabetes

        bunch = sk_diabetes()
        data, target = bunch.data, bunch.target
    return RawData(x_train=data, y_train=target, task="regression")


class SyntheticClassificationParams(StrictModel):
    n_samples: int = Field(1000, ge=10, le=MAX_ROWS)  # rows generated (before splits)
    n_features: int = Field(20, ge=1, le=MAX_WIDTH)  # input columns
    n_informative: Optional[int] = Field(None, ge=1)  # informative columns; None: half of n_features (at least 2)
    n_classes: int = Field(2, ge=2, le=10_000)    # classes
    noise: float = Field(0.0, ge=0, le=1)         # fraction of labels flipped at generation
    class_sep: float = Field(1.0, gt=0)           # distance between class clusters
    seed: Seed = 0                                # generation seed (the data, not the runs)


def _informative(n_informative: Optional[int], n_features: int) -> int:
    if n_informative:
        return min(n_informative, n_features)
    return min(n_features, max(2, n_features // 2))


@register_dataset("synthetic_classification", Params=SyntheticClassificationParams,
                  summary="generated, seeded classification of any size (make_classification); "
                  "few samples + many features + noise give a controllable overfitting regime",
                  spec=lambda c: DataSpec("classification", (c["n_features"],), c["n_classes"]))
def load_synthetic_classification(n_samples: int, n_features: int, n_informative: Optional[int],
                                  n_classes: int, noise: float, class_sep: float,
                                  seed: int) -> RawData:
    from sklearn.datasets import make_classification

    informative = _informative(n_informative, n_features)
    if n_classes * 2 > 2 ** informative:
        raise DataError(f"dataset.n_classes: {n_classes} classes need more "
                        f"informative features than {informative} (raise n_features)")
    x, y = make_classification(
        n_samples=n_samples, n_features=n_features, n_informative=informative, n_redundant=0,
        n_classes=n_classes, flip_y=noise, class_sep=class_sep, random_state=seed)
    return RawData(x_train=x, y_train=y, task="classification", num_classes=n_classes)


class SyntheticRegressionParams(StrictModel):
    n_samples: int = Field(1000, ge=10, le=MAX_ROWS)  # rows generated (before splits)
    n_features: int = Field(20, ge=1, le=MAX_WIDTH)  # input columns
    n_informative: Optional[int] = Field(None, ge=1)  # columns with a non-zero coefficient; None: half
    noise: float = Field(0.0, ge=0)               # std of Gaussian noise added to the target
    seed: Seed = 0                                # generation seed (the data, not the runs)


@register_dataset("synthetic_regression", Params=SyntheticRegressionParams,
                  summary="generated, seeded linear regression of any size (make_regression)",
                  spec=lambda c: DataSpec("regression", (c["n_features"],)))
def load_synthetic_regression(n_samples: int, n_features: int, n_informative: Optional[int],
                              noise: float, seed: int) -> RawData:
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=n_samples, n_features=n_features,
                           n_informative=_informative(n_informative, n_features), noise=noise,
                           random_state=seed)
    return RawData(x_train=x, y_train=y, task="regression")


class CsvParams(StrictModel):
    path: str                                     # the training table (or the whole table)
    target: str                                   # name of the target column
    task: Literal["classification", "regression"] = "classification"
    val_path: Optional[str] = None                # a user's own validation table
    test_path: Optional[str] = None               # a user's own test table
    categorical: list[str] = []                   # numeric-coded columns to one-hot as well (text columns always are)
    impute: Literal["refuse", "mean", "median"] = "refuse"  # missing numbers: refuse, or fill with the training split's mean/median (a missing category is all zeros)


def _header(path: str, what: str) -> list[str]:
    """The column names of a CSV file (first line only), refusing what cannot be a table."""
    import csv

    file = Path(path)
    if not file.is_file():
        raise DataError(f"dataset.{what}: file not found: {path} (expected a CSV table)")
    try:
        with open(file, encoding="utf-8-sig", newline="") as handle:   # Excel's BOM
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"dataset.{what}: {path}: not a readable CSV table ({exc})") from None
    header = [name.strip() for name in header]
    if not header or not any(header):
        raise DataError(f"dataset.{what}: {path} is empty; expected a header line of column "
                        "names, then one row per sample")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise DataError(f"dataset.{what}: {path}: column name {duplicates[0]!r} appears twice; "
                        "expected distinct column names")
    return header


def check_csv(config: dict[str, Any]) -> None:
    """Before any run: every table is there and holds the target column."""
    for key in ("path", "val_path", "test_path"):
        if config.get(key):
            header = _header(config[key], key)
            if config["target"] not in header:
                raise DataError(f"dataset.target: column '{config['target']}' not in "
                                f"{config[key]}{did_you_mean(config['target'], header)}; "
                                f"columns are: {', '.join(header)}")


def _first_bad_row(mask) -> int:
    """1-based line in the file of the first True row (line 1 is the header)."""
    return int(np.asarray(mask).argmax()) + 2


def _category(value: Any) -> Optional[str]:
    """A category's name: 3 and 3.0 are one category (a column with a blank cell reads as
    floats in one file and integers in another); missing is None."""
    import pandas as pd

    if pd.isna(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def table_encoder(kinds: dict[str, str], impute: str):
    """fit(x_train) -> encode: numeric columns filled with the training mean or median, text
    (and ``categorical``) columns one-hot over the training split's categories; a category
    seen only in val/test, or a missing one, is all zeros."""
    def fit(x_train: np.ndarray):
        plan = []
        for index, kind in enumerate(kinds.values()):
            column = x_train[:, index]
            if kind == "numeric":
                numbers = column.astype(np.float64)
                known = numbers[~np.isnan(numbers)]
                fill = (np.median(known) if impute == "median" else known.mean()) \
                    if known.size else 0.0
                plan.append((index, "numeric", fill))
            else:
                plan.append((index, "categorical",
                             sorted({v for v in column if v is not None}, key=str)))

        def encode(x: np.ndarray) -> np.ndarray:
            parts = []
            for index, kind, detail in plan:
                column = x[:, index]
                if kind == "numeric":
                    numbers = column.astype(np.float64)
                    parts.append(np.where(np.isnan(numbers), detail, numbers)[:, None])
                else:
                    parts.append(np.stack([column == category for category in detail],
                                          axis=1).astype(np.float64))
            return np.concatenate(parts, axis=1)
        return encode
    return fit


def _read_table(path: str, target: str, what: str, categorical: list[str] = (),
                impute: str = "refuse"):
    import pandas as pd

    header = _header(path, what)
    if target not in header:
        raise DataError(f"dataset.target: column '{target}' not in {path}"
                        f"{did_you_mean(target, header)}; columns are: {', '.join(header)}")
    try:
        frame = pd.read_csv(path, skipinitialspace=True, encoding="utf-8-sig")   # Excel's BOM
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"dataset.{what}: {path}: not a readable CSV table ({reason})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) == 0:
        raise DataError(f"dataset.{what}: {path} has a header but no data rows; expected one "
                        "row per sample")
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise DataError(f"dataset.{what}: {path} has no feature columns besides '{target}'")
    kinds = {}
    for column in features.columns:
        values = features[column]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if not numeric and column not in categorical:
            parsed = pd.to_numeric(values, errors="coerce")
            stray = parsed.isna() & values.notna()
            if parsed.notna().any() and stray.any():   # numbers with a stray word: a data error
                row = _first_bad_row(stray)
                raise DataError(f"dataset.{what}: {path}:{row}: column '{column}' mixes numbers "
                                f"and text (got {values.iloc[row - 2]!r}); fix the value, or "
                                "list the column under dataset.categorical to encode its values "
                                "as categories")
        kinds[column] = "numeric" if numeric and column not in categorical else "categorical"
        if values.isna().any() and impute == "refuse":
            raise DataError(f"dataset.{what}: {path}:{_first_bad_row(values.isna())}: column "
                            f"'{column}' has a missing value (fill or drop missing values first, "
                            "or set dataset.impute: mean or median)")
        if kinds[column] == "numeric":
            numbers = values.to_numpy(dtype=np.float64)
            if np.isinf(numbers).any():
                row = _first_bad_row(np.isinf(numbers))
                raise DataError(f"dataset.{what}: {path}:{row}: column '{column}' holds an "
                                "infinite value; expected finite numbers")
    if frame[target].isna().any():
        raise DataError(f"dataset.{what}: {path}:{_first_bad_row(frame[target].isna())}: target "
                        f"'{target}' has a missing value")
    if all(kind == "numeric" for kind in kinds.values()) and not features.isna().any().any():
        return features.to_numpy(dtype=np.float64), frame[target].to_numpy(), kinds
    columns = [features[c].to_numpy(dtype=np.float64) if kinds[c] == "numeric"
               else features[c].map(_category).to_numpy(object)
               for c in features.columns]
    return np.stack(columns, axis=1).astype(object), frame[target].to_numpy(), kinds


def _fraction_example(y: np.ndarray) -> str:
    y = np.asarray(y, dtype=np.float64)
    return f"{y[np.mod(y, 1) != 0][0]:g}"


def _looks_continuous(y: np.ndarray) -> bool:
    """A float target with fractional values: a regression target given task: classification."""
    y = np.asarray(y)
    return (np.issubdtype(y.dtype, np.floating)
            and not np.all(np.equal(np.mod(y, 1), 0)))


@register_dataset("csv", Params=CsvParams, summary="a user's CSV table: path, target, task, "
                  "optional val_path/test_path; text columns one-hot, impute for missing values",
                  spec=lambda c: DataSpec(c["task"], None), check=check_csv)
def load_csv(path: str, target: str, task: str, val_path: Optional[str],
             test_path: Optional[str], categorical: list[str], impute: str) -> RawData:
    files = {"path": path, "val_path": val_path, "test_path": test_path}   # config key -> file
    categorical = list(categorical or [])
    tables = {"path": _read_table(path, target, "path", categorical, impute)}
    for key in ("val_path", "test_path"):
        if files[key]:
            tables[key] = _read_table(files[key], target, key, categorical, impute)
    columns = tables["path"][2]
    for key, (_, _, cols) in tables.items():
        if list(cols) != list(columns):
            raise DataError(f"dataset.{key}: columns differ from dataset.path's ({files[key]})")
        mixed = [c for c in cols if cols[c] != columns[c]]
        if mixed:
            raise DataError(f"dataset.{key}: column '{mixed[0]}' is {cols[mixed[0]]} in "
                            f"{files[key]} but {columns[mixed[0]]} in {path}; list "
                            "it under dataset.categorical to treat it as categories in both")
    labels = None
    if task == "classification":
        for key, (_, y, _) in tables.items():
            if _looks_continuous(y):
                raise DataError(f"dataset.task: target '{target}' in {files[key]} holds "
                                f"fractional numbers such as {_fraction_example(y)}; a "
                                "classification target needs class labels (set task: "
                                "regression for a numeric target)")
        labels = sorted({str(v) for _, y, _ in tables.values() for v in y})
        code = {label: i for i, label in enumerate(labels)}
        tables = {k: (x, np.array([code[str(v)] for v in y]), c) for k, (x, y, c) in tables.items()}
    else:
        for key, (_, y, _) in tables.items():
            if not np.issubdtype(np.asarray(y).dtype, np.number) or np.asarray(y).dtype == bool:
                raise DataError(f"dataset.target: '{target}' in {files[key]} is not numeric; "
                                "a regression target must be")

    def part(key):
        return tables[key][:2] if key in tables else (None, None)

    x_val, y_val = part("val_path")
    x_test, y_test = part("test_path")
    x, y = part("path")
    kinds = columns
    encoded = any(kind == "categorical" for kind in kinds.values()) or any(
        table[0].dtype == object for table in tables.values())
    return RawData(x_train=x, y_train=y, task=task, x_val=x_val, y_val=y_val, x_test=x_test,
                   y_test=y_test, num_classes=len(labels) if labels else None,
                   class_names=labels,
                   fit_encoder=table_encoder(kinds, impute) if encoded else None)
