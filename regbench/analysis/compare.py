"""The comparison table, rebuilt from run folders alone.

One row per recipe and sweep point: seeds, val and test metric mean ± std, the test difference
to baseline with its paired 95% Student-t interval, the verdict (better / worse / inconclusive,
Holm-corrected over the table's rows), the probability of improvement and the p-values, the
train−val gap, best epoch, diagnosis, sparsity, seconds per epoch and parameter count. Sorted by
the validation metric; the best value of each sweep is chosen on validation, never on test.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from regbench.analysis.diagnose import label, tally
from regbench.analysis.headline import headline, lost_note, lost_runs
from regbench.analysis.stats import (
    ALPHA,
    CONFIDENCE,
    INCONCLUSIVE,
    MAX_SEEDS_ADVISED,
    POWER,
    decide,
    holm,
    mean_std,
    paired_difference,
    probability_of_improvement,
    seeds_needed,
    t_quantile,
)
from regbench.errors import RegbenchError
from regbench.registry import did_you_mean
from regbench.results import (
    ResultsLock,
    atomic_write_text,
    check_results_folder,
    confirmed_selection,
    load_summaries,
    planned_run_ids,
    searched_experiment,
    table_csv,
    task_of,
    write_runs_csv,
)
from regbench.vocabulary import (
    COMPARISON,
    MIN_SEEDS,
    default_metric,
    format_value,
    lower_is_better,
    metric_names,
)


@dataclass
class Comparison:
    metric: str                              # e.g. accuracy (compared on val_ / test_)
    rows: list[dict[str, Any]]               # one per recipe and sweep point, sorted
    notes: list[str] = field(default_factory=list)
    best_points: dict[str, dict[str, Any]] = field(default_factory=dict)  # recipe -> best sweep row
    scope: str = ""                          # what the intervals cover, over how many seeds
    varied: str = ""                         # what the seeds vary (part of the scope line)
    comparisons: int = 0                     # rows in the Holm family
    # recipe -> seeds that would settle it, always more than its row already has
    seeds_needed: dict[str, int] = field(default_factory=dict)
    headline: list[str] = field(default_factory=list)  # the answer in plain sentences
    title: str = ""                          # the experiment's name, where known
    unfinished: list[str] = field(default_factory=list)  # planned runs not finished (interrupted)

    @property
    def gap_label(self) -> str:
        """The gap column's name: train − val for a higher-is-better metric, else val − train."""
        return "val−train gap" if lower_is_better(self.metric) else "train−val gap"


def _diagnosis(summary: dict[str, Any]) -> Optional[str]:
    verdict = summary.get("verdict")
    return label(verdict) if isinstance(verdict, dict) else verdict


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


