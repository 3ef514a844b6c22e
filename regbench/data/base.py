"""Dataset registry and the shared preparation every dataset goes through:
seeded stratified splits, a training subset cap, label noise, normalisation with training
statistics, and tensors ready to be batched by index permutation.

The test split (and its ``test_limit`` subset) is drawn from ``split_seed`` alone. The
validation split (and its ``val_limit`` subset), the training subset, the label noise and the
rows measured each epoch are drawn from it too, unless ``resample: per_seed``: then each run
seed draws its own, so that intervals over seeds include the variance of the data split
(Bouthillier et al. 2021).

With ``cv: {folds: k, repeats: r}`` (repeated k-fold cross-validation) the test split is one
fold instead: each run seed draws its own r partitions of the rows into k folds (scikit-learn's
RepeatedStratifiedKFold, RepeatedKFold for regression, seeded from (split_seed, run seed)), and
the run's ``cv.repeat`` and ``cv.fold``, set by the plan, say which fold it tests on; its
validation split, subset, label noise and measured rows are drawn from the other folds with a
seed of their own. A dataset's own test split is left out (the plan warns).
"""
from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from regbench.config.schema import DatasetConfig, NoParams, StrictModel
from regbench.errors import DataError
from regbench.registry import Registry, builtin, first_doc_line, params_model


@dataclass(frozen=True)
class DataSpec:
    """What a dataset is, known without loading it (used by validation)."""

    task: str                                     # classification | regression
    input_shape: Optional[tuple[int, ...]]        # (C, H, W) for images, (F,) for tables, None: unknown until loaded
    num_classes: Optional[int] = None             # classification only
    mirror_changes_class: bool = False            # a horizontally flipped sample shows another
                                                  # class (a mirrored 2 or 3 is not a digit)

    @property
    def is_image(self) -> bool:
        return self.input_shape is not None and len(self.input_shape) == 3


@dataclass
class RawData:
    """Arrays as a loader returns them; the test split is optional."""

    x_train: np.ndarray
    y_train: np.ndarray
    task: str
    x_test: Optional[np.ndarray] = None
    y_test: Optional[np.ndarray] = None
    x_val: Optional[np.ndarray] = None            # a user's own validation split (csv)
    y_val: Optional[np.ndarray] = None
    num_classes: Optional[int] = None
    class_names: Optional[list[str]] = None
    # tables with categorical or missing values: fit(x_train) -> encode, learnt from the
    # training split only once the splits are drawn, then applied to every split
    fit_encoder: Optional[Callable[[np.ndarray], Callable[[np.ndarray], np.ndarray]]] = None


@dataclass
class DatasetEntry:
    load: Callable[[dict[str, Any]], RawData]     # the dataset's config section -> arrays
    spec: Callable[[dict[str, Any]], DataSpec]
    summary: str
    Params: type[StrictModel] = NoParams
    check: Optional[Callable[[dict[str, Any]], None]] = None  # cheap: files there, headers right
    # loading would download: what is missing (None: the files are there, or no download)
    download_pending: Optional[Callable[[dict[str, Any]], Optional[str]]] = None
    plugin: bool = False                          # registered by a plugin, not part of regbench


DATASETS: Registry[DatasetEntry] = Registry("dataset")

SHARED = tuple(DatasetConfig.model_fields)        # the options every dataset has (root, ...)
SPLITS = ("train", "val", "test")


def raw_data(name: str, task: str, returned: Any) -> RawData:
    """What a dataset function returned as RawData: ``(X, y)``, or a dict of splits
    ``{"train": (X, y), "val": …, "test": …}`` (train required)."""
    expected = "expected (X, y) or a dict with 'train' and optionally 'val' and 'test'"
    splits = returned if isinstance(returned, dict) else {"train": returned}
    if "train" not in splits or set(splits) - set(SPLITS):
        raise DataError(f"dataset {name}: the loader returned {sorted(splits)}; {expected}")
    for split, pair in splits.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            got = "None" if pair is None else f"a {type(pair).__name__}"
            if isinstance(pair, (tuple, list)):
                got += f" of {len(pair)}"
            where = "" if pair is returned else f" for its {split!r} split"
            raise DataError(f"dataset {name}: the loader returned {got}{where}; {expected}")
    x, y = {}, {}
    for split, (inputs, labels) in splits.items():
        for arrays, what, value in ((x, "inputs", inputs), (y, "labels", labels)):
            try:
                arrays[split] = np.asarray(value)
            except ValueError:                   # ragged rows: numpy cannot make an array
                raise DataError(f"dataset {name}: the {split} {what} are not an array (rows of "
                                "different lengths); expected every row of the same shape"
                                ) from None
    return RawData(x_train=x["train"], y_train=y["train"], task=task, x_val=x.get("val"),
                   y_val=y.get("val"), x_test=x.get("test"), y_test=y.get("test"))


