"""Figures of an experiment, drawn from its run folders alone (matplotlib, Agg, PNG).

Each ``*_figure`` function is pure: data in, a ``matplotlib.figure.Figure`` out (no pyplot
state), so tests can inspect axes, lines and scales. ``make_plots`` loads run folders and
writes every figure to ``results/<name>/plots/``:

- ``curves__<point>.png`` learning curves: train and val on the same axes (loss, and the main
  metric), mean over seeds with a ±1 std band, the best epoch (lowest mean val loss) marked;
- ``validation__<param>.png`` for each swept parameter: val (and train) metric against the value,
  error bars over seeds, best value starred, log axis when the values span a decade or more;
- ``gap.png`` train − val gap per recipe and sweep point, coloured by verdict;
- ``weights.png`` final weight histograms per recipe (L1 piles weights at 0, L2 shrinks them);
- ``sparsity.png`` fraction of near-zero weights per epoch, when a recipe induces sparsity;
- ``sensitivity__<recipe>.png`` in a `regbench tune` folder: every trial's val metric against
  each searched value (regbench.report.tuning).

Diverged runs are drawn up to their last finite epoch and named in the captions.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from regbench.analysis.compare import build_comparison, chosen_rows
from regbench.analysis.headline import level_text
from regbench.report.plot_data import (
    Series,
    aggregate,
    finite,
    gap_metric,
    gap_unit,
    load_runs,
    points_of,
    sweep_series,
)
from regbench.report.tuning import read_tuning, sensitivity_figure
from regbench.results import atomic_write_bytes, check_results_folder
from regbench.vocabulary import NEAR_ZERO, PLOTS_DIR, lower_is_better

TRAIN_COLOR, VAL_COLOR = "#1f77b4", "#d62728"
VERDICT_COLORS = {"ok": "#2ca02c", "overfitting": "#d62728", "underfitting": "#ff7f0e",
                  "diverged": "#9467bd", "": "#7f7f7f"}
DPI = 90


@dataclass
class Plot:
    kind: str          # forest | curves | validation | gap | weights | sparsity | sensitivity
    title: str
    path: Path
    caption: str


def _figure(width: float = 10.0, height: float = 4.0, ncols: int = 1):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = figure.subplots(1, ncols, squeeze=False)[0]
    return figure, list(axes)


def _log_if_wide(ax, values, axis: str = "y") -> None:
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if positive and min(positive) > 0 and max(positive) / min(positive) >= 100:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def learning_curves_figure(title: str, frames: list, metric: Optional[str],
                           diverged_at: Optional[list[float]] = None):
    """Train and val per panel (loss, then ``metric``), mean ± std over the seeds' frames.

    ``diverged_at``: the epochs where runs of this point diverged, drawn as purple lines.
    """
    diverged_at = sorted(set(diverged_at or []))
    from matplotlib.ticker import MaxNLocator

    panels = ["loss"] + ([metric] if metric and any(f"val_{metric}" in f for f in frames) else [])
    figure, axes = _figure(5.2 * len(panels), 3.6, len(panels))
    val_loss = aggregate(frames, "val_loss")
    best = val_loss.epochs[int(np.argmin(val_loss.mean))] if len(val_loss.epochs) else None
    for ax, name in zip(axes, panels):
        drawn = []
        for split, color in (("train", TRAIN_COLOR), ("val", VAL_COLOR)):
            series = aggregate(frames, f"{split}_{name}")
            if not len(series.epochs):
                continue
            ax.plot(series.epochs, series.mean, color=color, marker="o" if len(series.epochs) < 12
                    else None, markersize=3, label=f"{split} (mean of {series.runs})")
            ax.fill_between(series.epochs, series.mean - series.std, series.mean + series.std,
                            color=color, alpha=0.2, linewidth=0)
            drawn.extend(series.mean)
        if best is not None:
            ax.axvline(best, color="#555555", linestyle="--", linewidth=1,
                       label=f"best epoch {best:g} (lowest val loss)")
        for epoch in diverged_at:
            ax.axvline(epoch, color=VERDICT_COLORS["diverged"], linewidth=1.5,
                       label=f"diverged at epoch {epoch:g}")
        if not drawn:
            ax.text(0.5, 0.5, f"no finite {name} values", transform=ax.transAxes,
                    ha="center", va="center", color=VERDICT_COLORS["diverged"])
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.set_title(f"{title}: {name}")
        if name == "loss" or name in ("mse", "mae"):
            _log_if_wide(ax, drawn)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if diverged_at:
        figure.suptitle("diverged runs are drawn up to their last finite epoch",
                        color=VERDICT_COLORS["diverged"], fontsize=9)
    return figure


def overlay_figure(frames_by_point: dict[str, list], metric: Optional[str]):
    """Every recipe's validation curves on shared axes (loss, then ``metric``), mean over
    seeds: unlike the per-recipe plots, these can be compared by eye."""
    from matplotlib.ticker import MaxNLocator

    panels = ["loss"] + ([metric] if metric else [])
    figure, axes = _figure(5.6 * len(panels), 3.8, len(panels))
    for ax, name in zip(axes, panels):
        drawn = []
        for index, (point, frames) in enumerate(frames_by_point.items()):
            series = aggregate(frames, f"val_{name}")
            if len(series.epochs):
                ax.plot(series.epochs, series.mean, color=f"C{index % 10}",
                        linestyle="-" if index < 10 else "--", label=point)
                drawn.extend(series.mean)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"val {name}")
        ax.set_title(f"val {name}, every recipe (mean over seeds)")
        if name == "loss" or name in ("mse", "mae"):
            _log_if_wide(ax, drawn)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=7)
    return figure


def validation_curve_figure(param: str, series: list[Series], metric: str, higher: bool,
                            baseline: Optional[float] = None):
    """Val metric (error bars over seeds) and train metric (dashed) against a swept value, a
    tick at every swept value, and the baseline's val metric as a reference line."""
    figure, (ax,) = _figure(6.4, 4.0)
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool)
                  for s in series for x in s.x)
    labels = sorted({x for s in series for x in s.x}, key=str) if not numeric else []
    for index, s in enumerate(series):
        color = f"C{index}"
        xs = list(s.x) if numeric else [labels.index(x) for x in s.x]
        ax.errorbar(xs, s.val_mean, yerr=s.val_std, color=color, marker="o", capsize=3,
                    label=f"{s.label} val")
        if s.train_mean is not None:
            ax.plot(xs, s.train_mean, color=color, linestyle="--", alpha=0.7,
                    label=f"{s.label} train")
        scored = [i for i, v in enumerate(s.val_mean) if math.isfinite(v)]
        if scored:
            best = (max if higher else min)(scored, key=lambda i: s.val_mean[i])
            ax.plot([xs[best]], [s.val_mean[best]], marker="*", markersize=16, color=color,
                    linestyle="none", markeredgecolor="black",
                    label=f"best {param}={s.x[best]:g}" if numeric else f"best {s.x[best]}")
    if numeric:
        values = [x for s in series for x in s.x]
        positive = [x for x in values if x > 0]
        if positive and max(positive) / min(positive) >= 10:
            if min(values) <= 0:
                ax.set_xscale("symlog", linthresh=min(positive))
            else:
                ax.set_xscale("log")
        swept = sorted(set(values))
        ax.set_xticks(swept, [f"{x:g}" for x in swept], fontsize=8,
                      rotation=45 if len(swept) > 6 else 0)
        ax.minorticks_off()
    else:
        ax.set_xticks(range(len(labels)), [str(x) for x in labels])
    if baseline is not None and math.isfinite(baseline):
        ax.axhline(baseline, color="black", linestyle=":", linewidth=1.2,
                   label=f"baseline val ({baseline:.4g})")
    ax.set_xlabel(param)
    ax.set_ylabel(f"{metric} (final epoch)")
    ax.set_title(f"validation curve: {metric} vs {param}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


DELTA_COLORS = {"better": "#2ca02c", "worse": "#d62728", "equivalent": "#1f77b4",
                "inconclusive": "#7f7f7f"}


def forest_figure(comparison):
    """Δ vs baseline per recipe and sweep point with its interval, a zero line, verdict
    colours: the one picture that answers "which regularizer helps, and how sure are we"."""
    rows = [r for r in comparison.rows if r["recipe"] != "baseline" and math.isfinite(r["diff"])]
    if not rows:
        return None
    figure, (ax,) = _figure(8.0, max(2.2, 0.38 * len(rows) + 1.3))
    for y, row in enumerate(reversed(rows)):
        colour = DELTA_COLORS.get(row["verdict"] or "inconclusive", "#7f7f7f")
        low, high = row["diff_low"], row["diff_high"]
        if math.isfinite(low) and math.isfinite(high):
            ax.plot([low, high], [y, y], color=colour, linewidth=2.5, solid_capstyle="butt")
        ax.plot([row["diff"]], [y], "o", color=colour, markersize=7)
    labels = [r["point"].replace("__", " ") + (" ★" if r.get("best_of_sweep") else "")
              for r in reversed(rows)]
    ax.set_yticks(range(len(rows)), labels, fontsize=9)
    ax.axvline(0, color="black", linewidth=1)
    if comparison.min_effect:        # the equivalence margin ±δ
        for edge in (-comparison.min_effect, comparison.min_effect):
            ax.axvline(edge, color=DELTA_COLORS["equivalent"], linewidth=1, linestyle="--")
    better = "lower" if lower_is_better(comparison.metric) else "higher"
    ax.set_xlabel(f"Δ test {comparison.metric}, recipe − baseline ({better} is better): "
                  f"mean, {level_text(comparison.level)} interval")
    from matplotlib.lines import Line2D

    seen = {r["verdict"] or "inconclusive" for r in rows}
    ax.legend(handles=[Line2D([], [], color=c, marker="o", linewidth=2.5, label=v)
                       for v, c in DELTA_COLORS.items() if v in seen],
              fontsize=8, loc="best")
    ax.grid(axis="x", alpha=0.3)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    return figure


def gap_figure(points: list[dict[str, Any]], label: str):
    """Bars of the train − val gap per recipe/point, error bars over seeds, verdict colours."""
    figure, (ax,) = _figure(max(5.0, 0.9 * len(points) + 2), 3.8)
    xs = range(len(points))
    heights = [p["gap"] if math.isfinite(p["gap"]) else 0.0 for p in points]
    ax.bar(xs, heights, yerr=[p["gap_std"] if math.isfinite(p["gap_std"]) else 0 for p in points],
           color=[VERDICT_COLORS.get(p["verdict"], "#7f7f7f") for p in points], capsize=3)
    for x, p in zip(xs, points):
        if not math.isfinite(p["gap"]):
            ax.annotate(p["verdict"] or "no data", (x, 0), ha="center", va="bottom", fontsize=8,
                        rotation=90, color=VERDICT_COLORS.get(p["verdict"], "#333333"))
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(list(xs), [p["label"] for p in points], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"train − val {label}")
    ax.set_title("generalization gap per recipe (colour: verdict)")
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=v) for v, c in VERDICT_COLORS.items()
               if v and v in {p["verdict"] for p in points}]
    if handles:
        ax.legend(handles=handles, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return figure


def weights_figure(weights: dict[str, np.ndarray], threshold: float = NEAR_ZERO):
    """Overlaid histograms of final weights per recipe, log count axis, shared bins."""
    figure, (ax,) = _figure(7.0, 4.0)
    everything = np.concatenate([np.abs(w) for w in weights.values()])
    reach = float(np.quantile(everything, 0.999)) if everything.size else 1.0
    bins = np.linspace(-reach, reach, 81) if reach > 0 else 81
    for index, (name, values) in enumerate(weights.items()):
        near_zero = float(np.mean(np.abs(values) < threshold)) if values.size else math.nan
        ax.hist(values, bins=bins, histtype="step", linewidth=1.5,
                color=f"C{index}", label=f"{name} ({100 * near_zero:.0f}% |w|<{threshold:g})")
    ax.set_yscale("log")
    ax.set_xlabel("weight value")
    ax.set_ylabel("count (log)")
    ax.set_title("final weights per recipe")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure


def sparsity_figure(frames_by_point: dict[str, list]):
    """Fraction of near-zero weights per epoch, mean over seeds, one line per point."""
    figure, (ax,) = _figure(7.0, 4.0)
    for index, (name, frames) in enumerate(frames_by_point.items()):
        series = aggregate(frames, "sparsity")
        if len(series.epochs):
            ax.plot(series.epochs, series.mean, color=f"C{index % 10}", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"sparsity (fraction |w| < {NEAR_ZERO:g})")
    ax.set_title("weight sparsity during training")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure


# ----------------------------------------------------------------------------- files

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)[:120]


