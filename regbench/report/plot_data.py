"""Data behind the figures, read from run folders alone (summary.json, metrics.csv,
weights.npy) and reduced over seeds. Nothing here draws."""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from regbench.analysis.diagnose import RATES
from regbench.results import load_summaries, task_of
from regbench.vocabulary import METRICS_FILE, WEIGHTS_FILE


@dataclass
class RunData:
    summary: dict[str, Any]
    frame: Any                          # pandas DataFrame of metrics.csv, or None
    weights: Optional[np.ndarray]       # sample of final penalized weights, or None

    @property
    def point(self) -> str:
        return self.summary.get("point_id") or self.summary.get("recipe", "?")


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
    import pandas as pd

    runs = []
    for summary in load_summaries(results_dir):
        folder = Path(summary["_dir"])
        frame = weights = None
        try:
            frame = pd.read_csv(folder / METRICS_FILE)
            frame = frame.apply(pd.to_numeric, errors="coerce")
        except (OSError, ValueError, pd.errors.EmptyDataError):
            frame = None
        try:
            weights = np.load(folder / WEIGHTS_FILE, allow_pickle=False)
        except (OSError, ValueError):
            weights = None
        runs.append(RunData(summary, frame, weights))
    return runs


def aggregate(frames: list, column: str) -> Curve:
    """Mean and std per epoch over the frames (seeds) that logged a finite value there."""
    import pandas as pd

    parts = [f[["epoch", column]] for f in frames if f is not None and column in f]
    if not parts:
        return Curve(np.array([]), np.array([]), np.array([]), 0)
    data = pd.concat(parts)
    data = data[np.isfinite(data[column]) & np.isfinite(data["epoch"])]
    grouped = data.groupby("epoch")[column]
    std = grouped.std(ddof=1).fillna(0.0)
    return Curve(grouped.mean().index.to_numpy(float), grouped.mean().to_numpy(float),
                 std.to_numpy(float), len(parts))


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
