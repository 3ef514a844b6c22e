"""Figures of an experiment, drawn from its run folders alone (matplotlib, Agg, PNG).

Each ``*_figure`` function is pure: data in, a ``matplotlib.figure.Figure`` out (no pyplot
state), so tests can inspect axes, lines and scales. ``make_plots`` loads run folders and
writes every figure to ``results/<name>/plots/``:

- ``curves.png`` learning curves as small multiples, one column per recipe and sweep point:
  train and val on the same axes (loss, and the main metric below it), mean over seeds with a
  ±1 std band, the best epoch (lowest mean val loss) marked; shared axes;
- ``curves__all.png`` every recipe's val curves on one pair of axes;
- ``validation__<param>.png`` for each swept parameter: val (and train) metric against the value,
  error bars over seeds, best value starred, log axis when the values span a decade or more;
- ``gap.png`` train − val gap per recipe and sweep point, coloured by verdict;
- ``weights.png`` final weight histograms per recipe (L1 piles weights at 0, L2 shrinks them);
- ``sparsity.png`` fraction of near-zero weights per epoch, when a recipe induces sparsity;
- ``sensitivity__<recipe>.png`` in a `regbench tune` folder: every trial's val metric against
  each searched value (regbench.report.tuning).

Diverged runs are drawn up to their last finite epoch and named in the captions.

A report should cost a glance next to its run: one grid rather than a file per point, few
ticks, and no layout engine where margins are known (drawing tick labels is most of a
figure's cost, and a layout engine draws them twice).
"""
from __future__ import annotations

import gc
import math
import re
from collections import defaultdict
from contextlib import contextmanager
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
    rows,
    sweep_series,
)
from regbench.report.tuning import read_tuning, sensitivity_figure
from regbench.results import atomic_write_bytes, check_results_folder
from regbench.vocabulary import NEAR_ZERO, PLOTS_DIR, lower_is_better

TRAIN_COLOR, VAL_COLOR = "#1f77b4", "#d62728"
VERDICT_COLORS = {"ok": "#2ca02c", "overfitting": "#d62728", "underfitting": "#ff7f0e",
                  "diverged": "#9467bd", "": "#7f7f7f"}
DPI = 90
# a title sits on top of its axes: matplotlib's default (None) measures every axis's tick
# labels at each draw to lift titles over top tick labels, which these figures never have
# (a sixth of the time drawing the learning-curves grid takes)
STYLE = {"axes.titley": 1.0}


@dataclass
class Plot:
    kind: str          # forest | curves | validation | gap | weights | sparsity | sensitivity
    title: str
    path: Path
    caption: str


# margins in inches (left, right, top, bottom, between panels) of a figure whose labels are
# known in advance: tick labels of numbers, an axis label, a one-line title
MARGINS = (0.75, 0.15, 0.35, 0.55, 0.85)


