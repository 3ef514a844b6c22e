"""Shared test setup: one torch thread (2-core CI), Agg plots, small config helpers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# the tests that pass --workers mean worker processes, however short their runs: no training
# in the driver first (tests/test_executors.py tests that, setting it back)
os.environ["REGBENCH_WORKERS_PAYBACK"] = "0"
# pytest-xdist's workers (execnet) export COLUMNS=80 and LINES=24; the CLI fits its tables to
# an explicit COLUMNS, so the tests run as a log does, unless a test sets COLUMNS itself
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# a small regression experiment (epochs set by the test: {epochs})
TINY_REGRESSION = """\
name: reg
seeds: [0, 1]
dataset: {{name: synthetic_regression, n_samples: 200, n_features: 8, noise: 20.0, seed: 3}}
model: {{name: mlp, hidden: [16]}}
train: {{epochs: {epochs}, batch_size: 32, optimizer: {{name: adam, lr: 0.01}}, threads: 1}}
recipes:
  l2: {{l2: {{lambda: 0.1}}}}
"""

TINY_DIGITS = """\
name: tiny
seeds: [0]
dataset: {name: digits, train_subset: 300}
model: {name: mlp, hidden: [32]}
train: {epochs: 2, batch_size: 32, optimizer: {name: sgd, lr: 0.1}, threads: 1}
recipes:
  l2: {l2: {lambda: 1.0}}
"""


def digits_yaml(name: str, recipes: str, *, seeds: str = "[0, 1]", train_subset: int = 300,
                hidden: int = 32, epochs: int = 3, extra: str = "") -> str:
    """A small digits experiment: ``recipes`` is the indented body of its recipes section and
    ``extra`` any sections after it (a sweep)."""
    return (f"name: {name}\nseeds: {seeds}\n"
            f"dataset: {{name: digits, train_subset: {train_subset}}}\n"
            f"model: {{name: mlp, hidden: [{hidden}]}}\n"
            f"train: {{epochs: {epochs}, batch_size: 32, optimizer: {{name: sgd, lr: 0.1}}, "
            f"threads: 1}}\nrecipes:\n{recipes}{extra}")


def regbench_without(module: str, args: list[str]):
    """The CLI in a fresh interpreter that cannot import ``module``, as on a machine without
    that optional extra."""
    import subprocess
    import sys

    code = (f"import sys; sys.modules[{module!r}] = None; sys.argv = ['regbench', *{args!r}]; "
            "from regbench.cli import main; main()")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A valid config that trains in about a second."""
    return write_config(tmp_path / "tiny.yaml", TINY_DIGITS)
