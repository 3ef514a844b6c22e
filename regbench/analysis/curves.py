"""Read learning curves: regbench's metrics.csv, another tool's CSV, TensorBoard event files or
an MLflow run.

Columns are matched case-insensitively after turning ``/ - . space`` into ``_``, so these all
name the same series: ``val_accuracy`` (regbench), ``val_acc`` (Keras), ``val/acc``
(Lightning), ``validation_accuracy``, ``accuracy_val``. A metric with no split prefix is a
training metric (Keras writes ``loss``, ``acc``, ``val_loss``, ``val_acc``). A metric logged at
two levels, Lightning's ``train_loss_epoch`` (the epoch's mean) beside ``train_loss_step`` (one
batch) or Keras TensorBoard's ``epoch_loss`` beside ``batch_loss``, is read at the epoch's level:
an epoch-level column wins over a plain one, which wins over a step-level one. Rows that share
an epoch are merged (Lightning logs train steps, val and the epoch's means on separate rows),
and a column with several values in one epoch (one per logged step) gets their mean, as
Lightning's ``on_epoch`` does. Epochs are numbered as the tool numbered them (Lightning and
Keras count from 0). A file without an epoch column (Keras'
``pd.DataFrame(history.history).to_csv(path)``, with or without its unnamed index) numbers its
rows as epochs 1, 2, 3 ... Empty cells mean "not logged"; ``nan``/``inf`` are kept, because a
NaN loss means the run diverged. Any other text in a column the diagnosis reads (a loss, a
rate, the objective) is an error naming the file, the line and the column: read as "not
logged", a column of text would leave nothing to judge and the run would be called ok.

TensorBoard logs are read with TensorBoard's own reader, one run per folder of event files
(Keras' ``train/`` and ``validation/`` folders are one run, their tags the train and val
series); MLflow runs (``runs:/<run id>``) with ``MlflowClient.get_metric_history``. Both log
against a step: it is the epoch, unless an ``epoch`` series (which Lightning's loggers write)
says which epoch each step belongs to. ``--map val_loss=val/loss`` names any other column,
tag or metric (``parse_map``).
"""
from __future__ import annotations

import csv
import math
import os
import re
import statistics
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from regbench.errors import RegbenchError
from regbench.vocabulary import EXPERIMENT_FILE, RUNS_DIR

TRAIN_PREFIXES = ("train_", "training_", "tr_")
VAL_PREFIXES = ("val_", "valid_", "validation_", "eval_", "dev_")
METRIC_ALIASES = {
    "loss": "loss", "accuracy": "accuracy", "acc": "accuracy", "f1": "f1", "f1_score": "f1",
    "precision": "precision", "recall": "recall", "ece": "ece", "r2": "r2", "r2_score": "r2",
    "mse": "mse", "mean_squared_error": "mse", "mae": "mae", "mean_absolute_error": "mae",
}
PAIRED = ("loss", "accuracy", "f1", "precision", "recall", "r2", "mse", "mae")
# the names --map may give a column: everything the diagnosis reads
MAP_TARGETS = ("epoch", "objective", *(f"{split}_{metric}" for split in ("train", "val")
                                       for metric in dict.fromkeys(METRIC_ALIASES.values())))
# A metric's level, from a marker in its name (see the module docstring): 0 an epoch's value,
# 1 unmarked, 2 one step's. `(?<![^_])`: at the start of the name or after an underscore.
LEVELS = ((0, re.compile(r"_epoch$|(?<![^_])epoch_")), (2, re.compile(r"_step$|(?<![^_])batch_")))
EVENT_FILES = "*tfevents*"                  # TensorBoard's events.out.tfevents.<time>.<host>...
KERAS_RUNS = {"train": "train/", "validation": "val/"}   # Keras' TensorBoard callback's folders
MLFLOW_RUN = "runs:/"


def _key(name: str) -> str:
    return re.sub(r"[/\-. ]+", "_", name.strip().lower())


def _plain(key: str) -> str:
    if key in ("epoch", "epochs"):
        return "epoch"
    for prefixes, split in ((VAL_PREFIXES, "val_"), (TRAIN_PREFIXES, "train_")):
        for prefix in prefixes:
            if key.startswith(prefix) and key[len(prefix):] in METRIC_ALIASES:
                return split + METRIC_ALIASES[key[len(prefix):]]
    for suffix, split in (("_val", "val_"), ("_valid", "val_"), ("_train", "train_")):
        if key.endswith(suffix) and key[: -len(suffix)] in METRIC_ALIASES:
            return split + METRIC_ALIASES[key[: -len(suffix)]]
    if key in METRIC_ALIASES:
        return "train_" + METRIC_ALIASES[key]
    return key


