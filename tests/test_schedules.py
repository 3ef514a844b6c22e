"""Learning-rate schedules and the optimizers beyond SGD/Adam: the lr column of a real run is
torch's schedule step for step; fused and solo runs under a schedule agree bit for bit;
ReduceLROnPlateau follows its own run's val metric and trains solo; bad settings are one
located error line; NAdam and RMSprop train and step exactly as torch's own."""
from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError
from torch.optim import lr_scheduler
from typer.testing import CliRunner

from regbench.cli import app
from regbench.config.schema import OPTIMIZER_KEYS, SCHEDULES, OptimizerConfig
from regbench.data import load_bundle
from regbench.engine import optim
from regbench.engine.schedules import make_optimizer, make_scheduler, step_scheduler
from regbench.engine.train import Trainer
from regbench.experiment.config import load_config
from regbench.experiment.plan import build_plan, config_hash
from regbench.experiment.reference import field_comments
from regbench.experiment.sweeps import shrink_for_smoke
from tests.conftest import TINY_REGRESSION, write_config

runner = CliRunner()
EPOCHS = 8
LR = 0.1


def experiment(name: str, recipes: str, *, seeds: str = "[0]", epochs: int = EPOCHS,
               train: str = "", extra: str = "") -> str:
    """A small digits experiment (300 training rows, one hidden layer of 32)."""
    return (f"name: {name}\nseeds: {seeds}\ndataset: {{name: digits, train_subset: 300}}\n"
            f"model: {{name: mlp, hidden: [32]}}\n"
            f"train: {{epochs: {epochs}, batch_size: 32, optimizer: {{name: sgd, lr: {LR}}}, "
            f"threads: 1{train}}}\nrecipes:\n{recipes}{extra}")


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    """metrics.csv as written (the csv module and float(): exact round trips, no parser)."""
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def run_cli(config: Path, out: Path, *extra: str) -> Path:
    result = runner.invoke(app, ["run", str(config), "--out", str(out), "--no-report", *extra])
    assert result.exit_code == 0, result.output
    return out / config.stem


# recipe -> its schedule in the config, and the same schedule built by hand with torch on a
# bare optimizer of rate LR (the plateau schedules are stepped with the run's own column)
SCHEDULED = {
    "cosine": ("cosine",    # the shorthand, as before the other schedules existed
               lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=EPOCHS)),
    "step": ("{name: step, step_size: 3, gamma: 0.5}",
             lambda o: lr_scheduler.StepLR(o, step_size=3, gamma=0.5)),
    "warm_cosine": ("{name: cosine, warmup_epochs: 3, warmup_factor: 0.1}",
                    lambda o: lr_scheduler.SequentialLR(o, [
                        lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=3),
                        lr_scheduler.CosineAnnealingLR(o, T_max=EPOCHS - 3)], milestones=[3])),
    "warm_step": ("{name: step, warmup_epochs: 2, warmup_method: constant, warmup_factor: 0.2, "
                  "step_size: 2, gamma: 0.5}",
                  lambda o: lr_scheduler.SequentialLR(o, [
                      lr_scheduler.ConstantLR(o, factor=0.2, total_iters=2),
                      lr_scheduler.StepLR(o, step_size=2, gamma=0.5)], milestones=[2])),
    "linear": ("{name: linear, warmup_epochs: 2, end_factor: 0.1}",
               lambda o: lr_scheduler.SequentialLR(o, [
                   lr_scheduler.LinearLR(o, start_factor=0.01, total_iters=2),
                   lr_scheduler.LinearLR(o, start_factor=1.0, end_factor=0.1,
                                         total_iters=EPOCHS - 2)], milestones=[2])),
    "constant": ("{name: constant, warmup_epochs: 3, warmup_factor: 0.25}",
                 lambda o: lr_scheduler.LinearLR(o, start_factor=0.25, total_iters=3)),
    "exponential": ("{name: exponential, gamma: 0.7, warmup_epochs: 1}",
                    lambda o: lr_scheduler.SequentialLR(o, [
                        lr_scheduler.LinearLR(o, start_factor=0.01, total_iters=1),
                        lr_scheduler.ExponentialLR(o, gamma=0.7)], milestones=[1])),
    "one_cycle": ("{name: one_cycle, pct_start: 0.25, final_div_factor: 100}",
                  lambda o: lr_scheduler.OneCycleLR(o, max_lr=LR, total_steps=EPOCHS,
                                                    pct_start=0.25, final_div_factor=100,
                                                    cycle_momentum=False)),
    # a relative threshold of 0.5: almost no epoch counts as an improvement, so the rate falls
    # within the run (patience 1: after two epochs without one)
    "plateau": ("{name: plateau, patience: 1, factor: 0.5, threshold: 0.5}",
                lambda o: lr_scheduler.ReduceLROnPlateau(o, mode="min", patience=1, factor=0.5,
                                                         threshold=0.5)),
    # mode left out: val_accuracy is a score, so higher is an improvement
    "plateau_accuracy": ("{name: plateau, monitor: val_accuracy, patience: 0, factor: 0.3, "
                         "threshold: 0.05, threshold_mode: abs}",
                         lambda o: lr_scheduler.ReduceLROnPlateau(
                             o, mode="max", patience=0, factor=0.3, threshold=0.05,
                             threshold_mode="abs")),
}
MONITOR = {"plateau": "val_loss", "plateau_accuracy": "val_accuracy"}


