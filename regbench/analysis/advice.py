"""`regbench diagnose`: verdicts for a results folder or a CSV, and what to try next.

When runs overfit, the advice comes first from the experiment itself (recipes whose runs did
not overfit, best validation metric first, and which recipe shrank the gap most), then from the
catalogue: registered regularizers the experiment has not tried, in a practitioner's order
(cheapest and most reliable first: each regularizer's ``try_rank``).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pydantic import ValidationError

from regbench import catalogue
from regbench.analysis.compare import build_comparison
from regbench.analysis.curves import is_log_folder, read_curve_csv, read_curves
from regbench.analysis.diagnose import diagnose_rows, infer_task, label
from regbench.analysis.headline import LOST_CAUSES
from regbench.analysis.stats import paired_difference
from regbench.config.schema import DiagnosisConfig
from regbench.config.yaml_io import read_yaml_file
from regbench.data import DATASETS
from regbench.errors import RegbenchError
from regbench.results import DAMAGED, load_summaries, task_of
from regbench.vocabulary import CONFIG_FILE, EXPERIMENT_FILE, METRICS_FILE


@dataclass
class Diagnosis:
    """Every diagnosed run of one target plus the advice that follows."""

    target: Path
    runs: list[dict[str, Any]]              # {"run", "point", "regularizers", verdict fields}
    task: str
    images: Optional[bool] = None           # image data? None: unknown (a CSV)
    advice: list[str] = field(default_factory=list)
    relative: list[str] = field(default_factory=list)  # each recipe's gap next to the baseline's
    input_shape: Optional[tuple[int, ...]] = None  # the data's; None: read from the folder


def _thresholds(run_dir: Path) -> Optional[dict[str, Any]]:
    for path in (run_dir / CONFIG_FILE, run_dir.parent.parent / EXPERIMENT_FILE):
        if path.is_file():
            try:
                data, _ = read_yaml_file(path)
            except RegbenchError:
                continue
            if isinstance(data, dict) and isinstance(data.get("diagnosis"), dict):
                try:   # a hand-edited or damaged config falls back to the default thresholds
                    return DiagnosisConfig.model_validate(data["diagnosis"]).model_dump()
                except ValidationError:
                    continue
    return None


def diagnose_path(target: str | Path, mapping: Optional[dict[str, str]] = None) -> Diagnosis:
    """Diagnose every run of a results folder (re-read from metrics.csv), or of another tool's
    log (a CSV, TensorBoard event files, an MLflow run: ``read_curves``; ``mapping`` names
    its columns as ``--map`` does)."""
    source, target = target, Path(target)
    if target.is_dir() and not is_log_folder(target):
        if mapping:
            raise RegbenchError(f"{target}: --map is for other tools' logs; a results "
                                "folder's metrics.csv uses regbench's own names")
        runs = []
        summaries = load_summaries(target)
        for summary in summaries:
            run_dir = Path(summary["_dir"])
            status = summary.get("status", "completed")
            if status in ("failed", DAMAGED):
                verdict = {"verdict": status, "started_epoch": None, "rules": [],
                           "evidence": [summary.get("error", "the run failed")]}
            else:
                try:
                    rows = read_curve_csv(run_dir / METRICS_FILE)
                except RegbenchError as exc:  # missing, empty or garbage: never "ok"
                    verdict = {"verdict": "unknown", "started_epoch": None, "rules": [],
                               "evidence": [f"{exc}: no curves to judge"]}
                else:
                    verdict = diagnose_rows(rows, summary.get("task", "classification"),
                                            _thresholds(run_dir), status,
                                            summary.get("chosen_epoch"))
            runs.append({"run": summary["run_id"], "point": summary.get("point_id"),
                         "seed": summary.get("seed"),
                         "regularizers": sorted(summary.get("regularizers") or {}), **verdict})
        diagnosis = Diagnosis(target, runs, task_of(summaries),
                              is_image_experiment(target))
        diagnosis.advice = advise(diagnosis, summaries)
        diagnosis.relative = relative_gaps(diagnosis)
        return diagnosis
    curves = read_curves(source, mapping)
    task = infer_task({k for _, rows in curves if isinstance(rows, list) for row in rows
                       for k in row})
    runs = [{"run": name, "point": name, "regularizers": [],
             **(diagnose_rows(rows, task) if isinstance(rows, list) else
                {"verdict": "unknown", "grade": None, "started_epoch": None, "rules": [],
                 "evidence": [f"{rows}: no curves to judge"]})} for name, rows in curves]
    diagnosis = Diagnosis(target, runs, task)
    diagnosis.advice = advise(diagnosis, None)
    return diagnosis


def is_image_experiment(results_dir: Path) -> Optional[bool]:
    """Whether the experiment's dataset holds images, from experiment.yaml (None: unknown)."""
    try:
        data, _ = read_yaml_file(results_dir / EXPERIMENT_FILE)
        dataset = data["dataset"]
        return DATASETS.get(dataset["name"]).spec(dataset).is_image
    except Exception:  # an old or hand-made folder: advice just stays generic
        return None


