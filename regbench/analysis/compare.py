"""The comparison table, rebuilt from run folders alone.

One row per recipe and sweep point: seeds, val and test metric mean ± std, the test difference
to baseline with its paired Student-t interval (at the level that makes all of the table's
intervals hold together with 95%), the verdict read off that interval (better / worse /
equivalent within ±δ / inconclusive), the p-values, the train−val gap, best epoch, diagnosis,
sparsity, seconds per epoch and parameter count. Sorted by the validation metric; the best
value of each sweep is chosen on validation, never on test. The notes say what the intervals
cover, how many seeds would settle an inconclusive row, and what the data are too small to show.

With ``dataset.cv`` (repeated k-fold) runs pair by (seed, repeat, fold) and the interval is the
corrected resampled t-test's (regbench.analysis.stats), which the scope line names; a row whose
runs do not say their sizes (n_test/n_train unknown) gets no interval, never the plain test's.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, Optional, Sequence

from regbench.analysis.diagnose import label, tally
from regbench.analysis.headline import headline, level_text, lost_note, lost_runs
from regbench.analysis.stats import (
    ALPHA,
    CONFIDENCE,
    INCONCLUSIVE,
    MAX_SEEDS_ADVISED,
    POWER,
    SPREAD_BOUND,
    bonferroni,
    decide,
    family_level,
    interval_half_width,
    mean_std,
    paired_difference,
    probability_of_improvement,
    seeds_to_settle,
    spread_bound,
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
    EXPERIMENT_FILE,
    MIN_SEEDS,
    default_metric,
    format_value,
    lower_is_better,
    metric_names,
)

PAIRED_TEST = "paired t-test"
CORRECTED_TEST = "corrected resampled t-test (Nadeau & Bengio 2003)"   # with dataset.cv


@dataclass
class Comparison:
    metric: str                              # e.g. accuracy (compared on val_ / test_)
    rows: list[dict[str, Any]]               # one per recipe and sweep point, sorted
    notes: list[str] = field(default_factory=list)
    best_points: dict[str, dict[str, Any]] = field(default_factory=dict)  # recipe -> best sweep row
    scope: str = ""                          # what the intervals cover, over how many seeds
    varied: str = ""                         # what the seeds vary (part of the scope line)
    comparisons: int = 0                     # rows in the Bonferroni family
    level: float = CONFIDENCE                # each row's interval level: 1 − α/comparisons
    min_effect: Optional[float] = None       # δ: smallest difference of interest (equivalence)
    # recipe -> seeds that would settle it, always more than its row already has
    seeds_needed: dict[str, int] = field(default_factory=dict)
    seeds_option: dict[str, str] = field(default_factory=dict)  # recipe -> "--seeds 0-7" to type
    warnings: list[str] = field(default_factory=list)   # what the data are too small to show
    confirming: bool = False                 # a confirmation's table: seeds via --confirm-seeds
    headline: list[str] = field(default_factory=list)  # the answer in plain sentences
    title: str = ""                          # the experiment's name, where known
    unfinished: list[str] = field(default_factory=list)  # planned runs not finished (interrupted)
    test: str = PAIRED_TEST                  # the test the intervals and verdicts are read from
    cv: Optional[tuple[int, int, int]] = None  # dataset.cv: (seeds, repeats, folds) paired

    @property
    def pair_unit(self) -> str:
        """What one paired difference is: a seed, or with dataset.cv a seed × repeat × fold."""
        return "folds (seed × repeat × fold)" if self.cv else "seeds"

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
                     min_effect: Optional[float | dict[str, float]] = None,
                     unfinished: Sequence[str] = (), *, confirming: bool = False) -> Comparison:
    """The table; ``min_effect`` (δ) is the smallest difference of interest: a row whose
    interval lies inside ±δ is ``equivalent``, and the seed advice sizes the seeds that would
    settle a row at δ (without it: no equivalence, and the advice says how narrow more seeds
    make the interval); a dict gives δ per metric; ``unfinished``: planned runs that have not finished (an interrupted
    run), which the advice tells the user to resume rather than to add seeds; ``confirming``:
    the table of a confirmation on fresh seeds, whose seeds the command sets with
    --confirm-seeds, not --seeds.

    Each row's ``lost`` holds its runs that did not complete, by status (``missing``: planned
    runs with no summary at all), and ``baseline_lost`` those of the baseline it is paired
    with: such a row is short of seeds for a cause the notes name, and gets no seed advice."""
    task = task_of(summaries)
    metric = metric or default_metric(task)
    check_metric(metric, task)
    higher = not lower_is_better(metric)
    if isinstance(min_effect, dict):
        min_effect = min_effect.get(metric)
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
        test_by_seed = {_pair_key(r): _num(r.get(f"test_{metric}")) for r in done}
        baseline_test = baselines.get(_global_key(runs[0]))
        compared = runs[0].get("recipe") != "baseline" and bool(baseline_test)
        ratio = _test_train_ratio(done)
        diff = (paired_difference(test_by_seed, baseline_test, test_train_ratio=ratio)
                if compared else None)   # n, sd, p
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
            "test_train_ratio": ratio,       # > 0: the corrected resampled t-test's n_test/n_train
            "p_adjusted": math.nan,
            "ci_level": math.nan,
            # P(improve) has no interval worth showing at a few seeds (0.8+ or 0.2− in 17% of
            # 3-seed tables of a recipe with no effect): comparison.csv only, not the tables
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
            "paired": ({"recipe": test_by_seed, "baseline": baseline_test} if compared
                       else {}),
            "examples": _examples(done),
            "lost": lost[point],
            "baseline_lost": ({} if first.get("recipe") == "baseline"
                              else baseline_lost.get(_global_key(first), {})),
        })
    key = f"val_{metric}"
    rows.sort(key=lambda r: (math.isnan(r[key]), -r[key] if higher else r[key]))
    varied = _seeds_vary(summaries)
    design = _cv_design(summaries)
    comparison = Comparison(metric=metric, rows=rows, varied=varied,
                            unfinished=sorted(unfinished),
                            min_effect=abs(min_effect) if min_effect else None,
                            confirming=confirming, cv=design,
                            test=CORRECTED_TEST if design else PAIRED_TEST)
    _decide(comparison, higher)
    comparison.scope = _scope(varied, rows, comparison)
    _best_points(comparison, higher)
    _notes(comparison, summaries)
    comparison.headline = headline(comparison, chosen_rows(comparison))
    return comparison


def _decide(comparison: Comparison, higher: bool) -> None:
    """Every row with an interval: its interval at the family's level (1 − α/m over the m rows
    compared with baseline) and the verdict read off it, so that a verdict is exactly what its
    shown interval says (see regbench.analysis.stats)."""
    compared = [row for row in comparison.rows if row["recipe"] != "baseline" and row["pairs"]]
    # a cross-validated row whose n_test/n_train is unknown has no interval: not in the family
    comparison.comparisons = sum(_has_interval(row) for row in compared)
    comparison.level = family_level(comparison.comparisons)
    for row in compared:
        diff = paired_difference(row["paired"]["recipe"], row["paired"]["baseline"],
                                 comparison.level, row["test_train_ratio"])
        row["diff_low"], row["diff_high"] = diff.low, diff.high
        row["ci_level"] = comparison.level if _has_interval(row) else math.nan
        row["p_adjusted"] = bonferroni(row["p_value"], comparison.comparisons)
        row["verdict"] = decide(diff, higher, comparison.min_effect)
        if row["seeds"] < row["runs"]:
            # runs that diverged or failed drop out of the pairs: the survivors alone cannot
            # say the recipe is better, or no different (the notes list the runs lost)
            row["verdict"] = INCONCLUSIVE


def _has_interval(row: dict[str, Any]) -> bool:
    """Two pairs or more, and with dataset.cv a known n_test/n_train."""
    return row["pairs"] >= 2 and not math.isnan(row["test_train_ratio"])


def _examples(runs: list[dict[str, Any]]) -> dict[str, int]:
    """The fewest examples each split held over these runs (summary.json's ``examples``)."""
    sizes: dict[str, int] = {}
    for run in runs:
        for split, count in (run.get("examples") or {}).items():
            if isinstance(count, int) and count > 0:
                sizes[split] = min(count, sizes.get(split, count))
    return sizes


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


RESAMPLED = ("per_seed", "per_seed_with_test")
# what the seeds vary, per dataset.resample: the sources of variance the intervals include
VARIED = {
    "fixed": "initialisation and batch order only (the train/val split and the test set are "
             "fixed: dataset.resample: per_seed varies the split, per_seed_with_test the test "
             "set too)",
    "per_seed": "initialisation, batch order and the train/val split (dataset.resample: "
                "per_seed; the test set is fixed)",
    "per_seed_with_test": "initialisation, batch order, the train/val split and the test split "
                          "(dataset.resample: per_seed_with_test)",
}


CV_VARIED = ("initialisation, batch order and the train/val/test split (dataset.cv: every seed "
             "draws its own partitions into folds, and each fold is tested once per repeat)")


def _varied(runs: list[dict[str, Any]]) -> str:
    """What the seeds of these runs varied (the comparison.csv column ``seeds_vary``)."""
    if runs and all("fold" in r for r in runs):
        return "initialisation, batch order, train/val split, test fold"
    modes = {r.get("resample") or "fixed" for r in runs}
    if modes == {"per_seed_with_test"}:
        return "initialisation, batch order, train/val split, test split"
    if runs and modes <= set(RESAMPLED):
        return "initialisation, batch order, train/val split"
    return "initialisation, batch order"


def _seeds_vary(summaries: list[dict[str, Any]]) -> str:
    """What the seeds of the completed runs vary."""
    if _cv_design(summaries):
        return CV_VARIED
    modes = {s.get("resample") or "fixed" for s in summaries if s.get("status") == "completed"}
    if len(modes) == 1 and next(iter(modes)) in VARIED:
        return VARIED[next(iter(modes))]
    return ("initialisation and batch order; some runs also resampled the data (dataset."
            "resample differs between runs)")


def _scope(varied: str, rows: list[dict[str, Any]], comparison: Comparison) -> str:
    """One line: what the intervals are, over how many seeds, and which sources of variance
    they include."""
    counts = sorted({row["pairs"] for row in rows if row["pairs"]})
    if not counts:
        return ""
    if comparison.cv:
        return _cv_scope(counts, rows, comparison)
    seeds = (f"{counts[0]} paired seeds" if len(counts) == 1
             else f"{counts[0]}–{counts[-1]} paired seeds")
    m = comparison.comparisons
    level = (f", at {level_text(comparison.level)} each so that the table's {m} intervals "
             f"hold together with {CONFIDENCE:.0%} (Bonferroni)" if m > 1 else "")
    tests = sorted({row["examples"].get("test") for row in rows
                    if row["examples"].get("test")})
    held = ("another draw of the data of this size" if "test split" in varied else
            "this test set" + (f" ({tests[0]} examples)" if len(tests) == 1 else "")
            + ", not for another draw of it")
    return (f"Δ [{level_text(comparison.level)} CI]: mean paired test difference with a "
            f"Student-t interval over {seeds}{level}; the seeds vary {varied}: the intervals "
            f"include only that variance and hold for {held}")


def _cv_scope(counts: list[int], rows: list[dict[str, Any]], comparison: Comparison) -> str:
    """The scope line of a repeated k-fold table: the pairs, the corrected test and its
    variance factor, and what the intervals hold for."""
    seeds, repeats, folds = comparison.cv
    pairs = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    ratios = sorted({round(row["test_train_ratio"], 3) for row in rows
                     if row["pairs"] and row["test_train_ratio"] > 0})
    ratio = (f"{ratios[0]:g}" if len(ratios) == 1 else
             f"{ratios[0]:g}–{ratios[-1]:g}" if ratios else "unknown (see the warnings)")
    m = comparison.comparisons
    level = (f", at {level_text(comparison.level)} each so that the table's {m} intervals "
             f"hold together with {CONFIDENCE:.0%} (Bonferroni)" if m > 1 else "")
    return (f"Δ [{level_text(comparison.level)} CI]: mean paired test difference over J = "
            f"{pairs} paired folds ({seeds} seed(s) × {repeats} repeat(s) × {folds} folds, "
            f"paired by seed, repeat and fold) with the {comparison.test}: the differences' "
            f"variance × (1/J + n_test/n_train), n_test/n_train = {ratio}, because the folds' "
            f"training sets overlap, Student t with J − 1 df{level}; the folds vary "
            f"{comparison.varied}: the intervals hold for another draw of data of this size")


def _pair_key(summary: dict[str, Any]) -> Hashable:
    """What pairs a run with the baseline's: its seed, or with dataset.cv (seed, repeat, fold)."""
    if "fold" in summary:
        return (summary["seed"], summary.get("repeat", 0), summary["fold"])
    return summary["seed"]


def _test_train_ratio(runs: list[dict[str, Any]]) -> float:
    """n_test/n_train of the corrected resampled t-test for cross-validated runs (the mean over
    them: the folds differ by a row at most), from each summary's ``examples``; 0 (the plain
    paired t-test) for runs that are not; NaN when a cross-validated run does not say its sizes
    (no interval then: the plain test's would be too narrow). n_train counts the rows trained
    on, the validation split left out: the larger ratio, the more cautious interval."""
    if not any("fold" in run for run in runs):
        return 0.0
    ratios = [_run_ratio(run) for run in runs]
    return math.nan if None in ratios else sum(ratios) / len(ratios)


def _run_ratio(run: dict[str, Any]) -> Optional[float]:
    """A cross-validated run's n_test/n_train; None when its summary lacks them."""
    examples = run.get("examples") or {}
    test, train = examples.get("test"), examples.get("train")
    if "fold" in run and isinstance(test, int) and isinstance(train, int) and train > 0:
        return test / train
    return None


def _cv_design(summaries: list[dict[str, Any]]) -> Optional[tuple[int, int, int]]:
    """(seeds, repeats, folds) of a cross-validated experiment's completed runs; None when its
    runs are not cross-validated."""
    done = [s for s in summaries if s.get("status") == "completed"]
    if not done or not all("fold" in s for s in done):
        return None
    return tuple(len({s.get(key) for s in done}) for key in ("seed", "repeat", "fold"))


def _global_key(summary: dict[str, Any]) -> str:
    """The values of sweep keys that apply to every recipe (``train.optimizer.lr``): a recipe is
    compared with the baseline trained under the same values."""
    paths = summary.get("sweep_paths") or {}
    return repr(sorted((k, repr(v)) for k, v in paths.items() if not k.startswith("recipes.")))


def _baselines(summaries: list[dict[str, Any]], metric: str
               ) -> dict[str, dict[Hashable, float]]:
    """Completed baseline runs' test metric by seed (``_pair_key``), per global sweep point."""
    baselines: dict[str, dict[Hashable, float]] = defaultdict(dict)
    for summary in summaries:
        if summary.get("recipe") == "baseline" and summary.get("status") == "completed":
            baselines[_global_key(summary)][_pair_key(summary)] = _num(
                summary.get(f"test_{metric}"))
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
            comparison.warnings.extend(_grid_edges(recipe, best, rows))


def _grid_edges(recipe: str, best: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """A warning for each numeric sweep key whose best value is the first or last of at least
    three tried: the optimum may lie beyond the grid."""
    warnings = []
    for key, value in best["sweep"].items():
        tried = sorted({r["sweep"].get(key) for r in rows
                        if isinstance(r["sweep"].get(key), (int, float))
                        and not isinstance(r["sweep"].get(key), bool)})
        if len(tried) < 3 or value not in (tried[0], tried[-1]):
            continue
        low = value == tried[0]
        near = tried[1] if low else tried[-2]
        if value > 0 and near > 0 and max(value, near) / min(value, near) >= 2:
            step = value * (value / near)               # a log grid: one more factor
        else:
            step = value + (value - near)               # a linear grid: one more step
        # a grid inside [0, 1] may be of a probability (dropout p), which cannot reach 1
        bounded = all(0 <= t <= 1 for t in tried) and not 0 <= step < 1
        suggestion = (f" (e.g. add {format_value(step)}" + (", if the key allows it"
                                                            if bounded else "") + ")"
                      if (step > 0) == (value > 0) else "")
        warnings.append(f"warning: the best {recipe} {key}={format_value(value)} is the "
                        f"{'smallest' if low else 'largest'} value of its grid: the optimum may "
                        f"lie {'below' if low else 'above'} it; extend the grid{suggestion}")
    return warnings


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


def _notes(comparison: Comparison, summaries: list[dict[str, Any]]) -> None:
    notes = comparison.notes
    selection = list(notes)            # "best l2 by validation …", written by _best_points
    notes.clear()
    if comparison.scope:
        notes.append(comparison.scope)
    if comparison.comparisons:
        m = comparison.comparisons
        delta = comparison.min_effect
        notes.append(
            "verdict: read off the interval shown: better or worse when it excludes 0 (the "
            f"{comparison.test} at {ALPHA:.0%}" + (f"/{m}, Bonferroni over the table's {m} "
                                               "comparisons with baseline)" if m > 1 else ")")
            + (f", equivalent when it lies inside ±{delta:g} (the smallest difference of "
               "interest, --min-effect or compare.min_effect: two one-sided tests)" if delta
               else "")
            + ", else inconclusive: these runs cannot tell the recipe from the baseline"
            + ("" if delta else "; without a smallest difference of interest (--min-effect D "
                                "or compare.min_effect) no recipe is called equivalent")
            + ". p: the paired test, uncorrected and Bonferroni-corrected")
    notes.extend(selection)
    if comparison.best_points:
        notes.append("★ best of its sweep on validation, with the same seeds whose test numbers "
                     "are shown: its test Δ is post-selection (optimistic); confirm it on fresh "
                     "seeds with --confirm-seeds K")
    used = sorted({s["seed"] for s in summaries if isinstance(s.get("seed"), int)})
    notes.extend(_seed_advice(comparison, used))
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
        notes.append(_few_seeds_warning(seeds, used, comparison.confirming))
    comparison.warnings.extend(_small_data(comparison))
    comparison.warnings.extend(_unknown_ratios(comparison, summaries))
    notes.extend(comparison.warnings)
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


def _unknown_ratios(comparison: Comparison, summaries: list[dict[str, Any]]) -> list[str]:
    """A warning for each cross-validated row left without an interval because runs of it do
    not say how many rows they tested and trained on (``examples`` in summary.json)."""
    warnings = []
    for row in comparison.rows:
        if not (row["paired"] and math.isnan(row["test_train_ratio"])):
            continue
        silent = [s.get("run_id", "?") for s in summaries if s.get("status") == "completed"
                  and (s.get("point_id") or _point_id(s)) == row["point"]
                  and _run_ratio(s) is None]
        shown = ", ".join(map(str, silent[:3])) + (f" and {len(silent) - 3} more"
                                                    if len(silent) > 3 else "")
        warnings.append(
            f"warning: no interval and no verdict for {row['point'].replace('__', ' ')}: the "
            f"{CORRECTED_TEST} needs each run's test and training sizes, and the summary.json "
            f"of {shown} has none (no `examples`); the plain paired t-test would be too narrow "
            "for folds that share their rows. Delete those summaries and run the same command "
            "to retrain them")
    return warnings


COARSE_SPLIT = 100        # fewer examples than this: one example moves accuracy by over 1 point
CLOSE_PICK = 3            # a sweep pick ahead by fewer validation examples than this is a toss-up


def _small_data(comparison: Comparison) -> list[str]:
    """Warnings for splits too small to show what the table compares: the smallest difference
    in accuracy a split can show is one example (1/n), and a sweep's pick decided by fewer than
    CLOSE_PICK validation examples is close to a coin toss."""
    if comparison.metric != "accuracy":
        return []
    sizes: dict[str, int] = {}
    for row in comparison.rows:
        for split, count in row["examples"].items():
            sizes[split] = min(count, sizes.get(split, count))
    warnings = []
    test, val = sizes.get("test"), sizes.get("val")
    if test and test < COARSE_SPLIT and not comparison.cv:   # cv: the folds test every row
        warnings.append(f"warning: small test set ({test} examples): it cannot show differences "
                        f"in accuracy below 1/{test} = {1 / test:.3f} (one example); differences "
                        "and intervals come in steps of that size. A larger test_fraction, or "
                        "dataset.resample: per_seed_with_test to include the test set's variance, "
                        "says more")
    if val and val < COARSE_SPLIT:
        warnings.append(f"warning: small validation set ({val} examples, one = {1 / val:.3f} "
                        "accuracy): sweep picks and early stopping are decided on it")
    for recipe, best in comparison.best_points.items():
        rest = [r for r in comparison.rows if r["recipe"] == recipe and r is not best
                and not math.isnan(r[f"val_{comparison.metric}"])]
        n_val = best["examples"].get("val")
        if not rest or not n_val:
            continue
        margin = min(abs(best[f"val_{comparison.metric}"] - r[f"val_{comparison.metric}"])
                     for r in rest)
        if margin * n_val < CLOSE_PICK:
            warnings.append(f"warning: the pick of {recipe}'s sweep is ahead of the next point by "
                            f"{margin * n_val:.1f} validation example(s) of {n_val} on average: "
                            "close to a toss-up; confirm it with --confirm-seeds K")
    return warnings


MAX_LOST_NOTES = 6        # rows whose lost runs get a note each; the rest are named in one


def _lost_notes(comparison: Comparison) -> list[str]:
    """One note per row whose runs did not all complete, the baseline's first: the cause, what
    to do first (never "add seeds") and the seeds its interval uses."""
    rows = sorted((row for row in comparison.rows if row["lost"]),
                  key=lambda row: row["recipe"] != "baseline")
    notes = [lost_note(row, cv=bool(comparison.cv)) for row in rows[:MAX_LOST_NOTES]]
    if len(rows) > MAX_LOST_NOTES:
        rest = rows[MAX_LOST_NOTES:]
        notes.append(f"and {len(rest)} more row(s) whose runs did not all complete: "
                     + "; ".join(f"{row['point'].replace('__', ' ')}, {lost_runs(row)}"
                                 for row in rest))
    return notes


def _seed_advice(comparison: Comparison, used: Sequence[int]) -> list[str]:
    """For each recipe whose chosen row is inconclusive, what more seeds would do, sized for an
    upper confidence bound on the spread of its differences, never for the difference seen:

    - with a smallest difference of interest δ: the seeds that settle the row with 80% power
      whether the true difference is 0 (equivalent) or ±δ or more (better or worse), with the
      --seeds that trains them (tests/test_stats.py follows the advice in simulation);
    - without δ: how narrow the interval gets with more seeds, and that δ sizes them.

    Not for a row short of seeds because runs (its own or its baseline's) did not complete: the
    cause comes first (``_lost_notes``); and never "about N seeds" for N it already has."""
    if comparison.cv:
        return _cv_advice(comparison)
    alpha = ALPHA / max(1, comparison.comparisons)
    delta = comparison.min_effect
    advice = []
    for recipe, row in chosen_rows(comparison).items():
        if row["verdict"] != INCONCLUSIVE or row["pairs"] < 2:
            continue
        if row["lost"] or row["baseline_lost"]:
            continue
        name = row["point"].replace("__", " ")
        pairs, sd = row["pairs"], row["diff_sd"]
        if not sd > 0:
            advice.append(f"{name}: the same numbers as the baseline in every seed pair: give "
                          "the smallest difference that matters (--min-effect D) to call it "
                          "equivalent" if row["diff"] == 0 and not delta else
                          f"{name}: the same difference in every seed pair "
                          f"({row['diff']:+.4g}): there is no spread to size more seeds on")
            continue
        bound = spread_bound(sd, pairs)
        spread = (f"at the spread's upper {SPREAD_BOUND:.0%} confidence bound (sd of the "
                  f"differences ≤ {bound:.2g}; {sd:.2g} seen)")
        if not delta:
            widths = ", ".join(f"±{interval_half_width(bound, n, comparison.level):.2g} with {n}"
                               for n in (2 * pairs, 4 * pairs))
            advice.append(f"{name}: its interval is ±{(row['diff_high'] - row['diff_low']) / 2:.2g}"
                          f" with {pairs} seeds; about {widths} seeds {spread}. To size the seeds "
                          "that would settle it, give the smallest difference that matters to "
                          "you: --min-effect D (or compare.min_effect in the config)")
            continue
        needed = seeds_to_settle(delta, sd, pairs, alpha)
        sized = (f"{POWER:.0%} power to call a true difference of 0 equivalent (within "
                 f"±{delta:g}) or one of ±{delta:g} or more better or worse"
                 + (f" at the level {alpha:.2g} of the table's {comparison.comparisons} "
                    "comparisons" if comparison.comparisons > 1 else ""))
        if not any(line.startswith("seed advice:") for line in advice):
            advice.insert(0, f"seed advice: the seeds (in all) that give {sized}, sized for an "
                             f"upper {SPREAD_BOUND:.0%} confidence bound on the spread of the "
                             "differences, not for the difference seen")
        if needed is None or needed <= pairs:
            advice.append(f"{name}: its {pairs} seeds already give {sized} {spread}, yet "
                          f"its interval "
                          f"[{row['diff_low']:+.4g}, {row['diff_high']:+.4g}] straddles 0 and "
                          f"±{delta:g}: the difference likely lies between; more seeds narrow it "
                          f"(±{interval_half_width(bound, 4 * pairs, comparison.level):.2g} with "
                          f"{4 * pairs})")
        elif needed > MAX_SEEDS_ADVISED:
            advice.append(f"{name}: more than {MAX_SEEDS_ADVISED} seeds would be needed "
                          f"{spread}: seeds will not settle it at ±{delta:g}")
        else:
            comparison.seeds_needed[recipe] = needed
            option = (f"--confirm-seeds {needed}" if comparison.confirming
                      else f"--seeds {seeds_option(used, needed)}")
            comparison.seeds_option[recipe] = option
            advice.append(f"about {needed} seeds would settle {name} vs baseline: run the same "
                          f"command with {option} (completed runs are kept; sd of the "
                          f"differences ≤ {bound:.2g}, {sd:.2g} seen)")
    return advice


def _cv_advice(comparison: Comparison) -> list[str]:
    """The seed advice does not hold for repeated k-fold: its corrected interval narrows with
    more seeds or repeats only down to ±t·sd·√(n_test/n_train), as the folds share their data."""
    rows = [row for row in chosen_rows(comparison).values()
            if row["verdict"] == INCONCLUSIVE and _has_interval(row) and row["diff_sd"] > 0
            and not row["lost"] and not row["baseline_lost"]]
    if not rows:
        return []
    quantile = 0.5 + comparison.level / 2

    def floor(row: dict[str, Any]) -> float:     # the half-width as J grows, at today's df
        return t_quantile(quantile, row["pairs"] - 1) * row["diff_sd"] * \
            math.sqrt(row["test_train_ratio"])

    floors = ", ".join(f"{row['point'].replace('__', ' ')} ±{floor(row):.2g}" for row in rows)
    return [f"inconclusive under cross-validation: more seeds or repeats narrow a corrected "
            f"interval only towards ±t·sd·√(n_test/n_train), since every fold reuses the same "
            f"rows ({floors} at the spread seen); more data, not more runs, settles these"]


def seeds_option(used: Sequence[int], total: int) -> str:
    """The --seeds value that keeps the seeds ``used`` and adds fresh ones up to ``total``."""
    used = sorted(set(used))
    start = max(used, default=-1) + 1          # new seeds follow the largest one run
    every = [*used, *range(start, start + max(total - len(used), 0))]
    if every == list(range(every[0], every[-1] + 1)):
        return f"{every[0]}-{every[-1]}"
    return ",".join(map(str, every))


def _few_seeds_warning(seeds: int, used: Sequence[int] = (), confirming: bool = False) -> str:
    """The warning for too few seeds, with a --seeds that adds new ones to those already run
    (their runs resume; the new seeds are named after the range)."""
    if seeds < 2:
        width = "one seed gives no interval and no verdict"
    else:
        width = (f"with {seeds} seeds a 95% interval is ±{t_quantile(0.975, seeds - 1):.1f}·sd/"
                 f"√{seeds} (±{t_quantile(0.975, 4):.1f}·sd/√5 with 5), so most rows stay "
                 "inconclusive")
    wanted = max(5, MIN_SEEDS)           # what the other advice sizes intervals for
    if confirming:
        return (f"warning: only {seeds} seed(s) for some recipes: {width} (run the same command "
                f"with --confirm-seeds {max(wanted, len(set(used)) + 1)}; completed runs are "
                "kept)")
    option = seeds_option(used, max(wanted, len(set(used)) + 1))
    fresh = sorted(set(_seed_list(option)) - set(used))
    return (f"warning: only {seeds} seed(s) for some recipes: {width} (add seeds "
            f"{', '.join(map(str, fresh))}: run the same command with --seeds {option}; "
            "completed runs are kept)")


def _seed_list(option: str) -> list[int]:
    if "," in option or "-" not in option[1:]:
        return [int(s) for s in option.split(",")]
    first, last = option.split("-", 1)
    return list(range(int(first), int(last) + 1))


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


def _p(value: float) -> str:
    if _missing(value):
        return ""
    return f"{value:.3f}" if value >= 0.001 else "<0.001"


def display_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by every text format."""
    m = comparison.metric
    lower = " (lower is better)" if lower_is_better(m) else ""   # mse, mae, loss, ece
    header = ["recipe", "runs" if comparison.cv else "seeds", f"val {m}{lower}",
              f"test {m}{lower}",
              f"Δ test vs baseline [{level_text(comparison.level)} CI]"
              + (" (negative: better)" if lower else ""),
              "verdict", "p", "p (Bonferroni)", comparison.gap_label, "best epoch",
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
            diff, row["verdict"] or "", _p(row["p_value"]),
            _p(row["p_adjusted"]), _fmt(row["gap"]), _epoch(row["best_epoch"]),
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


LATEX_COLUMNS = (0, 1, 2, 3, 4, 5, 7, 8)   # a paper's width; every column: comparison.csv


def to_latex(comparison: Comparison) -> str:
    """A booktabs table in a ``table`` float, its caption saying what Δ and the intervals are
    (needs ``\\usepackage{booktabs}``)."""
    header, cells = display_rows(comparison)
    header = [header[i] for i in LATEX_COLUMNS]
    cells = [[row[i] for i in LATEX_COLUMNS] for row in cells]
    name = comparison.title or "regbench"
    verdicts = (f" Verdicts read off the intervals: {comparison.test} at {ALPHA:.0%}, "
                f"Bonferroni over {comparison.comparisons} comparison(s)"
                + (f"; equivalent: inside ±{comparison.min_effect:g}" if comparison.min_effect
                   else "") + "." if comparison.comparisons else "")
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


TERMINAL_COLUMNS = (0, 1, 2, 3, 4, 5, 8, 10)  # the full set is in comparison.md/csv
LEFT_COLUMNS = (0, 5, 10)
KEPT_COLUMNS = (0, 4, 5)          # recipe, Δ [CI], verdict: never dropped from the terminal
DROP_FIRST = (8, 2, 10, 1, 3)     # gap, val, diagnosis, seeds, test: dropped in turn
FOLDED = {0: 24, 10: 24}          # recipe and diagnosis fold onto more lines beyond this width


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
    if min_effect is None and summaries:
        min_effect = configured_min_effect(results_dir, task_of(summaries))
    confirms = confirmed_selection(results_dir)
    comparison = build_comparison(summaries, metric, min_effect, sorted(planned - finished),
                                  confirming=bool(confirms))
    comparison.title = Path(results_dir).name
    if confirms:
        comparison.notes.insert(0, confirmation_note(confirms))
        dropped = (confirms.get("tuning") or {}).get("not_confirmed") or []
        if dropped:     # a tuned recipe missing from the table must not go unsaid
            comparison.headline.insert(0, f"Not compared: {', '.join(dropped)}: no trial of "
                                          "the search completed (see search/ for why).")
    searched = searched_experiment(results_dir)
    if searched:   # tuning trials: no baseline, no test numbers, one seed, on purpose
        seeds = sorted({s["seed"] for s in summaries if isinstance(s.get("seed"), int)})
        on = (f"one run per trial on the search seed {seeds[0]}" if len(seeds) == 1 else
              f"one run per trial on each search seed ({', '.join(map(str, seeds))}; a "
              "trial's value is their mean)")
        note = (f"the tuning trials of {searched} (regbench tune): {on}, chosen on validation "
                "only; the test split was never evaluated. The comparison on fresh seeds is in "
                "the folder above this one")
        unfinished = [n for n in comparison.notes if "did not complete" in n]
        comparison.notes = [note] + [n for n in comparison.notes if n.startswith("best ")] + \
            [n.replace("did not complete", "did not complete (pruned trials among them)")
             for n in unfinished]
        comparison.headline = [note]
    return comparison


def configured_min_effect(results_dir: Path, task: str) -> Optional[dict[str, float]]:
    """The experiment's ``compare.min_effect`` as δ per metric (a single number is δ of the
    task's default metric), from the folder's experiment.yaml; None when unset or unreadable
    (a folder written before the key existed)."""
    import yaml  # deferred: only a folder's comparison reads its experiment file

    try:
        experiment = yaml.safe_load((Path(results_dir) / EXPERIMENT_FILE).read_text("utf-8"))
        value = experiment["compare"]["min_effect"]
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return {default_metric(task): float(value)}
    if isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0}
    return None


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
