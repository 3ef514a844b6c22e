"""Checkpoints inside a run (train.checkpoint_every): a run stopped after epoch k resumes from
its checkpoint and ends with the metrics.csv of a run that was never stopped, for every
regularizer, solo and fused; a checkpoint regbench did not write for these runs is ignored."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from regbench.cli import app
from regbench.data import load_bundle
from regbench.engine.checkpoint import Checkpoints
from regbench.engine.fused import FusedTrainer
from regbench.engine.train import Trainer
from regbench.regularizers import REGULARIZERS
from regbench.testing import plan_for, run_of
from regbench.vocabulary import CHECKPOINT_FILE
from tests.conftest import REPO, digits_yaml, write_config
from tests.test_fused import plan_runs

runner = CliRunner()
CPU = torch.device("cpu")
EPOCHS = 5
STOP_AT = 3            # Ctrl-C during epoch 3: the checkpoint after epoch 2 is the last


def equal_rows(a: list[dict], b: list[dict]) -> bool:
    drop = ("seconds",)
    return [{k: v for k, v in r.items() if k not in drop} for r in a] == \
        [{k: v for k, v in r.items() if k not in drop} for r in b]


def with_checkpoint(spec: dict, path: Path, every=1) -> dict:
    return {**spec, "checkpoint": str(path),
            "train": {**spec["train"], "checkpoint_every": every}}


def stop_at(epoch: int):
    """An epoch callback (solo: row; fused: spec, row) that is Ctrl-C in ``epoch``."""
    def on_epoch(*args):
        if args[-1]["epoch"] == epoch:
            raise KeyboardInterrupt
    return on_epoch


def stopped_then_resumed(make, path: Path):
    """Train with ``make()`` until Ctrl-C in epoch STOP_AT, then a new trainer resumes (the
    global RNG moved on meanwhile, as in another process)."""
    first = make().fit(stop_at(STOP_AT))
    assert path.is_file()
    torch.manual_seed(12345)
    torch.rand(7)
    return first, make().resume().fit()


BUILT_IN = sorted(name for name in REGULARIZERS.names() if not REGULARIZERS.get(name).plugin)
# parameters that keep a run going past STOP_AT (else its conformance parameters): no epoch
# improves by 10 after the first, so patience 2 stops after epoch 3, from the resumed state
# (its best weights: epoch 1's)
PARAMS = {"early_stopping": {"patience": 2, "min_delta": 10.0}}


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_regularizer_resumes_bit_for_bit(tmp_path, name):
    cls = REGULARIZERS.get(name)
    recipe = {**cls.conformance_with, name: PARAMS.get(name, dict(cls.conformance))}
    plan, refusals = plan_for(recipe, epochs=EPOCHS)
    assert plan is not None, refusals
    spec = run_of(plan, "r")
    data = load_bundle(spec["dataset"], spec["train"]["train_eval_samples"], spec["seed"])
    whole = Trainer(spec, data, CPU).fit()
    path = tmp_path / CHECKPOINT_FILE
    stopped, resumed = stopped_then_resumed(
        lambda: Trainer(with_checkpoint(spec, path), data, CPU), path)
    assert stopped.status == "interrupted"
    assert resumed.summary["resumed_from_epoch"] == STOP_AT - 1
    assert resumed.status == whole.status
    assert equal_rows(resumed.rows, whole.rows)
    tests = [k for k in whole.summary if k.startswith("test_")]
    assert tests and all(resumed.summary[k] == whole.summary[k] for k in tests)


@pytest.mark.parametrize("recipes, model", [
    # the stacked MLP path: dropout's and DropConnect's masks drawn ahead, mixup's λ stock,
    # early stopping's best weights, a member that stops early
    ("  a: {dropout: {p: 0.3}, mixup: {alpha: 0.2}, early_stopping: {patience: 1}}\n"
     "  b: {dropout: {p: 0.1}, mixup: {alpha: 1.0}, early_stopping: {patience: 9}}\n", "mlp"),
    ("  a: {dropconnect: {p: 0.3, mode: per_batch}, l1: {lambda: 0.01}}\n"
     "  b: {dropconnect: {p: 0.1, mode: per_batch}, l1: {lambda: 0.1}}\n", "mlp"),
    # torch.func.vmap over a conv model
    ("  a: {l2: {lambda: 0.1}, augment: {rotate: 10.0, hflip: 0.0}}\n"
     "  b: {l2: {lambda: 1.0}, augment: {rotate: 5.0, hflip: 0.0}}\n", "cnn"),
    # members penalising different weights: each member's own penalty, through views of
    # the stacked weights that a resumed group must take again
    ("  a: {l2: {lambda: 1.0, include_bias: true}}\n"
     "  b: {l2: {lambda: 3.0}}\n", "mlp"),
], ids=["dropout-mixup-early-stopping", "dropconnect-l1", "cnn-augment", "per-member-penalty"])
def test_a_fused_group_resumes_bit_for_bit(tmp_path, recipes, model):
    text = digits_yaml("g", recipes, seeds="[0]", epochs=EPOCHS, train_subset=200)
    if model == "cnn":
        text = text.replace("{name: mlp, hidden: [32]}",
                            "{name: cnn, channels: [4], hidden: [16], kernel_size: 3}")
    specs = [s for s in plan_runs(tmp_path, text) if s["recipe"] in ("a", "b")]
    assert len(specs) == 2
    data = load_bundle(specs[0]["dataset"], specs[0]["train"]["train_eval_samples"], 0)
    whole = FusedTrainer(specs, data, CPU).fit()
    path = tmp_path / CHECKPOINT_FILE
    marked = [with_checkpoint(spec, path) for spec in specs]
    stopped = FusedTrainer(marked, data, CPU).fit(stop_at(STOP_AT))
    assert path.is_file() and {r.status for r in stopped} <= {"interrupted", "completed"}
    torch.manual_seed(12345)
    resumed = FusedTrainer(marked, data, CPU).resume().fit()
    for a, b in zip(whole, resumed):
        assert b.summary["resumed_from_epoch"] == STOP_AT - 1
        assert a.status == b.status and equal_rows(a.rows, b.rows)
        assert a.summary["test_accuracy"] == b.summary["test_accuracy"]


KILLER = """\
import os, signal, sys
from regbench.engine import checkpoint