def register_dataset(name: str, *, task: Optional[str] = None,
                     spec: Optional[DataSpec | Callable[[dict[str, Any]], DataSpec]] = None,
                     summary: Optional[str] = None, Params: Optional[type[StrictModel]] = None,
                     check: Optional[Callable[[dict[str, Any]], None]] = None,
                     download_pending: Optional[Callable[[dict[str, Any]],
                                                         Optional[str]]] = None):
    """Register ``fn(**params)`` returning ``(X, y)``, ``{"train": (X, y), "test": (X, y)}``
    (``"val"`` and ``"test"`` optional) as numpy arrays, or a :class:`RawData`; the splits it
    does not return are drawn from train as for every dataset (``val_fraction``,
    ``test_fraction``).

    Its parameters are the dataset's config keys, typed by pydantic from the signature (one
    without a default is required) or by ``Params`` where a key needs constraints; a parameter
    named after an option every dataset has (``root``, ``download``, …) receives that option.
    ``task`` (classification or regression) says what it is, or ``spec``: a DataSpec, or
    ``spec(config) -> DataSpec`` when the shape depends on the config section. ``check(config)``
    raises DataError for what can be seen without loading (missing files), while the plan is
    built; ``download_pending(config)`` says what loading would download."""
    if spec is not None and task is not None:
        raise ValueError(f"register_dataset({name!r}): give task or spec, not both")
    if spec is None:
        if task not in ("classification", "regression"):
            raise ValueError(f"register_dataset({name!r}): task must be classification or "
                             f"regression (got {task!r})")
        spec = DataSpec(task, None)
    spec_fn = spec if callable(spec) else (lambda _config, _spec=spec: _spec)

    def decorator(function: Callable[..., Any]):
        shared = [key for key in inspect.signature(function).parameters if key in SHARED]
        own = params_model(function, 0, f"dataset {name}", Params=Params, base=StrictModel,
                           exclude=shared)

        def load(config: dict[str, Any]) -> RawData:
            params = own.model_validate({k: v for k, v in config.items() if k not in SHARED})
            returned = function(**{key: getattr(params, key) for key in own.model_fields},
                                **{key: config[key] for key in shared})
            if isinstance(returned, RawData):
                return returned
            return raw_data(name, spec_fn(config).task, returned)

        DATASETS.register(name)(DatasetEntry(
            load=load, spec=spec_fn, summary=summary or first_doc_line(function, "plugin dataset"),
            Params=own, check=check, download_pending=download_pending,
            plugin=not builtin(function.__module__)))
        return function
    return decorator


@dataclass
class DataBundle:
    """Normalised tensors for one experiment, shared by all of its runs."""

    task: str
    input_shape: tuple[int, ...]
    output_dim: int                               # classes, or regression targets
    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any
    x_test: Any
    y_test: Any
    train_eval_index: Any                         # fixed subset of training rows measured each epoch
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    def to(self, device) -> "DataBundle":
        """The same data on ``device``; copied once per device, then shared by every run."""
        if self.x_train.device == torch_device(device):
            return self
        copies = self.meta.setdefault("_device_copies", {})
        key = str(device)
        if key not in copies:
            moved = {name: getattr(self, name).to(device) for name in
                     ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test",
                      "train_eval_index")}
            copies[key] = DataBundle(task=self.task, input_shape=self.input_shape,
                                     output_dim=self.output_dim, meta=self.meta, **moved)
        return copies[key]


def _min_samples(fraction: float) -> int:
    """Fewest samples that leave at least one on each side of a split of ``fraction``."""
    n = max(2, int(0.5 / min(fraction, 1 - fraction)) - 1)  # close below; round() decides
    while round(n * fraction) < 1 or n - round(n * fraction) < 1:
        n += 1
    return n


