"""The suite table: one row per recipe across every task, rebuilt from the task folders alone.

A suite folder (``regbench suite``) holds ``suite.yaml`` (its tasks and recipes) and one
ordinary experiment folder per task under ``tasks/<task>/``. Each task's numbers come from its
run folders' ``summary.json`` (test error per seed, training seconds) and its own comparison
table (the per-task verdicts: ``regbench compare tasks/<task>`` prints the same). The
statistics are ``regbench.analysis.suite_stats``'s; the notes say what each column means.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from regbench.analysis import suite_stats as st
from regbench.analysis.compare import chosen_rows, compare_results
from regbench.analysis.stats import finite
from regbench.errors import RegbenchError
from regbench.results import load_summaries, task_of
from regbench.vocabulary import default_metric

SUITE_FILE = "suite.yaml"           # the suite as trained: tasks, recipes, seeds
TASKS_DIR = "tasks"                 # tasks/<task>/: each task's experiment folder
SUITE_TABLE = {"csv": "suite.csv", "md": "suite.md", "tex": "suite.tex"}
TASKS_TABLE = "suite_tasks.csv"     # one row per task × recipe: what the suite rows aggregate
SUITE_PAGE = "suite.html"
COLUMNS = ("recipe", "tasks", "won", "tied", "lost", "iqm", "iqm_low", "iqm_high", "mean",
           "mean_low", "mean_high", "p_improve", "p_improve_low", "p_improve_high", "p_value",
           "p_holm", "verdict", "relative_time", "avg_rank")
BETTER, WORSE, INCONCLUSIVE = "better", "worse", "inconclusive"


def error_of(summary: dict[str, Any], kind: str) -> float:
    """A completed run's test error: 1 − accuracy (classification) or the MSE (regression),
    the task's default metric as a quantity where lower is better."""
    value = summary.get(f"test_{default_metric(kind)}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return 1.0 - value if kind == "classification" else value


@dataclass
class TaskScores:
    """What the suite reads of one task's folder."""

    name: str
    kind: str                                           # classification | regression
    errors: dict[str, dict[int, float]]                 # recipe -> seed -> test error
    seconds: dict[str, dict[int, float]]                # recipe -> seed -> training seconds
    verdicts: dict[str, str] = field(default_factory=dict)   # recipe -> the task table's verdict
    # recipe -> the task table's Δ and its interval, as relative error reduction
    intervals: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    headline: list[str] = field(default_factory=list)
    lost: int = 0                                       # runs that did not complete
    folder: str = ""                                    # under tasks/: <task>, or <task>-tune

    @property
    def metric(self) -> str:
        return default_metric(self.kind)

    def baseline_error(self) -> float:
        values = [v for v in self.errors.get("baseline", {}).values() if math.isfinite(v)]
        return float(np.mean(values)) if values else math.nan

    def improvements(self, recipe: str) -> dict[int, float]:
        """seed -> the recipe's relative error reduction (empty where it cannot be formed)."""
        return st.relative_error_reduction(self.errors.get("baseline", {}),
                                           self.errors.get(recipe, {}))


def read_task(folder: Path, name: str) -> TaskScores:
    """A task's errors, seconds and verdicts from its experiment folder."""
    summaries = load_summaries(folder)
    kind = task_of(summaries)
    errors: dict[str, dict[int, float]] = defaultdict(dict)
    seconds: dict[str, dict[int, float]] = defaultdict(dict)
    lost = 0
    for summary in summaries:
        if summary.get("status") != "completed":
            lost += 1
            continue
        recipe, seed = summary.get("recipe"), summary.get("seed")
        errors[recipe][seed] = error_of(summary, kind)
        seconds[recipe][seed] = float(summary.get("seconds") or math.nan)
    scores = TaskScores(name=name, kind=kind, errors=dict(errors), seconds=dict(seconds),
                        lost=lost, folder=Path(folder).name)
    comparison = compare_results(folder)     # read-only: the task's own table
    scale = scores.baseline_error()
    sign = 1.0 if kind == "classification" else -1.0   # +Δ accuracy / −Δ mse: less error
    # each recipe's one row (with --tune, its chosen point's, confirmed on fresh seeds)
    for row in chosen_rows(comparison).values():
        if row["recipe"] == "baseline":
            continue
        scores.verdicts[row["recipe"]] = row["verdict"] or ""
        if scale > 0:
            ends = sorted(sign * row[key] / scale for key in ("diff_low", "diff_high"))
            scores.intervals[row["recipe"]] = (sign * row["diff"] / scale, *ends)
    scores.headline = list(comparison.headline)
    return scores


@dataclass
class SuiteTable:
    name: str
    recipes: list[str]                                  # compared with baseline, in suite order
    tasks: list[TaskScores]
    rows: list[dict[str, Any]] = field(default_factory=list)
    task_rows: list[dict[str, Any]] = field(default_factory=list)   # suite_tasks.csv
    friedman: Optional[st.Friedman] = None
    friedman_tasks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)

    def improvements(self, recipe: str) -> dict[str, dict[int, float]]:
        """task -> seed -> relative error reduction, over the tasks where it can be formed."""
        found = {task.name: task.improvements(recipe) for task in self.tasks
                 if recipe in task.errors}
        return {name: values for name, values in found.items() if values}