def build_comparison(summaries: list[dict[str, Any]], metric: Optional[str] = None,
                     min_effect: Optional[float] = None,
                     unfinished: Sequence[str] = ()) -> Comparison:
    """The table; ``min_effect`` is the smallest difference worth detecting, for the advice on
    how many seeds would settle an inconclusive row (default: the observed difference);
    ``unfinished``: planned runs that have not finished (an interrupted run), which the advice
    tells the user to resume rather than to add seeds.

    Each row's ``lost`` holds its runs that did not complete, by status (``missing``: planned
    runs with no summary at all), and ``baseline_lost`` those of the baseline it is paired
    with: such a row is short of seeds for a cause the notes name, and gets no seed advice."""
    task = task_of(summaries)
    metric = metric or default_metric(task)
    check_metric(metric, task)
    higher = not lower_is_better(metric)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for summary in summaries:
        groups[summary.get("point_id") or _point_id(summary)].append(summary)
    baselines = _baselines(summaries, metric)
    lost = _lost_runs(groups, summaries, unfinished)
    baseline_lost = {_global_key(runs[0]): lost[point] for point, runs in groups.items()
                     if runs[0].get("recipe") == "baseline" and lost[point]}
    # the generalisation gap on the compared metric, signed so that positive means val is worse
    sign = 1.0 if higher else -1.0
    rows = []
    for point, runs in groups.items():
        done = [r for r in runs if r.get("status") == "completed"]
        val_mean, val_std = mean_std(_num(r.get(f"val_{metric}")) for r in done)
        test_mean, test_std = mean_std(_num(r.get(f"test_{metric}")) for r in done)
        gaps = [sign * (_num(r.get(f"train_{metric}")) - _num(r.get(f"val_{metric}")))
                for r in done]
        gap_mean, _ = mean_std(gaps)
        test_by_seed = {r["seed"]: _num(r.get(f"test_{metric}")) for r in done}
        baseline_test = baselines.get(_global_key(runs[0]))
        compared = runs[0].get("recipe") != "baseline" and bool(baseline_test)
        diff = paired_difference(test_by_seed, baseline_test) if compared else None
        improve = (probability_of_improvement(list(test_by_seed.values()),
                                              list(baseline_test.values()), higher)
                   if compared else math.nan)
        diagnoses = [v for v in (_diagnosis(r) for r in runs) if v]
        statuses = defaultdict(int)
        for r in runs:
            statuses[r.get("status", "?")] += 1
        first = runs[0]
        rows.append({
            "recipe": first.get("recipe"),
            "point": point,
            "sweep": first.get("sweep") or {},
            "sweep_paths": first.get("sweep_paths") or {},
            "train_differs": bool(first.get("train_differs")),
            "seeds": len(done),
            "runs": len(runs),
            # "completed" when every run did; else each status with its count
            "status": (next(iter(statuses)) if len(statuses) == 1 else
                       ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))),
            f"val_{metric}": val_mean, f"val_{metric}_std": val_std,
            "val_loss": mean_std(_num(r.get("val_loss")) for r in done)[0],
            f"test_{metric}": test_mean, f"test_{metric}_std": test_std,
            "diff": diff.mean if diff else math.nan,
            "diff_low": diff.low if diff else math.nan,
            "diff_high": diff.high if diff else math.nan,
            "diff_sd": diff.sd if diff else math.nan,
            "pairs": diff.pairs if diff else 0,
            "p_value": diff.p_value if diff else math.nan,
            "p_holm": math.nan,
            "p_improve": improve,
            "verdict": "",
            "gap": gap_mean,
            "best_epoch": mean_std(_num(r.get("best_epoch")) for r in done)[0],
            "diagnosis": tally(diagnoses),
            "seeds_vary": _varied(done),
            "sparsity": mean_std(_num(r.get("sparsity")) for r in done)[0],
            "seconds_per_epoch": mean_std(_num(r.get("seconds_per_epoch")) for r in runs)[0],
            "parameters": first.get("parameter_count"),
            # dicts: kept out of comparison.csv, read by the notes and the headline
            "lost": lost[point],
            "baseline_lost": ({} if first.get("recipe") == "baseline"
                              else baseline_lost.get(_global_key(first), {})),
        })
    key = f"val_{metric}"
    rows.sort(key=lambda r: (math.isnan(r[key]), -r[key] if higher else r[key]))
    varied = _seeds_vary(summaries)
    comparison = Comparison(metric=metric, rows=rows, scope=_scope(varied, rows), varied=varied,
                            unfinished=sorted(unfinished))
    _decide(comparison, higher)
    _best_points(comparison, higher)
    _notes(comparison, summaries, min_effect)
    comparison.headline = headline(comparison, chosen_rows(comparison))
    return comparison


def _decide(comparison: Comparison, higher: bool) -> None:
    """The verdict of every row that has a difference, Holm-corrected over all of them."""
    compared = [row for row in comparison.rows if row["recipe"] != "baseline" and row["pairs"]]
    adjusted = holm([row["p_value"] for row in compared])
    comparison.comparisons = sum(not math.isnan(p) for p in adjusted)
    for row, p_holm in zip(compared, adjusted):
        row["p_holm"] = p_holm
        row["verdict"] = decide(row["diff"], p_holm, higher)
        if row["seeds"] < row["runs"]:
            # runs that diverged or failed drop out of the pairs: the survivors alone cannot
            # say the recipe is better (the notes list the runs that did not complete)
            row["verdict"] = INCONCLUSIVE