write = checkpoint.Checkpoints.write

def write_then_die(self, epoch, state):     # SIGKILL right after epoch {k}'s checkpoint
    write(self, epoch, state)                 # of recipe mix
    if epoch == {k} and self.run_ids[0].startswith("mix"):
        os.kill(os.getpid(), signal.SIGKILL)

checkpoint.Checkpoints.write = write_then_die
from regbench.cli import main
sys.argv = ["regbench", *sys.argv[1:]]
main()
"""


def run_folders(out: Path) -> dict[str, Path]:
    return {p.name: p for p in (out / "k" / "runs").iterdir()}


@pytest.mark.parametrize("fuse", ["off", "on"])
def test_a_sigkilled_run_resumes_from_epoch_k_with_the_same_metrics(tmp_path, fuse):
    """The acceptance test: `regbench run` SIGKILLed after epoch k's checkpoint; the same
    command again trains only epochs k+1.. and writes an uninterrupted run's metrics.csv."""
    k = 3
    config = write_config(tmp_path / "k.yaml", digits_yaml(
        "k", "  mix: {dropout: {p: 0.3}, mixup: {alpha: 0.2}}\n", epochs=8).replace(
        "threads: 1}", f"threads: 1, checkpoint_every: 1, fuse: '{fuse}'}}"))
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER.format(k=k))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["run", str(config), "--no-report", "--recipes", "mix"]
    killed = subprocess.run([sys.executable, str(killer), *args, "--out", str(tmp_path / "b")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    leader = run_folders(tmp_path / "b")["mix__seed=0"]
    checkpoint = leader / CHECKPOINT_FILE
    assert checkpoint.is_file() and not (leader / "summary.json").exists()
    header = json.loads(checkpoint.read_bytes().partition(b"\n")[0])
    assert header["epoch"] == k
    # the epochs before the kill, as the checkpoint holds them (their seconds included)
    specs = [{"run_id": r, "config_hash": h, "train": {"epochs": 8, "checkpoint_every": 1},
              "checkpoint": str(checkpoint)}
             for r, h in zip(header["run_ids"], header["config_hashes"])]
    state = Checkpoints(specs).read()
    before = state["trainer"].rows if fuse == "off" else state["trainer"].rows[0]
    assert len(before) == k

    for out in ("a", "b"):       # a: never killed; b: resumed
        done = runner.invoke(app, [*args, "--out", str(tmp_path / out)])
        assert done.exit_code == 0, done.output
    whole, resumed = run_folders(tmp_path / "a"), run_folders(tmp_path / "b")
    assert set(whole) == set(resumed)
    for name in ("mix__seed=0", "mix__seed=1"):
        a = pd.read_csv(whole[name] / "metrics.csv")
        b = pd.read_csv(resumed[name] / "metrics.csv")
        assert a.drop(columns="seconds").equals(b.drop(columns="seconds"))
        summary = json.loads((resumed[name] / "summary.json").read_text())
        assert summary["status"] == "completed"
        # solo, the kill came in mix__seed=0 (seed 1 had not begun); fused, in their group
        assert summary["resumed_from_epoch"] == (k if name in header["run_ids"] else None)
        assert not (resumed[name] / CHECKPOINT_FILE).exists()    # removed once complete
    # epochs 1..k were not trained again: their rows are the killed process's own
    assert list(pd.read_csv(resumed["mix__seed=0"] / "metrics.csv")["seconds"][:k]) == \
        pytest.approx([row["seconds"] for row in before], rel=1e-6)


@pytest.fixture
def stopped_run(tmp_path):
    """A solo run stopped in epoch STOP_AT, its checkpoint written, and the whole run's rows."""
    cls = REGULARIZERS.get("dropout")
    plan, _ = plan_for({"dropout": dict(cls.conformance)}, epochs=EPOCHS)
    spec = with_checkpoint(run_of(plan, "r"), tmp_path / "run" / CHECKPOINT_FILE)
    data = load_bundle(spec["dataset"], spec["train"]["train_eval_samples"], spec["seed"])
    whole = Trainer({**spec, "checkpoint": None}, data, CPU).fit()
    Trainer(spec, data, CPU).fit(stop_at(STOP_AT))
    return spec, data, whole, Path(spec["checkpoint"])


def resume_from_scratch(spec, data, whole) -> list[str]:
    """A run whose checkpoint is ignored starts over, with the same numbers; its notes."""
    result = Trainer(spec, data, CPU).resume().fit()
    assert result.summary["resumed_from_epoch"] is None
    assert equal_rows(result.rows, whole.rows)
    return result.summary["checkpoint_notes"]


def test_a_damaged_checkpoint_is_set_aside_and_the_run_starts_over(stopped_run):
    spec, data, whole, path = stopped_run
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert "damaged" in resume_from_scratch(spec, data, whole)[0]


def test_a_checkpoint_of_another_config_is_set_aside(stopped_run):
    spec, data, whole, path = stopped_run
    line, _, payload = path.read_bytes().partition(b"\n")
    header = json.loads(line)
    header["config_hashes"] = ["0" * 16]
    path.write_bytes(json.dumps(header).encode() + b"\n" + payload)
    assert "config_hashes" in resume_from_scratch(spec, data, whole)[0]


def test_a_checkpoint_from_another_device_is_set_aside(stopped_run):
    """--device is placement (left out of the config hash), so the header names the device:
    a run moved from a GPU to the CPU, or back, starts over instead of mixing devices."""
    spec, data, whole, path = stopped_run
    assert json.loads(path.read_bytes().partition(b"\n")[0])["device"] == "cpu"
    line, _, payload = path.read_bytes().partition(b"\n")
    header = {**json.loads(line), "device": "cuda:0"}
    path.write_bytes(json.dumps(header).encode() + b"\n" + payload)
    assert "device is 'cuda:0', not 'cpu'" in resume_from_scratch(spec, data, whole)[0]


def test_a_linked_checkpoint_is_never_read_nor_its_target_touched(stopped_run, tmp_path):
    spec, data, whole, path = stopped_run
    elsewhere = tmp_path / "not-ours.pt"
    path.rename(elsewhere)
    before = elsewhere.read_bytes()
    path.symlink_to(elsewhere)
    assert "symbolic link" in resume_from_scratch(spec, data, whole)[0]
    assert elsewhere.read_bytes() == before


def test_a_checkpoint_that_cannot_be_written_does_not_stop_the_run(tmp_path):
    (tmp_path / "a-file").write_text("")
    cls = REGULARIZERS.get("dropout")
    plan, _ = plan_for({"dropout": dict(cls.conformance)}, epochs=3)
    spec = with_checkpoint(run_of(plan, "r"), tmp_path / "a-file" / CHECKPOINT_FILE)
    data = load_bundle(spec["dataset"], spec["train"]["train_eval_samples"], spec["seed"])
    result = Trainer(spec, data, CPU).fit()
    assert result.status == "completed"
    assert len(result.summary["checkpoint_notes"]) == 2      # after epochs 1 and 2
    assert "not written" in result.summary["checkpoint_notes"][0]


def test_checkpoints_are_removed_when_done_unless_kept_and_auto_skips_short_runs(tmp_path):
    base = digits_yaml("c", "  l2: {l2: {lambda: 0.1}}\n", seeds="[0]", epochs=3)
    for name, setting, left in (("every", "checkpoint_every: 1", False),
                                ("kept", "checkpoint_every: 1, keep_checkpoint: true", True),
                                ("auto", "checkpoint_every: auto, keep_checkpoint: true", False)):
        config = write_config(tmp_path / f"{name}.yaml",
                              base.replace("threads: 1}", f"threads: 1, {setting}}}"))
        out = tmp_path / name
        done = runner.invoke(app, ["run", str(config), "--no-report", "--out", str(out)])
        assert done.exit_code == 0, done.output
        folders = list((out / "c" / "runs").iterdir())
        assert len(folders) == 2
        assert all((f / CHECKPOINT_FILE).exists() == left for f in folders), name
        # kept: the checkpoint after the last epoch but one, whole and readable
        if left:
            header = json.loads((folders[0] / CHECKPOINT_FILE).read_bytes().partition(b"\n")[0])
            assert header["epoch"] == 2


def test_checkpoint_settings_leave_the_run_ids_and_hashes_unchanged(tmp_path):
    base = digits_yaml("c", "  l2: {l2: {lambda: 0.1}}\n", seeds="[0]", epochs=3)
    plain = plan_runs(tmp_path, base)
    marked = plan_runs(tmp_path, base.replace(
        "threads: 1}", "threads: 1, checkpoint_every: 2, keep_checkpoint: true}"))
    assert [(s["run_id"], s["config_hash"]) for s in plain] == \
        [(s["run_id"], s["config_hash"]) for s in marked]


@pytest.mark.parametrize("value, expected", [("0", "checkpoint_every"),
                                             ("often", "checkpoint_every"),
                                             ("true", "checkpoint_every")])
def test_a_bad_checkpoint_setting_is_a_located_error(tmp_path, value, expected):
    config = write_config(tmp_path / "bad.yaml", digits_yaml("c", "  l2: {l2: {lambda: 0.1}}\n")
                          .replace("threads: 1}", f"threads: 1, checkpoint_every: {value}}}"))
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "bad.yaml:" in result.output and expected in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_where_a_run_keeps_its_checkpoint(tmp_path):
    """Its own folder, by absolute path; none for a tuning trial, a linked run folder, or an
    executor whose workers may not share this disk (results_dir None)."""
    from regbench.experiment.runner import set_checkpoint

    results = tmp_path / "exp"
    (results / "runs").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (results / "runs" / "linked").symlink_to(tmp_path / "elsewhere")
    cases = {"plain": ({"run_id": "plain"}, results),
             "trial": ({"run_id": "trial", "trial": {"number": 0}}, results),
             "linked": ({"run_id": "linked"}, results),
             "remote": ({"run_id": "remote"}, None)}
    for name, (spec, where) in cases.items():
        set_checkpoint(spec, where)
        cases[name] = spec["checkpoint"]
    assert cases == {"plain": str((results / "runs" / "plain" / CHECKPOINT_FILE).absolute()),
                     "trial": None, "linked": None, "remote": None}
