"""The quick start shows what regbench is for: on 300 digits with 40% wrong training labels
at least one regularizer is better than baseline, with an interval that excludes zero."""
from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from regbench.cli import app
from tests.conftest import REPO


def test_the_quick_start_finds_a_recipe_better_than_baseline(tmp_path):
    result = CliRunner().invoke(app, ["run", str(REPO / "configs" / "quickstart.yaml"),
                                      "--out", str(tmp_path), "--no-report"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "quickstart" / "comparison.csv")
    better = table[table.verdict == "better"]
    assert len(better) >= 1, table
    assert (better.diff_low > 0).all()            # the interval excludes zero
    assert "better than baseline on test accuracy" in result.output   # the headline says so
    # the diagnosis discriminates: the baseline overfits, early stopping's kept model does not
    diagnosis = dict(zip(table.point, table.diagnosis))
    assert diagnosis["baseline"] == "overfitting"
    assert diagnosis["early_stopping"] == "ok"
    assert len(set(diagnosis.values())) >= 2, diagnosis
