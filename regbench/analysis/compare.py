"""The comparison table, rebuilt from run folders alone.

One row per recipe and sweep point: seeds, val and test metric mean ± std, the test difference
to baseline with a paired 95% bootstrap interval and P(recipe beats baseline), the train−val
gap, best epoch, verdict, sparsity, seconds per epoch and parameter count. Sorted by the
validation metric; the best value of each sweep is chosen on validation, never on test.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from regbench.analysis.stats import mean_std, paired_difference
from regbench.errors import RegbenchError
from regbench.registry import did_you_mean
from regbench.results import (atomic_write_text, check_results_folder, load_summaries, task_of,
                              write_runs_csv)
from regbench.vocabulary import (MIN_SEEDS, default_metric, format_value, lower_is_better,
                                 metric_names)


@dataclass
class Comparison:
    metric: str                              # e.g. accuracy (compared on val_ / test_)
    rows: list[dict[str, Any]]               # one per recipe and sweep point, sorted
    notes: list[str] = field(default_factory=list)
    best_points: dict[str, dict[str, Any]] = field(default_factory=dict)  # recipe -> best sweep row


def _verdict(summary: dict[str, Any]) -> Optional[str]:
    verdict = summary.get("verdict")
    return verdict.get("verdict") if isinstance(verdict, dict) else verdict


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def check_metric(metric: str, task: str) -> None:
    valid = metric_names(task)
    if metric not in valid:
        raise RegbenchError(f"--metric: '{metric}' is not a {task} metric"
                            f"{did_you_mean(metric, list(valid))}; expected one of: "
                            f"{', '.join(valid)}")


def build_comparison(summaries: list[dict[str, Any]], metric: Optional[str] = None) -> Comparison:
    task = task_of(summaries)
    metric = metric or default_metric(task)
    check_metric(metric, task)
    higher = not lower_is_better(metric)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for summary in summaries:
        groups[summary.get("point_id") or _point_id(summary)].append(summary)
    baselines = _baselines(summaries, metric)
    gap_metric = "accuracy" if task == "classification" else "r2"
    rows = []
    for point, runs in groups.items():
        done = [r for r in runs if r.get("status") == "completed"]
        val_mean, val_std = mean_std(_num(r.get(f"val_{metric}")) for r in done)
        test_mean, test_std = mean_std(_num(r.get(f"test_{metric}")) for r in done)
        gaps = [_num(r.get(f"train_{gap_metric}")) - _num(r.get(f"val_{gap_metric}"))
                for r in done]
        gap_mean, _ = mean_std(gaps)
        test_by_seed = {r["seed"]: _num(r.get(f"test_{metric}")) for r in done}
        baseline_test = baselines.get(_global_key(runs[0]))
        diff = (paired_difference(test_by_seed, baseline_test, higher)
                if runs[0].get("recipe") != "baseline" and baseline_test else None)
        verdicts = sorted({v for v in (_verdict(r) for r in runs) if v})
        statuses = defaultdict(int)
        for r in runs:
            statuses[r.get("status", "?")] += 1
        first = runs[0]
        rows.append({
            "recipe": first.get("recipe"),
            "point": point,
            "sweep": first.get("sweep") or {},
            "train_differs": bool(first.get("train_differs")),
            "seeds": len(done),
            "runs": len(runs),
            "status": ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())),
            f"val_{metric}": val_mean, f"val_{metric}_std": val_std,
            "val_loss": mean_std(_num(r.get("val_loss")) for r in done)[0],
            f"test_{metric}": test_mean, f"test_{metric}_std": test_std,
            "diff": diff.mean if diff else math.nan,
            "diff_low": diff.low if diff else math.nan,
            "diff_high": diff.high if diff else math.nan,
            "p_better": diff.p_better if diff else math.nan,
            "gap": gap_mean,
            "best_epoch": mean_std(_num(r.get("best_epoch")) for r in done)[0],
            "verdict": "/".join(verdicts) if verdicts else "",
            "sparsity": mean_std(_num(r.get("sparsity")) for r in done)[0],
            "seconds_per_epoch": mean_std(_num(r.get("seconds_per_epoch")) for r in runs)[0],
            "parameters": first.get("parameter_count"),
        })
    key = f"val_{metric}"
    rows.sort(key=lambda r: (math.isnan(r[key]), -r[key] if higher else r[key]))
    comparison = Comparison(metric=metric, rows=rows)
    _best_points(comparison, higher)
    _notes(comparison, summaries)
    return comparison


def _global_key(summary: dict[str, Any]) -> str:
    """The values of sweep keys that apply to every recipe (``train.optimizer.lr``): a recipe is
    compared with the baseline trained under the same values."""
    paths = summary.get("sweep_paths") or {}
    return repr(sorted((k, repr(v)) for k, v in paths.items() if not k.startswith("recipes.")))


def _baselines(summaries: list[dict[str, Any]], metric: str) -> dict[str, dict[int, float]]:
    """Completed baseline runs' test metric by seed, per global sweep point."""
    baselines: dict[str, dict[int, float]] = defaultdict(dict)
    for summary in summaries:
        if summary.get("recipe") == "baseline" and summary.get("status") == "completed":
            baselines[_global_key(summary)][summary["seed"]] = _num(summary.get(f"test_{metric}"))
    return baselines


