"""Build runs and trainers from config text, the way the CLI does (no shortcuts)."""
from __future__ import annotations

from pathlib import Path

import torch

from regbench.data import load_bundle
from regbench.engine.train import Trainer
from regbench.experiment.config import load_config
from regbench.experiment.plan import build_plan


def plan_from_text(tmp_path: Path, text: str, name: str = "cfg.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return build_plan(load_config(path))


def trainer_for(tmp_path: Path, text: str, recipe: str) -> Trainer:
    """The Trainer of the first run of ``recipe`` (data loaded through the real loaders)."""
    plan = plan_from_text(tmp_path, text)
    spec = next(run for run in plan.runs if run["recipe"] == recipe)
    data = load_bundle(spec["dataset"], spec["train"]["train_eval_samples"])
    return Trainer(spec, data, torch.device("cpu"))
