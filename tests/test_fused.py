"""Fused training: each member of a stacked group starts from its solo run's weights, sees its
solo run's batches, and ends with its solo run's metrics to float tolerance; what differs per
member (seed, strength, divergence) stays per member; runs that cannot fuse train solo."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from regbench.cli import app
from regbench.data import load_bundle
from regbench.engine.fused import GROUP_KEY, FusedTrainer, fuse_tasks
from regbench.engine.train import Trainer
from regbench.experiment.config import load_config
from regbench.experiment.plan import build_plan
from regbench.regularizers import REGULARIZERS
from tests.conftest import digits_yaml, write_config

runner = CliRunner()
TOLERANCE = 1e-5       # batched matmuls round differently from single ones
FUSABLE = {"l1": "{lambda: 0.5}", "l2": "{lambda: 1.0}", "elastic_net": "{lambda: 1.0, l1_ratio: 0.5}",
           "weight_decay": "{lambda: 0.01}"}


def plan_runs(tmp_path: Path, text: str) -> list[dict]:
    return build_plan(load_config(write_config(tmp_path / "f.yaml", text))).runs


def solo_and_fused(specs: list[dict]):
    """The fused trainer of ``specs``, and for each member a function that builds and trains
    its solo run as regbench would (the build seeds it; training follows right after)."""
    data = load_bundle(specs[0]["dataset"], specs[0]["train"]["train_eval_samples"],
                       specs[0]["seed"])
    device = torch.device("cpu")
    fused = FusedTrainer(specs, data, device)
    solos = [lambda spec=spec: Trainer(spec, data, device) for spec in specs]
    return fused, solos


def test_every_regularizer_that_declares_fusable_is_tested_here():
    assert {name for name, cls in REGULARIZERS.items() if cls.fusable} == set(FUSABLE)


@pytest.mark.parametrize("name", sorted(FUSABLE))
def test_members_equal_their_solo_runs(tmp_path: Path, name: str):
    text = digits_yaml("f", f"  r: {{{name}: {FUSABLE[name]}}}\n", seeds="[0, 1, 2]",
                       epochs=3, extra="sweep:\n  recipes.r."
                       f"{name}.lambda: [0.1, 1.0]\n")
    specs = [s for s in plan_runs(tmp_path, text) if s["recipe"] == "r"]
    assert len(specs) == 6
    fused, solos = solo_and_fused(specs)
    # the same initial weights, bit for bit
    for index, build in enumerate(solos):
        for param_name, param in build().model.named_parameters():
            assert torch.equal(fused.stacked[param_name][index], param.detach())
    # the same first batch and its loss
    batch = specs[0]["train"]["batch_size"]
    permutation = fused._permutations()
    for index in range(len(specs)):
        assert torch.equal(permutation[index], _solo_first_permutation(specs[index]))
    x = fused.data.x_train[permutation[:, :batch]]
    y = fused.data.y_train[permutation[:, :batch]]
    losses = fused.forward(fused.stacked, x, y)
    for index, build in enumerate(solos):
        solo = build()
        expected = solo.data_loss(solo.model(x[index]), y[index])
        assert losses[index].item() == pytest.approx(expected.item(), abs=1e-6)
    # the whole fit: every member's metrics equal its solo run's
    fused, solos = solo_and_fused(specs)
    results = fused.fit()
    for build, result in zip(solos, results):
        alone = build().fit()
        assert result.status == alone.status == "completed"
        assert result.summary["fused"]["members"] == 6
        got, want = pd.DataFrame(result.rows), pd.DataFrame(alone.rows)
        assert list(got.columns) == list(want.columns)
        numbers = [c for c in want.columns if c != "seconds"]
        assert (got[numbers] - want[numbers]).abs().max().max() < TOLERANCE, name
        for key in ("test_accuracy", "test_loss", "weight_norm"):
            assert result.summary[key] == pytest.approx(alone.summary[key], abs=TOLERANCE)


def _solo_first_permutation(spec: dict) -> torch.Tensor:
    """The first epoch's batch order of a solo run: after its seeded build, one randperm."""
    data = load_bundle(spec["dataset"], spec["train"]["train_eval_samples"], spec["seed"])
    Trainer(spec, data, torch.device("cpu"))
    return torch.randperm(data.n_train)


def test_a_diverging_member_is_recorded_diverged_and_the_others_are_untouched(tmp_path: Path):
    text = digits_yaml("d", "  r: {l2: {lambda: 1.0}}\n", seeds="[0]", epochs=4,
                       extra="sweep:\n  recipes.r.l2.lambda: [0.1, 1.0e+9, 1.0]\n")
    specs = [s for s in plan_runs(tmp_path, text) if s["recipe"] == "r"]
    fused, solos = solo_and_fused(specs)
    results = fused.fit()
    statuses = [r.status for r in results]
    assert statuses[1] == "diverged" and statuses[0] == statuses[2] == "completed", statuses
    assert not math.isfinite(results[1].rows[-1]["objective"])
    for index in (0, 2):
        alone = solos[index]().fit()
        got, want = pd.DataFrame(results[index].rows), pd.DataFrame(alone.rows)
        numbers = [c for c in want.columns if c != "seconds"]
        assert (got[numbers] - want[numbers]).abs().max().max() < TOLERANCE