def _lost_runs(groups: dict[str, list[dict[str, Any]]], summaries: list[dict[str, Any]],
               unfinished: Sequence[str]) -> dict[str, dict[str, dict[str, list[str]]]]:
    """Per point, its runs that did not complete by status, ``{"diverged": {"runs": [run ids],
    "errors": [messages]}}``; planned runs without any summary count as ``missing``."""
    written = {s.get("run_id") for s in summaries}
    lost: dict[str, dict[str, dict[str, list[str]]]] = {point: {} for point in groups}
    for point, runs in groups.items():
        for run in runs:
            status = run.get("status") or "?"
            if status == "completed":
                continue
            entry = lost[point].setdefault(status, {"runs": [], "errors": []})
            entry["runs"].append(str(run.get("run_id", "?")))
            if run.get("error"):
                entry["errors"].append(str(run["error"]))
    for run_id in sorted(set(unfinished) - written):
        point = run_id.rpartition("__seed=")[0]
        if point in lost:
            lost[point].setdefault("missing", {"runs": [], "errors": []})["runs"].append(run_id)
    return lost


RESAMPLED = "per_seed"


def _varied(runs: list[dict[str, Any]]) -> str:
    """What the seeds of these runs varied (the comparison.csv column ``seeds_vary``)."""
    if runs and all(r.get("resample") == RESAMPLED for r in runs):
        return "initialisation, batch order, train/val split"
    return "initialisation, batch order"


def _seeds_vary(summaries: list[dict[str, Any]]) -> str:
    """What the seeds of the completed runs vary."""
    modes = {s.get("resample") or "fixed" for s in summaries if s.get("status") == "completed"}
    if modes == {RESAMPLED}:
        return ("initialisation, batch order and the train/val split (dataset.resample: "
                "per_seed; the test set is fixed)")
    if RESAMPLED in modes:
        return "initialisation and batch order; some runs also resampled the train/val split"
    return ("initialisation and batch order only: the train/val split is fixed "
            "(dataset.resample: per_seed varies it too)")


def _scope(varied: str, rows: list[dict[str, Any]]) -> str:
    """One line: what the intervals cover and over how many seeds."""
    counts = sorted({row["pairs"] for row in rows if row["pairs"]})
    if not counts:
        return ""
    seeds = (f"{counts[0]} paired seeds" if len(counts) == 1
             else f"{counts[0]}–{counts[-1]} paired seeds")
    return (f"Δ [{CONFIDENCE:.0%} CI]: mean paired test difference with a Student-t interval "
            f"over {seeds}; the seeds vary {varied}")


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


def chosen_rows(comparison: Comparison) -> dict[str, dict[str, Any]]:
    """Each recipe's row that stands for it: the best of its sweep, or its only row."""
    by_recipe: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in comparison.rows:
        by_recipe[row["recipe"]].append(row)
    return {recipe: comparison.best_points.get(recipe, rows[0])
            for recipe, rows in by_recipe.items()
            if recipe in comparison.best_points or len(rows) == 1}