def _resolve(name: str) -> tuple[str, int]:
    """A column's regbench name and its level (0 epoch, 1 unmarked, 2 step)."""
    key = _key(name)
    for level, marker in LEVELS:
        stripped = marker.sub("", key, count=1)
        if stripped != key and _judged(_plain(stripped)):
            return _plain(stripped), level
    return _plain(key), 1


def canonical_column(name: str) -> str:
    """The regbench name of a column (``val_acc`` -> ``val_accuracy``, ``train_loss_epoch`` ->
    ``train_loss``); unknown names kept."""
    return _resolve(name)[0]


def parse_map(items: Optional[Iterable[str]]) -> dict[str, str]:
    """``--map train_loss=loss,val_loss=val/loss`` (repeatable) as ``{regbench name: source}``;
    an unknown regbench name, a malformed pair or a name mapped twice is an error."""
    mapping: dict[str, str] = {}
    for item in items or []:
        for pair in filter(str.strip, item.split(",")):
            target, sep, source = (part.strip() for part in pair.partition("="))
            if not (sep and target and source):
                raise RegbenchError(f"--map {pair.strip()!r}: expected NAME=SOURCE pairs "
                                    "separated by commas, e.g. --map train_loss=loss,"
                                    "val_loss=val/loss")
            if target not in MAP_TARGETS:
                raise RegbenchError(f"--map {pair.strip()!r}: {target!r} is not a name "
                                    f"regbench reads; expected one of {', '.join(MAP_TARGETS)}")
            if target in mapping:
                raise RegbenchError(f"--map: {target!r} is mapped twice ({mapping[target]!r} "
                                    f"and {source!r}); map each name once")
            mapping[target] = source
    return mapping


NOT_A_NUMBER = object()       # a cell holding text: an error in a judged column, else ignored


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, float):
        return value
    text = value.strip()
    if not text:
        return None
    try:
        return float(text)  # accepts nan, inf, -inf
    except ValueError:
        return NOT_A_NUMBER


def _judged(name: Optional[str]) -> bool:
    """Whether the diagnosis reads this column: the epoch, a train/val metric, the objective."""
    if name in ("epoch", "objective"):
        return True
    split, _, metric = (name or "").partition("_")
    return split in ("train", "val") and metric in METRIC_ALIASES.values()


def _find(source: str, header: list[str]) -> Optional[int]:
    """The column ``--map`` names: spelled exactly, else the one that matches loosely."""
    if source in header:
        return header.index(source)
    loose = [i for i, name in enumerate(header) if _key(name) == _key(source)]
    return loose[0] if len(loose) == 1 else None


def _names(where: str, header: list[str], mapping: dict[str, str], what: str,
           listed: list[str]) -> list[Optional[str]]:
    """Each column's regbench name, None for a column not read: the mapped ones, then for each
    name its best-level column (the first of equals: ``acc`` before a later ``accuracy``)."""
    names: list[Optional[str]] = [None] * len(header)
    for target, source in mapping.items():
        index = _find(source, header)
        if index is None:
            raise RegbenchError(f"{where}: --map {target}={source}: no {what} {source!r}; it "
                                f"has: {', '.join(listed) or 'none'}")
        if names[index] is not None:
            raise RegbenchError(f"{where}: --map maps {header[index]!r} to both "
                                f"{names[index]!r} and {target!r}; map each {what} once")
        names[index] = target
    best: dict[str, tuple[int, int]] = {}
    for index, raw in enumerate(header):
        name, level = _resolve(raw)
        if names[index] is None and name not in mapping and level < best.get(name, (3, 0))[0]:
            best[name] = (level, index)
    for name, (_, index) in best.items():
        names[index] = name
    return names


Table = tuple[list[str], Iterable[tuple[list[Any], Optional[int]]]]   # header, (cells, line)


