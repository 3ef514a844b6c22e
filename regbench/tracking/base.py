"""What every tracker logs of a run, in one place: its hyper-parameters and final numbers."""
from __future__ import annotations

from typing import Any

from regbench.analysis.diagnose import label


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


def run_hparams(spec: dict[str, Any]) -> dict[str, Any]:
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