def _notes(comparison: Comparison, summaries: list[dict[str, Any]],
           min_effect: Optional[float]) -> None:
    notes = comparison.notes
    selection = list(notes)            # "best l2 by validation …", written by _best_points
    notes.clear()
    if comparison.scope:
        notes.append(comparison.scope)
    if comparison.comparisons:
        notes.append(f"verdict: paired t-test at {ALPHA:.0%}, Holm–Bonferroni corrected over the "
                     f"table's {comparison.comparisons} comparison(s) with baseline; "
                     "'inconclusive' means these runs cannot tell the recipe from the baseline. "
                     "P(improve): how often a run of the recipe beats a run of the baseline "
                     "(all seed pairs, ties ½); p: the paired test, uncorrected and Holm-corrected")
    notes.extend(selection)
    if comparison.best_points:
        notes.append("★ best of its sweep on validation, with the same seeds whose test numbers "
                     "are shown: its test Δ is post-selection (optimistic); confirm it on fresh "
                     "seeds with --confirm-seeds K")
    notes.extend(_seed_advice(comparison, min_effect))
    notes.extend(_lost_notes(comparison))
    # too few seeds is said of the rows whose runs all completed: a row short of seeds because
    # runs diverged, failed or stopped has its cause in the notes above
    seeds = min((row["seeds"] for row in comparison.rows if row["seeds"] and not row["lost"]),
                default=MIN_SEEDS)
    if comparison.unfinished:
        shown = ", ".join(comparison.unfinished[:4])
        more = f" and {len(comparison.unfinished) - 4} more" if len(comparison.unfinished) > 4 \
            else ""
        notes.append(f"{len(comparison.unfinished)} planned run(s) have not finished ({shown}"
                     f"{more}): run the same command again to resume them before adding seeds")
    elif seeds < MIN_SEEDS:
        used = sorted({s["seed"] for s in summaries if isinstance(s.get("seed"), int)})
        notes.append(_few_seeds_warning(seeds, used))
    if not any(row["recipe"] == "baseline" and (row["seeds"] or row["lost"])
               for row in comparison.rows):   # a baseline that lost every run has its note
        notes.append("no baseline runs: differences cannot be computed")
    if any(row["train_differs"] for row in comparison.rows):
        notes.append("† the recipe trains with settings that differ from the "
                     "experiment's (its own `train:` block)")
    failed = [s["run_id"] for s in summaries if s.get("status") not in ("completed",)]
    if failed:
        notes.append(f"{len(failed)} run(s) did not complete: {', '.join(failed[:5])}"
                     + (" …" if len(failed) > 5 else ""))


MAX_LOST_NOTES = 6        # rows whose lost runs get a note each; the rest are named in one


def _lost_notes(comparison: Comparison) -> list[str]:
    """One note per row whose runs did not all complete, the baseline's first: the cause, what
    to do first (never "add seeds") and the seeds its interval uses."""
    rows = sorted((row for row in comparison.rows if row["lost"]),
                  key=lambda row: row["recipe"] != "baseline")
    notes = [lost_note(row) for row in rows[:MAX_LOST_NOTES]]
    if len(rows) > MAX_LOST_NOTES:
        rest = rows[MAX_LOST_NOTES:]
        notes.append(f"and {len(rest)} more row(s) whose runs did not all complete: "
                     + "; ".join(f"{row['point'].replace('__', ' ')}, {lost_runs(row)}"
                                 for row in rest))
    return notes


def _seed_advice(comparison: Comparison, min_effect: Optional[float]) -> list[str]:
    """For each recipe whose chosen row is inconclusive: how many seeds would settle it. Not for
    a row short of seeds because runs (its own or its baseline's) did not complete: the cause
    comes first (``_lost_notes``); and never "about N seeds" for N it already has."""
    alpha = ALPHA / max(1, comparison.comparisons)   # Holm's strictest step
    advice = []
    for recipe, row in chosen_rows(comparison).items():
        if row["verdict"] != INCONCLUSIVE or row["pairs"] < 2:
            continue
        if row["lost"] or row["baseline_lost"]:
            continue
        effect = abs(min_effect) if min_effect else abs(row["diff"])
        needed = seeds_needed(effect, row["diff_sd"], alpha)
        if needed is not None and needed > row["pairs"]:
            comparison.seeds_needed[recipe] = needed
        name = row["point"].replace("__", " ")
        size = (f"a difference of {effect:.2g}" + ("" if min_effect else " (the one observed)")
                + f" with {POWER:.0%} power at the spread seen (sd {row['diff_sd']:.2g}) and "
                f"the corrected level {alpha:.2g}")
        if needed is not None and needed <= row["pairs"]:
            # its seeds already detect that size and it stays inconclusive: more seeds are not
            # what it lacks (with --min-effect larger than the difference observed)
            advice.append(f"no more seeds would settle {name} vs baseline at this size: its "
                          f"{row['pairs']} seeds already detect {size}, yet it is inconclusive, "
                          "so a difference that large is unlikely here (a smaller --min-effect "
                          "sizes the seeds for a smaller one)")
        elif needed is None:
            advice.append(f"{name}: no difference from baseline in any seed pair (the same "
                          "numbers): more seeds would not settle it; try --min-effect to ask for "
                          "a given difference" if row["diff_sd"] == 0 and not min_effect
                          else f"{name}: more seeds cannot be sized here (no spread or no "
                               "effect to detect)")
        elif needed > MAX_SEEDS_ADVISED:
            advice.append(f"{name}: more than {MAX_SEEDS_ADVISED} seeds would be needed to "
                          f"detect {size}: for practical purposes it is no different from "
                          "baseline here")
        else:
            advice.append(f"about {needed} seeds would settle {name} vs baseline: they detect "
                          f"{size}")
    return advice