def torch_device(device):
    import torch  # deferred: reading a dataset's description must not load torch

    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _split(x: np.ndarray, y: np.ndarray, rows: np.ndarray, fraction: float, *, task: str,
           seed: int, key: str, name: str, after: str = ""):
    """Hold ``fraction`` of the rows out (stratified when it can be); ``key`` is its config
    key and ``after`` says which split already took rows, so that an error names every
    setting that shaped it."""
    n = len(x)
    held = int(round(n * fraction))
    if held < 1 or n - held < 1:
        part = "test" if key == "test_fraction" else "validation"
        samples = f"the {n} samples{after} of dataset {name}"
        if held < 1:
            raise DataError(f"dataset.{key}: {fraction:g} of {samples} is {n * fraction:.2g} "
                            f"samples, too few for a {part} split; expected at least "
                            f"{_min_samples(fraction)} samples (add data or raise {key})")
        raise DataError(f"dataset.{key}: {fraction:g} of {samples} holds out {held}, leaving "
                        f"{n - held} to train on; lower {key} (or add data)")
    labels = y if task == "classification" else None
    if labels is not None:
        _, counts = np.unique(y, return_counts=True)
        if counts.min() < 2 or held < len(counts) or n - held < len(counts):
            labels = None  # too few samples per class to stratify; fall back to a plain split
    keep, out = holdout(n, held, seed, labels)
    return x[keep], y[keep], rows[keep], x[out], y[out], rows[out]


def _limited(x: np.ndarray, y: np.ndarray, rows: np.ndarray, limit: Optional[int], *,
             task: str, seed: int, key: str, name: str):
    """At most ``limit`` of a split's rows (``val_limit``, ``test_limit``: a quick look at a
    large dataset), drawn as ``holdout`` draws: seeded, stratified for classification so that
    every class keeps its share; a split no larger than the limit is kept whole."""
    if limit is None or limit >= len(x):
        return x, y, rows
    labels = y if task == "classification" else None
    if labels is not None:
        classes = len(np.unique(labels))
        if limit < classes:
            part = "validation" if key == "val_limit" else "test"
            raise DataError(f"dataset.{key}: {limit} samples cannot hold each of the {classes} "
                            f"classes of the {part} split of dataset {name}; expected at least "
                            f"{classes} (or no {key})")
    _, keep = holdout(len(x), limit, seed, labels)
    return x[keep], y[keep], rows[keep]


SPLIT_METHOD = "holdout-2"   # in every run's config hash: runs split otherwise are retrained


def holdout(n: int, held: int, seed: int, labels: Optional[np.ndarray] = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (kept, held out), each ascending: ``held`` rows drawn at random (seeded),
    stratified by ``labels`` when given.

    Stratified: class c holds out ⌊held·n_c/n⌋ rows plus one for the classes with the largest
    remainders until ``held`` is reached (so every class's share is within one row of its
    share of the data), the rows being the first of that class in one seeded permutation.
    Written out rather than scikit-learn's train_test_split, whose import (scikit-learn's
    utilities, scipy.stats) cost 1.9 s of every run's start-up (benchmarks/startup.py).
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    if labels is None:
        out = order[:held]
    else:
        classes, codes = np.unique(np.asarray(labels)[order], return_inverse=True)
        counts = np.bincount(codes, minlength=len(classes))
        share = held * counts / n
        take = np.floor(share).astype(int)
        remainder = share - take
        extra = np.argsort(-remainder, kind="stable")[: held - int(take.sum())]
        take[extra] += 1
        rank = np.empty(n, dtype=int)              # position of each row within its class
        for c in range(len(classes)):
            members = np.flatnonzero(codes == c)
            rank[members] = np.arange(members.size)
        out = order[rank < take[codes]]
    mask = np.zeros(n, dtype=bool)
    mask[out] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _normalise(x_train: np.ndarray, others: list[np.ndarray], image: bool):
    axes = (0, 2, 3) if image else (0,)
    mean = x_train.mean(axis=axes, keepdims=True)
    std = x_train.std(axis=axes, keepdims=True)
    std = np.where(std < 1e-8, 1.0, std)
    return [(a - mean) / std for a in [x_train, *others]]


FLOAT32_MAX = float(np.finfo(np.float32).max)


RESAMPLED = ("per_seed", "per_seed_with_test")   # resample modes that draw data per seed