def build_suite_table(name: str, tasks: list[TaskScores], recipes: list[str]) -> SuiteTable:
    """The suite's rows, notes and headline from each task's scores."""
    compared = [r for r in recipes if r != "baseline"]
    table = SuiteTable(name=name, recipes=compared, tasks=tasks)
    table.friedman, table.friedman_tasks = _friedman(tasks, ["baseline", *compared])
    for recipe in compared:
        table.rows.append(_row(table, recipe))
    adjusted = st.holm([row["p_value"] for row in table.rows])
    for row, p_holm in zip(table.rows, adjusted):
        row["p_holm"] = p_holm
        direction = row.pop("_direction")
        row["verdict"] = (INCONCLUSIVE if math.isnan(p_holm) or p_holm >= st.ALPHA
                          else BETTER if direction > 0 else WORSE if direction < 0
                          else INCONCLUSIVE)
    table.task_rows = _task_rows(table)
    table.notes = _notes(table)
    table.headline = [_sentence(row) for row in table.rows]
    return table


def _row(table: SuiteTable, recipe: str) -> dict[str, Any]:
    by_task = table.improvements(recipe)
    samples = [np.array(list(values.values())) for values in by_task.values()]
    ran = {task.name: task for task in table.tasks if task.name in by_task}
    verdicts = [ran[name].verdicts.get(recipe, "") for name in by_task]
    mean_low, mean_high = st.stratified_interval(samples, st.stacked_mean)
    iqm_low, iqm_high = st.stratified_interval(samples, st.pooled_iqm)
    # each seed's test error; a completed run without one is left out, never counted a loss
    mine = [finite(list(ran[name].errors[recipe].values())) for name in by_task]
    theirs = [finite(list(ran[name].errors["baseline"].values())) for name in by_task]
    chance_low, chance_high = st.improvement_interval(mine, theirs)
    p_value, direction = st.signed_rank_test([float(np.mean(s)) for s in samples])
    ratios = [_mean(ran[name].seconds.get(recipe)) / _mean(ran[name].seconds.get("baseline"))
              for name in by_task]
    ranks = table.friedman.average_ranks if table.friedman else {}
    return {"recipe": recipe, "tasks": len(by_task), "won": verdicts.count(BETTER),
            "tied": sum(v not in (BETTER, WORSE) for v in verdicts),
            "lost": verdicts.count(WORSE),
            "iqm": st.iqm(np.concatenate(samples)) if samples else math.nan,
            "iqm_low": iqm_low, "iqm_high": iqm_high,
            "mean": st.mean_of_means(samples), "mean_low": mean_low, "mean_high": mean_high,
            "p_improve": st.probability_of_improvement(mine, theirs),
            "p_improve_low": chance_low, "p_improve_high": chance_high,
            "p_value": p_value, "p_holm": math.nan, "verdict": INCONCLUSIVE,
            "relative_time": st.geometric_mean(ratios),
            "avg_rank": ranks.get(recipe, math.nan),
            "improved": sum(float(np.mean(s)) > 0 for s in samples), "_direction": direction}