def _few_seeds_warning(seeds: int, used: Sequence[int] = ()) -> str:
    """The warning for too few seeds, with a --seeds that adds new ones to those already run
    (their runs resume; the new seeds are named after the range)."""
    if seeds < 2:
        width = "one seed gives no interval and no verdict"
    else:
        width = (f"with {seeds} seeds a 95% interval is ±{t_quantile(0.975, seeds - 1):.1f}·sd/"
                 f"√{seeds} (±{t_quantile(0.975, 4):.1f}·sd/√5 with 5), so most rows stay "
                 "inconclusive")
    wanted = max(5, MIN_SEEDS)           # what the other advice sizes intervals for
    fresh = [s for s in range(max(used, default=-1) + 1 + wanted) if s not in used]
    fresh = fresh[:max(wanted - len(used), 1)]
    every = sorted({*used, *fresh})
    seed_range = f"{every[0]}-{every[-1]}" if every == list(range(every[0], every[-1] + 1)) \
        else ",".join(map(str, every))
    return (f"warning: only {seeds} seed(s) for some recipes: {width} (add seeds "
            f"{', '.join(map(str, fresh))}: run the same command with --seeds {seed_range}; "
            "completed runs are kept)")


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


def _probability(value: float) -> str:
    return "" if _missing(value) else f"{value:.2f}"


def _p(value: float) -> str:
    if _missing(value):
        return ""
    return f"{value:.3f}" if value >= 0.001 else "<0.001"