def run_split_seed(config: dict[str, Any], run_seed: Optional[int]) -> int:
    """The seed of the validation split, subset and label noise: ``split_seed``, or with
    ``resample: per_seed`` one drawn from (split_seed, run seed), or with ``cv`` one drawn from
    (split_seed, run seed, repeat, fold)."""
    seed = int(config.get("split_seed", 0))
    cv = config.get("cv")
    if cv:
        return int(np.random.SeedSequence([*_cv_entropy(config, run_seed), int(cv.get("repeat", 0)),
                                           int(cv.get("fold", 0))]).generate_state(1)[0])
    if config.get("resample", "fixed") not in RESAMPLED or run_seed is None:
        return seed
    return int(np.random.SeedSequence([seed, int(run_seed)]).generate_state(1)[0])


def _cv_entropy(config: dict[str, Any], run_seed: Optional[int]) -> list[int]:
    # no run seed: the experiment's own look at the data (validate, the model checks)
    seed = int(config.get("split_seed", 0))
    return [seed] if run_seed is None else [seed, int(run_seed)]


def cv_random_state(config: dict[str, Any], run_seed: Optional[int]) -> int:
    """The ``random_state`` of a run seed's repeated k-fold partitions (``dataset.cv``): drawn
    from (split_seed, run seed), so that every seed has partitions of its own and the r-th
    repeat is the r-th partition that generator draws (the same whatever ``repeats`` is)."""
    return int(np.random.SeedSequence(_cv_entropy(config, run_seed)).generate_state(1)[0])


LARGE_CV = 20_000     # rows above which the plan warns that k-fold multiplies the cost
WIDER_CV = 1.1        # a train_subset that widens the corrected intervals by this much is warned


def _check_folds(folds: int, n: int, name: str) -> None:
    if folds > n:
        raise DataError(f"dataset.cv.folds: {folds} folds of the {n} samples of dataset {name} "
                        f"would leave a fold without rows; expected at most {n} folds")


def _stratifiable(y: np.ndarray, task: str, folds: int) -> bool:
    """Whether every class has at least one row per fold (scikit-learn's stratified folds
    warn and come out unequal below that; the folds are then drawn unstratified)."""
    return task == "classification" and int(np.unique(y, return_counts=True)[1].min()) >= folds


def cv_fold(x: np.ndarray, y: np.ndarray, rows: np.ndarray, cv: dict[str, Any], *, task: str,
            random_state: int, name: str):
    """Fold ``cv["fold"]`` of repeat ``cv["repeat"]`` held out as the test split, the other
    folds kept, as ``_split`` returns them: scikit-learn's RepeatedStratifiedKFold for
    classification (RepeatedKFold for regression, or when a class has fewer rows than folds),
    so the folds of one repeat are disjoint and test every row once."""
    # deferred: scikit-learn's import costs about 1.5 s, which only cross-validated runs pay
    from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold

    folds, repeat, fold = int(cv["folds"]), int(cv.get("repeat", 0)), int(cv.get("fold", 0))
    _check_folds(folds, len(x), name)
    stratified = _stratifiable(y, task, folds)
    splitter = (RepeatedStratifiedKFold if stratified else RepeatedKFold)(
        n_splits=folds, n_repeats=repeat + 1, random_state=random_state)
    splits = splitter.split(np.zeros((len(x), 1)), y if stratified else None)
    keep, out = next(itertools.islice(splits, repeat * folds + fold, None))
    return x[keep], y[keep], rows[keep], x[out], y[out], rows[out]


def cv_warnings(config: dict[str, Any]) -> list[str]:
    """What the plan says about ``dataset.cv`` once the rows are counted (the data are loaded
    once per process for it; not while a download is pending): more folds than rows is a
    DataError; a dataset's own test split left out, a large dataset (k-fold multiplies the
    runs), folds that cannot be stratified and a ``train_subset`` that widens the corrected
    intervals are warnings."""
    cv = config.get("cv")
    entry = DATASETS.get(config["name"])
    if not cv or (entry.download_pending is not None and entry.download_pending(config)):
        return []
    raw = _load_raw(config)
    name, n, folds = config["name"], len(raw.x_train), int(cv["folds"])
    _check_folds(folds, n, name)
    warnings = []
    if raw.x_test is not None:
        warnings.append(f"dataset.cv: dataset {name} has a test split of its own "
                        f"({len(raw.x_test)} rows); cross-validation folds its {n} training rows "
                        "and leaves that test split unused")
    if n > LARGE_CV:
        warnings.append(f"dataset.cv: dataset {name} has {n} rows: k-fold trains "
                        f"{folds * int(cv['repeats'])} runs per recipe and seed, each on "
                        f"{(folds - 1) / folds:.0%} of them; at this size one test split "
                        "usually settles a comparison at a fraction of the cost")
    if raw.task == "classification" and not _stratifiable(raw.y_train, raw.task, folds):
        warnings.append(f"dataset.cv: a class of dataset {name} has fewer rows than the {folds} "
                        "folds, so the folds are drawn without stratification")
    subset = _cv_subset_warning(config, n, folds, own_val=raw.x_val is not None)
    return warnings + ([subset] if subset else [])


