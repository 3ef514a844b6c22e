"""`dataset.val_limit` / `test_limit`: a seeded subset of the validation and test splits
(stratified for classification), measured by the run and recorded in its hash."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from conftest import write_config
from test_bad_input import one_error_line
from typer.testing import CliRunner

from regbench.cli import app
from regbench.data import prepare
from regbench.experiment.config import load_config
from regbench.experiment.plan import build_plan, config_hash

COMMON = {"root": "data", "download": False, "val_fraction": 0.1, "test_fraction": 0.2,
          "train_subset": None, "label_noise": 0.0, "split_seed": 0,
          "standardize_target": False}


def config(name: str = "digits", **extra) -> dict:
    return {**COMMON, "name": name, **extra}


def experiment(dataset: str) -> str:
    return (f"name: limited\nseeds: [0]\ndataset: {{name: digits, train_subset: 300{dataset}}}\n"
            "model: {name: mlp, hidden: [16]}\n"
            "train: {epochs: 1, batch_size: 32, optimizer: {name: sgd, lr: 0.1}, threads: 1}\n"
            "recipes:\n  l2: {l2: {lambda: 1.0}}\n")


def rows_of(part, whole) -> np.ndarray:
    """Where each row of ``part`` sits in ``whole`` (every row must be found)."""
    part, whole = part.numpy().reshape(len(part), -1), whole.numpy().reshape(len(whole), -1)
    index = {row.tobytes(): i for i, row in enumerate(whole)}
    return np.array([index[row.tobytes()] for row in part])


def test_a_run_measures_the_limited_splits(tmp_path):
    path = write_config(tmp_path / "limited.yaml", experiment(", val_limit: 50, test_limit: 60"))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"),
                                      "--no-report"])
    assert result.exit_code == 0, result.output
    for run in (tmp_path / "out" / "limited" / "runs").iterdir():
        summary = json.loads((run / "summary.json").read_text())
        assert summary["examples"] == {"train": 300, "val": 50, "test": 60}


def test_the_kept_test_rows_are_a_stratified_subset_of_the_test_split():
    full, limited = prepare(config()), prepare(config(test_limit=60, val_limit=50))
    assert (limited.x_train == full.x_train).all()     # training rows and statistics untouched
    assert (limited.meta["n_val"], limited.meta["n_test"]) == (50, 60)
    kept = rows_of(limited.x_test, full.x_test)
    assert len(set(kept)) == 60
    assert (full.y_test.numpy()[kept] == limited.y_test.numpy()).all()
    counts = np.bincount(full.y_test.numpy(), minlength=10)
    expected = counts * 60 / counts.sum()
    assert np.abs(np.bincount(limited.y_test.numpy(), minlength=10) - expected).max() <= 1
    val_counts = np.bincount(full.y_val.numpy(), minlength=10)
    assert np.abs(np.bincount(limited.y_val.numpy(), minlength=10)
                  - val_counts * 50 / val_counts.sum()).max() <= 1
    # the fingerprints name the rows measured: the kept ones, not the whole splits
    assert limited.meta["split"]["train"] == full.meta["split"]["train"]
    assert limited.meta["split"]["val"] != full.meta["split"]["val"]
    assert limited.meta["split"]["test"] != full.meta["split"]["test"]


def test_the_same_seed_keeps_the_same_rows_and_another_seed_others():
    a, b = prepare(config(val_limit=50, test_limit=60)), prepare(config(val_limit=50,
                                                                        test_limit=60))
    assert (a.x_val == b.x_val).all() and (a.x_test == b.x_test).all()
    assert a.meta["split"] == b.meta["split"]
    other = prepare(config(val_limit=50, test_limit=60, split_seed=1))
    assert other.meta["split"]["test"] != a.meta["split"]["test"]


def test_per_seed_resampling_draws_the_validation_subset_per_seed_and_keeps_the_test_one():
    limited = config(val_limit=50, test_limit=60, resample="per_seed")
    seed0, seed1 = prepare(limited, run_seed=0), prepare(limited, run_seed=1)
    assert seed0.meta["split"]["val"] != seed1.meta["split"]["val"]
    assert seed0.meta["split"]["test"] == seed1.meta["split"]["test"]


def test_regression_keeps_a_random_subset_and_a_larger_limit_keeps_the_split_whole():
    full, limited = prepare(config("diabetes")), prepare(config("diabetes", test_limit=30))
    assert limited.meta["n_test"] == 30
    kept = rows_of(limited.x_test, full.x_test)
    assert (full.y_test.numpy()[kept] == limited.y_test.numpy()).all()
    whole = prepare(config(val_limit=10_000, test_limit=10_000))
    digits = prepare(config())
    assert whole.meta == digits.meta and (whole.x_test == digits.x_test).all()


def test_limits_are_in_the_run_hash_and_absent_keys_keep_the_old_hash(tmp_path):
    def runs(dataset: str) -> list[dict]:
        path = write_config(tmp_path / f"h{len(dataset)}.yaml", experiment(dataset))
        return build_plan(load_config(path)).runs

    plain = {run["config_hash"] for run in runs("")}
    assert not plain & {run["config_hash"] for run in runs(", val_limit: 50")}
    assert not plain & {run["config_hash"] for run in runs(", test_limit: 60")}
    spec = runs("")[0]
    assert spec["dataset"]["val_limit"] is None
    # a spec written before the keys existed (no val_limit/test_limit) keeps its hash
    before = copy.deepcopy(spec)
    del before["dataset"]["val_limit"], before["dataset"]["test_limit"]
    assert config_hash(before) == config_hash(spec) == spec["config_hash"]


@pytest.mark.parametrize("limit,fragments", [
    ("val_limit: 3", ("dataset.val_limit", "3 samples", "10 classes")),
    ("test_limit: 0", ("dataset.test_limit",)),
])
def test_a_limit_that_cannot_hold_every_class_is_refused(tmp_path, limit, fragments):
    path = write_config(tmp_path / "bad.yaml", experiment(f", {limit}"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--no-report"])
    one_error_line(result, 2, *fragments)
    assert not (out / "limited").exists()