def display_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by every text format."""
    m = comparison.metric
    header = ["recipe", "seeds", f"val {m}", f"test {m}", "Δ test vs baseline [95% CI]",
              "verdict", "P(improve)", "p", "p (Holm)", comparison.gap_label, "best epoch",
              "diagnosis", "sparsity", "s/epoch", "params"]
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
            name, seeds, _spread(row, f"val_{m}"), _spread(row, f"test_{m}"),
            diff, row["verdict"] or "", _probability(row["p_improve"]), _p(row["p_value"]),
            _p(row["p_holm"]), _fmt(row["gap"]), _epoch(row["best_epoch"]),
            row["diagnosis"] or row["status"],
            _fmt(row["sparsity"], 3), _fmt(row["seconds_per_epoch"], 3),
            str(row["parameters"] or ""),
        ])
    return header, cells


def _spread(row: dict[str, Any], key: str) -> str:
    """mean ± std over seeds; one seed has no spread to show: "0.9120 (n=1)"."""
    if row["seeds"] == 1:
        return f"{_fmt(row[key])} (n=1)"
    return f"{_fmt(row[key])} ± {_fmt(row[f'{key}_std'])}"


def to_markdown(comparison: Comparison) -> str:
    header, cells = display_rows(comparison)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    if comparison.notes:
        lines.append("")
        lines += [f"- {note}" for note in comparison.notes]
    return "\n".join(lines) + "\n"


def to_csv(comparison: Comparison) -> str:
    rows = [{**{k: v for k, v in r.items() if not isinstance(v, dict)},
             **{f"sweep.{k}": v for k, v in r["sweep"].items()}} for r in comparison.rows]
    return table_csv(rows)


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"),
                          ("#", r"\#"), ("$", r"\$"), ("±", r"$\pm$"), ("Δ", r"$\Delta$"),
                          ("−", "-"), ("—", "--"), ("†", r"$\dagger$"), ("★", r"$\star$"),
                          ("<", r"$<$")):
        text = text.replace(char, escaped)
    return text


LATEX_COLUMNS = (0, 1, 2, 3, 4, 5, 6, 8, 9)   # a paper's width; every column: comparison.csv


def to_latex(comparison: Comparison) -> str:
    """A booktabs table in a ``table`` float, its caption saying what Δ and the intervals are
    (needs ``\\usepackage{booktabs}``)."""
    header, cells = display_rows(comparison)
    header = [header[i] for i in LATEX_COLUMNS]
    cells = [[row[i] for i in LATEX_COLUMNS] for row in cells]
    name = comparison.title or "regbench"
    verdicts = (f" Verdicts: paired t-test at {ALPHA:.0%}, Holm-corrected over "
                f"{comparison.comparisons} comparison(s)." if comparison.comparisons else "")
    caption = _latex_escape(f"{name}: test {comparison.metric}. {comparison.scope.rstrip('.')}.{verdicts}")
    lines = [r"% regbench comparison table; needs \usepackage{booktabs}",
             r"\begin{table}[htbp]", r"\centering", r"\small",
             rf"\caption{{{caption}}}",
             rf"\label{{tab:regbench-{_latex_escape(name).replace(chr(92) + '_', '-')}}}",
             r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(_latex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex_escape(c) for c in row) + r" \\" for row in cells]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


TERMINAL_COLUMNS = (0, 1, 2, 3, 4, 5, 6, 9, 11)  # the full set is in comparison.md/csv
LEFT_COLUMNS = (0, 5, 11)
KEPT_COLUMNS = (0, 4, 5)          # recipe, Δ [CI], verdict: never dropped from the terminal
DROP_FIRST = (9, 2, 11, 6, 1, 3)  # gap, val, diagnosis, P(improve), seeds, test: dropped in turn
FOLDED = {0: 24, 11: 24}          # recipe and diagnosis fold onto more lines beyond this width


def terminal_columns(header: list[str], cells: list[list[str]],
                     width: Optional[int]) -> list[int]:
    """The columns that fit ``width`` characters, the less important dropped first; the recipe
    name, Δ with its interval and the verdict always stay (the name folds if it must)."""
    columns = list(TERMINAL_COLUMNS)
    if width is None:
        return columns

    def need(index: int) -> int:   # the widest cell, plus the padding and border of a column
        widest = max(len(header[index]), *(len(row[index]) for row in cells))
        return min(widest, FOLDED.get(index, widest)) + 3

    dropped = []
    for index in DROP_FIRST:
        if sum(need(i) for i in columns) + 1 <= width:
            break
        columns.remove(index)
        dropped.append(index)
    for index in reversed(dropped):      # a narrow column dropped late may fit again
        if sum(need(i) for i in columns) + need(index) + 1 <= width:
            columns.append(index)
    return sorted(columns, key=TERMINAL_COLUMNS.index)


def rich_table(comparison: Comparison, title: str = "", width: Optional[int] = None):
    """The terminal table, fitted to ``width`` columns when given (see terminal_columns)."""
    from rich.table import Table

    header, cells = display_rows(comparison)
    shown = terminal_columns(header, cells, width)
    table = Table(title=title or None, show_lines=False)
    for i in shown:
        table.add_column(header[i], justify="left" if i in LEFT_COLUMNS else "right",
                         no_wrap=i not in FOLDED, overflow="fold")
    for row in cells:
        table.add_row(*(row[i] for i in shown))
    if len(shown) < len(TERMINAL_COLUMNS):
        left_out = ", ".join(header[i] for i in TERMINAL_COLUMNS if i not in shown)
        table.caption = (f"left out to fit {width} columns: {left_out} (all are in "
                         "comparison.md, or --format md)")
    return table


def seed_range(seeds: list[int]) -> str:
    return str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"


def confirmation_note(confirms: dict[str, Any]) -> str:
    """The note of a confirmation table (see regbench.experiment.confirm)."""
    chosen = "; ".join(f"{recipe} " + ", ".join(f"{str(path).split('.')[-1]}={value}"
                                                for path, value in values.items())
                       for recipe, values in (confirms.get("chosen") or {}).items() if values)
    selection = confirms.get("selection_seeds") or ["?"]
    seeds = confirms.get("seeds") or ["?"]
    tuning = confirms.get("tuning")
    if isinstance(tuning, dict):    # `regbench tune`: say the budget each recipe was given
        budgets = tuning.get("budgets") or {}
        chosen = "; ".join(
            f"{recipe} " + ", ".join(f"{str(path).split('.')[-1]}={value}"
                                     for path, value in values.items())
            + (f" ({budgets[recipe]})" if recipe in budgets else "")
            for recipe, values in (confirms.get("chosen") or {}).items() if values)
        untuned = [r for r in tuning.get("untuned") or [] if r != "baseline"]
        dropped = tuning.get("not_confirmed") or []
        return (f"tuned: every searched recipe given the same budget, chosen on validation "
                f"{confirms.get('metric')} (seed {seed_range(selection)}, never on test): "
                + (chosen or "none completed")
                + (f"; not tuned, compared as written: {', '.join(untuned)}" if untuned else "")
                + (f"; not confirmed, no trial completed: {', '.join(dropped)}" if dropped
                   else "")
                + f"; then retrained with the baseline on fresh seeds {seed_range(seeds)} never "
                "used for the choice: these test numbers are free of the selection")
    return (f"confirmation of {confirms.get('experiment')}: the points chosen there on validation "
            f"{confirms.get('metric')} with seeds {seed_range(selection)}"
            + (f" ({chosen})" if chosen else "")
            + f", retrained on fresh seeds {seed_range(seeds)} never used for the choice: "
            "their test numbers are free of the selection (the headline comparison)")


def folder_comparison(results_dir: Path, summaries: list[dict[str, Any]],
                      metric: Optional[str] = None,
                      min_effect: Optional[float] = None) -> Comparison:
    """The comparison of a results folder's runs, with what the folder says about them (the
    selection a confirmation folder confirms)."""
    planned = planned_run_ids(results_dir) or set()
    finished = {s.get("run_id") for s in summaries if s.get("status") != "interrupted"}
    comparison = build_comparison(summaries, metric, min_effect, sorted(planned - finished))
    comparison.title = Path(results_dir).name
    confirms = confirmed_selection(results_dir)
    if confirms:
        comparison.notes.insert(0, confirmation_note(confirms))
        dropped = (confirms.get("tuning") or {}).get("not_confirmed") or []
        if dropped:     # a tuned recipe missing from the table must not go unsaid
            comparison.headline.insert(0, f"Not compared: {', '.join(dropped)}: no trial of "
                                          "the search completed (see search/ for why).")
    searched = searched_experiment(results_dir)
    if searched:   # tuning trials: no baseline, no test numbers, one seed, on purpose
        note = (f"the tuning trials of {searched} (regbench tune): one run per trial on the "
                "search seed, chosen on validation only; the test split was never evaluated. "
                "The comparison on fresh seeds is in the folder above this one")
        unfinished = [n for n in comparison.notes if "did not complete" in n]
        comparison.notes = [note] + [n for n in comparison.notes if n.startswith("best ")] + \
            [n.replace("did not complete", "did not complete (pruned trials among them)")
             for n in unfinished]
        comparison.headline = [note]
    return comparison


def write_comparison(results_dir: Path, metric: Optional[str] = None,
                     min_effect: Optional[float] = None) -> Comparison:
    """compare_results with ``write``, holding the folder's lock (`regbench compare --write`:
    not while a run writes the same folder)."""
    with ResultsLock(results_dir):
        return compare_results(results_dir, metric, write=True, min_effect=min_effect)


def compare_results(results_dir: Path, metric: Optional[str] = None, write: bool = False,
                    min_effect: Optional[float] = None) -> Comparison:
    """The comparison rebuilt from the run folders; with ``write`` also runs.csv and
    comparison.{md,csv,tex} (the caller holds the folder's ResultsLock)."""
    results_dir = Path(results_dir)
    summaries = load_summaries(results_dir)
    comparison = folder_comparison(results_dir, summaries, metric, min_effect)
    if write:
        write_runs_csv(results_dir, summaries)
        check_results_folder(results_dir)
        atomic_write_text(results_dir / COMPARISON["md"], to_markdown(comparison))
        atomic_write_text(results_dir / COMPARISON["csv"], to_csv(comparison))
        atomic_write_text(results_dir / COMPARISON["tex"], to_latex(comparison))
    return comparison