def _cv_subset_warning(config: dict[str, Any], n: int, folds: int, own_val: bool
                       ) -> Optional[str]:
    """The warning for a ``train_subset`` below the rows a fold leaves for training: the
    corrected resampled t-test's n_test/n_train counts the subset (compare reads it from each
    run's ``examples``), which widens its intervals by up to √(ratio with / ratio without)."""
    subset = config.get("train_subset")
    if not subset:
        return None
    val_fraction = 0.0 if own_val else float(config.get("val_fraction", 0.1))
    test = n / folds                          # a fold's rows, on average
    with_subset, without = test / subset, test / ((n - test) * (1 - val_fraction))
    if math.sqrt(with_subset / without) < WIDER_CV:   # no smaller than the folds leave, or
        return None                                   # hardly (a smoke run's subset, often)
    return (f"dataset.cv with train_subset: {subset}: every run trains on {subset} rows and "
            f"tests on a fold of about {test:.0f}, so the corrected t-test's n_test/n_train is "
            f"{with_subset:.2g} instead of {without:.2g}: its intervals come out wider (up to "
            f"{math.sqrt(with_subset / without):.1f}×) and cautious; remove train_subset for "
            "the narrower intervals of the full folds")


def fingerprint(rows: np.ndarray) -> str:
    """A short name for a set of rows: two runs trained on the same rows show the same one."""
    import hashlib

    return hashlib.sha256(np.sort(rows).astype(np.int64).tobytes()).hexdigest()[:12]


def derived_seed(seed: int, offset: int) -> int:
    """The seed of one step of the preparation: ``seed + offset`` kept inside what numpy and
    scikit-learn accept (a split_seed of 2**32 − 1 must not overflow)."""
    return (seed + offset) % 2**32


