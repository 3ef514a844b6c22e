"""Tables: scikit-learn's bundled sets, generated data, and a user's CSV files."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field

from regbench.config.schema import MAX_WIDTH, Seed, StrictModel
from regbench.data.base import FLOAT32_MAX, DataSpec, RawData, register_dataset
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


MAX_CATEGORIES = 1000   # most one-hot columns one categorical column may add (category_limit)


class CsvParams(StrictModel):
    path: str                                     # the training table (or the whole table)
    target: str                                   # name of the target column
    task: Literal["classification", "regression"] = "classification"
    val_path: Optional[str] = None                # a user's own validation table
    test_path: Optional[str] = None               # a user's own test table
    categorical: list[str] = []                   # numeric-coded columns to one-hot as well (text columns always are); a column of over 1000 categories, or over half as many as the training file's rows (10 always allowed), is refused as id-like
    impute: Literal["refuse", "mean", "median"] = "refuse"  # missing values (blank cells): refuse, or fill numbers with the training split's mean/median (a missing category is all zeros, unlike any category); a column with no value at all is refused


def category_limit(rows: int) -> int:
    """The most categories one column of a ``rows``-row table may one-hot into: 1000, since
    each is a dense float column (a 1000-category column of 1M rows is 8 GB), and no more than
    half the rows (at least 10 allowed): beyond that most categories hold a single row, an
    id a network can only memorise."""
    return min(MAX_CATEGORIES, max(10, rows // 2))


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


def _records(path: str):
    """(first line, fields) of each record after the header, as the csv module reads them: a
    quoted cell may span lines, so a record's line is not its row number plus two."""
    import csv

    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        next(reader, None)
        start = reader.line_num + 1
        for fields in reader:
            yield start, fields
            start = reader.line_num + 1


def _line(path: str, row: int) -> int:
    """The line of ``path`` on which data row ``row`` (0-based, as pandas counts) starts.
    Only an error needs it, so the file is read again then rather than mapped up front."""
    import csv

    index = 0
    try:
        for line, fields in _records(path):
            if len(fields) > 1 or (fields and fields[0].strip()):  # pandas skips blank lines
                if index == row:
                    return line
                index += 1
    except (OSError, UnicodeDecodeError, csv.Error):
        pass                                         # what pandas read, the csv module would not
    return row + 2


def _first(path: str, mask) -> tuple[int, int]:
    """The row (0-based) of the first True in ``mask``, and its line in ``path``."""
    row = int(np.asarray(mask).argmax())
    return row, _line(path, row)


def _unreadable(path: str, what: str, exc: Exception) -> DataError:
    """pandas' parser error in one line; a row with too many fields named by its line in the
    file (pandas counts a quoted cell's lines and skipped blank lines its own way)."""
    import csv

    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    with contextlib.suppress(OSError, UnicodeDecodeError, csv.Error):
        width = len(_header(path, what))
        for line, fields in _records(path):
            if len(fields) > width:
                return DataError(f"dataset.{what}: {path}:{line}: not a readable CSV table "
                                 f"(line {line} has {len(fields)} fields, the header {width})")
    return DataError(f"dataset.{what}: {path}: not a readable CSV table ({reason})")


