"""Figures of a suite, drawn from its table alone (matplotlib, Agg, PNG, no pyplot state).

- ``forest.png``: one panel per task, each recipe's Δ against the baseline as relative error
  reduction with the task table's own interval, coloured by the task's verdict;
- ``profiles.png``: performance profiles (Dolan & Moré 2002): the fraction of tasks on which a
  recipe's mean error is within a factor τ of the best recipe's;
- ``critical_difference.png``: average ranks with the Nemenyi critical difference (Demšar
  2006): recipes joined by a bar are not told apart;
- ``cost.png``: quality against cost, each recipe's IQM with its interval against its training
  time relative to the baseline's.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from regbench.analysis import suite_stats as st
from regbench.analysis.suite_table import SuiteTable
from regbench.report.plots import DPI, Plot
from regbench.results import atomic_write_bytes, check_folder
from regbench.vocabulary import PLOTS_DIR

VERDICT_COLORS = {"better": "#2ca02c", "worse": "#d62728", "equivalent": "#1f77b4"}
GREY = "#7f7f7f"


def _figure(width: float, height: float, rows: int = 1, cols: int = 1):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return figure, figure.subplots(rows, cols, squeeze=False)


def _save(figure, path: Path) -> Path:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def forest_grid_figure(table: SuiteTable):
    """Per task, each recipe's Δ (the task table's, ÷ the baseline's mean error) with its
    interval; None when no task has one."""
    from matplotlib.ticker import MaxNLocator

    tasks = [t for t in table.tasks if t.intervals]
    if not tasks:
        return None
    cols = min(3, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    figure, axes = _figure(4.2 * cols, 0.35 * len(table.recipes) * rows + 1.2 * rows, rows, cols)
    for index, ax in enumerate(axes.ravel()):
        if index >= len(tasks):
            ax.set_visible(False)
            continue
        task = tasks[index]
        names = [r for r in table.recipes if r in task.intervals]
        for y, recipe in enumerate(names):
            delta, low, high = task.intervals[recipe]
            color = VERDICT_COLORS.get(task.verdicts.get(recipe, ""), GREY)
            if math.isfinite(low):
                ax.plot([100 * low, 100 * high], [y, y], color=color, lw=2)
            ax.plot([100 * delta], [y], "o", color=color)
        ax.axvline(0, color="black", lw=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        ax.set_title(f"{task.name} ({task.metric})", fontsize=10)
        ax.set_xlabel("less error than baseline (%)", fontsize=9)
    return figure


def profile_figure(table: SuiteTable):
    """Performance profiles of every recipe, baseline included; None without a complete
    task."""
    recipes = ["baseline", *table.recipes]
    complete = [t for t in table.tasks if all(t.errors.get(r) for r in recipes)]
    if not complete:
        return None
    errors = np.array([[np.nanmean(list(t.errors[r].values())) for r in recipes]
                       for t in complete])
    finite = errors[np.isfinite(errors)]
    best = np.nanmin(errors, axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        worst = np.nanmax(np.where(best > 0, errors / best, 1.0))
    top = max(1.5, float(worst) * 1.05) if math.isfinite(worst) and finite.size else 2.0
    taus = np.linspace(1.0, top, 200)
    profile = st.performance_profile(errors, taus)
    figure, axes = _figure(7.0, 4.0)
    ax = axes[0][0]
    for column, recipe in enumerate(recipes):
        baseline = recipe == "baseline"      # dashed on top: a recipe may hide under it
        ax.step(taus, profile[:, column], where="post", label=recipe, lw=1.6,
                color="black" if baseline else None, ls="--" if baseline else "-",
                zorder=3 if baseline else 2)
    ax.set_xlabel("τ: error within this factor of the task's best recipe")
    ax.set_ylabel("fraction of tasks")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="lower right")
    return figure


def cd_figure(friedman: st.Friedman):
    """Demšar's critical-difference diagram: the rank axis, each recipe at its average rank,
    and a bar over every maximal group whose ranks lie within the CD."""
    ranks = sorted(friedman.average_ranks.items(), key=lambda item: item[1])
    k = len(ranks)
    figure, axes = _figure(8.0, 1.6 + 0.3 * k)
    ax = axes[0][0]
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-(k // 2 + 2), 2.2)
    ax.axis("off")
    ax.hlines(0, 1, k, color="black")
    for tick in range(1, k + 1):
        ax.vlines(tick, 0, 0.15, color="black")
        ax.text(tick, 0.35, str(tick), ha="center", fontsize=9)
    cd = friedman.critical_difference
    ax.hlines(1.4, 1, min(1 + cd, k), color="#c62828", lw=2)
    ax.text(1, 1.65, f"CD = {cd:.2f} (Nemenyi, α = {st.ALPHA:g}, {friedman.tasks} tasks)",
            fontsize=9, color="#c62828")
    half = math.ceil(k / 2)
    for index, (recipe, rank) in enumerate(ranks):
        left = index < half
        depth = -(index + 1) * 0.55 if left else -(k - index) * 0.55
        end = 0.6 if left else k + 0.4
        ax.plot([rank, rank, end], [0, depth, depth], color="black", lw=0.8)
        ax.text(end + (-0.05 if left else 0.05), depth, f"{recipe} ({rank:.2f})",
                ha="right" if left else "left", va="center", fontsize=9)
    groups = _cliques([rank for _, rank in ranks], cd)
    for level, (first, last) in enumerate(groups):
        y = -0.25 - 0.18 * level
        ax.hlines(y, ranks[first][1] - 0.05, ranks[last][1] + 0.05, color="#444", lw=3)
    return figure


def _cliques(ranks: list[float], cd: float) -> list[tuple[int, int]]:
    """Maximal runs of sorted ranks spanning at most ``cd`` (indices of the first and last)."""
    spans = []
    for first in range(len(ranks)):
        last = first
        while last + 1 < len(ranks) and ranks[last + 1] - ranks[first] <= cd:
            last += 1
        if last > first and not any(a <= first and last <= b for a, b in spans):
            spans.append((first, last))
    return spans


def cost_figure(table: SuiteTable):
    """IQM of the relative error reduction (with its interval) against the training time
    relative to the baseline's (log axis); None without a recipe that has both."""
    from matplotlib.ticker import FuncFormatter

    rows = [r for r in table.rows if math.isfinite(r["relative_time"])
            and math.isfinite(r["iqm"])]
    if not rows:
        return None
    figure, axes = _figure(7.0, 4.2)
    ax = axes[0][0]
    ax.plot([1.0], [0.0], "s", color="black")
    ax.annotate("baseline", (1.0, 0.0), textcoords="offset points", xytext=(5, 5), fontsize=9)
    for row in rows:
        color = VERDICT_COLORS.get(row["verdict"], GREY)
        low, high = row["iqm_low"], row["iqm_high"]
        if math.isfinite(low):
            ax.plot([row["relative_time"]] * 2, [100 * low, 100 * high], color=color, lw=2)
        ax.plot([row["relative_time"]], [100 * row["iqm"]], "o", color=color)
        ax.annotate(row["recipe"], (row["relative_time"], 100 * row["iqm"]),
                    textcoords="offset points", xytext=(5, 5), fontsize=9)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xscale("log")
    ratio = FuncFormatter(lambda value, _: f"{value:g}×")   # 0.95×, not 9.5×10⁻¹
    ax.xaxis.set_major_formatter(ratio)
    ax.xaxis.set_minor_formatter(ratio)
    ax.set_xlabel("training time ÷ baseline's (geometric mean over tasks)")
    ax.set_ylabel("IQM: less error than baseline (%)")
    return figure


