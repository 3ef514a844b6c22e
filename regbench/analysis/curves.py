"""Read learning curves from a CSV: regbench's metrics.csv or another tool's log.

Columns are matched case-insensitively after turning ``/ - . space`` into ``_``, so these all
name the same series: ``val_accuracy`` (regbench), ``val_acc`` (Keras), ``val/acc``
(Lightning), ``validation_accuracy``, ``accuracy_val``. A metric with no split prefix is a
training metric (Keras writes ``loss``, ``acc``, ``val_loss``, ``val_acc``). Rows that share an
epoch are merged (Lightning logs train and val steps on separate rows). A file without an
epoch column (Keras' ``pd.DataFrame(history.history).to_csv(path)``, with or without its
unnamed index) numbers its rows as epochs 1, 2, 3 ... Empty cells mean "not logged";
``nan``/``inf`` are kept, because a NaN loss means the run diverged. Any other text in a
column the diagnosis reads (a loss, a rate, the objective) is an error naming the file, the
line and the column: read as "not logged", a column of text would leave nothing to judge and
the run would be called ok.
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any, Optional

from regbench.errors import RegbenchError

TRAIN_PREFIXES = ("train_", "training_", "tr_")
VAL_PREFIXES = ("val_", "valid_", "validation_", "eval_", "dev_")
METRIC_ALIASES = {
    "loss": "loss", "accuracy": "accuracy", "acc": "accuracy", "f1": "f1", "f1_score": "f1",
    "precision": "precision", "recall": "recall", "ece": "ece", "r2": "r2", "r2_score": "r2",
    "mse": "mse", "mean_squared_error": "mse", "mae": "mae", "mean_absolute_error": "mae",
}
PAIRED = ("loss", "accuracy", "f1", "precision", "recall", "r2", "mse", "mae")


def _key(name: str) -> str:
    return re.sub(r"[/\-. ]+", "_", name.strip().lower())


def canonical_column(name: str) -> str:
    """The regbench name of a column (``val_acc`` -> ``val_accuracy``); unknown names kept."""
    key = _key(name)
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


NOT_A_NUMBER = object()       # a cell holding text: an error in a judged column, else ignored


def _cell(text: str) -> Any:
    text = text.strip()
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


def read_curve_csv(path: Path) -> list[dict[str, Any]]:
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
    names: list[Optional[str]] = []
    for raw in header:
        name = canonical_column(raw)
        names.append(None if name in names else name)  # the first of two aliases wins
    # Keras' pd.DataFrame(history.history).to_csv(...): metric columns only, perhaps after an
    # unnamed index (0, 1, 2 ...); its rows are epochs 1, 2, 3. Any other column (a step
    # counter) means the rows may not be epochs: that file still needs its epoch column.
    if "epoch" not in names and names and _key(header[0]) in ("", "unnamed:_0", "index"):
        names[0] = None
    metrics = set(METRIC_ALIASES.values())
    numbered = "epoch" not in names and any(names) and all(
        n is None or n.split("_", 1)[-1] in metrics and n.split("_", 1)[0] in ("train", "val")
        for n in names)
    check_columns(path, header, [n for n in names if n] + (["epoch"] if numbered else []))
    merged: dict[float, dict[str, Any]] = {}
    for number, (line, line_num) in enumerate(body, start=1):
        cells = {n: _cell(v) for n, v in zip(names, line) if n}
        for column, (name, text) in enumerate(zip(names, line)):
            if cells.get(name) is NOT_A_NUMBER and _judged(name):
                raise RegbenchError(
                    f"{path}:{line_num}: column {header[column]!r} holds {text.strip()[:40]!r},"
                    " which is not a number; expected a number in every filled cell of a loss "
                    "or metric column (an empty cell for an epoch not logged, nan or inf for a "
                    "diverged run)")
        cells = {n: v for n, v in cells.items() if v is not NOT_A_NUMBER}
        if numbered:
            cells["epoch"] = float(number)
        epoch = cells.get("epoch")
        if epoch is None or not math.isfinite(epoch):
            continue
        row = merged.setdefault(epoch, {"epoch": epoch})
        row.update({k: v for k, v in cells.items() if v is not None})
    if not merged:
        raise RegbenchError(f"{path}: no rows with a numeric epoch")
    return [merged[e] for e in sorted(merged)]


def check_columns(path: Path, header: list[str], names: list[str]) -> None:
    found = ", ".join(header) if header else "none"
    if "epoch" not in names:
        raise RegbenchError(f"{path}: no 'epoch' column (found: {found}); expected epoch plus "
                            "train/val loss or accuracy columns, e.g. "
                            "epoch,train_loss,val_loss or Keras' history (loss,val_loss,... with or without an epoch column)")
    if not any(f"train_{m}" in names and f"val_{m}" in names for m in PAIRED):
        raise RegbenchError(f"{path}: no train/val pair of loss or accuracy columns (found: "
                            f"{found}); expected e.g. train_loss,val_loss or acc,val_acc")