def noisy_labels(y: np.ndarray, fraction: float, mode: str, num_classes: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Each label chosen with probability ``fraction`` is replaced: by another class
    (``different``: that fraction of labels is wrong), or by a class drawn uniformly from all
    K (``uniform``, Zhang et al. 2017: a fraction (K − 1)/K of them is wrong, and 1.0 gives
    labels independent of the inputs)."""
    y = y.copy()
    chosen = rng.random(len(y)) < fraction
    if mode == "uniform":
        y[chosen] = rng.integers(0, num_classes, chosen.sum())
    else:
        y[chosen] = (y[chosen] + rng.integers(1, num_classes, chosen.sum())) % num_classes
    return y


def _numeric(name: str, split: str, what: str, values: np.ndarray) -> np.ndarray:
    """``values`` as numbers, or one line naming the first value that is not one."""
    if values.dtype.kind in "biuf" or not values.size:
        return values
    flat = values.reshape(-1)
    if values.dtype.kind == "O":                 # Python objects: numbers, or text and None
        bad = next((i for i, v in enumerate(flat) if isinstance(v, (str, bytes))
                    or not isinstance(v, numbers.Real)), None)
        if bad is None:
            return values.astype(np.float64)
    else:                                        # strings, dates, complex numbers
        bad = 0
    where = np.unravel_index(bad, values.shape)
    at = f"row {where[0]}" + (f", column {where[1]}" if values.ndim == 2 else "")
    value = flat[bad].item() if isinstance(flat[bad], np.generic) else flat[bad]
    raise DataError(f"dataset {name}: the {split} {what} hold {value!r} ({at}, dtype "
                    f"{values.dtype}); expected numbers (encode text and fill missing values "
                    "before returning them)")


def _class_labels(name: str, y: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray],
                                                                  Optional[list[str]]]:
    """Class labels as integers 0…K−1: class names (strings) numbered in sorted order, as the
    csv dataset numbers them (returned as the class names), whole numbers kept, anything else
    refused."""
    y = {split: labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels
         for split, labels in y.items()}               # a column vector of labels is fine
    for split, labels in y.items():
        if labels.ndim != 1:
            raise DataError(f"dataset {name}: the {split} labels have shape {labels.shape}; "
                            "expected one class label per row, shape (N,)")
    if any(labels.dtype.kind in "SU" or (labels.dtype.kind == "O" and labels.size and
           all(isinstance(v, str) for v in labels)) for labels in y.values()):
        names = sorted({str(v) for labels in y.values() for v in labels})
        code = {label: i for i, label in enumerate(names)}
        return {split: np.array([code[str(v)] for v in labels], dtype=np.int64)
                for split, labels in y.items()}, names
    numbered = {}
    for split, labels in y.items():
        labels = _numeric(name, split, "labels", labels)
        bad = labels < 0
        if labels.dtype.kind == "f":
            bad |= ~np.isfinite(labels) | (labels != np.floor(labels))
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"dataset {name}: the {split} labels hold {labels[row].item()!r} (row "
                            f"{row}); classification expects class labels 0, 1, 2, … or class "
                            "names (strings); register a numeric target with "
                            "task='regression'")
        numbered[split] = labels.astype(np.int64)
    return numbered, None


def checked(name: str, raw: RawData) -> RawData:
    """A loader's arrays as ``prepare`` needs them, or one line naming the dataset and what is
    expected: X and y of each split together with one label per row, inputs of numbers shaped
    (N, features) or (N, C, H, W), the same in every split and finite, class labels 0…K−1
    (class names are numbered)."""
    x = {split: getattr(raw, f"x_{split}") for split in SPLITS}
    y = {split: getattr(raw, f"y_{split}") for split in SPLITS}
    for split in SPLITS:
        if (x[split] is None) != (y[split] is None):
            given, missing = ("inputs", "labels") if y[split] is None else ("labels", "inputs")
            raise DataError(f"dataset {name}: the loader gave {split} {given} but no {missing}; "
                            "expected both")
    x = {split: np.asarray(a) for split, a in x.items() if a is not None}
    y = {split: np.asarray(a) for split, a in y.items() if a is not None}
    for split, inputs in x.items():
        if inputs.ndim < 2:
            raise DataError(f"dataset {name}: the {split} inputs have shape {inputs.shape}; "
                            "expected one row per sample, (N, features) or (N, C, H, W)")
        if len(inputs) != len(y[split]):
            raise DataError(f"dataset {name}: the {split} inputs have {len(inputs)} rows but "
                            f"{len(y[split])} labels; expected one label per row")
        if raw.fit_encoder is None:    # else the encoder makes numbers of them (csv categories)
            x[split] = _numeric(name, split, "inputs", inputs)
    class_names = raw.class_names
    if raw.task == "classification":
        y, names = _class_labels(name, y)
        class_names = names or class_names
    else:
        y = {split: _numeric(name, split, "targets", a) for split, a in y.items()}
    num_classes = raw.num_classes or (len(class_names) if class_names else None)
    check_arrays(name, x, y, raw.task, num_classes)
    return dataclasses.replace(raw, num_classes=num_classes, class_names=class_names,
                               **{f"x_{split}": a for split, a in x.items()},
                               **{f"y_{split}": a for split, a in y.items()})


def check_arrays(name: str, x: dict[str, np.ndarray], y: dict[str, np.ndarray], task: str,
                 num_classes: Optional[int]) -> None:
    """What would fail every run, found before any trains: inputs of different shapes across
    splits, values float32 cannot hold (inf, NaN, beyond ±3.4e38), labels outside the classes."""
    shapes = {split: a.shape[1:] for split, a in x.items()}
    if len(set(shapes.values())) > 1:
        described = ", ".join(f"{split} {shape}" for split, shape in shapes.items())
        raise DataError(f"dataset {name}: the splits' inputs have different shapes ({described}); "
                        "every sample must have the same shape")
    arrays = [("inputs", split, a) for split, a in x.items()]
    if task == "regression":
        arrays += [("targets", split, a) for split, a in y.items()]
    for what, split, a in arrays:
        values = np.asarray(a)
        if not np.issubdtype(values.dtype, np.floating):
            continue            # integers (uint8 images, counts) are finite; int64 fits float32
        bad = ~np.isfinite(values) | (np.abs(values) > FLOAT32_MAX)
        if bad.any():
            where = np.argwhere(bad)[0]
            column = f", column {int(where[1])}" if values.ndim == 2 else ""
            raise DataError(f"dataset {name}: the {split} {what} hold {float(values[bad][0])!r} "
                            f"(row {int(where[0])}{column}); expected finite numbers within "
                            f"float32's range (±{FLOAT32_MAX:.3g})")
    if task == "classification" and num_classes is not None:
        for split, labels in y.items():
            labels = np.asarray(labels)
            if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
                raise DataError(f"dataset {name}: the {split} labels run from {labels.min()} to "
                                f"{labels.max()}; expected classes 0 to {num_classes - 1}")


def prepare(config: dict[str, Any], train_eval_samples: int = 10_000,
            run_seed: Optional[int] = None) -> DataBundle:
    """Load the dataset named in ``config`` and split, noise, normalise it (seeded; with
    ``resample: per_seed`` the validation split, subset and noise follow ``run_seed``)."""
    import torch  # deferred: reading a dataset's description must not load torch

    raw = _load_raw(config)
    seed = int(config.get("split_seed", 0))
    task = raw.task
    x_train, y_train = np.asarray(raw.x_train), np.asarray(raw.y_train)
    name = config["name"]
    rows = np.arange(len(x_train))              # row numbers of the loader's training arrays
    mode = config.get("resample", "fixed")
    if mode == "per_seed_with_test" and raw.x_test is not None:
        raise DataError(f"dataset.resample: per_seed_with_test draws a new test split for every "
                        f"seed, but dataset {name} has its own test split; use resample: "
                        "per_seed (the test set stays fixed) or fixed")
    # per_seed_with_test: each seed its own test rows, so that the intervals over seeds
    # include the variance of the test sample too
    test_seed = run_split_seed(config, run_seed) if mode == "per_seed_with_test" else seed
    cv = config.get("cv")
    if cv:    # the run's fold is its test split; a dataset's own test split is left out
        x_train, y_train, rows, x_test, y_test, test_rows = cv_fold(
            x_train, y_train, rows, cv, task=task,
            random_state=cv_random_state(config, run_seed), name=name)
    elif raw.x_test is None:
        x_train, y_train, rows, x_test, y_test, test_rows = _split(
            x_train, y_train, rows, config["test_fraction"], task=task, seed=test_seed,
            key="test_fraction", name=name)
    else:
        x_test, y_test = np.asarray(raw.x_test), np.asarray(raw.y_test)
        test_rows = -1 - np.arange(len(x_test))  # the loader's own test rows
    resampled = mode in RESAMPLED
    if resampled and raw.x_val is not None:
        raise DataError(f"dataset.resample: {mode} draws a new validation split for every "
                        f"seed, but dataset {name} has its own validation split; remove the "
                        "validation file or use resample: fixed")
    seed = run_split_seed(config, run_seed)    # from here on: per seed when resampled
    if raw.x_val is None:
        after = (f" left after the test split (dataset.test_fraction "
                 f"{config['test_fraction']:g})" if raw.x_test is None else "")
        if cv:
            after = f" left for training by one of dataset.cv's {cv['folds']} folds"
        x_train, y_train, rows, x_val, y_val, val_rows = _split(
            x_train, y_train, rows, config["val_fraction"], task=task,
            seed=derived_seed(seed, 1), key="val_fraction", name=name, after=after)
    else:
        x_val, y_val = np.asarray(raw.x_val), np.asarray(raw.y_val)
        val_rows = -1 - len(x_test) - np.arange(len(x_val))
    rng = np.random.default_rng(derived_seed(seed, 2))
    if config.get("train_subset") and config["train_subset"] < len(x_train):
        keep = np.sort(rng.permutation(len(x_train))[: config["train_subset"]])
        x_train, y_train, rows = x_train[keep], y_train[keep], rows[keep]
    x_val, y_val, val_rows = _limited(x_val, y_val, val_rows, config.get("val_limit"),
                                      task=task, seed=derived_seed(seed, 4), key="val_limit",
                                      name=name)
    x_test, y_test, test_rows = _limited(x_test, y_test, test_rows, config.get("test_limit"),
                                         task=task, seed=derived_seed(test_seed, 5),
                                         key="test_limit", name=name)
    if raw.fit_encoder is not None:   # categories and fill values from the rows it trains on
        encode = raw.fit_encoder(x_train)
        x_train, x_val, x_test = encode(x_train), encode(x_val), encode(x_test)
    if task == "classification":
        num_classes = raw.num_classes or int(max(y_train.max(), y_val.max(), y_test.max()) + 1)
        if len(np.unique(y_train)) < 2:
            label = raw.class_names[int(y_train[0])] if raw.class_names else int(y_train[0])
            key = "dataset.target" if name == "csv" else "dataset"
            raise DataError(f"{key}: the training split of dataset {name} holds a single class "
                            f"({label!r}); classification needs at least two")
        noise = float(config.get("label_noise", 0.0))
        if noise > 0:
            y_train = noisy_labels(y_train, noise, config.get("label_noise_mode", "different"),
                                   num_classes, rng)
        output_dim = num_classes
    else:
        y_train, y_val, y_test = (np.asarray(a, dtype=np.float64).reshape(len(a), -1)
                                  for a in (y_train, y_val, y_test))
        output_dim = y_train.shape[1]
        if config.get("standardize_target"):
            mean, std = y_train.mean(0), np.where(y_train.std(0) < 1e-8, 1, y_train.std(0))
            y_train, y_val, y_test = ((a - mean) / std for a in (y_train, y_val, y_test))
    image = x_train.ndim == 4
    x_train, x_val, x_test = _normalise(x_train.astype(np.float64), [x_val.astype(np.float64),
                                        x_test.astype(np.float64)], image)
    eval_rng = np.random.default_rng(derived_seed(seed, 3))
    n_eval = min(train_eval_samples, len(x_train))
    eval_index = np.sort(eval_rng.permutation(len(x_train))[:n_eval])

    def as_x(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    def as_y(a):
        if task == "classification":
            return torch.from_numpy(np.asarray(a, dtype=np.int64))
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    return DataBundle(
        task=task, input_shape=tuple(x_train.shape[1:]), output_dim=int(output_dim),
        x_train=as_x(x_train), y_train=as_y(y_train), x_val=as_x(x_val), y_val=as_y(y_val),
        x_test=as_x(x_test), y_test=as_y(y_test),
        train_eval_index=torch.from_numpy(eval_index.astype(np.int64)),
        meta={"name": name, "n_train": len(x_train), "n_val": len(x_val),
              "n_test": len(x_test), "class_names": raw.class_names,
              "resample": mode if resampled else "fixed",
              "split": {"train": fingerprint(rows), "val": fingerprint(val_rows),
                        "test": fingerprint(test_rows)}},
    )


_CACHE: dict[str, DataBundle] = {}
_RAW: dict[str, RawData] = {}


def forget_loaded() -> None:
    """Drop this process's loaded data: a new experiment reads its files again (they may have
    changed since the last one, e.g. between two ``regbench.run`` calls in a notebook)."""
    _RAW.clear()
    _CACHE.clear()


def _load_raw(config: dict[str, Any]) -> RawData:
    """The loader's arrays, once per process (a resampled or cross-validated experiment splits
    them per run)."""
    key = json.dumps({k: v for k, v in config.items() if k != "cv"}, sort_keys=True,
                     default=str)
    if key not in _RAW:
        _RAW.clear()
        _RAW[key] = checked(config["name"], DATASETS.get(config["name"]).load(config))
    return _RAW[key]


def load_bundle(config: dict[str, Any], train_eval_samples: int = 10_000,
                run_seed: Optional[int] = None) -> DataBundle:
    """``prepare`` once per process: every run of an experiment shares the same tensors (with
    ``resample: per_seed``, every run of one seed; with ``cv``, of one seed, repeat and fold)."""
    split = run_split_seed(config, run_seed)
    key = json.dumps([config, train_eval_samples, split], sort_keys=True, default=str)
    if key not in _CACHE:
        _CACHE.clear()  # one dataset at a time: a sweep never holds stale copies
        _CACHE[key] = prepare(config, train_eval_samples, run_seed)
    return _CACHE[key]


def data_spec(config: dict[str, Any]) -> DataSpec:
    """What the dataset is, after its cheap ``check``: a plan with missing files fails here,
    before any run starts or anything is written."""
    entry = DATASETS.get(config["name"])
    if entry.check is not None:
        entry.check(config)
    return entry.spec(config)