def _point_id(summary: dict[str, Any]) -> str:
    parts = [summary.get("recipe", "?")]
    parts += [f"{k}={format_value(v)}" for k, v in (summary.get("sweep") or {}).items()]
    return "__".join(parts)


def _best_points(comparison: Comparison, higher: bool) -> None:
    key = f"val_{comparison.metric}"
    by_recipe: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in comparison.rows:
        if row["sweep"]:
            by_recipe[row["recipe"]].append(row)
    for recipe, rows in by_recipe.items():
        scored = [r for r in rows if not math.isnan(r[key])]
        if len(rows) > 1 and scored:
            # ties on the metric (accuracy on a small val split often ties) go to the lower
            # val loss; test metrics never take part in the choice
            best = min(scored, key=lambda r: (-r[key] if higher else r[key],
                                              _nan_last(r["val_loss"])))
            best["best_of_sweep"] = True
            comparison.best_points[recipe] = best
            values = ", ".join(f"{k}={v}" for k, v in best["sweep"].items())
            comparison.notes.append(f"best {recipe} by validation {comparison.metric}: {values} "
                                    f"({key} {best[key]:.4f})")


def _nan_last(value: float) -> float:
    return math.inf if math.isnan(value) else value


def _notes(comparison: Comparison, summaries: list[dict[str, Any]]) -> None:
    seeds = min((row["seeds"] for row in comparison.rows if row["seeds"]), default=0)
    if seeds < MIN_SEEDS:
        comparison.notes.append(f"warning: only {seeds} seed(s) for some recipes: bootstrap "
                                f"intervals and P(better) need at least {MIN_SEEDS}"
                                " seeds to mean much (train more: regbench run CONFIG --seeds 0,1,2)")
    if not any(row["recipe"] == "baseline" and row["seeds"] for row in comparison.rows):
        comparison.notes.append("no baseline runs: differences cannot be computed")
    if any(row["train_differs"] for row in comparison.rows):
        comparison.notes.append("† the recipe trains with settings that differ from the "
                                "experiment's (its own `train:` block)")
    failed = [s["run_id"] for s in summaries if s.get("status") not in ("completed",)]
    if failed:
        comparison.notes.append(f"{len(failed)} run(s) did not complete: {', '.join(failed[:5])}"
                                + (" …" if len(failed) > 5 else ""))


# ----------------------------------------------------------------------------- rendering

def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _epoch(value: float) -> str:
    """Mean best epoch over seeds: a whole number prints as one."""
    if value is None or math.isnan(value):
        return "—"
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def difference_cell(mean: float, low: float, high: float) -> str:
    """Δ with its interval, ``+0.0123 [-0.0040, +0.0290]``; no interval without one; empty
    when there is no difference at all (the baseline's own row)."""
    if _missing(mean):
        return ""
    return f"{mean:+.4f}" + ("" if _missing(low) else f" [{low:+.4f}, {high:+.4f}]")


