"""Overfitting diagnosis from per-epoch metrics (SPEC §5).

Rules (thresholds from the config's ``diagnosis:`` section):
1. a large gap: train − val accuracy, val loss ÷ train loss, or train − val R²;
2. val loss rising while train loss keeps falling, over a window after the val-loss minimum;
3. F1 (or precision/recall) dropping from train to val by more than a threshold.
Verdicts: overfitting | underfitting | ok | diverged, each with its evidence.
"""
from __future__ import annotations

import math
from typing import Any, Optional

from regbench.config.schema import DiagnosisConfig


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _series(rows: list[dict[str, Any]], key: str) -> list[Optional[float]]:
    return [row.get(key) if _finite(row.get(key)) else None for row in rows]


def diagnose_rows(rows: list[dict[str, Any]], task: str, thresholds: Optional[dict] = None,
                  status: str = "completed") -> dict[str, Any]:
    """Verdict and evidence for one run's epochs (rows as in metrics.csv)."""
    t = DiagnosisConfig.model_validate(thresholds or {})
    if status == "diverged" or any(
            not _finite(row.get(k)) for row in rows for k in ("train_loss", "val_loss")
            if k in row):
        bad = next((row["epoch"] for row in rows if any(
            k in row and not _finite(row[k]) for k in ("objective", "train_loss", "val_loss"))),
            rows[-1]["epoch"] if rows else None)
        return {"verdict": "diverged", "started_epoch": bad,
                "evidence": [f"loss became NaN/inf at epoch {bad}"]}
    if not rows:
        return {"verdict": "ok", "started_epoch": None, "evidence": ["no epochs recorded"]}
    evidence: list[str] = []
    last = rows[-1]
    started: Optional[int] = None
    overfit = False
    epochs = [row["epoch"] for row in rows]

    # rule 2: val loss rising after its minimum while train loss keeps falling
    val_loss, train_loss = _series(rows, "val_loss"), _series(rows, "train_loss")
    if all(v is not None for v in val_loss) and len(rows) >= 2:
        best = min(range(len(rows)), key=lambda i: val_loss[i])
        after = list(range(best + 1, len(rows)))
        if after:
            window = after[: max(t.rise_window, 1)]
            tail = after[-max(t.rise_window, 1):]
            rise = [val_loss[i] > val_loss[best] * (1 + t.rise_tolerance) for i in window]
            rising_at_end = all(val_loss[i] > val_loss[best] * (1 + t.rise_tolerance)
                                for i in tail)
            train_falling = (train_loss[-1] is not None and train_loss[best] is not None
                             and train_loss[-1] < train_loss[best])
            if (sum(rise) >= max(1, math.ceil(len(window) / 2))) and rising_at_end and train_falling:
                overfit = True
                started = epochs[best]
                evidence.append(
                    f"val loss reached its minimum {val_loss[best]:.4g} at epoch {epochs[best]} "
                    f"and rose to {val_loss[-1]:.4g} by epoch {epochs[-1]} while train loss fell "
                    f"from {train_loss[best]:.4g} to {train_loss[-1]:.4g}")

    # rule 1: a large gap at the end
    gap_found = False
    if task == "classification" and _finite(last.get("train_accuracy")) and _finite(last.get("val_accuracy")):
        gap = last["train_accuracy"] - last["val_accuracy"]
        if gap > t.accuracy_gap:
            gap_found = True
            evidence.append(f"train accuracy {last['train_accuracy']:.4f} exceeds val accuracy "
                            f"{last['val_accuracy']:.4f} by {gap:.4f} (> {t.accuracy_gap})")
    if task == "regression" and _finite(last.get("train_r2")) and _finite(last.get("val_r2")):
        gap = last["train_r2"] - last["val_r2"]
        if gap > t.r2_gap:
            gap_found = True
            evidence.append(f"train R² {last['train_r2']:.4f} exceeds val R² "
                            f"{last['val_r2']:.4f} by {gap:.4f} (> {t.r2_gap})")
    if _finite(last.get("train_loss")) and _finite(last.get("val_loss")) and last["train_loss"] > 0:
        ratio = last["val_loss"] / last["train_loss"]
        if ratio > t.loss_ratio:
            gap_found = True
            evidence.append(f"val loss is {ratio:.2f}× train loss (> {t.loss_ratio})")

    # rule 3: F1 / precision / recall drop
    for metric in ("f1", "precision", "recall"):
        a, b = last.get(f"train_{metric}"), last.get(f"val_{metric}")
        if _finite(a) and _finite(b) and a - b > t.f1_drop:
            gap_found = True
            evidence.append(f"{metric} drops from {a:.4f} (train) to {b:.4f} (val)")
            break

    if gap_found:
        overfit = True
        if started is None:
            started = _gap_start(rows, task, t)
    if overfit:
        return {"verdict": "overfitting", "started_epoch": started, "evidence": evidence}

    under = []
    if task == "classification" and _finite(last.get("train_accuracy")) and \
            last["train_accuracy"] < t.underfit_accuracy:
        under.append(f"train accuracy {last['train_accuracy']:.4f} is below "
                     f"{t.underfit_accuracy} with no gap to validation")
    if task == "regression" and _finite(last.get("train_r2")) and last["train_r2"] < t.underfit_r2:
        under.append(f"train R² {last['train_r2']:.4f} is below {t.underfit_r2} with no gap "
                     "to validation")
    if under:
        return {"verdict": "underfitting", "started_epoch": None, "evidence": under}
    return {"verdict": "ok", "started_epoch": None,
            "evidence": ["no large gap and no rising validation loss"]}


def _gap_start(rows: list[dict[str, Any]], task: str, t: DiagnosisConfig) -> Optional[int]:
    """First epoch from which the accuracy (or R²) gap stays above its threshold."""
    key, limit = ("accuracy", t.accuracy_gap) if task == "classification" else ("r2", t.r2_gap)
    start = None
    for row in rows:
        a, b = row.get(f"train_{key}"), row.get(f"val_{key}")
        if _finite(a) and _finite(b) and a - b > limit:
            start = start if start is not None else row["epoch"]
        else:
            start = None
    return start


def diagnose_path(target) -> list[dict[str, Any]]:
    """Diagnoses for a results folder (every run) or one metrics CSV."""
    from pathlib import Path

    from regbench.errors import RegbenchError
    from regbench.results import load_metrics, load_summaries

    target = Path(target)
    if target.is_dir():
        out = []
        for summary in load_summaries(target):
            frame = load_metrics(summary["_dir"])
            rows = frame.to_dict("records")
            out.append({"run": summary["run_id"],
                        **diagnose_rows(rows, summary.get("task", "classification"),
                                        None, summary.get("status", "completed"))})
        return out
    if target.is_file():
        import pandas as pd

        frame = pd.read_csv(target)
        if "epoch" not in frame.columns:
            raise RegbenchError(f"{target}: no 'epoch' column; expected epoch plus train/val "
                                "loss or accuracy columns")
        task = "regression" if "train_r2" in frame.columns or "train_mse" in frame.columns \
            else "classification"
        return [{"run": target.name, **diagnose_rows(frame.to_dict("records"), task)}]
    raise RegbenchError(f"{target}: no such results folder or CSV file")


def render_diagnoses(diagnoses: list[dict[str, Any]], console) -> None:
    for item in diagnoses:
        start = f" (from epoch {item['started_epoch']})" if item.get("started_epoch") else ""
        console.print(f"{item['run']}: [bold]{item['verdict']}[/]{start}")
        for line in item["evidence"]:
            console.print(f"  - {line}")