def _rows(where: str, header: list[str], body, mapping: dict[str, str],
          series: Optional[str] = None) -> list[dict[str, Any]]:
    """Rows keyed by regbench names, one per epoch, sorted. ``body``: (cells, line) pairs.
    ``series``: a tracker's word for them (``tag``, ``metric``); column 0 is then its step,
    the epoch unless another column is one."""
    what, listed = (series, header[1:]) if series else ("column", header)
    names = _names(where, header, mapping, what, listed)
    if series and "epoch" not in names:
        names[0] = "epoch"
    # Keras' pd.DataFrame(history.history).to_csv(...): metric columns only, perhaps after an
    # unnamed index (0, 1, 2 ...); its rows are epochs 1, 2, 3. Any other column (a step
    # counter) means the rows may not be epochs: that file still needs its epoch column.
    if "epoch" not in names and names and names[0] not in mapping \
            and _key(header[0]) in ("", "unnamed:_0", "index"):
        names[0] = None
    metrics = set(METRIC_ALIASES.values())
    numbered = "epoch" not in names and any(names) and all(
        n is None or n.split("_", 1)[-1] in metrics and n.split("_", 1)[0] in ("train", "val")
        for n in names)
    check_columns(where, listed, [n for n in names if n] + (["epoch"] if numbered else []))
    values: dict[float, dict[str, list[float]]] = {}
    for number, (line, line_num) in enumerate(body, start=1):
        cells = {n: _cell(v) for n, v in zip(names, line) if n}
        for column, (name, text) in enumerate(zip(names, line)):
            if cells.get(name) is NOT_A_NUMBER and _judged(name):
                raise RegbenchError(
                    f"{where}:{line_num}: column {header[column]!r} holds {text.strip()[:40]!r},"
                    " which is not a number; expected a number in every filled cell of a loss "
                    "or metric column (an empty cell for an epoch not logged, nan or inf for a "
                    "diverged run)")
        if numbered:
            cells["epoch"] = float(number)
        epoch = cells.pop("epoch", None)
        if epoch is None or epoch is NOT_A_NUMBER or not math.isfinite(epoch):
            continue
        logged = values.setdefault(epoch, {})
        for name, value in cells.items():
            if value is not None and value is not NOT_A_NUMBER:
                logged.setdefault(name, []).append(value)
    if not values:
        raise RegbenchError(f"{where}: no rows with a numeric epoch")
    # one value per epoch: a column logged at several steps of it gets their mean (a NaN
    # among them stays NaN: the run diverged in that epoch)
    return [{"epoch": epoch, **{name: logged[0] if len(logged) == 1 else statistics.fmean(logged)
                                for name, logged in values[epoch].items()}}
            for epoch in sorted(values)]


def read_curve_csv(path: Path, mapping: Optional[dict[str, str]] = None
                   ) -> list[dict[str, Any]]:
    """Rows keyed by regbench column names, one per epoch, sorted; a located error if unusable."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            # each row with the file's line where it ends (a quoted cell may span lines)
            body = [(row, reader.line_num) for row in reader]
    except (OSError, UnicodeDecodeError) as exc:
        raise RegbenchError(f"{path}: cannot read the CSV ({exc})") from None
    if not header:
        raise RegbenchError(f"{path}: the file is empty; expected a CSV with an 'epoch' column")
    return _rows(str(path), header, body, mapping or {})


def check_columns(path: Union[Path, str], header: list[str], names: list[str]) -> None:
    found = ", ".join(header) if header else "none"
    if "epoch" not in names:
        raise RegbenchError(f"{path}: no 'epoch' column (found: {found}); expected epoch plus "
                            "train/val loss or accuracy columns, e.g. "
                            "epoch,train_loss,val_loss or Keras' history (loss,val_loss,... with or without an epoch column)")
    if not any(f"train_{m}" in names and f"val_{m}" in names for m in PAIRED):
        raise RegbenchError(f"{path}: no train/val pair of loss or accuracy columns (found: "
                            f"{found}); expected e.g. train_loss,val_loss or acc,val_acc "
                            "(or name them: --map train_loss=SOURCE,val_loss=SOURCE)")


def is_log_folder(path: Path) -> bool:
    """A folder of TensorBoard event files that is not a regbench results folder (whose run
    folders may hold event files too: ``--log tensorboard``)."""
    path = Path(path)
    return (path.is_dir() and not (path / RUNS_DIR).exists()
            and not (path / EXPERIMENT_FILE).exists() and any(path.rglob(EVENT_FILES)))


def read_curves(target: Union[str, Path], mapping: Optional[dict[str, str]] = None
                ) -> list[tuple[str, Union[list[dict[str, Any]], RegbenchError]]]:
    """(run name, rows) for each run of another tool's log: a CSV file, TensorBoard event files
    (a file, or a folder of runs) or an MLflow run (``runs:/<id>``). In a folder of several
    runs, a run that cannot be judged comes with its error in place of rows; when none can,
    the first error is raised."""
    mapping = mapping or {}
    if str(target).startswith(MLFLOW_RUN):
        return [(str(target), _rows(str(target), *_mlflow_table(str(target)), mapping,
                                     series="metric"))]
    path = Path(target)
    if path.is_file() and not path.match(EVENT_FILES):
        return [(path.name, read_curve_csv(path, mapping))]
    if path.is_file() or is_log_folder(path):
        runs: list[tuple[str, Any]] = []
        for name, (header, body) in _tensorboard_tables(path).items():
            try:
                runs.append((name, _rows(f"{path} (run {name})" if name != path.name
                                         else str(path), header, body, mapping,
                                         series="tag")))
            except RegbenchError as exc:   # one unusable run of several is that run's verdict
                runs.append((name, exc))
        failed = [rows for _, rows in runs if isinstance(rows, RegbenchError)]
        if len(failed) == len(runs):
            raise failed[0]
        return runs
    raise RegbenchError(f"{path}: no such results folder, CSV file, TensorBoard log or MLflow "
                        f"run ({MLFLOW_RUN}<run id>)")


def _step_table(steps: dict[float, dict[str, float]]) -> Table:
    """A tracker's values by step as a table: column 0 the step, then one per series."""
    series = sorted({name for logged in steps.values() for name in logged})
    body = [([float(step)] + [logged.get(name) for name in series], None)
            for step, logged in sorted(steps.items())]
    return ["step", *series], body