def _missing(value: Any) -> bool:
    """None or NaN, as a table read back from CSV holds it."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def display_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by every text format."""
    m = comparison.metric
    header = ["recipe", "seeds", f"val {m}", f"test {m}", "Δ test vs baseline [95% CI]",
              "P(better)", "train−val gap", "best epoch", "verdict", "sparsity", "s/epoch",
              "params"]
    cells = []
    for row in comparison.rows:
        name = row["point"].replace("__", " ")
        if row["train_differs"]:
            name += " †"
        if row.get("best_of_sweep"):
            name += " ★"
        if row["seeds"] < row["runs"]:
            seeds = f"{row['seeds']}/{row['runs']}"
        else:
            seeds = str(row["seeds"])
        diff = difference_cell(row["diff"], row["diff_low"], row["diff_high"])
        cells.append([
            name, seeds,
            f"{_fmt(row[f'val_{m}'])} ± {_fmt(row[f'val_{m}_std'])}",
            f"{_fmt(row[f'test_{m}'])} ± {_fmt(row[f'test_{m}_std'])}",
            diff, "" if math.isnan(row["p_better"]) else f"{row['p_better']:.2f}",
            _fmt(row["gap"]), _epoch(row["best_epoch"]), row["verdict"] or row["status"],
            _fmt(row["sparsity"], 3), _fmt(row["seconds_per_epoch"], 3),
            str(row["parameters"] or ""),
        ])
    return header, cells


def to_markdown(comparison: Comparison) -> str:
    header, cells = display_rows(comparison)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    if comparison.notes:
        lines.append("")
        lines += [f"- {note}" for note in comparison.notes]
    return "\n".join(lines) + "\n"


def to_csv(comparison: Comparison) -> str:
    import pandas as pd

    rows = [{**{k: v for k, v in r.items() if k != "sweep"},
             **{f"sweep.{k}": v for k, v in r["sweep"].items()}} for r in comparison.rows]
    return pd.DataFrame(rows).to_csv(index=False)


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"),
                          ("#", r"\#"), ("$", r"\$"), ("±", r"$\pm$"), ("Δ", r"$\Delta$"),
                          ("−", "-"), ("—", "--"), ("†", r"$\dagger$"), ("★", r"$\star$")):
        text = text.replace(char, escaped)
    return text


def to_latex(comparison: Comparison) -> str:
    header, cells = display_rows(comparison)
    lines = [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\hline",
             " & ".join(_latex_escape(h) for h in header) + r" \\", r"\hline"]
    lines += [" & ".join(_latex_escape(c) for c in row) + r" \\" for row in cells]
    lines += [r"\hline", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


TERMINAL_COLUMNS = (0, 1, 2, 3, 4, 5, 6, 7, 8)  # the full set is in comparison.md/csv


def rich_table(comparison: Comparison, title: str = ""):
    from rich.table import Table

    header, cells = display_rows(comparison)
    table = Table(title=title or None, show_lines=False)
    for i in TERMINAL_COLUMNS:
        table.add_column(header[i], justify="left" if i in (0, 8) else "right", no_wrap=True)
    for row in cells:
        table.add_row(*(row[i] for i in TERMINAL_COLUMNS))
    return table


def compare_results(results_dir: Path, metric: Optional[str] = None,
                    write: bool = False) -> Comparison:
    """The comparison rebuilt from the run folders; with ``write`` also runs.csv and
    comparison.{md,csv,tex} (the caller holds the folder's ResultsLock)."""
    results_dir = Path(results_dir)
    summaries = load_summaries(results_dir)
    comparison = build_comparison(summaries, metric)
    if write:
        write_runs_csv(results_dir, summaries)
        check_results_folder(results_dir)
        atomic_write_text(results_dir / "comparison.md", to_markdown(comparison))
        atomic_write_text(results_dir / "comparison.csv", to_csv(comparison))
        atomic_write_text(results_dir / "comparison.tex", to_latex(comparison))
    return comparison