def experiment_input_shape(results_dir: Path) -> Optional[tuple[int, ...]]:
    """The dataset's input shape from experiment.yaml: (C, H, W) for images, (F,) for tables
    (None: unknown, e.g. a csv before it is read, or not a results folder)."""
    try:
        data, _ = read_yaml_file(results_dir / EXPERIMENT_FILE)
        dataset = data["dataset"]
        shape = DATASETS.get(dataset["name"]).spec(dataset).input_shape
        return tuple(int(n) for n in shape) if shape is not None else None
    except Exception:  # an old or hand-made folder: advice just stays generic
        return None


# regularizers whose `size` is a patch side in pixels: a patch over half the image's side
# blanks most of it wherever it lands (cutout's default 8 px is a whole 8×8 digit)
PATCH_SIZED = ("cutout",)


def _fitted(name: str, shape: Optional[tuple[int, ...]]) -> str:
    """The parameter range that suits this data, where the default may not."""
    if name in PATCH_SIZED and shape is not None and len(shape) == 3:
        side = min(shape[1:])
        return f" with size ≤ {max(1, side // 2)} px (half the {side}-px side of these images)"
    return ""


def _catalogue(task: str, exclude: set[str], images: Optional[bool],
               shape: Optional[tuple[int, ...]] = None) -> list[str]:
    """Registered regularizers to try, for this task and data: no image augmentation for a
    table, a patch no larger than half the image's side."""
    if shape is not None:
        images = len(shape) == 3
    known = catalogue.current()["advice"]
    lines = []
    # the usual first tries in order, then any other registered regularizer
    ordered = sorted(range(len(known)), key=lambda i: (known[i]["try_rank"] is None,
                                                       known[i]["try_rank"] or 0, i))
    for entry in (known[i] for i in ordered):
        if entry["name"] in exclude:
            continue
        if task in ("classification", "regression") and task not in entry["tasks"]:
            continue
        if entry["needs_images"] and images is False:
            continue
        where = " (image data)" if entry["needs_images"] and images is None else ""
        where += _fitted(entry["name"], shape)
        lines.append(f"{entry['name']}{where}: {entry['summary']}")
    return lines[:6]


def advise(diagnosis: Diagnosis, summaries: Optional[list[dict[str, Any]]]) -> list[str]:
    """Plain-language next steps for the verdicts found."""
    by_point: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in diagnosis.runs:
        by_point[run["point"]].append(run)
    overfit = [p for p, runs in by_point.items() if any(r["verdict"] == "overfitting" for r in runs)]
    under = [p for p, runs in by_point.items() if any(r["verdict"] == "underfitting" for r in runs)]
    lines = _not_completed(diagnosis, summaries)
    if under:
        lines.append(f"underfitting in {_names(under)}: weaken the regularization, use a bigger "
                     "model or train longer")
    if not overfit:
        if not under:
            lines.append("no overfitting found" + (" in the runs that completed" if lines else "")
                         + ": the gap between train and val is small")
        return lines
    strong = [p for p in overfit if any(r.get("grade") != "mild" for r in by_point[p]
                                        if r["verdict"] == "overfitting")]
    mild = [p for p in overfit if p not in strong]
    # each point's own start, the number the diagnosis table shows: a median over every
    # point's runs mixed the baseline's epoch 5 with a mild recipe's gap at epoch 38
    starts = {p: overfitting_epoch(by_point[p]) for p in strong}
    if strong:
        lines.append(f"overfitting (val loss rose while train loss fell) in "
                     f"{_names(strong, starts)}")
    if mild:
        lines.append(f"mild overfitting (a train−val gap, but val did not get worse) in "
                     f"{_names(mild)}")
    tried: set[str] = set()
    if summaries:
        lines += _from_experiment(summaries, by_point, overfit, under)
        tried = {name for s in summaries for name in (s.get("regularizers") or {})}
    shape = diagnosis.input_shape if diagnosis.input_shape is not None \
        else experiment_input_shape(diagnosis.target)
    suggestions = _catalogue(diagnosis.task, tried, diagnosis.images, shape)
    # early stopping stops near where val loss turned up: one epoch to quote when the
    # baseline overfits or the overfitting recipes agree
    agreed = set(starts.values())
    stop = starts["baseline"] if "baseline" in starts else (agreed.pop() if len(agreed) == 1
                                                           else None)
    if stop is not None and suggestions and suggestions[0].startswith("early_stopping"):
        suggestions[0] += f" (here it would stop near epoch {stop})"
    if suggestions:
        lines.append("from the catalogue" + (", not yet tried here" if summaries else "")
                     + ", try:")
        lines += [f"  {s}" for s in suggestions]
    return lines