def _tensorboard_tables(path: Path) -> dict[str, Table]:
    """Each run's scalars (run name -> table), read with TensorBoard's own reader: every scalar
    kept (its default keeps a sample of 1000 per series), old and new summary formats alike."""
    try:
        from tensorboard.backend.event_processing import (  # deferred: an optional extra
            plugin_event_multiplexer,
        )
        from tensorboard.util import tensor_util  # deferred: an optional extra
    except ImportError:
        raise RegbenchError(f"{path}: reading TensorBoard event files needs TensorBoard, which "
                            "is not installed; install it with pip install tensorboard") from None
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={"scalars": 0}, max_reload_threads=1)
    if path.is_file():
        multiplexer.AddRun(str(path), path.name)
    else:
        multiplexer.AddRunsFromDirectory(str(path))
    multiplexer.Reload()
    runs: dict[str, dict[float, dict[str, float]]] = {}
    for run, tags in sorted(multiplexer.PluginRunToTagToContent("scalars").items()):
        folder = Path(run)
        prefix = KERAS_RUNS.get(folder.name, "")
        name = str(folder.parent if prefix else folder)
        steps = runs.setdefault(path.name if name == "." else name, {})
        for tag in tags:
            for event in multiplexer.Tensors(run, tag):
                value = tensor_util.make_ndarray(event.tensor_proto).item()
                steps.setdefault(event.step, {})[prefix + tag] = float(value)
    if not runs:
        raise RegbenchError(f"{path}: the TensorBoard event files hold no scalars; expected "
                            "train and val loss or accuracy logged with add_scalar")
    return {name: _step_table(steps) for name, steps in runs.items()}


def _mlflow_table(uri: str) -> Table:
    """An MLflow run's metric histories, from the tracking store MLflow is pointed at
    (``MLFLOW_TRACKING_URI``, else its default)."""
    run_id = uri[len(MLFLOW_RUN):].strip("/").split("/")[0]
    # a tracking server that does not answer costs seconds, not MLflow's minutes of retries
    # (as for --log mlflow)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        import mlflow  # deferred: an optional extra
        from mlflow.tracking import MlflowClient  # deferred: an optional extra
    except ImportError:
        raise RegbenchError(f"{uri}: reading an MLflow run needs MLflow, which is not "
                            "installed; install it with pip install mlflow") from None
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
        steps: dict[float, dict[str, float]] = {}
        for key in run.data.metrics:
            for metric in client.get_metric_history(run_id, key):
                steps.setdefault(metric.step, {})[key] = float(metric.value)
    except Exception as exc:  # MLflow raises its own and its store's errors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RegbenchError(f"{uri}: cannot read the MLflow run from "
                            f"{mlflow.get_tracking_uri()} ({first[:200]}); expected "
                            f"{MLFLOW_RUN}<run id> of a run in MLFLOW_TRACKING_URI's store") from None
    return _step_table(steps)
