"""Data behind the figures, read from run folders alone (summary.json, metrics.csv,
weights.npy) and reduced over seeds. Nothing here draws."""
from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

import numpy as np

from regbench.analysis.diagnose import RATES
from regbench.results import load_summaries, task_of
from regbench.vocabulary import METRICS_FILE, WEIGHTS_FILE

Metrics = dict[str, np.ndarray]         # metrics.csv: column name -> float values per epoch


@dataclass
class RunData:
    summary: dict[str, Any]
    metrics: Optional[Metrics]          # metrics.csv's columns (read_metrics), or None
    weights: Optional[np.ndarray]       # sample of final penalized weights, or None

    @property
    def point(self) -> str:
        return self.summary.get("point_id") or self.summary.get("recipe", "?")

    @cached_property
    def frame(self):
        """metrics.csv as a pandas DataFrame (float columns), or None; built on first use, so
        that the report, which needs only the columns, never imports pandas (as long to
        import as two of its figures take to draw)."""
        if self.metrics is None:
            return None
        import pandas as pd

        return pd.DataFrame(self.metrics)


def rows(metrics) -> int:
    """Epochs logged in a metrics.csv (a Metrics mapping or a DataFrame), 0 for None."""
    return 0 if metrics is None or "epoch" not in metrics else len(metrics["epoch"])


def read_metrics(path: Path) -> Optional[Metrics]:
    """A metrics.csv as float columns, a cell that is not a number as NaN (what
    ``pandas.to_numeric(errors="coerce")`` makes of it); None when the file is missing,
    unreadable, empty or has a row longer than its header. A repeated column name keeps its
    first column."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            lines = [row for row in csv.reader(handle) if row]
    except (OSError, UnicodeError, csv.Error):
        return None
    if not lines:
        return None
    header, body = lines[0], lines[1:]
    if any(len(row) > len(header) for row in body):
        return None
    columns: Metrics = {}
    for index, name in enumerate(header):
        if name in columns:
            continue
        values = columns[name] = np.full(len(body), np.nan)
        for row_index, row in enumerate(body):
            try:
                values[row_index] = float(row[index])
            except (IndexError, ValueError):     # a short row, or not a number
                pass
    return columns


@dataclass
class Curve:
    epochs: np.ndarray
    mean: np.ndarray
    std: np.ndarray                     # sample std over seeds (0 with one seed)
    runs: int                           # seeds that contributed


@dataclass
class Series:
    """One line of a validation curve: a recipe (and the other swept values) across a parameter."""

    label: str
    x: list[Any]
    val_mean: list[float]
    val_std: list[float]
    train_mean: Optional[list[float]]


def finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float).ravel()
    return values[np.isfinite(values)]


def load_runs(results_dir: Path) -> list[RunData]:
    """Every finished run folder with its metrics and weights; unreadable parts become None."""
    runs = []
    for summary in load_summaries(results_dir):
        folder = Path(summary["_dir"])
        try:
            weights = np.load(folder / WEIGHTS_FILE, allow_pickle=False)
        except (OSError, ValueError):
            weights = None
        runs.append(RunData(summary, read_metrics(folder / METRICS_FILE), weights))
    return runs


def aggregate(frames: list, column: str) -> Curve:
    """Mean and std per epoch over the frames (seeds: Metrics or DataFrames) that logged a
    finite value there."""
    parts = [f for f in frames if f is not None and column in f]
    if not parts:
        return Curve(np.array([]), np.array([]), np.array([]), 0)
    # numpy, not a pandas groupby: a sweep's report calls this a few times per point
    epochs = np.concatenate([np.asarray(f["epoch"], dtype=float) for f in parts])
    values = np.concatenate([np.asarray(f[column], dtype=float) for f in parts])
    keep = np.isfinite(epochs) & np.isfinite(values)
    epochs, values = epochs[keep], values[keep]
    unique, group = np.unique(epochs, return_inverse=True)
    count = np.bincount(group, minlength=len(unique))
    mean = np.bincount(group, values, len(unique)) / np.maximum(count, 1)
    squares = np.bincount(group, (values - mean[group]) ** 2, len(unique))
    std = np.sqrt(squares / np.maximum(count - 1, 1)) * (count > 1)   # one seed: 0
    return Curve(unique, mean, std, len(parts))


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def sweep_series(summaries: list[dict[str, Any]], metric: str) -> dict[str, list[Series]]:
    """For each swept parameter: one series per recipe and combination of the other values."""
    done = [s for s in summaries if s.get("status") == "completed" and s.get("sweep")]
    params = list(dict.fromkeys(k for s in done for k in s["sweep"]))
    out: dict[str, list[Series]] = {}
    for param in params:
        groups: dict[str, dict[Any, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for s in done:
            if param not in s["sweep"]:
                continue
            others = ", ".join(f"{k}={v}" for k, v in s["sweep"].items() if k != param)
            label = s.get("recipe", "?") + (f" ({others})" if others else "")
            groups[label][_hashable(s["sweep"][param])].append(s)
        series = []
        for label, by_value in groups.items():
            if len(by_value) < 2:
                continue
            xs = sorted(by_value, key=lambda v: (isinstance(v, str), v))
            val = [_mean_std([_num(s.get(f"val_{metric}")) for s in by_value[x]]) for x in xs]
            train = [_mean_std([_num(s.get(f"train_{metric}")) for s in by_value[x]])[0]
                     for x in xs]
            series.append(Series(label, xs, [v[0] for v in val], [v[1] for v in val],
                                 train if any(math.isfinite(t) for t in train) else None))
        if series:
            out[param] = series
    return out


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) else str(value)


def gap_metric(summaries: list[dict[str, Any]]) -> str:
    return "accuracy" if task_of(summaries) == "classification" else "r2"


def gap_scale(metric: str) -> float:
    """What a gap on ``metric`` is multiplied by to be shown: rates (accuracy, f1, …) in
    percentage points, the unit the diagnosis quotes ("gap 7.4 points"), so that a gap reads
    the same in the table, the gap plot and the advice; anything else in its own unit."""
    return 100.0 if metric in RATES else 1.0


def gap_unit(metric: str) -> str:
    """The unit to append to a gap's label: " (points)" for a rate, else nothing."""
    return " (points)" if metric in RATES else ""


def points_of(comparison, runs: list[RunData]) -> list[dict[str, Any]]:
    """Gap (mean, std over seeds; rates in points, see ``gap_scale``) and verdict per
    comparison row, in the table's order."""
    metric = gap_metric([r.summary for r in runs])
    scale = gap_scale(metric)
    by_point = defaultdict(list)
    for run in runs:
        by_point[run.point].append(run.summary)
    points = []
    for row in comparison.rows:
        group = by_point.get(row["point"], [])
        gaps = [scale * (_num(s.get(f"train_{metric}")) - _num(s.get(f"val_{metric}")))
                for s in group if s.get("status") == "completed"]
        mean, std = _mean_std(gaps)
        verdicts = [v.get("verdict") if isinstance(v, dict) else v
                    for v in (s.get("verdict") for s in group)]
        verdicts = [v for v in verdicts if v]
        worst = next((v for v in ("diverged", "overfitting", "underfitting", "ok")
                      if v in verdicts), "")
        points.append({"label": row["point"].replace("__", " "), "gap": mean, "gap_std": std,
                       "verdict": worst})
    return points
