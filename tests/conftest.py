"""Shared test setup: one torch thread (2-core CI), Agg plots, small config helpers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


TINY_DIGITS = """\
name: tiny
seeds: [0]
dataset: {name: digits, train_subset: 300}
model: {name: mlp, hidden: [32]}
train: {epochs: 2, batch_size: 32, optimizer: {name: sgd, lr: 0.1}, threads: 1}
recipes:
  l2: {l2: {lambda: 1.0}}
"""


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A valid config that trains in about a second."""
    return write_config(tmp_path / "tiny.yaml", TINY_DIGITS)