def make_suite_plots(suite_dir: Path, table: SuiteTable) -> list[Plot]:
    """Write the suite's figures under ``plots/``; return them in page order."""
    out = Path(suite_dir) / PLOTS_DIR
    check_folder(out, f"the folder of plots ({PLOTS_DIR}/)")
    plots = []
    forest = forest_grid_figure(table)
    if forest is not None:
        plots.append(Plot("forest", "Δ vs baseline on each task", _save(forest, out / "forest.png"),
                          "each task's own comparison: mean paired difference ÷ the baseline's "
                          "mean error (dot) and the task table's interval (bar, Bonferroni over "
                          "its recipes); green better, red worse, grey anything else"))
    profiles = profile_figure(table)
    if profiles is not None:
        plots.append(Plot("profiles", "performance profiles", _save(profiles, out / "profiles.png"),
                          "fraction of tasks on which a recipe's mean test error is within τ× the "
                          "best recipe's (Dolan & Moré 2002); higher and further left is better"))
    if table.friedman is not None:
        plots.append(Plot("cd", "critical-difference diagram",
                          _save(cd_figure(table.friedman), out / "critical_difference.png"),
                          "average rank of each recipe's mean test error over the tasks where all "
                          "ran (1 = best); recipes joined by a bar are within the Nemenyi critical "
                          "difference of each other (Demšar 2006)"))
    cost = cost_figure(table)
    if cost is not None:
        plots.append(Plot("cost", "quality against cost", _save(cost, out / "cost.png"),
                          "IQM of the relative error reduction with its interval against the "
                          "training time relative to the baseline's; up is better, right costs "
                          "more"))
    return plots