def torch_rates(build, monitored: list[float]) -> list[float]:
    """Each epoch's rate from a torch scheduler on a bare SGD optimizer, stepped once after
    each epoch (a plateau scheduler with that epoch's ``monitored`` value)."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    scheduler = build(optimizer)
    rates = []
    for value in monitored:
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
            scheduler.step(value)
        else:
            scheduler.step()
    return rates


@pytest.fixture(scope="module")
def scheduled_runs(tmp_path_factory) -> Path:
    """One run per schedule: each recipe trains under its own schedule (its train: block)."""
    root = tmp_path_factory.mktemp("schedules")
    recipes = "".join(f"  {name}: {{train: {{scheduler: {text}}}}}\n"
                      for name, (text, _) in SCHEDULED.items())
    return run_cli(write_config(root / "sched.yaml", experiment("sched", recipes)), root / "out")


def test_every_schedule_is_tested_here():
    settings = [yaml.safe_load(text) for text, _ in SCHEDULED.values()]
    assert {s if isinstance(s, str) else s["name"] for s in settings} == set(SCHEDULES)


@pytest.mark.parametrize("recipe", SCHEDULED)
def test_the_lr_column_is_torchs_schedule_step_for_step(scheduled_runs: Path, recipe: str):
    rows = read_metrics(scheduled_runs / "runs" / f"{recipe}__seed=0")
    assert [row["epoch"] for row in rows] == list(range(1, EPOCHS + 1))
    monitor = MONITOR.get(recipe, "val_loss")
    expected = torch_rates(SCHEDULED[recipe][1], [row[monitor] for row in rows])
    assert [row["lr"] for row in rows] == expected
    assert len(set(expected)) > 1, "the schedule never changed the rate: it proves nothing"


def test_warmup_then_cosine_is_the_closed_form(scheduled_runs: Path):
    """Not only torch's construct: rates rise linearly from 0.1·lr to lr over 3 epochs, then
    follow lr·(1 + cos(π·t/5))/2 from the first epoch after the warmup."""
    rates = [row["lr"] for row in read_metrics(scheduled_runs / "runs" / "warm_cosine__seed=0")]
    warmup = [LR * (0.1 + 0.9 * e / 3) for e in range(3)]
    cosine = [LR * (1 + math.cos(math.pi * t / 5)) / 2 for t in range(5)]
    assert rates == pytest.approx(warmup + cosine, rel=1e-12)


def test_plateau_lowers_the_rate_after_patience_epochs_without_improvement(
        scheduled_runs: Path):
    """Epoch 1 is the first best; with patience 1 the rate halves after the second epoch in a
    row that does not improve on the best val_loss by half of it."""
    rows = read_metrics(scheduled_runs / "runs" / "plateau__seed=0")
    best, bad, rate = math.inf, 0, LR
    for row in rows:
        assert row["lr"] == rate
        if row["val_loss"] < best * (1 - 0.5):
            best, bad = row["val_loss"], 0
        else:
            bad += 1
        if bad > 1:
            rate, bad = rate * 0.5, 0
    assert rows[-1]["lr"] < LR


def test_plateau_runs_train_solo_and_the_dry_run_says_why(tmp_path: Path):
    text = experiment("dry", "  plat: {train: {scheduler: {name: plateau, monitor: val_f1}}}\n"
                             "  cyc: {train: {scheduler: one_cycle}}\n", seeds="[0, 1]")
    config = write_config(tmp_path / "dry.yaml", text)
    result = runner.invoke(app, ["run", str(config), "--dry-run", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert ("2 run(s), train.scheduler plateau sets each run's rate from its own val_f1: "
            "plat__seed=0, plat__seed=1") in out
    assert "2 runs: cyc__seed=0, cyc__seed=1" in out         # an epoch-only schedule fuses


@pytest.mark.parametrize("schedule,optimizer", [
    ("{name: cosine, warmup_epochs: 2, warmup_factor: 0.1}", "{name: sgd, lr: 0.1, momentum: 0.9}"),
    ("{name: one_cycle, pct_start: 0.3, cycle_momentum: true}", "{name: adamw, lr: 0.01}"),
    ("{name: linear, warmup_epochs: 1}", "{name: rmsprop, lr: 0.003, centered: true, momentum: 0.5}"),
    ("{name: exponential, gamma: 0.8}", "{name: nadam, lr: 0.01}"),
], ids=["warmup_cosine", "one_cycle", "linear_rmsprop", "exponential_nadam"])
def test_fused_and_solo_runs_under_a_schedule_are_equal(tmp_path: Path, schedule: str,
                                                        optimizer: str):
    """Two recipes that differ in l2 strength, at two learning rates: fused, one group of four
    members with two parameter groups (one per rate) under one scheduler; solo, four runs. Every
    column of metrics.csv but seconds is equal bit for bit (one torch thread), the lr column
    included: each parameter group is scheduled from its own rate."""
    base_lr = float(optimizer.split("lr: ")[1].split(",")[0].rstrip("}"))
    text = experiment("fz", "  weak: {l2: {lambda: 0.5}}\n  strong: {l2: {lambda: 4.0}}\n",
                      epochs=6, train=f", scheduler: {schedule}",
                      extra=f"sweep:\n  train.optimizer.lr: [{base_lr}, {base_lr * 3}]\n")
    text = text.replace(f"optimizer: {{name: sgd, lr: {LR}}}", f"optimizer: {optimizer}")
    config = write_config(tmp_path / "fz.yaml", text)
    fused = run_cli(config, tmp_path / "fused", "--fuse", "on")
    solo = run_cli(config, tmp_path / "solo", "--fuse", "off")
    runs = sorted(p.name for p in (fused / "runs").iterdir() if not p.name.startswith("baseline"))
    assert len(runs) == 4
    groups = set()
    for run in runs:
        summary = json.loads((fused / "runs" / run / "summary.json").read_text())
        assert summary["fused"]["members"] == 4, run
        groups.add(summary["fused"]["group"])
        assert "fused" not in json.loads((solo / "runs" / run / "summary.json").read_text())
        got, want = read_metrics(fused / "runs" / run), read_metrics(solo / "runs" / run)
        for row in got + want:
            del row["seconds"]
        assert got == want, run
    assert len(groups) == 1
    rates = {run: [row["lr"] for row in read_metrics(fused / "runs" / run)] for run in runs}
    assert len({tuple(r) for r in rates.values()}) == 2 and all(len(set(r)) > 1
                                                               for r in rates.values())


# ------------------------------------------------------------------ bad settings

def one_error_line(result, *fragments: str) -> str:
    """The single `regbench: error:` line of a refused config (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("regbench: error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


BAD = [
    # (train settings, a recipe's train settings, what the line must say)
    (", scheduler: {name: cosine, warmup_epochs: 8}", "",
     ("b.yaml:5", "train.scheduler.warmup_epochs", "must be below train.epochs (8)", "got 8")),
    (", scheduler: {name: cosine, warmup_epochs: 3}", "{epochs: 3}",
     ("b.yaml:", "recipes.r.train.scheduler.warmup_epochs", "below train.epochs (3)")),
    (", scheduler: cosin", "",
     ("train.scheduler.name", "unknown schedule 'cosin' (did you mean 'cosine'?)", "plateau")),
    (", scheduler: {name: one_cycle, warmup_epochs: 2}", "",
     ("train.scheduler.warmup_epochs", "unknown key 'warmup_epochs' for schedule 'one_cycle'",
      "pct_start")),
    (", scheduler: {name: step, step_sise: 2}", "",
     ("train.scheduler.step_sise", "did you mean 'step_size'?")),
    (", scheduler: {warmup_epochs: 2}", "", ("train.scheduler.name", "needs a name")),
    (", scheduler: {name: one_cycle, pct_start: 1.5}", "",
     ("train.scheduler.pct_start", "must be < 1 (got 1.5)")),
    (", scheduler: {name: one_cycle, cycle_momentum: true, base_momentum: 0.97}", "",
     ("train.scheduler.base_momentum", "must not exceed max_momentum (0.95)")),
    (", scheduler: {name: plateau, monitor: val_acc}", "",
     ("train.scheduler.monitor", "did you mean 'val_accuracy'?")),
    (", scheduler: {name: plateau, mode: lowest}", "", ("train.scheduler.mode", "'min'")),
    (", scheduler: {name: exponential, gamma: 1.5}", "",
     ("train.scheduler.gamma", "must be <= 1 (got 1.5)")),
    (", scheduler: 3", "", ("train.scheduler", "a schedule's name", "(got 3)")),
    ("", "{optimizer: {name: adam, alpha: 0.9}}",
     ("recipes.r.train.optimizer.alpha", "a setting of rmsprop, not of adam",
      "adam takes: lr, betas, eps")),
    # every key the chosen optimizer would ignore, not only the newer ones
    ("", "{optimizer: {name: adam, lr: 0.01, momentum: 0.9, nesterov: true}}",
     ("b.yaml:7", "recipes.r.train.optimizer.momentum", "a setting of sgd, rmsprop, not of adam",
      "adam takes: lr, betas, eps")),
    ("", "{optimizer: {name: adam, nesterov: true}}",
     ("recipes.r.train.optimizer.nesterov", "a setting of sgd, not of adam")),
    ("", "{optimizer: {name: rmsprop, betas: [0.9, 0.99]}}",
     ("recipes.r.train.optimizer.betas", "a setting of adam, adamw, nadam, not of rmsprop",
      "rmsprop takes: lr, alpha, eps, momentum, centered")),
    ("", "{optimizer: {name: sgd, weight_decay: 0.1}}",
     ("recipes.r.train.optimizer.weight_decay", "add the weight_decay (decoupled) or l2 "
      "regularizer", "sgd takes: lr, momentum, nesterov")),
    # one_cycle's rise must last more than one epoch (0.125 × 8 = 1: torch divides by 0)
    (", scheduler: {name: one_cycle, pct_start: 0.125}", "",
     ("b.yaml:5", "train.scheduler.pct_start", "pct_start × train.epochs must be above 1",
      "with 8 epochs use pct_start above 0.125 (0.25 peaks at lr in epoch 2)")),
    ("", "{epochs: 10, scheduler: {name: one_cycle, pct_start: 0.55, three_phase: true}}",
     ("recipes.r.train.scheduler.pct_start", "2 × pct_start × train.epochs must be below "
      "train.epochs + 1", "use pct_start below 0.55")),
    # the monitor is checked against the task: digits measures no r2
    (", scheduler: {name: plateau, monitor: val_r2}", "",
     ("b.yaml:5", "train.scheduler.monitor", "'val_r2' is not measured in a classification "
      "run", "expected one of: objective, val_loss, val_accuracy")),
    (", scheduler: {name: plateau, patience: 2}", "{scheduler: {monitor: train_mae}}",
     ("b.yaml:7", "recipes.r.train.scheduler.monitor", "'train_mae' is not measured")),
    ("", "{optimizer: {name: rmsprop, alpha: 1.0}}",
     ("recipes.r.train.optimizer.alpha", "must be < 1 (got 1.0)")),
    ("", "{optimizer: {name: sgd, momentum_decay: 0.01}}",
     ("recipes.r.train.optimizer.momentum_decay", "a setting of nadam, not of sgd")),
    ("", "{optimizer: {name: nadam, eps: 0}}", ("recipes.r.train.optimizer.eps", "must be > 0")),
]


@pytest.mark.parametrize("train,recipe_train,fragments", BAD,
                         ids=[str(i) for i in range(len(BAD))])
def test_a_bad_setting_is_one_located_line(tmp_path: Path, train: str, recipe_train: str,
                                           fragments: tuple):
    recipe = f"  r: {{train: {recipe_train}}}\n" if recipe_train else "  r: {l2: {lambda: 1.0}}\n"
    config = write_config(tmp_path / "b.yaml", experiment("b", recipe, train=train))
    for command in ("validate", "run"):
        args = [command, str(config)] + (["--out", str(tmp_path / "out")] if command == "run"
                                         else [])
        one_error_line(runner.invoke(app, args), *fragments)
    assert not (tmp_path / "out").exists()


def test_one_cycle_rising_over_a_single_epoch_is_refused_before_any_run(tmp_path: Path):
    """pct_start 0.1 of 10 epochs: torch's OneCycleLR divides by pct_start·epochs − 1 = 0 as
    it is built, so every run would fail; refused at the key with the pct_start that works."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    with pytest.raises(ZeroDivisionError):          # what the refusal saves every run from
        lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=10, pct_start=0.1)
    config = write_config(tmp_path / "oc.yaml", experiment(
        "oc", "  r: {l2: {lambda: 1.0}}\n", epochs=10,
        train=", scheduler: {name: one_cycle, pct_start: 0.1}"))
    for args in (["validate", str(config)], ["run", str(config), "--out", str(tmp_path / "o")]):
        one_error_line(runner.invoke(app, args), "oc.yaml:5", "train.scheduler.pct_start",
                       "(got 0.1 × 10 = 1)", "use pct_start above 0.1 (0.2 peaks at lr in "
                       "epoch 2)")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("epochs,pct_start", [(10, 0.2), (10, 0.3), (8, 0.5), (12, 0.25)])
def test_one_cycle_peaks_at_lr_in_epoch_pct_start_times_epochs(epochs: int, pct_start: float):
    """With k = pct_start·epochs the rise is k − 1 steps of torch's cosine anneal from
    lr/div_factor, lr/25 + (lr − lr/25)·(1 − cos(π·t/(k − 1)))/2, so epoch k trains at lr:
    the highest rate of the run, strictly falling after it."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    scheduler = make_scheduler(optimizer, {"name": "one_cycle", "pct_start": pct_start}, epochs)
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        step_scheduler(scheduler, {})
    k = round(pct_start * epochs)
    rise = [LR / 25 + (LR - LR / 25) * (1 - math.cos(math.pi * t / (k - 1))) / 2
            for t in range(k)]
    assert rates[:k] == pytest.approx(rise, rel=1e-12)
    assert max(range(epochs), key=rates.__getitem__) + 1 == k
    assert all(before > after for before, after in zip(rates[k - 1:], rates[k:]))


def test_a_plateau_monitor_is_checked_against_the_task(tmp_path: Path):
    """A regression run measures no accuracy and a classification run no r2: refused before
    training (by validate and run), also where a sweep sets the monitor; the task's own
    columns pass."""
    regression = TINY_REGRESSION.format(epochs=2).replace(
        "threads: 1}", "threads: 1, scheduler: {name: plateau, monitor: val_accuracy}}")
    config = write_config(tmp_path / "reg.yaml", regression)
    for args in (["validate", str(config)], ["run", str(config), "--out", str(tmp_path / "o")]):
        one_error_line(runner.invoke(app, args), "reg.yaml:5", "train.scheduler.monitor",
                       "'val_accuracy' is not measured in a regression run",
                       "expected one of: objective, val_loss, val_mse, val_mae, val_r2, "
                       "train_loss, train_mse, train_mae, train_r2")
    assert not (tmp_path / "o").exists()
    config.write_text(regression.replace("val_accuracy", "val_r2"))
    assert runner.invoke(app, ["validate", str(config)]).exit_code == 0
    swept = write_config(tmp_path / "sw.yaml", experiment(
        "sw", "  r: {l2: {lambda: 1.0}}\n", train=", scheduler: {name: plateau}",
        extra="sweep:\n  train.scheduler.monitor: [val_loss, val_r2]\n"))
    one_error_line(runner.invoke(app, ["validate", str(swept)]), "sw.yaml:9",
                   "sweep.train.scheduler.monitor", "'val_r2' is not measured")


# every train.optimizer key with a value other than its default
SETTINGS = {"lr": 0.03, "momentum": 0.5, "nesterov": True, "betas": (0.8, 0.95), "eps": 1e-5,
            "weight_decay": 0.2, "momentum_decay": 0.01, "alpha": 0.9, "centered": True}


@pytest.mark.parametrize("name", OPTIMIZER_KEYS)
def test_an_optimizer_takes_exactly_the_keys_of_the_one_table(name: str):
    """Each key the schema's table gives an optimizer reaches torch's optimizer; any other key
    written is refused at that key, even at its default value (it would be ignored)."""
    assert set(SETTINGS) == set(OptimizerConfig.model_fields) - {"name"}
    keys = OPTIMIZER_KEYS[name]
    config = OptimizerConfig(name=name, **{key: SETTINGS[key] for key in keys}).model_dump()
    group = make_optimizer([torch.zeros(1, requires_grad=True)], config).param_groups[0]
    assert {key: group[key] for key in keys} == {key: SETTINGS[key] for key in keys}
    for key in set(SETTINGS) - set(keys):
        default = OptimizerConfig.model_fields[key].default
        for value in {SETTINGS[key], default} - {None}:
            with pytest.raises(ValidationError) as refused:
                OptimizerConfig.model_validate({"name": name, key: value})
            error = refused.value.errors()[0]
            assert error["loc"] == (key,) and f"{name} takes: {', '.join(keys)}" in error["msg"]


def test_a_recipe_inherits_only_the_settings_its_optimizer_and_schedule_take(tmp_path: Path):
    """Under an sgd experiment with momentum (swept for every recipe, nesterov set with --set)
    and a cosine warmup, a recipe's adam and one_cycle inherit neither (both would refuse
    them), while a recipe that keeps sgd keeps them."""
    config = write_config(tmp_path / "inh.yaml", experiment(
        "inh", "  a: {train: {optimizer: {name: adam, lr: 0.01}, scheduler: one_cycle}}\n"
               "  b: {train: {optimizer: {name: adamw}, scheduler: {name: one_cycle}}}\n"
               "  s: {train: {optimizer: {lr: 0.05}}}\n",
        train=", scheduler: {name: cosine, warmup_epochs: 2}",
        extra="sweep:\n  train.optimizer.momentum: [0.0, 0.9]\n"))
    runs = {run["run_id"]: run["train"] for run in build_plan(load_config(
        config, ["train.optimizer.nesterov=true"])).runs}
    assert len(runs) == 8
    for recipe in "ab":
        train = runs[f"{recipe}__momentum=0.9__seed=0"]
        assert (train["optimizer"]["momentum"], train["optimizer"]["nesterov"]) == (0.0, False)
        assert "warmup_epochs" not in train["scheduler"]
    assert runs["b__momentum=0.9__seed=0"]["optimizer"]["lr"] == LR    # lr: every one takes it
    kept = runs["s__momentum=0.9__seed=0"]
    assert kept["optimizer"] == {**kept["optimizer"], "name": "sgd", "lr": 0.05,
                                 "momentum": 0.9, "nesterov": True}
    assert kept["scheduler"]["warmup_epochs"] == 2


def test_an_older_cosine_with_step_keys_loads_and_says_they_are_ignored(tmp_path: Path):
    """`{name: cosine, step_size: 30}` was valid when cosine and step shared one model: it
    loads (its hash is the recorded one, above) with one warning naming the ignored keys, and
    trains a cosine; the same key on a newer schedule stays an unknown key."""
    config = write_config(tmp_path / "old.yaml", experiment(
        "old", "  r: {l2: {lambda: 1.0}}\n",
        train=", scheduler: {name: cosine, step_size: 30, gamma: 0.5}"))
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert out.count("cosine ignores") == 1
    assert "train.scheduler: cosine ignores step_size, gamma (keys of step" in out
    schedule = build_plan(load_config(config)).runs[0]["train"]["scheduler"]
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    assert type(make_scheduler(optimizer, schedule, EPOCHS)) is lr_scheduler.CosineAnnealingLR
    newer = write_config(tmp_path / "new.yaml", experiment(
        "new", "  r: {l2: {lambda: 1.0}}\n", train=", scheduler: {name: linear, step_size: 3}"))
    one_error_line(runner.invoke(app, ["validate", str(newer)]), "train.scheduler.step_size",
                   "unknown key 'step_size' for schedule 'linear'")
    newer.write_text(experiment("new", "  r: {l2: {lambda: 1.0}}\n",
                                train=", scheduler: {name: cosine, decay: 3}"))
    line = one_error_line(runner.invoke(app, ["validate", str(newer)]),
                          "unknown key 'decay' for schedule 'cosine'; expected one of: name, ")
    assert line.endswith(" warmup_factor")            # step's keys are not cosine's to write


def test_a_smoke_run_leaves_out_one_cycle_which_one_epoch_cannot_hold(tmp_path: Path):
    """--smoke trains one epoch, where no one_cycle fits: the schedule and its swept keys are
    left out (the note says so); the other schedules stay."""
    config = write_config(tmp_path / "sm.yaml", experiment(
        "sm", "  r: {train: {scheduler: {pct_start: 0.5}}}\n  c: {train: {scheduler: cosine}}\n",
        train=", scheduler: {name: one_cycle, pct_start: 0.25}",
        extra="sweep:\n  train.scheduler.div_factor: [10, 20]\n"))
    assert len(build_plan(load_config(config)).runs) == 6
    plan = build_plan(shrink_for_smoke(load_config(config)))
    assert {run["recipe"]: run["train"]["scheduler"] for run in plan.runs} == {
        "baseline": None, "r": None, "c": {"name": "cosine", "warmup_epochs": 0,
                                           "warmup_method": "linear", "warmup_factor": 0.01}}
    assert any("no one_cycle schedule" in warning for warning in plan.warnings)


# ------------------------------------------------------------------ config plumbing

def test_schedule_keys_are_documented_sweepable_and_smoke_safe(tmp_path: Path):
    """Every schedule key has its written meaning; any schedule's key can be swept (not only
    the first schedule's); --smoke's single epoch drops a warmup instead of refusing it."""
    for model in SCHEDULES.values():
        assert not set(model.model_fields) - set(field_comments(model)), model.__name__
    text = experiment("sw", "  r: {l2: {lambda: 1.0}}\n",
                      train=", scheduler: {name: plateau, patience: 2}",
                      extra="sweep:\n  train.scheduler.patience: [1, 3]\n")
    runs = build_plan(load_config(write_config(tmp_path / "sw.yaml", text))).runs
    assert sorted({r["train"]["scheduler"]["patience"] for r in runs}) == [1, 3]
    warm = write_config(tmp_path / "warm.yaml", experiment(
        "warm", "  r: {train: {scheduler: {name: linear, warmup_epochs: 4}}}\n",
        train=", scheduler: {name: cosine, warmup_epochs: 3}",
        extra="sweep:\n  train.scheduler.warmup_epochs: [2, 5]\n"))
    smoke = shrink_for_smoke(load_config(warm))
    schedules = [r["train"]["scheduler"] for r in build_plan(smoke).runs]
    assert schedules and all(s["warmup_epochs"] == 0 for s in schedules)
    assert {s["name"] for s in schedules} == {"cosine", "linear"}


# Experiments written for the committed code (cosine and step shared one model; sgd, adam and
# adamw only) and the config hash of each run. The hashes were computed by that code, not by
# today's: `git archive HEAD | tar -x -C /tmp/head`, then build_plan(load_config(...)) with
# PYTHONPATH=/tmp/head on these exact texts (HEAD 38b192f, before the schedules and optimizers
# beyond them). A run whose hash changes is retrained on resume instead of kept.
HASH_HEAD = ("name: h\nseeds: [0]\ndataset: {name: digits, train_subset: 300}\n"
             "model: {name: mlp, hidden: [32]}\n")
RECORDED_HASHES = {
    "train: {epochs: 8, batch_size: 32, optimizer: {name: sgd, lr: 0.1, momentum: 0.9, "
    "nesterov: true}, scheduler: cosine}\nrecipes:\n  r: {l2: {lambda: 1.0}}\n":
        {"baseline__seed=0": "dfb1bbdce5d91af6", "r__seed=0": "72099064c0a9f255"},
    "train: {epochs: 8, batch_size: 32, optimizer: {name: adam, lr: 0.01, betas: [0.8, 0.99]}, "
    "scheduler: {name: step, step_size: 3, gamma: 0.5}}\nrecipes:\n  r: {l2: {lambda: 1.0}}\n":
        {"baseline__seed=0": "11ba388f318b7187", "r__seed=0": "d408356315af1b21"},
    "train: {epochs: 8, batch_size: 32, optimizer: {name: adamw, lr: 0.01, weight_decay: 0.05}}"
    "\nrecipes:\n  r: {dropout: {p: 0.2}}\n":
        {"baseline__seed=0": "07afa5be2da843bc", "r__seed=0": "82fcfa856ade61d0"},
    # step's key on a cosine, accepted (and ignored) then: it still loads, and hashes as then
    "train: {epochs: 8, batch_size: 32, optimizer: {name: sgd, lr: 0.1}, scheduler: {name: "
    "cosine, step_size: 30}}\nrecipes:\n  r: {l2: {lambda: 1.0}}\n":
        {"baseline__seed=0": "7f15cf8c1f63882a", "r__seed=0": "9fddd947b1d2cfa9"},
    # a recipe switching to adam and cosine under an sgd/step experiment
    "train: {epochs: 8, batch_size: 32, optimizer: {name: sgd, lr: 0.1}, scheduler: {name: step, "
    "step_size: 3}}\nrecipes:\n  r: {l2: {lambda: 1.0}, train: {optimizer: {name: adam, "
    "lr: 0.01}, scheduler: {name: cosine}}}\n":
        {"baseline__seed=0": "51318d1fed9ecb9f", "r__seed=0": "84670c6a5773ff24"},
}


@pytest.mark.parametrize("body", RECORDED_HASHES, ids=["sgd_cosine", "adam_step", "adamw",
                                                       "cosine_step_size", "recipe_switches"])
def test_runs_made_before_keep_the_config_hash_the_committed_code_gave_them(tmp_path: Path,
                                                                            body: str):
    config = write_config(tmp_path / "h.yaml", HASH_HEAD + body)
    runs = build_plan(load_config(config)).runs
    assert {run["run_id"]: run["config_hash"] for run in runs} == RECORDED_HASHES[body]
    for spec in runs:
        assert config_hash(spec) == spec["config_hash"]
        changed = copy.deepcopy(spec)   # the hash still sees what the schedule computes
        changed["train"]["scheduler"] = {"name": "step", "step_size": 3, "gamma": 0.25}
        assert config_hash(changed) != spec["config_hash"]


# ------------------------------------------------------------------ NAdam and RMSprop

OPTIMIZERS = {  # regbench's settings -> torch's optimizer with the same settings, by hand
    "nadam": ("{name: nadam, lr: 0.01, betas: [0.8, 0.99], eps: 1.0e-6, momentum_decay: 0.01}",
              lambda p: torch.optim.NAdam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6,
                                          momentum_decay=0.01)),
    "rmsprop": ("{name: rmsprop, lr: 0.003, alpha: 0.9, eps: 1.0e-6, momentum: 0.5, "
                "centered: true}",
                lambda p: torch.optim.RMSprop(p, lr=0.003, alpha=0.9, eps=1e-6, momentum=0.5,
                                              centered=True)),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_nadam_and_rmsprop_step_as_torchs_own(tmp_path: Path, name: str):
    """A run's first steps equal torch's optimizer, built with the same settings and stepped
    by hand on a copy of the run's model, bit for bit."""
    text = experiment("o", "  r: {l2: {lambda: 1.0}}\n").replace(
        f"optimizer: {{name: sgd, lr: {LR}}}", f"optimizer: {OPTIMIZERS[name][0]}")
    spec = build_plan(load_config(write_config(tmp_path / "o.yaml", text))).runs[0]
    data = load_bundle(spec["dataset"], spec["train"]["train_eval_samples"], spec["seed"])
    trainer = Trainer(spec, data, torch.device("cpu"))
    assert type(trainer.optimizer).__name__.lower() == name
    twin = copy.deepcopy(trainer.model)
    by_hand = OPTIMIZERS[name][1](twin.parameters())
    for step in range(4):
        rows = slice(32 * step, 32 * (step + 1))
        x, y = data.x_train[rows], data.y_train[rows]
        for model, optimizer in ((trainer.model, trainer.optimizer), (twin, by_hand)):
            optimizer.zero_grad()
            trainer.data_loss(model(x), y).backward()
        optim.eager_step(trainer.optimizer)        # the loop's step
        by_hand.step()
        for mine, theirs in zip(trainer.model.parameters(), twin.parameters()):
            assert torch.equal(mine, theirs), f"step {step + 1}"


def test_nadam_and_rmsprop_train(tmp_path: Path):
    recipes = "".join(f"  {name}: {{train: {{optimizer: {text}}}}}\n"
                      for name, (text, _) in OPTIMIZERS.items())
    folder = run_cli(write_config(tmp_path / "t.yaml", experiment("t", recipes, epochs=5)),
                     tmp_path / "out")
    for name in OPTIMIZERS:
        rows = read_metrics(folder / "runs" / f"{name}__seed=0")
        assert rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"], name
        assert rows[-1]["val_accuracy"] > 0.8, name