def _figure(width: float = 10.0, height: float = 4.0, ncols: int = 1,
            margins: Optional[tuple[float, ...]] = None):
    """A figure of ``ncols`` panels in a row. With ``margins`` (inches, as ``MARGINS``) they
    are fixed; without, matplotlib's constrained layout fits labels of any length, at the
    price of measuring every tick label once more (up to a third of the figure's time)."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI,
                    layout=None if margins else "constrained")
    spacing = {}
    if margins:
        left, right, top, bottom, between = margins
        panel = (width - left - right - (ncols - 1) * between) / ncols
        spacing = dict(left=left / width, right=1 - right / width, top=1 - top / height,
                       bottom=bottom / height, wspace=between / panel)
    with rc_context(STYLE):
        axes = figure.subplots(1, ncols, squeeze=False, gridspec_kw=spacing)[0]
    return figure, list(axes)


def _widest(texts: list[str], size: float) -> float:
    """Inches the widest of ``texts`` spans at ``size`` points (matplotlib's font metrics):
    a margin sized before drawing, where a layout engine would draw every label twice."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    font = FontProperties(size=size)
    return max((text_to_path.get_text_width_height_descent(text, font, ismath=False)[0]
                for text in texts), default=0.0) / 72


def _few_ticks(axis, nbins: int = 0, integer: bool = False) -> None:
    """At most ``nbins`` (default ``TICKS``) intervals between ticks on ``axis``: a tick and
    its label are most of what a figure costs to draw. A log scale set later replaces it."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(nbins=nbins or TICKS, integer=integer))


def _log_if_wide(ax, values, axis: str = "y") -> None:
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if positive and min(positive) > 0 and max(positive) / min(positive) >= 100:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


TICKS = 5                      # at most this many intervals between ticks on an axis of numbers
GRID_COLUMNS = 4               # points per row of the learning-curves grid, then it wraps
PANEL = (2.8, 1.7)             # inches per panel of that grid (width, height)
TITLE_CHARACTERS = 38          # what a panel's width holds on one line at 9 points


def _panel_curves(ax, frames: list, name: str, best: Optional[float],
                  diverged_at: list[float]) -> list[float]:
    """One panel of the grid: train and val ``name``, mean ± std over the seeds' frames, the
    best epoch dashed, each divergence a purple line; returns the values drawn."""
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
                ha="center", va="center", color=VERDICT_COLORS["diverged"], fontsize=8)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    return drawn


def _curves_title(point: str, best: Optional[float], seeds: Optional[int],
                  diverged_at: list[float]) -> str:
    """A panel's title: the point, its best epoch, its seeds (when they differ between
    points) and where it diverged; parts after the first on a second line when long."""
    parts = [point.replace("__", " ")]
    if best is not None:
        parts.append(f"best epoch {best:g}")
    if seeds is not None:
        parts.append(f"{seeds} seed(s)")
    if diverged_at:
        parts.append("diverged at epoch " + ", ".join(f"{e:g}" for e in diverged_at))
    title = " · ".join(parts)
    return title if len(title) <= TITLE_CHARACTERS else parts[0] + "\n" + " · ".join(parts[1:])


def learning_curves_figure(frames_by_point: dict[str, list], metric: Optional[str],
                           diverged_at: Optional[dict[str, list[float]]] = None):
    """Small multiples of every point's learning curves: one column per point (wrapping after
    ``GRID_COLUMNS``), its loss above its ``metric``, train and val mean ± std over the seeds'
    frames, the best epoch (lowest mean val loss) dashed and in the title. At least one
    point.

    Every panel shares the epoch axis and each row kind (loss, metric) its y axis, so points
    compare at a glance; a point with a diverged run keeps its own y axis, since its losses
    would flatten everyone else's. ``diverged_at``: per point, the epochs where its runs
    diverged, drawn as purple lines and named in its title.
    """
    import matplotlib.lines as mlines
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    diverged_at = {p: sorted(set(e)) for p, e in (diverged_at or {}).items() if e}
    points = list(frames_by_point)
    kinds = ["loss"] + ([metric] if metric and any(
        f"val_{metric}" in f for frames in frames_by_point.values() for f in frames) else [])
    best = {}
    for point, frames in frames_by_point.items():
        val_loss = aggregate(frames, "val_loss")
        best[point] = val_loss.epochs[int(np.argmin(val_loss.mean))] if len(val_loss.epochs) \
            else None
    uneven = len({len(frames) for frames in frames_by_point.values()}) > 1
    titles = {p: _curves_title(p, best[p], len(frames_by_point[p]) if uneven else None,
                               diverged_at.get(p, [])) for p in points}
    handles = [mlines.Line2D([], [], color=TRAIN_COLOR, label="train: mean ± std over seeds"),
               mlines.Line2D([], [], color=VAL_COLOR, label="val: mean ± std over seeds"),
               mlines.Line2D([], [], color="#555555", linestyle="--",
                             label="best epoch (lowest mean val loss)")]
    if diverged_at:
        handles.append(mlines.Line2D([], [], color=VERDICT_COLORS["diverged"],
                                     label="diverged (drawn to its last finite epoch)"))

    cols = max(1, min(len(points), GRID_COLUMNS))
    blocks = max(1, math.ceil(len(points) / cols))
    legend_cols = 1 if cols == 1 else 2 if cols == 2 else len(handles)
    # fixed margins in inches, not a layout engine: that would measure every tick label of
    # every panel once more, as long as drawing them. Room between columns for the tick
    # labels of a panel with its own scale; above each panel for its title.
    lines = max(title.count("\n") + 1 for title in titles.values())
    apart = any(point in diverged_at for point in points[1:])
    left, right, bottom, wspace = 0.75, 0.15, 0.5, 0.6 if apart else 0.3
    hspace = 0.2 + 0.16 * lines
    top = 0.16 + 0.16 * lines + 0.17 * math.ceil(len(handles) / legend_cols)
    rows = blocks * len(kinds)
    width = left + right + cols * PANEL[0] + (cols - 1) * wspace
    height = top + bottom + rows * PANEL[1] + (rows - 1) * hspace
    figure = Figure(figsize=(width, height), dpi=DPI)
    spec = figure.add_gridspec(rows, cols, left=left / width, right=1 - right / width,
                               top=1 - top / height, bottom=bottom / height,
                               wspace=wspace / PANEL[0], hspace=hspace / PANEL[1])
    panels = {}                                 # (row, column) -> axes, none in empty slots
    with rc_context(STYLE):
        for index in range(len(points)):
            block, col = divmod(index, cols)
            for k in range(len(kinds)):
                row = block * len(kinds) + k
                panels[row, col] = figure.add_subplot(spec[row, col])

    # drawn apart, shared afterwards: each artist added to an axes shared with a dozen
    # others would rescale all of them
    groups: dict[str, list] = defaultdict(list)     # row kind -> its panels on one y scale
    for index, point in enumerate(points):
        block, col = divmod(index, cols)
        own = point in diverged_at
        for k, name in enumerate(kinds):
            ax = panels[block * len(kinds) + k, col]
            drawn = _panel_curves(ax, frames_by_point[point], name, best[point],
                                  diverged_at.get(point, []))
            if own:
                _few_ticks(ax.yaxis, 4)
                if name in ("loss", "mse", "mae"):
                    _log_if_wide(ax, drawn)
            else:
                groups[name].append((ax, drawn))
            if col == 0 or own or points[index - 1] in diverged_at:
                ax.set_ylabel(name, fontsize=9)
            else:                               # the same scale as its left neighbour's
                ax.tick_params(labelleft=False)
        panels[block * len(kinds), col].set_title(
            titles[point], fontsize=9, color=VERDICT_COLORS["diverged"] if own else "black")
    # the panels that share an axis share its locator too
    first = panels[0, 0]
    _few_ticks(first.xaxis, integer=True)
    for (row, col), ax in panels.items():
        if ax is not first:
            ax.sharex(first)
        ax.tick_params(labelbottom=(row + 1, col) not in panels)   # under each column's last
    for name, members in groups.items():
        anchor = members[0][0]
        _few_ticks(anchor.yaxis, 4)
        for ax, _ in members[1:]:
            ax.sharey(anchor)
        if name in ("loss", "mse", "mae"):
            _log_if_wide(anchor, [value for _, drawn in members for value in drawn])
        anchor.autoscale_view(scalex=False)     # over every panel of the group
    first.autoscale_view(scaley=False)
    figure.supxlabel("epoch", fontsize=9, y=0.12 / height, va="bottom")
    figure.legend(handles=handles, loc="upper center", ncols=legend_cols, fontsize=8,
                  frameon=False, bbox_to_anchor=(0.5, 1 - 0.03 / height))
    return figure


def overlay_figure(frames_by_point: dict[str, list], metric: Optional[str]):
    """Every recipe's validation curves on shared axes (loss, then ``metric``), mean over
    seeds: unlike the per-recipe plots, these can be compared by eye."""

    panels = ["loss"] + ([metric] if metric else [])
    figure, axes = _figure(5.6 * len(panels), 3.8, len(panels), MARGINS)
    for ax, name in zip(axes, panels):
        drawn = []
        for index, (point, frames) in enumerate(frames_by_point.items()):
            series = aggregate(frames, f"val_{name}")
            if len(series.epochs):
                ax.plot(series.epochs, series.mean, color=f"C{index % 10}",
                        linestyle="-" if index < 10 else "--", label=point)
                drawn.extend(series.mean)
        ax.set_xlabel("epoch")
        _few_ticks(ax.xaxis, integer=True)
        _few_ticks(ax.yaxis)
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
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool)
                  for s in series for x in s.x)
    slanted = numeric and len({x for s in series for x in s.x}) > 6
    margins = None                  # names, of any length: constrained layout fits them
    if numeric:                     # numbers: known margins, a taller bottom when slanted
        left, right, top, bottom, _ = MARGINS
        margins = (left, right, top, 0.85 if slanted else bottom, 0.0)
    figure, (ax,) = _figure(6.4, 4.0, margins=margins)
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
        ax.set_xticks(swept, [f"{x:g}" for x in swept], fontsize=8, rotation=45 if slanted else 0)
        ax.minorticks_off()
    else:
        ax.set_xticks(range(len(labels)), [str(x) for x in labels])
    if baseline is not None and math.isfinite(baseline):
        ax.axhline(baseline, color="black", linestyle=":", linewidth=1.2,
                   label=f"baseline val ({baseline:.4g})")
    ax.set_xlabel(param)
    ax.set_ylabel(f"{metric} (final epoch)")
    _few_ticks(ax.yaxis)
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
    labels = [r["point"].replace("__", " ") + (" ★" if r.get("best_of_sweep") else "")
              for r in reversed(rows)]
    figure, (ax,) = _figure(8.0, max(2.2, 0.38 * len(rows) + 1.3),
                            margins=(_widest(labels, 9) + 0.25, 0.25, 0.15, 0.6, 0.0))
    for y, row in enumerate(reversed(rows)):
        colour = DELTA_COLORS.get(row["verdict"] or "inconclusive", "#7f7f7f")
        low, high = row["diff_low"], row["diff_high"]
        if math.isfinite(low) and math.isfinite(high):
            ax.plot([low, high], [y, y], color=colour, linewidth=2.5, solid_capstyle="butt")
        ax.plot([row["diff"]], [y], "o", color=colour, markersize=7)
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
    _few_ticks(ax.xaxis)
    ax.grid(axis="x", alpha=0.3)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    return figure


def gap_figure(points: list[dict[str, Any]], label: str):
    """Bars of the train − val gap per recipe/point, error bars over seeds, verdict colours."""
    # the point names hang below the axis at 30°, the first one also to the left of its bar
    slant, height = math.sin(math.radians(30)), 8 / 72
    first = _widest([p["label"] for p in points[:1]], 8) * math.cos(math.radians(30))
    left, right, top, _, _ = MARGINS
    figure, (ax,) = _figure(max(5.0, 0.9 * len(points) + 2), 3.8, margins=(
        max(left, first + slant * height - 0.3), right, top,
        _widest([p["label"] for p in points], 8) * slant + height + 0.2, 0.0))
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
    _few_ticks(ax.yaxis)
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
    from matplotlib.ticker import NullLocator, StrMethodFormatter

    figure, (ax,) = _figure(7.0, 4.0, margins=MARGINS)
    everything = np.concatenate([np.abs(w) for w in weights.values()])
    reach = float(np.quantile(everything, 0.999)) if everything.size else 1.0
    bins = np.linspace(-reach, reach, 81) if reach > 0 else 81
    for index, (name, values) in enumerate(weights.items()):
        near_zero = float(np.mean(np.abs(values) < threshold)) if values.size else math.nan
        ax.hist(values, bins=bins, histtype="step", linewidth=1.5,
                color=f"C{index}", label=f"{name} ({100 * near_zero:.0f}% |w|<{threshold:g})")
    ax.set_yscale("log")
    # counts as plain numbers (1,000, not 10³: typesetting that is a sixth of the figure), and
    # no minor ticks: 8 a decade, unlabelled, each as dear to draw as a labelled one
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("weight value")
    ax.set_ylabel("count (log)")
    ax.set_title("final weights per recipe")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure


def sparsity_figure(frames_by_point: dict[str, list]):
    """Fraction of near-zero weights per epoch, mean over seeds, one line per point."""
    figure, (ax,) = _figure(7.0, 4.0, margins=MARGINS)
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
    # zlib's fastest level: lossless, a tenth larger, written in half the time
    figure.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})
    atomic_write_bytes(path, buffer.getvalue())
    return path


@contextmanager
def _without_cyclic_gc():
    """Drawing allocates many small objects, each batch of which moves Python's cyclic
    collector on towards a walk of the whole heap (after a run: torch, the run's modules
    and data), a tenth of a report's time; the figures' few cycles can wait for a later
    collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def make_plots(results_dir: Path, comparison=None) -> list[Plot]:
    """Write every figure of an experiment under ``plots/``; return them in report order."""
    with _without_cyclic_gc():
        return _make_plots(Path(results_dir), comparison)