def _save(figure, path: Path) -> Path:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def make_plots(results_dir: Path, comparison=None) -> list[Plot]:
    """Write every figure of an experiment under ``plots/``; return them in report order."""
    results_dir = Path(results_dir)
    check_results_folder(results_dir)   # plots/ must not be a link elsewhere: it is cleaned
    runs = load_runs(results_dir)
    summaries = [run.summary for run in runs]
    comparison = comparison or build_comparison(summaries)
    metric, out, plots = comparison.metric, results_dir / PLOTS_DIR, []
    earlier = set(out.glob("*.png")) if out.is_dir() else set()
    forest = forest_figure(comparison)
    if forest is not None:
        plots.append(Plot("forest", f"Δ test {metric} vs baseline",
                          _save(forest, out / "forest.png"),
                          "each recipe and sweep point: mean paired difference from baseline "
                          f"over seeds (dot) and its {level_text(comparison.level)} interval "
                          "(bar; all of them together 95%, Bonferroni); green better, red worse"
                          + (f", blue equivalent (inside ±{comparison.min_effect:g}, dashed)"
                             if comparison.min_effect else "")
                          + ", grey inconclusive: each verdict is what its bar shows"))
    by_point = defaultdict(list)
    for run in runs:
        by_point[run.point].append(run)
    order = [row["point"] for row in comparison.rows if row["point"] in by_point]
    for point in order + [p for p in by_point if p not in order]:
        group = by_point[point]
        frames = [run.frame for run in group if run.frame is not None and len(run.frame)]
        if not frames:
            continue
        diverged = [diverged_epoch(run) for run in group
                    if run.summary.get("status") == "diverged"]
        figure = learning_curves_figure(point.replace("__", " "), frames, metric,
                                        [e for e in diverged if e is not None])
        path = _save(figure, out / f"curves__{_safe(point)}.png")
        caption = (f"{len(frames)} seed(s); band: ±1 std over seeds; dashed line: epoch of the "
                   "lowest mean val loss" + (f"; {len(diverged)} diverged" if diverged else ""))
        plots.append(Plot("curves", f"learning curves: {point.replace('__', ' ')}", path, caption))
    shown = [p for p in (row["point"] for row in chosen_rows(comparison).values())
             if p in by_point] or order
    overlaid = {p.replace("__", " "): [r.frame for r in by_point[p] if r.frame is not None
                                        and len(r.frame)] for p in shown}
    if sum(map(len, overlaid.values())):
        path = _save(overlay_figure(overlaid, metric), out / "curves__all.png")
        swept = len(shown) < len(order)
        first = 1 if plots and plots[0].kind == "forest" else 0   # after the forest plot
        plots.insert(first, Plot(
            "curves", "validation curves of every recipe", path,
            "mean over seeds, shared axes" + ("; for a sweep, its best point by validation"
                                              if swept else "")))
    higher = not lower_is_better(metric)
    baseline = next((row[f"val_{metric}"] for row in comparison.rows
                     if row["point"] == "baseline"), None)
    for param, series in sweep_series(summaries, metric).items():
        figure = validation_curve_figure(param, series, metric, higher, baseline)
        path = _save(figure, out / f"validation__{_safe(param)}.png")
        plots.append(Plot("validation", f"validation curve: {param}", path,
                          f"val {metric} at the final epoch, mean ± std over seeds; dashed: "
                          f"train; dotted: the baseline's val {metric}; ★ best value by "
                          "validation"))
    points = points_of(comparison, runs)
    if points:
        label = gap_metric(summaries)
        path = _save(gap_figure(points, label + gap_unit(label)), out / "gap.png")
        plots.append(Plot("gap", f"train − val {label} gap", path,
                          "mean over seeds (error bar: std); colour: the worst verdict among the seeds"))
    weights = _weights_per_recipe(comparison, by_point)
    if weights:
        path = _save(weights_figure(weights), out / "weights.png")
        plots.append(Plot("weights", "weight histograms", path, weights_caption(comparison)))
    tuning = read_tuning(results_dir)
    for recipe, record in (tuning or {}).get("recipes", {}).items():
        if record["trials"]:
            path = _save(sensitivity_figure(recipe, record, tuning),
                         out / f"sensitivity__{_safe(recipe)}.png")
            plots.append(Plot("sensitivity", f"sensitivity: {recipe}", path, ""))
    # runs record whether a regularizer of theirs is meant to zero weights (summary.json)
    sparse = {p for p, group in by_point.items()
              if any(r.summary.get("sparsifying") for r in group)}
    if sparse:
        frames = {p.replace("__", " "): [r.frame for r in by_point[p] if r.frame is not None]
                  for p in order if p in sparse or p == "baseline"}
        path = _save(sparsity_figure(frames), out / "sparsity.png")
        plots.append(Plot("sparsity", "weight sparsity", path,
                          f"mean over seeds of the fraction of weights with |w| < {NEAR_ZERO:g}"))
    # a plot of a recipe no longer in the results must not linger; removed only now, so that
    # a write that fails (a full disk, a read-only folder) leaves the earlier figures whole
    for old in earlier - {plot.path for plot in plots}:
        old.unlink(missing_ok=True)
    return plots


