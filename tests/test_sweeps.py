"""Sweep grids: ids, typed values, located errors for bad sweep paths, the dry run, and the
5 λ × 2 seeds acceptance sweep on digits."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from regbench.cli import app
from regbench.experiment.config import load_config
from regbench.experiment.plan import build_plan
from regbench.experiment.sweeps import apply_params
from tests.conftest import TINY_DIGITS, write_config

runner = CliRunner()
LAMBDAS = [0.01, 0.1, 1.0, 10.0, 100.0]

SWEEP_DIGITS = """\
name: lam
seeds: [0, 1]
dataset: {name: digits, train_subset: 300}
model: {name: mlp, hidden: [32]}
train: {epochs: 3, batch_size: 32, optimizer: {name: sgd, lr: 0.1}, threads: 1}
recipes:
  l2: {l2: {lambda: 1.0}}
sweep:
  recipes.l2.l2.lambda: [0.01, 1e-1, 1, 10.0, 100]
"""


def test_grid_is_recipes_by_points_by_seeds_with_readable_typed_ids(tmp_path):
    plan = build_plan(load_config(write_config(tmp_path / "s.yaml", SWEEP_DIGITS)))
    ids = [run["run_id"] for run in plan.runs]
    assert ids[:2] == ["baseline__seed=0", "baseline__seed=1"]
    assert "l2__lambda=0.1__seed=1" in ids and "l2__lambda=100__seed=0" in ids
    assert len(ids) == len(set(ids)) == 12
    lambdas = [run["regularizers"]["l2"]["lambda"] for run in plan.runs if run["recipe"] == "l2"]
    assert lambdas == [v for v in LAMBDAS for _ in (0, 1)]
    assert all(isinstance(v, float) for v in lambdas)        # 1e-1 and 100 typed as floats
    assert build_plan(load_config(tmp_path / "s.yaml")).runs[3]["config_hash"] == \
        plan.runs[3]["config_hash"]                           # deterministic


def test_command_line_params_replace_the_file_sweep_and_global_keys_cover_every_recipe(tmp_path):
    loaded = load_config(write_config(tmp_path / "s.yaml", SWEEP_DIGITS))
    loaded = apply_params(loaded, ["recipes.l2.l2.lambda=0.5,2", "train.optimizer.lr=[0.05, 0.1]"])
    ids = [run["run_id"] for run in build_plan(loaded, seeds=[3]).runs]
    assert ids == ["baseline__lr=0.05__seed=3", "baseline__lr=0.1__seed=3",
                   "l2__lambda=0.5__lr=0.05__seed=3", "l2__lambda=0.5__lr=0.1__seed=3",
                   "l2__lambda=2__lr=0.05__seed=3", "l2__lambda=2__lr=0.1__seed=3"]


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path):
    config = write_config(tmp_path / "s.yaml", SWEEP_DIGITS)
    result = runner.invoke(app, ["sweep", str(config), "--param", "recipes.l2.l2.lambda=0.1,1",
                                 "--dry-run", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "l2__lambda=0.1__seed=0" in result.output and "l2__lambda=10__" not in result.output
    assert "6 runs" in result.output and "18 epochs in total" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("param, message", [
    ("recipes.l2.l2.lamda=1", "'lamda' matches no setting of recipes.l2.l2 (did you mean 'lambda'?)"),
    ("recipes.l2.l1.lambda=1", "recipe 'l2' has no regularizer 'l1'"),
    ("recipes.l3.l2.lambda=1", "no recipe 'l3'"),
    ("train.epoch=1,2", "'epoch' matches no setting of train (did you mean 'epochs'?)"),
    ("model.hiddn=[8]", "did you mean 'hidden'?"),
    ("train.epochs.x=1", "train.epochs is a single value"),
    ("seeds=1,2", "'seeds' cannot be swept"),
    ("recipes.l2.l2.lambda=-1", "must be >= 0 (got -1)"),
    ("recipes.l2.l2.lambda=1,1.0", "same run id 'l2__lambda=1__seed=0'"),
])
def test_bad_sweep_params_are_one_located_line(tmp_path, param, message):
    config = write_config(tmp_path / "t.yaml", TINY_DIGITS)
    result = runner.invoke(app, ["sweep", str(config), "--param", param, "--dry-run"])
    assert result.exit_code == 2
    key = param.split("=")[0]
    assert result.output.strip().splitlines() == [f"regbench: error: --param {key}: " +
                                                  result.output.split(f"--param {key}: ", 1)[1].strip()]
    assert message in result.output and "Traceback" not in result.output


def test_bad_sweep_path_in_the_file_points_at_its_line(tmp_path):
    config = write_config(tmp_path / "s.yaml", SWEEP_DIGITS + "  recipes.l2.dropout.p: [0.1]\n")
    result = runner.invoke(app, ["run", str(config), "--dry-run"])
    assert result.exit_code == 2
    assert f"{config}:10:3: sweep.recipes.l2.dropout.p: recipe 'l2' has no regularizer " \
           "'dropout'" in result.output


def test_five_lambdas_two_seeds_on_digits(tmp_path):
    """Acceptance 1: 12 run folders, runs.csv with 12 rows, interval columns, weight norm
    falling monotonically as λ grows; `compare` rebuilds the same table from the folders."""
    config = write_config(tmp_path / "s.yaml", SWEEP_DIGITS)
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path), "--no-report"])
    assert result.exit_code == 0, result.output
    results = tmp_path / "lam"
    folders = sorted(p.name for p in (results / "runs").iterdir())
    assert len(folders) == 12 and "l2__lambda=0.01__seed=1" in folders
    assert all((results / "runs" / f / "summary.json").is_file() for f in folders)
    runs = pd.read_csv(results / "runs.csv")
    assert len(runs) == 12 and set(runs["status"]) == {"completed"}
    table = pd.read_csv(results / "comparison.csv")
    assert {"diff_low", "diff_high", "verdict", "p_improve", "seeds"} <= set(table.columns)
    assert table.loc[table["recipe"] == "l2", "diff_low"].notna().all()

    norms = []
    for lam in LAMBDAS:
        per_seed = [json.loads((results / "runs" / f"l2__lambda={lam:g}__seed={s}" /
                                "summary.json").read_text())["weight_norm"] for s in (0, 1)]
        norms.append(sum(per_seed) / 2)
    assert all(a > b for a, b in zip(norms, norms[1:])), norms

    written = (results / "comparison.csv").read_text()
    (results / "comparison.csv").unlink()
    rebuilt = runner.invoke(app, ["compare", str(results), "--format", "csv"])
    assert rebuilt.exit_code == 0 and rebuilt.output == written
    assert not (results / "comparison.csv").exists()           # compare alone only reads
    rewritten = runner.invoke(app, ["compare", str(results), "--format", "csv", "--write"])
    assert rewritten.exit_code == 0
    assert rewritten.output == written == (results / "comparison.csv").read_text()
    latex = runner.invoke(app, ["compare", str(results), "--format", "latex", "--metric", "f1"])
    assert latex.exit_code == 0 and r"\begin{tabular}" in latex.output


def test_global_sweep_compares_each_recipe_with_the_baseline_at_the_same_point(tmp_path):
    config = write_config(tmp_path / "t.yaml", TINY_DIGITS.replace("seeds: [0]", "seeds: [0, 1]"))
    result = runner.invoke(app, ["sweep", str(config), "--param", "train.optimizer.lr=0.05,0.2",
                                 "--out", str(tmp_path), "--no-report"])
    assert result.exit_code == 0, result.output
    runs = pd.read_csv(tmp_path / "tiny" / "runs.csv").set_index("run_id")
    table = pd.read_csv(tmp_path / "tiny" / "comparison.csv").set_index("point")
    for lr in ("0.05", "0.2"):
        expected = sum(runs.loc[f"l2__lr={lr}__seed={s}", "test_accuracy"]
                       - runs.loc[f"baseline__lr={lr}__seed={s}", "test_accuracy"]
                       for s in (0, 1)) / 2
        assert table.loc[f"l2__lr={lr}", "diff"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("text,values", [
    ("model.hidden=[64,64],[128]", [[64, 64], [128]]),   # list values, comma-separated
    ("model.hidden=[[64, 64]]", [[64, 64]]),             # one list value
    ("recipes.l2.l2.lambda=[0.1, 1]", [0.1, 1]),         # one YAML list: the values
    ("recipes.l2.l2.lambda=0.1,1e1", [0.1, 10.0]),
])
def test_param_values_may_be_lists(text, values):
    from regbench.experiment.sweeps import parse_param

    assert parse_param(text)[1] == values


def test_a_sweep_over_layer_widths_from_the_command_line(tmp_path):
    config = write_config(tmp_path / "t.yaml", TINY_DIGITS)
    loaded = apply_params(load_config(config), ["model.hidden=[64,64],[128]"])
    plan = build_plan(loaded)
    hidden = sorted({tuple(run["model"]["hidden"]) for run in plan.runs})
    assert hidden == [(64, 64), (128,)]
    assert any("hidden=64-64" in run["run_id"] for run in plan.runs)