STOPPED = ("diverged", "failed", DAMAGED)   # verdicts that mean the run did not complete


def _not_completed(diagnosis: Diagnosis, summaries: Optional[list[dict[str, Any]]]) -> list[str]:
    """Runs that did not complete, by cause and point, with what to do first: a divergence is
    fixed by the setting, a failure by its error, an interrupted run by resuming; never by
    adding seeds (the comparison leaves these runs out)."""
    statuses = {s.get("run_id"): s.get("status") for s in summaries or ()}
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    totals: dict[str, int] = defaultdict(int)
    for run in diagnosis.runs:
        totals[run["point"]] += 1
        status = statuses.get(run["run"]) or (run["verdict"] if run["verdict"] in STOPPED
                                              else "completed")
        if status not in ("completed", "pruned"):
            counts[status][run["point"]] += 1
    lines = []
    for cause in sorted(counts, key=lambda c: (list(LOST_CAUSES).index(c)
                                               if c in LOST_CAUSES else len(LOST_CAUSES), c)):
        words, action = LOST_CAUSES.get(cause, (f"ended '{cause}'", "see the run's summary.json"))
        points = list(counts[cause].items())
        shown = ", ".join(f"{_label(point)} ({n} of {totals[point]} runs)"
                          for point, n in points[:6])
        more = f" and {len(points) - 6} more" if len(points) > 6 else ""
        lines.append(f"{words} in {shown}{more}: {action}"
                     + ("; the comparison leaves these runs out" if summaries else ""))
    return lines


def _from_experiment(summaries, by_point, overfit, under) -> list[str]:
    """Recipes of this experiment whose every run was ``ok``, best val metric first, each with
    its runs' own gap (the number their verdict was judged on). A recipe that did worse than
    the baseline on test is never suggested."""
    try:
        comparison = build_comparison(summaries)
    except RegbenchError:
        return []
    metric = comparison.metric
    healthy = [row for row in comparison.rows if row["point"] not in overfit
               and row["point"] not in under and row["verdict"] != "worse"
               and by_point.get(row["point"])
               and all(r["verdict"] == "ok" for r in by_point[row["point"]])
               and not math.isnan(row[f"val_{metric}"])]
    shown = []
    for row in healthy[:4]:
        gap = _mean_gap(by_point[row["point"]])
        gap_words = f", gap {gap}" if gap else ""
        shown.append(f"{_label(row['point'])} (val {metric} {row[f'val_{metric}']:.4f}"
                     f"{gap_words})")
    if not shown:
        return []
    return [f"did not overfit in this experiment, best val {metric} first: {', '.join(shown)}"]


def _gap_key(runs: list[dict[str, Any]]) -> Optional[str]:
    return next((key for key in ("accuracy_gap", "r2_gap") for r in runs
                 if key in (r.get("numbers") or {})), None)


def _gap_text(key: str, value: float) -> str:
    return f"{100 * value:.1f} points" if key == "accuracy_gap" else f"{value:.3f} in R²"


def _mean_gap(runs: list[dict[str, Any]]) -> str:
    key = _gap_key(runs)
    values = [r["numbers"][key] for r in runs if key and key in (r.get("numbers") or {})]
    return _gap_text(key, sum(values) / len(values)) if values else ""