def diverged_epoch(run) -> Optional[float]:
    """First epoch with a non-finite loss (else the last logged epoch) of a diverged run."""
    frame = run.frame
    if frame is None or not len(frame):
        return None
    columns = [c for c in ("objective", "train_loss", "val_loss") if c in frame]
    bad = ~np.isfinite(frame[columns].to_numpy(float)).all(axis=1)
    return float(frame["epoch"][bad].iloc[0]) if bad.any() else float(frame["epoch"].iloc[-1])


def weights_caption(comparison) -> str:
    """What the weight histograms show, naming for each swept recipe the one point shown."""
    points: dict[str, int] = defaultdict(int)
    for row in comparison.rows:
        points[row["recipe"]] += 1
    swept = [f"{recipe}: {best['point'].replace('__', ' ')} of its {points[recipe]} points"
             for recipe, best in comparison.best_points.items() if points[recipe] > 1]
    shown = ("one histogram per recipe; for a sweep, its best point by validation only ("
             + "; ".join(swept) + ")") if swept else "one histogram per recipe"
    return (f"final penalized weights, {shown} (up to 50,000 sampled per run, all seeds; the "
            "central 99.9% of |w| shown); L1 piles weights at zero, L2 shrinks them smoothly")


def _weights_per_recipe(comparison, by_point) -> dict[str, np.ndarray]:
    """One histogram per recipe: its best sweep point (by validation) or its only point (the
    caption names the points shown: weights_caption)."""
    chosen: dict[str, str] = {}
    for row in comparison.rows:  # sorted best first, so the first point of a recipe wins
        chosen.setdefault(row["recipe"], row["point"])
    for recipe, best in comparison.best_points.items():
        chosen[recipe] = best["point"]
    weights = {}
    for recipe, point in chosen.items():
        arrays = [run.weights for run in by_point.get(point, []) if run.weights is not None]
        arrays = [finite(a) for a in arrays if a.size]
        if arrays and sum(a.size for a in arrays):
            weights[point.replace("__", " ")] = np.concatenate(arrays)
    return weights