def _mean(values: Optional[dict[int, float]]) -> float:
    finite = [v for v in (values or {}).values() if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _friedman(tasks: list[TaskScores], recipes: list[str]
              ) -> tuple[Optional[st.Friedman], list[str]]:
    """Friedman and Nemenyi over the tasks on which every recipe (baseline included) has a
    completed run: a rank needs every recipe in the block."""
    complete = [task for task in tasks
                if all(math.isfinite(_mean(task.errors.get(r))) for r in recipes)]
    errors = np.array([[_mean(task.errors[r]) for r in recipes] for task in complete])
    return st.friedman_nemenyi(errors, recipes), [task.name for task in complete]


def _task_rows(table: SuiteTable) -> list[dict[str, Any]]:
    rows = []
    for task in table.tasks:
        for recipe in table.recipes:
            if recipe not in task.errors and recipe not in task.verdicts:
                continue
            values = task.improvements(recipe)
            delta, low, high = task.intervals.get(recipe, (math.nan,) * 3)
            rows.append({"task": task.name, "kind": task.kind, "metric": task.metric,
                         "recipe": recipe, "seeds": len(values),
                         "improvement": float(np.mean(list(values.values()))) if values
                         else math.nan,
                         "task_delta": delta, "task_low": low, "task_high": high,
                         "task_verdict": task.verdicts.get(recipe, ""),
                         "baseline_error": task.baseline_error(),
                         "recipe_error": _mean(task.errors.get(recipe)),
                         "relative_time": _mean(task.seconds.get(recipe))
                         / _mean(task.seconds.get("baseline"))})
    return rows


def _signed(fraction: float) -> str:
    """A fraction as signed percent with one decimal; what rounds to zero is +0.0."""
    percent = round(100 * fraction, 1)
    return f"{percent + 0.0:+.1f}"           # + 0.0: -0.0 prints as +0.0


def _percent(value: float) -> str:
    return "—" if math.isnan(value) else f"{_signed(value)}%"


def interval_text(row: dict[str, Any], key: str) -> str:
    """``+1.9% [+0.8, +3.1]`` (percent of the baseline's error), without the interval where
    there is none."""
    value, low, high = row[key], row[f"{key}_low"], row[f"{key}_high"]
    if math.isnan(low):
        return _percent(value)
    return f"{_percent(value)} [{_signed(low)}, {_signed(high)}]"


def _sentence(row: dict[str, Any]) -> str:
    time = (f", {row['relative_time']:.2g}× the baseline's training time"
            if math.isfinite(row["relative_time"]) else "")
    verdict = row["verdict"]
    how = (f" (Wilcoxon over tasks, Holm p = {row['p_holm']:.3g})" if verdict != INCONCLUSIVE
           else "")
    return (f"{row['recipe']}: {verdict}{how} — less error on {row['improved']} of "
            f"{row['tasks']} tasks ({row['won']} won, {row['tied']} tied, {row['lost']} lost by "
            f"each task's own test), IQM {interval_text(row, 'iqm')} of the baseline's error"
            f"{time}")


def _notes(table: SuiteTable) -> list[str]:
    m = len(table.rows)
    n = max((row["tasks"] for row in table.rows), default=0)
    notes = [
        "normalised improvement: per task and seed, the relative error reduction (e_baseline − "
        "e_recipe) / mean e_baseline, paired by seed, where the error is 1 − accuracy "
        "(classification) or the MSE (regression), each on the task's test split: +10% is a "
        "tenth less error than the baseline, comparable between accuracy and MSE tasks",
        f"iqm: the interquartile mean of every task × seed value pooled; mean: the mean over "
        f"tasks of each task's mean (rliable). [low, high]: {st.LEVEL:.0%} stratified bootstrap "
        "intervals, seeds resampled within each task, rescaled by √(n/(n−1)) per task and read "
        "at the Student-t-expanded level (Rao & Wu 1988, Hesterberg 2015; rliable's plain "
        "percentile interval covers 86% at 3 seeds × 6 tasks, this one 94%); they cover the "
        "seeds' variance on these tasks, not another choice of tasks; none with fewer than 2 "
        "seeds per task",
        "p_improve: the probability that a recipe's seed has less error than a baseline's seed "
        "on the same task (ties half), averaged over tasks (rliable), with rliable's stratified "
        f"percentile bootstrap {st.LEVEL:.0%} interval",
        f"verdict: Wilcoxon signed-rank test over tasks of each task's mean normalised "
        f"improvement (Demšar 2006), Holm over the {m} recipe(s): better or worse when the "
        f"Holm-adjusted p is below {st.ALPHA:g}, else inconclusive",
    ]
    floor = st.smallest_signed_rank_p(n) * max(m, 1)
    if floor >= st.ALPHA and m:
        enough = next(k for k in range(1, 64) if st.smallest_signed_rank_p(k) * m < st.ALPHA)
        notes.append(f"{n} task(s) cannot give a verdict below p = "
                     f"{st.smallest_signed_rank_p(n):.3g} (the signed-rank test's least p, every "
                     f"task on one side; {floor:.3g} after Holm over {m} recipes): no recipe "
                     f"can be called better or worse here; {enough} tasks could")
    notes.append("won / tied / lost: each task's own verdict (its comparison table: paired "
                 "t-test over seeds, Bonferroni over its recipes): better = won, worse = lost, "
                 "anything else tied")
    friedman = table.friedman
    if friedman is not None:
        notes.append(f"avg_rank: average rank of each task's mean error among the "
                     f"{len(friedman.recipes)} recipes, baseline included (1 = best), over the "
                     f"{friedman.tasks} task(s) where all ran; Friedman χ² = "
                     f"{friedman.statistic:.2f}, p = {friedman.p_value:.3g}; Nemenyi critical "
                     f"difference {friedman.critical_difference:.2f} at α = {st.ALPHA:g} (q = "
                     f"{friedman.q_alpha:.3f}): two recipes whose average ranks differ by more "
                     "differ (Demšar 2006)")
    else:
        notes.append("avg_rank: no Friedman test: it needs 3 recipes or more (baseline "
                     "included) and 2 tasks or more on which all of them ran")
    notes.append("relative_time: a recipe's mean training seconds ÷ the baseline's on each "
                 "task, geometric mean over tasks")
    left = [task.name for task in table.tasks if not table_has(table, task.name)]
    if left:
        notes.append(f"left out of the aggregate (no baseline error to reduce, or no recipe "
                     f"paired with the baseline): {', '.join(left)}")
    lost = sum(task.lost for task in table.tasks)
    if lost:
        notes.append(f"{lost} run(s) did not complete; their seeds are left out of the pairs "
                     "(see each task's comparison)")
    return notes


def table_has(table: SuiteTable, task: str) -> bool:
    return any(task in table.improvements(recipe) for recipe in table.recipes)


def read_suite(suite_dir: Path) -> dict[str, Any]:
    """The suite as trained (suite.yaml), or exit 2 naming the folder."""
    import yaml  # deferred: only the suite's reader parses its file

    path = Path(suite_dir) / SUITE_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RegbenchError(f"{suite_dir}: not a suite folder ({SUITE_FILE} unreadable: "
                            f"{getattr(exc, 'strerror', None) or exc}); run `regbench suite "
                            "SUITE.yaml` first") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        raise RegbenchError(f"{path}: not a suite file written by regbench suite")
    return data


def _folder(task: str, entry: Any) -> str:
    """The folder under tasks/ whose runs stand for a task: its own, or with --tune its
    tuning's confirmation on fresh seeds (``<task>-tune``)."""
    folder = entry.get("folder") if isinstance(entry, dict) else None
    inside = isinstance(folder, str) and folder not in ("", ".", "..") and "/" not in folder \
        and "\\" not in folder and folder.startswith(task)
    return folder if inside else task


def suite_table(suite_dir: Path) -> SuiteTable:
    """The table rebuilt from the suite folder alone."""
    suite = read_suite(suite_dir)
    tasks = [read_task(Path(suite_dir) / TASKS_DIR / _folder(name, entry), name)
             for name, entry in suite["tasks"].items()]
    return build_suite_table(str(suite.get("name", Path(suite_dir).name)), tasks,
                             list(suite.get("recipes") or ["baseline"]))
