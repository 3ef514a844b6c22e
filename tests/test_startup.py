"""Start-up: a run imports neither torch's compiler stack, scikit-learn nor scipy.stats, and what
replaces them computes what they computed (the optimizer update bit for bit, the bundled
datasets, a stratified split)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from regbench.data.base import holdout
from tests.conftest import REPO

EXACT_STEPS = r'''
import sys, torch
from regbench.engine import optim

def train(step, name):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    cls, kwargs = {"sgd": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
                   "adam": (torch.optim.Adam, dict(lr=0.01)),
                   "adamw": (torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1))}[name]
    optimizer = cls(model.parameters(), **kwargs)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 4)
    for i in range(6):
        x = torch.randn(16, 6, generator=torch.Generator().manual_seed(i))
        optimizer.zero_grad(set_to_none=True)
        model(x).pow(2).mean().backward()
        step(optimizer)
        scheduler.step()
    state = [t.clone() for s in optimizer.state.values() for t in s.values()
             if isinstance(t, torch.Tensor)]
    return [p.detach().clone() for p in model.parameters()], state

optim.prepare()
fast = {name: train(optim.eager_step, name) for name in ("sgd", "adam", "adamw")}
assert "torch._dynamo" not in sys.modules, "the fast path imported torch._dynamo"
slow = {name: train(lambda o: o.step(), name) for name in ("sgd", "adam", "adamw")}
assert "torch._dynamo" in sys.modules     # torch's own path does import it
for name in fast:
    for a, b in zip(fast[name][0] + fast[name][1], slow[name][0] + slow[name][1]):
        assert torch.equal(a, b), name
print("ok")
'''


def test_eager_step_is_torchs_update_bit_for_bit_without_the_compiler():
    done = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", EXACT_STEPS],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_a_smoke_run_imports_no_compiler_no_scikit_learn_no_scipy_stats_no_pandas(tmp_path):
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "regbench", "run",
                           str(REPO / "configs" / "smoke" / "digits.yaml"), "--smoke",
                           "--no-report", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "torch" in imported and "regbench.engine.train" in imported
    for heavy in ("torch._dynamo", "sklearn", "scipy.stats", "matplotlib", "pandas"):
        assert heavy not in imported, heavy
    assert (tmp_path / "smoke_digits-smoke" / "runs.csv").is_file()   # its tables written


def test_tables_written_without_pandas_read_back_as_pandas_wrote_them():
    """runs.csv and comparison.csv come from the csv module: pandas reads each cell back as
    the value pandas' own to_csv would have stored (missing and NaN empty, floats exact,
    numpy scalars as numbers)."""
    import io

    import numpy as np
    import pandas as pd

    from regbench.results import table_csv

    rows = [{"a": 0.1, "b": None, "c": "x, y", "d": True},
            {"a": np.float64(1 / 3), "e": np.int64(7), "b": float("nan"), "d": False},
            {"a": 1e-300, "c": 'say "hi"'}]
    ours = pd.read_csv(io.StringIO(table_csv(rows)))
    theirs = pd.read_csv(io.StringIO(pd.DataFrame(rows).to_csv(index=False)))
    pd.testing.assert_frame_equal(ours, theirs)
    assert ours["a"].tolist() == [0.1, 1 / 3, 1e-300]              # bit for bit


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "diabetes"])
def test_bundled_datasets_read_from_files_equal_scikit_learns_loaders(name):
    from sklearn import datasets

    from regbench.data import tabular

    ours = getattr(tabular, f"load_{name}")()
    theirs = getattr(datasets, f"load_{name}")()
    x = ours.x_train[:, 0] if name == "digits" else ours.x_train
    expected = theirs.images if name == "digits" else theirs.data
    np.testing.assert_allclose(x, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(ours.y_train, theirs.target)
    if name == "breast_cancer":
        assert ours.class_names == list(theirs.target_names)


def test_holdout_is_a_seeded_partition_stratified_within_one_row_per_class():
    rng = np.random.default_rng(0)
    labels = rng.choice([3, 7, 9], size=1000, p=[0.6, 0.3, 0.1])
    for held in (1, 3, 50, 333, 999):
        keep, out = holdout(1000, held, seed=5, labels=labels)
        assert len(out) == held and len(keep) == 1000 - held
        assert np.array_equal(np.sort(np.concatenate([keep, out])), np.arange(1000))
        assert np.all(np.diff(keep) > 0) and np.all(np.diff(out) > 0)
        for c in (3, 7, 9):
            share = held * (labels == c).sum() / 1000
            assert abs((labels[out] == c).sum() - share) < 1, (held, c)
    again = holdout(1000, 50, seed=5, labels=labels)
    assert np.array_equal(again[1], holdout(1000, 50, seed=5, labels=labels)[1])
    assert not np.array_equal(again[1], holdout(1000, 50, seed=6, labels=labels)[1])
    plain_keep, plain_out = holdout(10, 4, seed=1)
    assert len(plain_out) == 4 and set(plain_keep) | set(plain_out) == set(range(10))
    # every row is equally likely to be held out (uniform over seeds)
    counts = np.zeros(20)
    for seed in range(4000):
        counts[holdout(20, 5, seed)[1]] += 1
    assert np.abs(counts / 4000 - 0.25).max() < 0.03


def test_the_split_method_is_part_of_every_runs_hash(monkeypatch, tiny_config):
    """Runs split another way (an older regbench) never resume as if they were these."""
    from regbench.experiment import plan as planning
    from regbench.experiment.config import load_config

    loaded = load_config(tiny_config)
    before = [run["config_hash"] for run in planning.build_plan(loaded).runs]
    monkeypatch.setattr(planning, "SPLIT_METHOD", "another")
    after = [run["config_hash"] for run in planning.build_plan(loaded).runs]
    assert all(a != b for a, b in zip(before, after))