def relative_gaps(diagnosis: Diagnosis) -> list[str]:
    """Each recipe's train−val gap next to the baseline's: the difference paired by seed with
    its 95% interval, and whether it is beyond seed noise (the interval excludes zero)."""
    by_point: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in diagnosis.runs:
        by_point[run["point"]].append(run)
    key = _gap_key(diagnosis.runs)
    if key is None or "baseline" not in by_point:
        return []

    def by_seed(runs):
        return {r["seed"]: r["numbers"][key] for r in runs
                if r.get("seed") is not None and key in (r.get("numbers") or {})}

    base = by_seed(by_point["baseline"])
    if not base:
        return []
    what = "train−val accuracy" if key == "accuracy_gap" else "train−val R²"
    lines = [f"baseline: {_gap_text(key, sum(base.values()) / len(base))} ({what}, mean over "
             f"{len(base)} seed(s))"]
    for point, runs in by_point.items():
        gaps = by_seed(runs)
        if point == "baseline" or not gaps:
            continue
        diff = paired_difference(gaps, base)
        mean = _gap_text(key, sum(gaps.values()) / len(gaps))
        if diff.pairs == 0:
            lines.append(f"{_label(point)}: {mean} (no seed shared with baseline)")
            continue
        scale, digits = (100, 1) if key == "accuracy_gap" else (1, 3)
        change = "smaller" if diff.mean < 0 else "larger"
        words = (f"{_label(point)}: {mean}, {abs(scale * diff.mean):.{digits}f} {change} than "
                 "baseline's")
        if diff.pairs < 2 or math.isnan(diff.low):
            words += " (one seed: no estimate of seed noise)"
        else:
            beyond = diff.high < 0 or diff.low > 0
            words += (f" [95% CI of the difference {scale * diff.low:+.{digits}f}, "
                      f"{scale * diff.high:+.{digits}f}]: "
                      + ("beyond seed noise" if beyond else "within seed noise"))
        lines.append(words)
    return lines if len(lines) > 1 else []


def _label(point: str) -> str:
    return point.replace("__", " ")


def _names(points: list[str], starts: Optional[dict[str, Any]] = None) -> str:
    """The first six points, each with the epoch its overfitting started where ``starts``
    has one."""
    starts = starts or {}
    shown = ", ".join(_label(p) + (f" (from epoch {starts[p]})" if starts.get(p) is not None
                                   else "") for p in points[:6])
    return shown + (f" and {len(points) - 6} more" if len(points) > 6 else "")


def overfitting_starts(runs: list[dict[str, Any]]) -> list[int]:
    """The epochs a recipe's runs started to overfit, from its runs of the worst grade found:
    those whose val loss rose, else the mild ones (a gap's epoch is not a val-loss minimum)."""
    overfit = [r for r in runs if r["verdict"] == "overfitting"]
    worst = [r for r in overfit if r.get("grade") != "mild"] or overfit
    return sorted(r["started_epoch"] for r in worst if r.get("started_epoch") is not None)


def overfitting_epoch(runs: list[dict[str, Any]]) -> Optional[int | float]:
    """The epoch a recipe's overfitting started, the median of ``overfitting_starts`` (None
    when none overfit): the one number the report's diagnosis table and the advice quote."""
    starts = overfitting_starts(runs)
    return _median(starts) if starts else None


def _median(values: list[float]) -> int | float:
    import statistics

    value = statistics.median(values)
    return int(value) if float(value).is_integer() else round(value, 1)


VERDICT_STYLE = {"overfitting": "bold red", "underfitting": "bold yellow", "ok": "bold green",
                 "diverged": "bold magenta", "failed": "bold magenta"}


def render_diagnosis(diagnosis: Diagnosis, console) -> None:
    """Print one line per run with its evidence, then the advice."""
    from rich.markup import escape

    for run in diagnosis.runs:
        style = VERDICT_STYLE.get(run["verdict"], "bold")
        start = run.get("started_epoch")
        since = f" from epoch {start}" if start is not None and run["verdict"] == "overfitting" \
            else ""
        console.print(f"{escape(run['run'])}: [{style}]{label(run)}[/]{since}")
        for line in run["evidence"]:
            console.print(f"  - {escape(line)}")
    if diagnosis.relative:
        console.print("\n[bold]Gap compared with the baseline's[/]")
        for line in diagnosis.relative:
            console.print(f"• {escape(line)}")
    if diagnosis.advice:
        console.print("\n[bold]What to try[/]")
        for line in diagnosis.advice:
            console.print(escape(line) if line.startswith("  ") else f"• {escape(line)}")