def test_what_cannot_fuse_trains_solo(tmp_path: Path):
    text = digits_yaml("g", "  l2: {l2: {lambda: 1.0}}\n  drop: {dropout: {p: 0.3}}\n"
                       "  long: {l2: {lambda: 1.0}, train: {epochs: 5}}\n", seeds="[0, 1]")
    tasks = fuse_tasks(plan_runs(tmp_path, text))
    groups = [[s["run_id"] for s in t[GROUP_KEY]] for t in tasks if GROUP_KEY in t]
    solo = [t["run_id"] for t in tasks if GROUP_KEY not in t]
    assert sorted(map(sorted, groups)) == [["baseline__seed=0", "baseline__seed=1"],
                                           ["l2__seed=0", "l2__seed=1"],
                                           ["long__seed=0", "long__seed=1"]]
    assert sorted(solo) == ["drop__seed=0", "drop__seed=1"]        # dropout draws masks
    off = fuse_tasks(plan_runs(tmp_path, text.replace("threads: 1", "threads: 1, fuse: off")))
    assert not any(GROUP_KEY in t for t in off)
    resampled = text.replace("train_subset: 300", "train_subset: 300, resample: per_seed")
    assert not any(GROUP_KEY in t for t in fuse_tasks(plan_runs(tmp_path, resampled)))


def test_cli_fused_sweep_writes_every_run_folder_and_resumes(tmp_path: Path):
    text = digits_yaml("c", "  l2: {l2: {lambda: 1.0}}\n", epochs=2,
                       extra="sweep:\n  recipes.l2.l2.lambda: [0.1, 1.0]\n")
    config = write_config(tmp_path / "c.yaml", text)
    dry = runner.invoke(app, ["run", str(config), "--out", str(tmp_path), "--dry-run",
                              "--fuse", "on"])
    assert "fused: 6 runs in 2 group(s)" in " ".join(dry.output.split())
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path), "--fuse", "on",
                                 "--workers", "2", "--no-report"])
    assert result.exit_code == 0, result.output
    runs = tmp_path / "c" / "runs"
    summaries = {p.parent.name: json.loads(p.read_text()) for p in runs.glob("*/summary.json")}
    assert len(summaries) == 6 and all(s["status"] == "completed" for s in summaries.values())
    assert {s["fused"]["members"] for s in summaries.values()} == {2, 4}
    again = runner.invoke(app, ["run", str(config), "--out", str(tmp_path), "--fuse", "off",
                                "--no-report"])       # fusion is placement: nothing retrains
    assert again.exit_code == 0 and "6 already completed" in again.output


def test_ctrl_c_in_a_fused_group_saves_every_member_as_interrupted(tmp_path: Path):
    text = digits_yaml("i", "  l2: {l2: {lambda: 1.0}}\n", epochs=5)
    specs = [s for s in plan_runs(tmp_path, text) if s["recipe"] == "l2"]
    fused, _ = solo_and_fused(specs)

    def stop_after_two(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt          # what SIGINT raises inside the training loop

    results = fused.fit(stop_after_two)
    assert [r.status for r in results] == ["interrupted"] * len(specs)
    assert all(len(r.rows) == 2 and r.summary["stopped_epoch"] == 2 for r in results)


def test_auto_is_decided_before_the_runs_are_handed_out(tmp_path: Path):
    """Where fusing would not pay (batch × parameters over the measured limit on the CPU),
    `auto` leaves the runs separate tasks, so --workers still trains them in parallel."""
    from regbench.engine.fused import CPU_FUSE_MAX_WORK

    text = digits_yaml("a", "  l2: {l2: {lambda: 1.0}}\n", seeds="[0, 1]")
    specs = plan_runs(tmp_path, text)
    small = {s["run_id"]: 1000 for s in specs}
    large = {s["run_id"]: CPU_FUSE_MAX_WORK for s in specs}    # × batch 32: over the limit
    assert sum(GROUP_KEY in t for t in fuse_tasks(specs, small)) == 2
    assert not any(GROUP_KEY in t for t in fuse_tasks(specs, large))
    forced = plan_runs(tmp_path, text.replace("threads: 1", "threads: 1, fuse: on"))
    assert sum(GROUP_KEY in t for t in fuse_tasks(forced, large)) == 2


def test_a_group_that_fails_as_a_whole_fails_each_member_with_the_message(tmp_path: Path):
    from regbench.engine.result import failed_task
    from regbench.experiment.runner import members

    specs = plan_runs(tmp_path, digits_yaml("w", "  l2: {l2: {lambda: 1.0}}\n"))
    task = next(t for t in fuse_tasks(specs) if GROUP_KEY in t)
    failed = failed_task(task, "worker process failed: BrokenProcessPool")
    assert [s["run_id"] for s, _ in failed] == [s["run_id"] for s in task[GROUP_KEY]]
    assert all(r.status == "failed" and "BrokenProcessPool" in r.error for _, r in failed)
    assert members(task, failed) == failed
