"""`--recipes NAME,…` trains a subset (the baseline always kept), and the advice fits the data:
no image augmentation for a table, no cutout patch over half the image's side."""
from __future__ import annotations

import csv
import json
import re

import pytest
from typer.testing import CliRunner

import regbench
from regbench.analysis.advice import Diagnosis, advise
from regbench.cli import app
from regbench.errors import ConfigError
from regbench.experiment.launch import Launch
from regbench.experiment.runner import load_experiment, plan_experiment
from regbench.experiment.tune import Search, tune_experiment
from tests.conftest import write_config
from tests.test_bad_input import one_error_line

runner = CliRunner()

THREE = """\
name: three
seeds: [0]
dataset: {name: digits, train_subset: 200}
model: {name: mlp, hidden: [16]}
train: {epochs: 1, batch_size: 32, optimizer: {name: sgd, lr: 0.1}, threads: 1}
recipes:
  l2: {l2: {lambda: 1.0}}
  dropout: {dropout: {p: 0.2}}
  smooth: {label_smoothing: {epsilon: 0.1}}
"""


def folders(results) -> set[str]:
    return {p.name for p in (results / "runs").iterdir()}


def table_ids(results) -> set[str]:
    with (results / "runs.csv").open() as handle:
        return {row["run_id"] for row in csv.DictReader(handle)}


def test_a_subset_trains_the_baseline_and_the_named_recipes_and_the_folder_keeps_the_rest(
        tmp_path):
    config = write_config(tmp_path / "three.yaml", THREE)
    out, results = tmp_path / "o", tmp_path / "o" / "three"
    first = runner.invoke(app, ["run", str(config), "--out", str(out), "--no-report",
                                "--recipes", "l2,dropout"])
    assert first.exit_code == 0, first.output
    subset = {"baseline__seed=0", "l2__seed=0", "dropout__seed=0"}
    assert folders(results) == subset
    assert table_ids(results) == subset
    assert set(json.loads((results / "plan.json").read_text())["run_ids"]) == subset

    # the whole experiment afterwards resumes the subset's runs and trains the one left out
    whole = regbench.run(config, out=out, report=False)
    assert sorted(whole.outcome.skipped) == sorted(subset)
    assert folders(results) == subset | {"smooth__seed=0"}
    assert set(whole.comparison["point"]) == {"baseline", "l2", "dropout", "smooth"}

    # a subset again trains nothing; its comparison covers its own runs, the folder keeps all
    again = regbench.run(config, out=out, report=False, recipes=["l2"])
    assert sorted(again.outcome.skipped) == ["baseline__seed=0", "l2__seed=0"]
    assert set(again.comparison["point"]) == {"baseline", "l2"}
    assert table_ids(results) == {"baseline__seed=0", "l2__seed=0"}
    assert folders(results) == subset | {"smooth__seed=0"}


REFUSALS = [
    (["run", "--recipes", "l2,droput"], {"recipes": "l2,droput"},
     "--recipes: unknown recipe 'droput' (did you mean 'dropout'?); expected one of: "
     "baseline, l2, dropout, smooth"),
    (["sweep", "--param", "recipes.l2.l2.lambda=0.1,1", "--recipes", "l2x"], {"recipes": ["l2x"]},
     "--recipes: unknown recipe 'l2x' (did you mean 'l2'?)"),
    (["sweep", "--param", "recipes.dropout.dropout.p=0.1,0.3", "--recipes", "l2"], None,
     "--param recipes.dropout.dropout.p: recipe 'dropout' is not among --recipes l2"),
    (["run", "--recipes", "l2,,dropout"], {"recipes": "l2,,dropout"},
     "--recipes: expected recipe names such as l2,dropout"),
]


@pytest.mark.parametrize("argv,options,message", REFUSALS, ids=[" ".join(a) for a, _, _ in REFUSALS])
def test_the_cli_and_the_python_api_refuse_a_bad_selection_alike(tmp_path, argv, options,
                                                                 message):
    config = write_config(tmp_path / "three.yaml", THREE)
    cli = runner.invoke(app, [argv[0], str(config), "--out", str(tmp_path / "o"), *argv[1:]])
    one_error_line(cli, 2, message)
    if options is not None:
        with pytest.raises(ConfigError) as raised:
            regbench.run(config, out=tmp_path / "o", **options)
        assert message in str(raised.value)
    assert not (tmp_path / "o").exists()          # refused before anything is written


def test_names_are_checked_as_text_or_as_a_list():
    assert Launch(recipes=" l2, dropout,l2").recipes == ("l2", "dropout")
    assert Launch(recipes=["l2"]).recipes == ("l2",)
    assert Launch(recipes="").recipes == ()
    for bad in (5, [""], ["l2", 3], "l2,,x"):
        with pytest.raises(ConfigError, match="--recipes"):
            Launch(recipes=bad)