def _category(value: Any) -> Optional[str]:
    """A category's name: 3 and 3.0 are one category (a column with a blank cell reads as
    floats in one file and integers in another); missing is None."""
    import pandas as pd

    if pd.isna(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _categories(column) -> np.ndarray:
    """A column's values as category names, missing ones as None (pandas' map turns a None
    back into NaN, which as a category of its own would one-hot into a column of zeros)."""
    names = column.map(_category).to_numpy(object)
    names[column.isna().to_numpy()] = None
    return names


def table_encoder(kinds: dict[str, str], impute: str, where: str = "dataset.path"):
    """fit(x_train) -> encode: numeric columns filled with the training mean or median, text
    (and ``categorical``) columns one-hot over the training split's categories; a category
    seen only in val/test, or a missing one, is all zeros. Missing categories are encoded so,
    not filled with the most frequent one: all zeros differs from every category (once
    standardised, each column says "not this one"), so the network can learn what a missing
    value means, as a separate "missing" column would let it, without a column that is zero
    wherever nothing is missing. ``where`` names the table in errors."""
    def fit(x_train: np.ndarray):
        plan = []
        for index, (name, kind) in enumerate(kinds.items()):
            column = x_train[:, index]
            if kind == "numeric":
                numbers = column.astype(np.float64)
                known = numbers[~np.isnan(numbers)]
            else:
                known = sorted({v for v in column if v is not None}, key=str)
            if not len(known):       # its values all fell in the validation or test rows
                raise DataError(f"{where}: column '{name}' has no value in the {len(column)} "
                                "training rows; fill it in, or drop the column")
            if kind == "numeric":
                plan.append((index, kind, np.median(known) if impute == "median"
                             else known.mean()))
            else:
                plan.append((index, kind, known))

        def encode(x: np.ndarray) -> np.ndarray:
            import pandas as pd

            parts = []
            for index, kind, detail in plan:
                column = x[:, index]
                if kind == "numeric":
                    numbers = column.astype(np.float64)
                    parts.append(np.where(np.isnan(numbers), detail, numbers)[:, None])
                else:   # codes, then one 1 per row: memory of the result, not rows × categories
                    codes = pd.Index(detail).get_indexer(column)   # -1: unseen or missing
                    onehot = np.zeros((len(column), len(detail)))
                    present = np.flatnonzero(codes >= 0)
                    onehot[present, codes[present]] = 1.0
                    parts.append(onehot)
            return np.concatenate(parts, axis=1)
        return encode
    return fit


def _beyond_float32(numbers: np.ndarray, path: str) -> Optional[tuple[int, int]]:
    """The row and line of the first value float32 cannot hold (inf, beyond ±3.4e38)."""
    bad = np.abs(numbers) > FLOAT32_MAX              # inf included, NaN (missing) not
    return _first(path, bad) if bad.any() else None


def _check_target(values, path: str, what: str, target: str, task: str) -> None:
    import pandas as pd

    if values.isna().any():
        raise DataError(f"dataset.{what}: {path}:{_first(path, values.isna())[1]}: target "
                        f"'{target}' has a missing value")
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if task == "regression" and not numeric:
        stray = values.map(lambda v: isinstance(v, (bool, np.bool_))
                           or pd.isna(pd.to_numeric(v, errors="coerce")))
        row, line = _first(path, stray)
        raise DataError(f"dataset.target: {path}:{line}: target '{target}' is not numeric (got "
                        f"{values.iloc[row]!r}); a regression target must be (set task: "
                        "classification for class labels)")
    if not numeric:
        return                      # class names
    numbers = values.to_numpy(dtype=np.float64)
    bad = _beyond_float32(numbers, path)
    if bad:
        raise DataError(f"dataset.{what}: {path}:{bad[1]}: the targets hold {numbers[bad[0]]:g} "
                        f"(column '{target}'); expected finite numbers within float32's range")
    fractional = np.mod(numbers, 1) != 0
    if task == "classification" and fractional.any():
        row, line = _first(path, fractional)
        raise DataError(f"dataset.task: {path}:{line}: target '{target}' holds fractional "
                        f"numbers such as {numbers[row]:g}; a classification target needs "
                        "class labels (set task: regression for a numeric target)")


def _read_table(path: str, target: str, what: str, task: str, categorical: list[str] = (),
                impute: str = "refuse"):
    """(features, target, column kinds) of one file, each bad value refused by its line."""
    import pandas as pd

    header = _header(path, what)
    if target not in header:
        raise DataError(f"dataset.target: column '{target}' not in {path}"
                        f"{did_you_mean(target, header)}; columns are: {', '.join(header)}")
    try:
        frame = pd.read_csv(path, skipinitialspace=True, encoding="utf-8-sig")   # Excel's BOM
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise _unreadable(path, what, exc) from None
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
        if values.isna().all():      # imputing would make up a whole column (of one value)
            raise DataError(f"dataset.{what}: {path}: column '{column}' has no value in any of "
                            f"its {len(values)} rows; drop the column (it carries no "
                            "information)")
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if not numeric and column not in categorical:
            parsed = pd.to_numeric(values, errors="coerce")
            stray = parsed.isna() & values.notna()
            if parsed.notna().any() and stray.any():   # numbers with a stray word: a data error
                row, line = _first(path, stray)
                raise DataError(f"dataset.{what}: {path}:{line}: column '{column}' mixes numbers "
                                f"and text (got {values.iloc[row]!r}); fix the value, or "
                                "list the column under dataset.categorical to encode its values "
                                "as categories")
        kinds[column] = "numeric" if numeric and column not in categorical else "categorical"
        if values.isna().any() and impute == "refuse":
            raise DataError(f"dataset.{what}: {path}:{_first(path, values.isna())[1]}: column "
                            f"'{column}' has a missing value (fill or drop missing values first, "
                            "or set dataset.impute: mean or median)")
        if kinds[column] == "numeric":
            numbers = values.to_numpy(dtype=np.float64)
            bad = _beyond_float32(numbers, path)
            if bad:
                value = numbers[bad[0]]
                held = "an infinite value" if np.isinf(value) else f"{value:g}, beyond float32's " \
                    f"range (±{FLOAT32_MAX:.3g})"
                raise DataError(f"dataset.{what}: {path}:{bad[1]}: column '{column}' holds "
                                f"{held}; expected finite numbers")
        elif what == "path":         # the categories one-hot encoded are the training file's
            count = values.map(_category).nunique()
            if count > category_limit(len(values)):
                raise DataError(f"dataset.{what}: {path}: column '{column}' has {count} "
                                f"distinct values in {len(values)} rows, more than the "
                                f"{category_limit(len(values))} categories a one-hot column "
                                f"may have (at most {MAX_CATEGORIES}, and half the rows); an "
                                "id-like column carries nothing to learn: drop it")
    _check_target(frame[target], path, what, target, task)
    if all(kind == "numeric" for kind in kinds.values()) and not features.isna().any().any():
        return features.to_numpy(dtype=np.float64), frame[target].to_numpy(), kinds
    columns = [features[c].to_numpy(dtype=np.float64) if kinds[c] == "numeric"
               else _categories(features[c]) for c in features.columns]
    return np.stack(columns, axis=1).astype(object), frame[target].to_numpy(), kinds


@register_dataset("csv", Params=CsvParams, summary="a user's CSV table: path, target, task, "
                  "optional val_path/test_path; text columns one-hot, impute for missing values",
                  spec=lambda c: DataSpec(c["task"], None), check=check_csv)
def load_csv(path: str, target: str, task: str, val_path: Optional[str],
             test_path: Optional[str], categorical: list[str], impute: str) -> RawData:
    files = {"path": path, "val_path": val_path, "test_path": test_path}   # config key -> file
    categorical = list(categorical or [])
    tables = {key: _read_table(file, target, key, task, categorical=categorical, impute=impute)
              for key, file in files.items() if file}
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
        labels = sorted({str(v) for _, y, _ in tables.values() for v in y})
        code = {label: i for i, label in enumerate(labels)}
        tables = {k: (x, np.array([code[str(v)] for v in y]), c) for k, (x, y, c) in tables.items()}

    def part(key):
        return tables[key][:2] if key in tables else (None, None)

    x_val, y_val = part("val_path")
    x_test, y_test = part("test_path")
    x, y = part("path")
    encoded = any(kind == "categorical" for kind in columns.values()) or any(
        table[0].dtype == object for table in tables.values())
    return RawData(x_train=x, y_train=y, task=task, x_val=x_val, y_val=y_val, x_test=x_test,
                   y_test=y_test, num_classes=len(labels) if labels else None,
                   class_names=labels,
                   fit_encoder=table_encoder(columns, impute, f"dataset.path: {path}")
                   if encoded else None)
