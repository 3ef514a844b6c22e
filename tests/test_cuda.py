"""The CUDA path: with ``device: cuda`` (or ``auto`` on a GPU machine) every
regularizer trains with its data, random draws and augmentation on the GPU, a training pass
makes no per-batch host sync, and a rerun on the same GPU gives the same numbers.

These need a CUDA GPU and are skipped where there is none (CI's machine has none); they were
run on a lent H100/H200 (see the README's performance section).
"""
from __future__ import annotations

import math
import subprocess
import sys
import warnings

import pytest
import torch

from regbench.data import prepare
from regbench.engine.train import Trainer, train_run
from regbench.regularizers import REGULARIZERS
from regbench.results import load_summaries
from regbench.testing import BATCH, plan_for
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")
NAMES = REGULARIZERS.names()


def gpu_trainer(tmp_path, recipe: dict, batches: int = 2) -> Trainer:
    """A Trainer of ``recipe`` (beside the regularizers its entries need) on the GPU, on the
    first tiny setting that accepts it, with ``batches`` batches per epoch."""
    needed = {k: v for name in recipe for k, v in REGULARIZERS.get(name).conformance_with.items()}
    plan, refusals = plan_for({**needed, **recipe})
    assert plan is not None, refusals
    spec = next(run for run in plan.runs if run["recipe"] == "r")
    spec["dataset"] = {**spec["dataset"], "train_subset": batches * BATCH}
    spec["train"] = {**spec["train"], "device": "cuda"}
    return Trainer(spec, prepare(spec["dataset"], 1000).to(CUDA), CUDA)


def syncs_of_a_training_pass(trainer: Trainer) -> int:
    """How many synchronizing CUDA calls (a host waiting on the GPU) one training pass makes."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.train_epoch()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.parametrize("name", NAMES)
def test_every_regularizer_trains_on_the_gpu_with_everything_there(tmp_path, name):
    trainer = gpu_trainer(tmp_path, {name: {}})
    assert all(p.device.type == "cuda" for p in trainer.model.parameters())
    assert trainer.data.x_train.device.type == "cuda"
    x, y = trainer.data.x_train[:BATCH], trainer.data.y_train[:BATCH]
    for reg in trainer.hooks["batch"]:  # augmentation and mixing happen on the GPU
        x, y = reg.batch(x, y)
        assert x.device.type == "cuda" and y.device.type == "cuda", name
    result = trainer.fit()
    assert result.status == "completed", result.error
    assert all(math.isfinite(v) for row in result.rows for v in row.values())


# torchvision's policies: a block's samples are grouped by the operation each drew, which reads
# the draws on the host, once per block of batches (8192 rows on a GPU), never per batch
PER_BLOCK = {"randaugment", "trivialaugment", "augmix"}


@pytest.mark.parametrize("name", NAMES)
def test_a_training_pass_makes_no_host_sync_per_batch(tmp_path, name):
    """Metrics accumulate on the device; the pass syncs once at its end whatever its length,
    its number of batches or of blocks (one block per batch here; one block of 8 batches for
    a hook that syncs per block: its count must not grow with the batches in a block)."""
    counts = []
    for batches in (2, 8):
        trainer = gpu_trainer(tmp_path, {name: {}}, batches)
        trainer.block_rows = BATCH * (8 if name in PER_BLOCK else 1)
        trainer.train_epoch()  # warm-up: lazy initialisation may sync once
        counts.append(syncs_of_a_training_pass(trainer))
    assert counts[0] == counts[1], f"{name}: {counts[0]} syncs for 2 batches, {counts[1]} for 8"
    if name not in PER_BLOCK:
        assert counts[1] <= 2


def test_a_rerun_on_the_same_gpu_gives_the_same_numbers(tmp_path):
    plan, _ = plan_for({"dropout": {"p": 0.3}, "mixup": {}, "augment": {},
                                  "l2": {"lambda": 1e-3}})
    spec = next(run for run in plan.runs if run["recipe"] == "r")
    spec["train"] = {**spec["train"], "device": "cuda", "epochs": 3}
    data = prepare(spec["dataset"], 1000).to(CUDA)
    runs = [train_run(spec, data, CUDA) for _ in range(2)]
    rows = [[{k: v for k, v in row.items() if k != "seconds"} for row in run.rows]
            for run in runs]
    assert rows[0] == rows[1]


def test_the_cli_runs_the_quick_start_on_the_gpu(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "regbench", "run",
                             str(REPO / "configs/quickstart.yaml"), "--device", "cuda",
                             "--set", "train.epochs=3", "--out", str(out), "--set",
                             "recipes.mixed={augment: {crop_padding: 1, hflip: 0}, "
                             "mixup: {}, dropout: {}}"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    summaries = load_summaries(out / "quickstart")
    assert len(summaries) == 15
    assert {(s["status"], s["device"]) for s in summaries} == {("completed", "cuda")}
    assert all(s["val_accuracy"] > 0.5 for s in summaries)