def test_a_sweep_covers_the_selected_recipes_only(tmp_path):
    """The file's sweep keys of a recipe left out go with it; a --param of a selected one
    sweeps it, and the baseline runs once per point of a shared key."""
    text = THREE + "sweep:\n  recipes.l2.l2.lambda: [0.1, 10.0]\n  train.optimizer.lr: [0.05, 0.1]\n"
    config = write_config(tmp_path / "three.yaml", text)
    launch = Launch(out=tmp_path / "o", recipes="dropout")
    loaded = load_experiment(config, launch, params=["recipes.dropout.dropout.p=0.1,0.3"])
    runs = {run["run_id"] for run in plan_experiment(loaded, launch).runs}
    assert runs == {"baseline__lr=0.05__seed=0", "baseline__lr=0.1__seed=0",
                    *(f"dropout__lr={lr}__p={p}__seed=0"
                      for p in ("0.1", "0.3") for lr in ("0.05", "0.1"))}
    dry = runner.invoke(app, ["sweep", str(config), "--out", str(tmp_path / "o"), "--dry-run",
                              "--recipes", "dropout", "--param",
                              "recipes.dropout.dropout.p=0.1,0.3"])
    assert dry.exit_code == 0, dry.output
    assert "6 runs" in dry.output and "l2__" not in dry.output


def test_tune_searches_the_selected_recipes_only(tmp_path):
    text = THREE + ("search:\n  recipes.l2.l2.lambda: {low: 1.0e-3, high: 1.0, log: true}\n"
                    "  recipes.dropout.dropout.p: {low: 0.0, high: 0.5}\n")
    config = write_config(tmp_path / "three.yaml", text)
    outcome = tune_experiment(config, Launch(out=tmp_path, recipes="l2", confirm_seeds=1,
                                             report=False), Search(trials=2, sampler="random"))
    assert outcome.exit_code == 0
    assert list(outcome.recipes) == ["l2"]
    tuning = json.loads((tmp_path / "three-tune" / "tuning.json").read_text())
    assert list(tuning["recipes"]) == ["l2"]
    confirmed = {run["recipe"] for run in outcome.confirmation.plan.runs}
    assert confirmed == {"baseline", "l2"}


# ----------------------------------------------------------------------------- advice

OVERFIT = [{"run": "baseline__seed=0", "point": "baseline", "seed": 0, "regularizers": [],
            "verdict": "overfitting", "grade": None, "started_epoch": 5, "rules": [],
            "evidence": []}]
IMAGE_ONLY = ("augment", "cutout", "random_erasing", "cutmix")


def folder_of(tmp_path, dataset: str):
    """A results folder's experiment.yaml, as the advice reads the data's shape from it."""
    folder = tmp_path / dataset
    folder.mkdir()
    (folder / "experiment.yaml").write_text(f"name: x\ndataset: {{name: {dataset}}}\n")
    return folder


def test_advice_for_a_table_names_no_image_augmentation(tmp_path):
    diagnosis = Diagnosis(folder_of(tmp_path, "breast_cancer"), OVERFIT, "classification")
    lines = advise(diagnosis, [])
    suggested = [line.strip().split(":")[0].split()[0] for line in lines if line.startswith("  ")]
    assert suggested and "mixup" in suggested  # mixup mixes feature vectors too
    assert not set(suggested) & set(IMAGE_ONLY), lines
    assert not any(name in line for line in lines for name in IMAGE_ONLY)


def test_advice_on_8x8_images_never_suggests_a_cutout_over_half_the_side(tmp_path):
    """digits are 1×8×8 images: cutout is worth trying, with a patch of at most 4 px (its
    default 8 px would blank the whole digit)."""
    diagnosis = Diagnosis(folder_of(tmp_path, "digits"), OVERFIT, "classification")
    # the first tries already made, so that cutout is among the six suggested
    tried = {name: {} for name in ("early_stopping", "l2", "weight_decay", "dropout")}
    numbers = {f"{split}_{metric}": value for split in ("train", "val", "test")
               for metric, value in (("accuracy", 0.9), ("loss", 0.3))}
    summaries = [{"run_id": "baseline__seed=0", "point_id": "baseline", "recipe": "baseline",
                  "seed": 0, "status": "completed", "task": "classification",
                  "regularizers": tried, **numbers}]
    lines = advise(diagnosis, summaries)
    cutout = [line for line in lines if line.strip().startswith("cutout")]
    assert cutout, lines
    sizes = [int(n) for line in lines for n in re.findall(r"size\D{0,4}(\d+)", line)]
    assert sizes and max(sizes) <= 4, lines
    wide = Diagnosis(tmp_path, OVERFIT, "classification", input_shape=(3, 32, 32))
    assert any("size ≤ 16 px" in line for line in advise(wide, summaries))