def _make_plots(results_dir: Path, comparison) -> list[Plot]:
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
    curves = _curves_plot(out / "curves.png", by_point, order, metric)
    if curves is not None:
        plots.append(curves)
    shown = [p for p in (row["point"] for row in chosen_rows(comparison).values())
             if p in by_point] or order
    overlaid = {p.replace("__", " "): [r.metrics for r in by_point[p] if rows(r.metrics)]
                for p in shown}
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
        frames = {p.replace("__", " "): [r.metrics for r in by_point[p] if r.metrics is not None]
                  for p in order if p in sparse or p == "baseline"}
        path = _save(sparsity_figure(frames), out / "sparsity.png")
        plots.append(Plot("sparsity", "weight sparsity", path,
                          f"mean over seeds of the fraction of weights with |w| < {NEAR_ZERO:g}"))
    # a plot of a recipe no longer in the results must not linger; removed only now, so that
    # a write that fails (a full disk, a read-only folder) leaves the earlier figures whole
    for old in earlier - {plot.path for plot in plots}:
        old.unlink(missing_ok=True)
    return plots


def _curves_plot(path: Path, by_point: dict[str, list], order: list[str],
                 metric: Optional[str]) -> Optional[Plot]:
    """Every point's learning curves in one figure (learning_curves_figure), in the table's
    order; None when no run logged an epoch."""
    curves, diverged = {}, {}
    for point in order + [p for p in by_point if p not in order]:
        group = by_point[point]
        frames = [run.metrics for run in group if rows(run.metrics)]
        if frames:
            label = point.replace("__", " ")
            curves[label] = frames
            diverged[label] = [diverged_epoch(run) for run in group
                               if run.summary.get("status") == "diverged"]
    if not curves:
        return None
    figure = learning_curves_figure(curves, metric, {
        p: [e for e in epochs if e is not None] for p, epochs in diverged.items()})
    what = ("recipe and sweep point"
            if len(curves) > len({group[0].summary.get("recipe") for group in by_point.values()})
            else "recipe")
    seeds = sorted({len(frames) for frames in curves.values()})
    failed = sum(map(len, diverged.values()))
    below = metric and any(f"val_{metric}" in f for frames in curves.values() for f in frames)
    caption = (f"one column per {what}" + (f", its loss above its {metric}" if below else "")
               + "; " + (f"{seeds[0]} seed(s) each" if len(seeds) == 1 else
                         "seeds per point in its title")
               + "; band: ±1 std over seeds; dashed line: epoch of the lowest mean val loss; "
               "shared axes, except a point with a diverged run"
               + (f"; {failed} diverged" if failed else ""))
    return Plot("curves", f"learning curves of every {what}", _save(figure, path), caption)


def diverged_epoch(run) -> Optional[float]:
    """First epoch with a non-finite loss (else the last logged epoch) of a diverged run."""
    metrics = run.metrics
    if not rows(metrics):
        return None
    epochs = np.asarray(metrics["epoch"], dtype=float)
    losses = [np.asarray(metrics[c], dtype=float) for c in ("objective", "train_loss", "val_loss")
              if c in metrics]
    bad = ~np.isfinite(np.stack(losses)).all(axis=0) if losses else np.zeros(len(epochs), bool)
    return float(epochs[bad][0]) if bad.any() else float(epochs[-1])


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
