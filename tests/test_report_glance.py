"""The report at the speed of a glance (issue 38): every point's learning curves in one
small-multiples figure, and run folders read without pandas; each checked for its content
against an independent computation (pandas, on the same files)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_plots import curve, write_run

from regbench.report.plot_data import load_runs, read_metrics, rows
from regbench.report.plots import learning_curves_figure


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """test_plots' hand-made sweep: a baseline, l1 at 3 λ and an l2 whose third seed
    diverges at epoch 4, 3 seeds each."""
    rng = np.random.default_rng(0)
    for seed in range(3):
        write_run(tmp_path, "baseline", seed, {}, curve(seed, 1.0), rng.normal(0, 0.1, 2000))
        for lam in (0.01, 0.1, 1.0):
            write_run(tmp_path, "l1", seed, {"lambda": lam}, curve(seed, 1.0 + lam),
                      rng.normal(0, 0.1, 2000), regs={"l1": {"lambda": lam}})
        write_run(tmp_path, "l2", seed, {}, curve(seed, 0.8, diverge_at=4 if seed == 2 else None),
                  rng.normal(0, 0.05, 2000), "diverged" if seed == 2 else "completed",
                  regs={"l2": {"lambda": 1.0}})
    return tmp_path


def test_learning_curves_of_every_point_are_small_multiples(results: Path):
    """One column per point (wrapping after 4), loss above accuracy; every panel on the same
    epochs, every loss panel on the same scale (its tick labels once per row), except the
    point with a diverged run, which keeps its own; the empty slots of the last row are gone
    and the panels above them label their epochs."""
    runs = load_runs(results)
    points = ["baseline", "l1__lambda=0.01", "l1__lambda=0.1", "l1__lambda=1", "l2"]
    frames = {p: [r.metrics for r in runs if r.point == p] for p in points}
    figure = learning_curves_figure(frames, "accuracy", {"l2": [4.0]})
    axes = figure.axes
    assert len(axes) == 2 * len(points)      # none in the 3 empty slots of the second row
    by_title = {ax.get_title(): ax for ax in axes if ax.get_title()}
    assert list(by_title) == ["baseline · best epoch 3", "l1 lambda=0.01 · best epoch 3",
                              "l1 lambda=0.1 · best epoch 3", "l1 lambda=1 · best epoch 3",
                              "l2\nbest epoch 3 · diverged at epoch 4"]
    grid = {(ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start): ax
            for ax in axes}
    assert sorted(grid) == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3),
                            (2, 0), (3, 0)]
    assert [grid[0, c].get_title() for c in range(4)] == list(by_title)[:4]
    assert grid[2, 0].get_title().startswith("l2")
    # the val loss drawn in each point's panel is that point's mean over its seeds
    for (row, col), point in zip([(0, 0), (0, 1), (0, 2), (0, 3), (2, 0)], points):
        val = next(l for l in grid[row, col].get_lines() if l.get_label().startswith("val"))
        means = pd.concat([r.frame[["epoch", "val_loss"]] for r in runs if r.point == point]) \
            .dropna().groupby("epoch")["val_loss"].mean()
        np.testing.assert_allclose(val.get_ydata(), means.to_numpy())
    accuracy = [l for l in grid[1, 2].get_lines() if l.get_label().startswith("train")]
    assert len(accuracy) == 1 and grid[1, 0].get_ylabel() == "accuracy"
    # shared axes: one epoch axis for all, one loss scale for the points that did not diverge,
    # wide enough for each of them (l1 at λ=1 lies above the baseline: curve levels 2 vs 1)
    for ax in axes:
        assert ax.get_xlim() == axes[0].get_xlim()
    low, high = axes[0].get_xlim()
    assert low < 1 and high > 6
    losses = [grid[0, c] for c in range(4)]
    assert all(ax.get_ylim() == losses[0].get_ylim() for ax in losses)
    bottom, top = losses[0].get_ylim()
    drawn = np.concatenate([line.get_ydata() for ax in losses for line in ax.get_lines()
                            if line.get_label().startswith(("train", "val"))])
    assert bottom <= drawn.min() and drawn.max() <= top
    assert drawn.max() > 1.0      # the l1 λ=1 curves, not only the first panel's
    assert grid[2, 0].get_ylim() != losses[0].get_ylim()         # l2: its own scale
    labelled = [ax.yaxis.get_tick_params()["labelleft"] for ax in losses]
    assert labelled == [True, False, False, False]
    # x tick labels under the last panel of each column only
    shown = {key: ax.xaxis.get_tick_params()["labelbottom"] for key, ax in grid.items()}
    assert sorted(key for key, value in shown.items() if value) == [(1, 1), (1, 2), (1, 3),
                                                                     (3, 0)]
    assert figure.get_supxlabel() == "epoch"
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend == ["train: mean ± std over seeds", "val: mean ± std over seeds",
                      "best epoch (lowest mean val loss)",
                      "diverged (drawn to its last finite epoch)"]


def test_metrics_are_read_as_pandas_reads_them(results: Path):
    """Every column of every metrics.csv, as pandas reads and coerces it (the DataFrame the
    gallery uses is built from the same columns)."""
    for run in load_runs(results):
        folder = results / "runs" / run.summary["run_id"]
        expected = pd.read_csv(folder / "metrics.csv").apply(pd.to_numeric, errors="coerce")
        assert list(run.metrics) == list(expected.columns)
        for column in expected.columns:
            np.testing.assert_array_equal(run.metrics[column], expected[column].to_numpy(float))
        pd.testing.assert_frame_equal(run.frame, expected.astype(float))
        assert rows(run.metrics) == rows(run.frame) == len(expected)


@pytest.mark.parametrize("text, expected", [
    ("epoch,val_loss\n1,0.5\n2,oops\n3\n\n", {"epoch": [1, 2, 3], "val_loss": [0.5, np.nan,
                                                                             np.nan]}),
    ("epoch,val_loss,val_loss\n1,0.5,9\n", {"epoch": [1], "val_loss": [0.5]}),
    ("epoch,val_loss\n", {"epoch": [], "val_loss": []}),
    ("epoch,val_loss\n1,inf\n2,nan\n", {"epoch": [1, 2], "val_loss": [np.inf, np.nan]}),
])
def test_a_damaged_metrics_file_reads_as_far_as_it_goes(tmp_path: Path, text, expected):
    """A cell that is not a number is NaN, a short row is NaN-filled, a blank line is
    skipped, a repeated column keeps its first, a file of a header alone has no epochs."""
    path = tmp_path / "metrics.csv"
    path.write_text(text)
    metrics = read_metrics(path)
    assert list(metrics) == list(expected)
    for column, values in expected.items():
        np.testing.assert_array_equal(metrics[column], np.asarray(values, dtype=float))


@pytest.mark.parametrize("text", ["", "\n\n", "epoch,val_loss\n1,0.5,7\n"])
def test_an_unreadable_metrics_file_is_none(tmp_path: Path, text):
    """Empty, or a row longer than its header (pandas refuses both): no curves for that run,
    and the report goes on."""
    path = tmp_path / "metrics.csv"
    path.write_text(text)
    assert read_metrics(path) is None and read_metrics(tmp_path / "missing.csv") is None


def test_a_report_never_imports_pandas(results: Path):
    """Drawing every figure needs no pandas (as long to import as two figures take to draw);
    checked in a fresh process, where nothing else has imported it."""
    import subprocess
    import sys

    code = ("import sys; from regbench.report.plots import make_plots; "
            f"make_plots({str(results)!r}); print('pandas' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False"]
    assert (results / "plots" / "curves.png").is_file()
