"""Plots: each figure checked for its content (labels, lines, points, scales), from run
folders written by hand so every expected number is known."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.image import imread
from matplotlib.patches import Rectangle

from regbench.analysis.compare import build_comparison
from regbench.report.plot_data import load_runs, points_of, sweep_series
from regbench.report.plots import (
    gap_figure,
    learning_curves_figure,
    make_plots,
    sparsity_figure,
    validation_curve_figure,
    weights_figure,
)
from regbench.results import load_summaries

EPOCHS = 6


def curve(seed: int, level: float, diverge_at: int | None = None) -> pd.DataFrame:
    """Train loss falls; val loss bottoms out at epoch 3; accuracies mirror the losses."""
    rng = np.random.default_rng(seed)
    epochs = np.arange(1, EPOCHS + 1)
    train_loss = level * np.exp(-0.4 * epochs) + 0.01 * rng.random(EPOCHS)
    val_loss = level * (0.5 + 0.05 * (epochs - 3) ** 2) + 0.01 * rng.random(EPOCHS)
    frame = pd.DataFrame({"epoch": epochs, "objective": train_loss, "train_loss": train_loss,
                          "val_loss": val_loss, "train_accuracy": 1 - train_loss / 2,
                          "val_accuracy": 1 - val_loss / 2,
                          "sparsity": np.linspace(0, 0.5 * level, EPOCHS)})
    if diverge_at is not None:
        frame = frame[frame.epoch <= diverge_at].copy()
        frame.loc[frame.epoch == diverge_at, ["objective", "train_loss", "val_loss"]] = math.nan
    return frame


def write_run(root: Path, recipe: str, seed: int, sweep: dict, frame: pd.DataFrame,
              weights: np.ndarray, status: str = "completed", regs: dict | None = None) -> None:
    point = "__".join([recipe] + [f"{k}={v:g}" for k, v in sweep.items()])
    run_id = f"{point}__seed={seed}"
    folder = root / "runs" / run_id
    folder.mkdir(parents=True)
    frame.to_csv(folder / "metrics.csv", index=False)
    np.save(folder / "weights.npy", weights.astype("float32"))
    last = frame.iloc[-1]
    done = status == "completed"
    summary = {"status": status, "run_id": run_id, "point_id": point, "recipe": recipe,
               "seed": seed, "sweep": sweep, "task": "classification", "regularizers": regs or {},
               "best_epoch": 3, "parameter_count": 100, "seconds_per_epoch": 0.1,
               "sparsity": float(last.sparsity),
               "sparsifying": any(name in ("l1", "elastic_net") for name in regs or {}),
               "verdict": {"verdict": "ok" if done else "diverged", "started_epoch": None,
                           "evidence": ["made by hand"]}}
    for split in ("train", "val", "test"):
        source = "val" if split == "test" else split
        summary[f"{split}_accuracy"] = float(last[f"{source}_accuracy"]) if done else None
        summary[f"{split}_loss"] = float(last[f"{source}_loss"]) if done else None
    (folder / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def results(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for seed in range(3):
        write_run(tmp_path, "baseline", seed, {}, curve(seed, 1.0), rng.normal(0, 0.1, 2000))
        for lam in (0.01, 0.1, 1.0):
            sparse = rng.normal(0, 0.1, 2000) * (rng.random(2000) < 0.2)
            write_run(tmp_path, "l1", seed, {"lambda": lam}, curve(seed, 1.0 + lam), sparse,
                      regs={"l1": {"lambda": lam}})
        write_run(tmp_path, "l2", seed, {}, curve(seed, 0.8, diverge_at=4 if seed == 2 else None),
                  rng.normal(0, 0.05, 2000), "diverged" if seed == 2 else "completed",
                  regs={"l2": {"lambda": 1.0}})
    return tmp_path


def test_learning_curves_mean_band_and_best_epoch():
    frames = [curve(seed, 1.0) for seed in range(3)]
    figure = learning_curves_figure({"baseline": frames}, "accuracy")
    loss_ax, acc_ax = figure.axes
    assert loss_ax.get_title() == "baseline · best epoch 3"
    assert (figure.get_supxlabel(), loss_ax.get_ylabel()) == ("epoch", "loss")
    assert acc_ax.get_ylabel() == "accuracy"
    lines = {line.get_label(): line for line in loss_ax.get_lines()}
    assert set(lines) == {"train (mean of 3)", "val (mean of 3)",
                          "best epoch 3 (lowest val loss)"}
    expected = np.mean([f.val_loss for f in frames], axis=0)
    np.testing.assert_allclose(lines["val (mean of 3)"].get_ydata(), expected)
    assert len(lines["train (mean of 3)"].get_xdata()) == EPOCHS
    assert list(lines["best epoch 3 (lowest val loss)"].get_xdata()) == [3, 3]
    bands = [c for c in loss_ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2  # one ±std band per split
    # points with different numbers of seeds say how many each
    uneven = learning_curves_figure({"a": frames, "b": frames[:2]}, "accuracy")
    assert [ax.get_title() for ax in uneven.axes if ax.get_title()] == [
        "a · best epoch 3 · 3 seed(s)", "b · best epoch 3 · 2 seed(s)"]


def test_learning_curves_survive_a_diverged_run():
    frames = [curve(0, 1.0), curve(1, 1.0, diverge_at=4)]
    figure = learning_curves_figure({"l2": frames}, "accuracy", diverged_at={"l2": [4]})
    loss_ax = figure.axes[0]
    assert loss_ax.get_title() == "l2\nbest epoch 3 · diverged at epoch 4"   # too long for 1 line
    val = next(line for line in loss_ax.get_lines() if line.get_label().startswith("val"))
    assert np.isfinite(val.get_ydata()).all() and len(val.get_xdata()) == EPOCHS
    assert "diverged at epoch 4" in [line.get_label() for line in loss_ax.get_lines()]
    # a run that diverged in its first epoch leaves no finite loss at all
    empty = learning_curves_figure({"x": [curve(0, 1.0, diverge_at=1)]}, "accuracy", {"x": [1]})
    assert "no finite loss values" in [t.get_text() for t in empty.axes[0].texts]


def test_validation_curve_log_axis_error_bars_and_best(results: Path):
    summaries = load_summaries(results)
    series = sweep_series(summaries, "accuracy")
    assert list(series) == ["lambda"] and len(series["lambda"]) == 1
    figure = validation_curve_figure("lambda", series["lambda"], "accuracy", higher=True)
    ax = figure.axes[0]
    assert ax.get_xscale() == "log"  # 0.01 .. 1 spans two decades
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("lambda", "accuracy (final epoch)")
    assert len(ax.containers) == 1 and ax.containers[0].has_yerr  # error bars over seeds
    assert ax.containers[0].get_label() == "l1 val"
    val = ax.containers[0].lines[0]
    assert list(val.get_xdata()) == [0.01, 0.1, 1.0]
    by_value = {lam: np.mean([s["val_accuracy"] for s in summaries
                              if s["sweep"].get("lambda") == lam]) for lam in (0.01, 0.1, 1.0)}
    np.testing.assert_allclose(np.asarray(val.get_ydata(), float),
                               [by_value[v] for v in (0.01, 0.1, 1.0)])
    best = next(line for line in ax.get_lines() if line.get_label().startswith("best"))
    assert best.get_xdata()[0] == max(by_value, key=by_value.get)
    # every swept value is a labelled tick (a log axis labels only powers of ten by itself)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.01", "0.1", "1"]
    assert list(ax.get_xticks()) == [0.01, 0.1, 1.0]


def test_validation_curve_has_the_baseline_as_a_reference_line():
    from regbench.report.plot_data import Series

    sweep = Series("l2", [0.1, 1.0, 10.0, 100.0], [0.8, 0.9, 0.85, 0.5], [0.01] * 4, None)
    ax = validation_curve_figure("lambda", [sweep], "accuracy", True, baseline=0.82).axes[0]
    line = next(l for l in ax.get_lines() if l.get_label().startswith("baseline"))
    assert list(line.get_ydata()) == [0.82, 0.82] and line.get_label() == "baseline val (0.82)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.1", "1", "10", "100"]
    bare = validation_curve_figure("lambda", [sweep], "accuracy", True).axes[0]
    assert not any(l.get_label().startswith("baseline") for l in bare.get_lines())


def test_validation_curve_linear_symlog_and_categorical():
    from regbench.report.plot_data import Series

    narrow = Series("l2", [1.0, 2.0, 4.0], [0.8, 0.9, 0.85], [0.01] * 3, None)
    assert validation_curve_figure("lambda", [narrow], "accuracy", True).axes[0].get_xscale() \
        == "linear"
    zero = Series("l2", [0.0, 0.1, 10.0], [0.8, 0.9, 0.85], [0.01] * 3, None)
    assert validation_curve_figure("lambda", [zero], "accuracy", True).axes[0].get_xscale() \
        == "symlog"
    names = Series("mlp", ["relu", "tanh"], [0.8, 0.9], [0.0, 0.0], None)
    ax = validation_curve_figure("activation", [names], "accuracy", True).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["relu", "tanh"]


def test_gap_bars_match_summaries_and_show_diverged(results: Path):
    runs = load_runs(results)
    comparison = build_comparison([r.summary for r in runs])
    points = points_of(comparison, runs)
    figure = gap_figure(points, "accuracy")
    ax = figure.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == len(comparison.rows) == 5
    assert ax.get_ylabel() == "train − val accuracy"
    baseline = [r.summary for r in runs if r.point == "baseline"]
    expected = np.mean([s["train_accuracy"] - s["val_accuracy"] for s in baseline])
    index = [p["label"] for p in points].index("baseline")
    assert bars[index].get_height() == pytest.approx(100 * expected)   # accuracy points
    assert points[[p["label"] for p in points].index("l2")]["verdict"] == "diverged"


def test_weight_histograms_show_l1_sparsity():
    rng = np.random.default_rng(1)
    dense = rng.normal(0, 0.1, 5000)
    sparse = dense * (rng.random(5000) < 0.1)
    figure = weights_figure({"baseline": dense, "l1": sparse})
    ax = figure.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "weight value"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("baseline (1%") and labels[1].startswith("l1 (90%")
    assert len(ax.patches) == 2  # one step histogram per recipe


def test_sparsity_figure_one_line_per_point():
    figure = sparsity_figure({"baseline": [curve(0, 0.0)], "l1": [curve(0, 1.0), curve(1, 1.0)]})
    ax = figure.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["baseline", "l1"]
    assert ax.get_lines()[1].get_ydata()[-1] == pytest.approx(0.5)


def test_make_plots_writes_every_figure(results: Path):
    plots = make_plots(results)
    names = sorted(p.path.name for p in plots)
    # the learning curves of all 5 points are one figure (curves.png), not one file each
    assert names == sorted(["curves.png", "validation__lambda.png", "gap.png", "weights.png",
                            "sparsity.png", "forest.png", "curves__all.png"])
    assert sorted(p.name for p in (results / "plots").iterdir()) == names
    for plot in plots:
        image = imread(plot.path)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
        assert len(np.unique(image.reshape(-1, image.shape[2]), axis=0)) > 20  # not blank
    curves = next(p for p in plots if p.path.name == "curves.png")
    assert curves.title == "learning curves of every recipe and sweep point"
    assert "1 diverged" in curves.caption and "3 seed(s) each" in curves.caption
    # the histograms show one point of the 3-point l1 sweep, and say which
    comparison = build_comparison(load_summaries(results))
    best = comparison.best_points["l1"]["point"].replace("__", " ")
    weights = next(p for p in plots if p.kind == "weights")
    assert f"l1: {best} of its 3 points" in weights.caption


def test_the_forest_plot_shows_each_rows_difference_interval_and_verdict(results: Path):
    from regbench.analysis.compare import build_comparison
    from regbench.report.plot_data import load_runs
    from regbench.report.plots import DELTA_COLORS, forest_figure

    comparison = build_comparison([run.summary for run in load_runs(results)])
    rows = [r for r in comparison.rows if r["recipe"] != "baseline" and np.isfinite(r["diff"])]
    (ax,) = forest_figure(comparison).axes
    labels = [t.get_text().removesuffix(" ★") for t in ax.get_yticklabels()]
    assert labels == [r["point"].replace("__", " ") for r in reversed(rows)]
    dots = [line for line in ax.get_lines() if line.get_marker() == "o"
            and len(line.get_xdata()) == 1]
    assert len(dots) == len(rows)
    for dot, row in zip(dots, reversed(rows)):
        assert dot.get_xdata()[0] == pytest.approx(row["diff"])
        assert dot.get_color() == DELTA_COLORS[row["verdict"] or "inconclusive"]
    assert any(list(line.get_xdata()) == [0, 0] for line in ax.get_lines())   # the zero line


def test_every_recipes_validation_curves_share_one_pair_of_axes(results: Path):
    from regbench.report.plots import overlay_figure

    runs = load_runs(results)
    frames = {p: [r.frame for r in runs if r.point == p and r.frame is not None]
              for p in ("baseline", "l2")}
    loss, accuracy = overlay_figure(frames, "accuracy").axes
    assert [l.get_label() for l in loss.get_lines()] == ["baseline", "l2"]
    for line in accuracy.get_lines():         # each line: the mean over seeds per epoch
        means = pd.concat([f[["epoch", "val_accuracy"]] for f in frames[line.get_label()]]) \
            .groupby("epoch")["val_accuracy"].mean()
        np.testing.assert_allclose(line.get_ydata(), means.to_numpy())
    plots = make_plots(results)
    assert [p.kind for p in plots[:2]] == ["forest", "curves"]
    assert plots[1].path.name == "curves__all.png"
