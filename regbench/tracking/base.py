"""What every tracker logs of a run, in one place: its hyper-parameters and final numbers."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from regbench.analysis.diagnose import label
from regbench.results import load_metrics
from regbench.vocabulary import SUMMARY, WEIGHTS_FILE, RunSpec


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"optimizer": {"lr": 0.1}}}`` -> ``{"train.optimizer.lr": 0.1}``."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def run_hparams(spec: RunSpec) -> dict[str, Any]:
    """recipe, seed and each sweep value (by its short name): what tells runs apart."""
    return {"recipe": spec["recipe"], "seed": spec["seed"],
            **{f"sweep.{k}": v for k, v in (spec.get("sweep") or {}).items()}}


def final_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The run's final train/val/test numbers (the chosen epoch's), finite ones only."""
    out = {}
    for key, value in summary.items():
        if key.startswith(("train_", "val_", "test_")) and isinstance(value, (int, float)) \
                and not isinstance(value, bool) and value == value and abs(value) != float("inf"):
            out[key] = float(value)
    return out


def verdict_label(summary: dict[str, Any]) -> str:
    verdict = summary.get("verdict")
    return label(verdict) if isinstance(verdict, dict) else (verdict or summary["status"])


def first_line(exc: Exception) -> str:
    """``Type: first line of the message`` (just the type when it has none)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text.strip() else type(exc).__name__


def from_folder(run_dir: Path) -> tuple[dict[str, Any], list[dict]]:
    """A finished run's summary and epoch rows, read back from its folder (empty cells of
    metrics.csv left out, as a row never held them)."""
    summary = json.loads((Path(run_dir) / SUMMARY).read_text(encoding="utf-8"))
    rows = [{k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
            for row in load_metrics(run_dir).to_dict("records")]
    return summary, rows


def folder_record(run_dir: Path) -> tuple[dict[str, Any], list[dict], Any]:
    """A run folder's summary, epoch rows and weight sample (None without one), as a
    tracker's ``log_run`` takes them."""
    import numpy as np

    summary, rows = from_folder(run_dir)
    weights = Path(run_dir) / WEIGHTS_FILE
    return summary, rows, np.load(weights, allow_pickle=False) if weights.is_file() else None
