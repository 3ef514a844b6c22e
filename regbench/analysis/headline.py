"""The answer in a few sentences, generated from the comparison table.

Each sentence says only what the table's statistics say: a recipe is called better or worse
only where its shown interval excludes 0, equivalent only where it lies inside the user's ±δ
(never without δ), its difference is quoted with that interval, the scope says which sources of
variance the intervals include, and inconclusive recipes get the next step that would settle
them (the seeds the seed advice sizes for δ, or δ itself; a confirmation of a sweep's pick).
A recipe or baseline whose runs did not all complete (diverged, failed, interrupted, damaged or
never written) is named with that cause and what to do about it, never with advice to add seeds:
more seeds of a setting that diverges diverge too. ``lost_note`` words it for the notes as well.
"""
from __future__ import annotations

import math
from typing import Any

from regbench.analysis.stats import (
    BETTER,
    CONFIDENCE,
    EQUIVALENT,
    INCONCLUSIVE,
    POWER,
    WORSE,
)
from regbench.vocabulary import RUNS_DIR, SUMMARY

# why planned runs of a row did not complete: the words after "3 of 5 runs", and what to do
# first; in this order when a row has several causes
LOST_CAUSES = {
    "diverged": ("diverged (NaN/inf loss)",
                 "fix the setting (a lower learning rate or strength) before adding seeds"),
    "failed": ("failed", "see the run's summary.json error"),
    "damaged": ("left a damaged summary.json", "run the same command again to retrain them"),
    "interrupted": ("stopped (interrupted)", "resume with the same command"),
    "missing": ("never finished (no summary.json)", "resume with the same command"),
    "pruned": ("were pruned", "they stopped on purpose (a tuning trial's pruner)"),
}
ERROR_SHOWN = 90                      # characters of a failed run's error quoted in the note


def lost_runs(row: dict[str, Any]) -> str:
    """``3 of 5 runs diverged (NaN/inf loss), 1 failed``: a row's runs that did not complete,
    by cause, out of the runs planned for it (``row["lost"]``, see compare.build_comparison)."""
    lost = row.get("lost") or {}
    planned = row["runs"] + len((lost.get("missing") or {}).get("runs", ()))
    parts = []
    for status in _causes(lost):
        count = len(lost[status]["runs"])
        words = LOST_CAUSES.get(status, (f"ended '{status}'", ""))[0]
        parts.append(f"{count} of {planned} runs {words}" if not parts else f"{count} {words}")
    return ", ".join(parts)


def _causes(lost: dict[str, Any]) -> list[str]:
    order = list(LOST_CAUSES)
    return sorted(lost, key=lambda s: (order.index(s) if s in order else len(order), s))


def _actions(row: dict[str, Any]) -> str:
    """What to do first about each cause, once each."""
    lost, actions = row.get("lost") or {}, []
    for status in _causes(lost):
        action = LOST_CAUSES.get(status, ("", "see the run's summary.json"))[1]
        if status == "failed":
            first = lost[status]["runs"][0]
            errors = lost[status].get("errors") or []
            error = errors[0].strip().splitlines()[0] if errors and errors[0].strip() else ""
            if len(error) > ERROR_SHOWN:
                error = error[:ERROR_SHOWN - 1] + "…"
            action = ("see the run's summary.json error" if len(lost[status]["runs"]) == 1
                      else "see each run's summary.json error") + \
                f" ({RUNS_DIR}/{first}/{SUMMARY}" + (f": {error}" if error else "") + ")"
        if action and action not in actions:
            actions.append(action)
    return "; ".join(actions)


def seeds_used(row: dict[str, Any], cv: bool = False) -> str:
    """Which seeds a row that lost runs is compared on, in words; with ``cv`` (dataset.cv),
    which folds: a run of one seed, repeat and fold each, paired with the baseline's."""
    one = "fold" if cv else "seed"
    if row["recipe"] == "baseline":
        if not row["seeds"]:
            return "no baseline run completed, so no recipe can be compared"
        return (f"every recipe's Δ uses only the {row['seeds']} {one}(s) the baseline completed"
                + (": no interval" if row["seeds"] < 2 else ""))
    pairs, seeds = row["pairs"], row["seeds"]
    if not seeds:
        return "no run completed, so it is not compared"
    if not pairs:
        return f"none of its completed {one}s is shared with the baseline, so it is not compared"
    if pairs == 1:
        return f"its one completed {one} gives no interval"
    return (f"the interval uses the {pairs} completed {one}s"
            + (" it shares with the baseline" if pairs < seeds else ""))


def lost_note(row: dict[str, Any], name: str = "", cv: bool = False) -> str:
    """``l2 lambda=100: 3 of 5 runs diverged (NaN/inf loss): fix the setting (…) before adding
    seeds; the interval uses the 2 completed seeds``: a row's lost runs by cause, what to do
    first, and the seeds (``cv``: folds) it is compared on."""
    name = name or row["point"].replace("__", " ")
    return f"{name}: {lost_runs(row)}: {_actions(row)}; {seeds_used(row, cv)}"


def _name(row: dict[str, Any], best: bool) -> str:
    name = row["point"].replace("__", " ")
    return f"{name} (best of its sweep on validation)" if best else name


def _signed(value: float) -> str:
    return f"{value:+.3g}".replace("-", "−")


def _difference(row: dict[str, Any]) -> str:
    if math.isnan(row["diff_low"]):
        return f"{_signed(row['diff'])} (no interval)"
    if row.get("diff_sd") == 0 and row["diff"] != 0:
        return f"{_signed(row['diff'])} (the same in every seed: no test)"
    return (f"{_signed(row['diff'])} [{_signed(row['diff_low'])}, "
            f"{_signed(row['diff_high'])}]")


def headline(comparison, chosen: dict[str, dict[str, Any]]) -> list[str]:
    """Plain sentences for the top of the terminal output and of the report. ``chosen``: the
    row that stands for each recipe (``chosen_rows``)."""
    metric = comparison.metric
    rows = {recipe: row for recipe, row in chosen.items() if recipe != "baseline"}
    baselines = [r for r in comparison.rows if r["recipe"] == "baseline"]
    lost_baselines = [r for r in baselines if r.get("lost")]
    cv = bool(comparison.cv)
    if not any(r["seeds"] for r in baselines):
        if lost_baselines:
            return ["No baseline run completed, so nothing can be called better or worse: "
                    + "; ".join(lost_note(r, cv=cv) for r in lost_baselines) + "."]
        return ["There are no baseline runs, so nothing can be called better or worse."]
    if not rows:
        return ["Only the baseline was trained: add recipes to compare."]
    # recipes that lost runs get their cause, never "add seeds"; the others are judged
    lost = {recipe: row for recipe, row in rows.items() if row.get("lost")}
    judged = {recipe: row for recipe, row in rows.items() if recipe not in lost}
    causes = [_capital(lost_note(r, cv=cv)) + "." for r in lost_baselines]
    for recipe, row in lost.items():
        name = _name(row, recipe in comparison.best_points)
        verdict = (f"its Δ {_difference(row)} is no verdict: " if row["pairs"] else "")
        causes.append(f"{name}: {lost_runs(row)}: {_actions(row)}; {verdict}"
                      f"{seeds_used(row, cv)}.")
    shown = {id(row) for row in rows.values()}
    unseen = [r for r in comparison.rows
              if r.get("lost") and r["recipe"] != "baseline" and id(r) not in shown]
    if unseen:
        causes.append("Not every run completed: " + "; ".join(
            f"{r['point'].replace('__', ' ')}, {lost_runs(r)}" for r in unseen)
            + "; the notes say what to do first.")
    if not judged:
        if not any(row["seeds"] for row in rows.values()):
            return ["There is no verdict: no recipe has a completed run to compare."] + causes
        return causes
    seeds = sorted({row["pairs"] for row in judged.values() if row["pairs"]})
    if not seeds or seeds[-1] < 2:
        differences = ", ".join(f"{_name(r, False)} {_signed(r['diff'])}"
                                for r in judged.values() if not math.isnan(r["diff"]))
        more = ("" if lost_baselines else " Train at least 3 seeds to know which are real: "
                "run the same command with --seeds 0-4 (completed runs are kept).")
        return [("With one seed per recipe there is no interval and no verdict"
                 + (f": on test {metric} the differences from baseline are {differences}"
                    if differences else ", and no recipe has a completed run to compare")
                 + "." + more)] + causes
    sentences = []
    groups = {verdict: [(recipe, row) for recipe, row in judged.items()
                        if (row["verdict"] or INCONCLUSIVE) == verdict]
              for verdict in (BETTER, WORSE, EQUIVALENT, INCONCLUSIVE)}
    delta = comparison.min_effect
    for verdict, words in ((BETTER, "better than baseline"), (WORSE, "worse than baseline"),
                           (EQUIVALENT, f"equivalent to baseline within ±{delta:g}"
                                        if delta else "")):
        if groups[verdict]:
            listed = "; ".join(f"{_name(row, recipe in comparison.best_points)} "
                               + ("by " if verdict != EQUIVALENT else "")
                               + _difference(row) for recipe, row in groups[verdict])
            sentences.append(f"{len(groups[verdict])} recipe(s) {words} on test {metric}: "
                             f"{listed}.")
    if groups[INCONCLUSIVE]:
        listed = "; ".join(f"{_name(row, recipe in comparison.best_points)} "
                           f"{_difference(row)}" for recipe, row in groups[INCONCLUSIVE])
        sentences.append("Inconclusive, these seeds cannot tell them from baseline"
                         + (f" nor show them within ±{delta:g}" if delta else "")
                         + f": {listed}.")
    m = comparison.comparisons
    level = (f"{level_text(comparison.level)} interval (Bonferroni over {m} comparisons: "
             f"together {CONFIDENCE:.0%})" if m > 1 else f"{level_text(comparison.level)} "
                                                           "interval")
    sentences.append(f"Δ is the mean paired test difference (recipe − baseline) with its "
                     f"{level} over {seeds[0]}"
                     + (f"–{seeds[-1]}" if len(seeds) > 1 else "")
                     + f" {comparison.pair_unit}; the seeds vary {comparison.varied}, the only "
                       "variance the intervals include; verdicts read off the intervals"
                     + (f" (equivalent: inside ±{delta:g})." if delta else "."))
    sentences += causes
    sentences += [_capital(w.removeprefix("warning: ")) + "." for w in comparison.warnings]
    steps = []
    for recipe, row in groups[INCONCLUSIVE]:
        needed = comparison.seeds_needed.get(recipe)
        if row.get("baseline_lost") or not needed or needed <= row["pairs"]:
            continue          # the baseline's cause comes first; never "about 2" for 2 seeds
        steps.append(f"about {needed} seeds for {_name(row, False)} "
                     f"({comparison.seeds_option.get(recipe, '')})")
    if steps:
        sentences.append("What would settle the inconclusive ones: " + ", ".join(steps)
                         + f" ({POWER:.0%} power to tell 0 from ±{delta:g}, sized for an upper "
                           "bound on the spread).")
    elif groups[INCONCLUSIVE] and not delta and not comparison.cv and not any(
            row.get("baseline_lost") for _, row in groups[INCONCLUSIVE]):
        sentences.append("To size the seeds that would settle the inconclusive ones, give the "
                         "smallest difference that matters to you: --min-effect D (or "
                         "compare.min_effect in the config).")
    picked = [recipe for recipe in rows if recipe in comparison.best_points]
    if picked:
        sentences.append("Sweep picks were chosen on validation with these same seeds, so "
                         "their test Δ is optimistic: confirm them on fresh seeds with "
                         "--confirm-seeds 5.")
    return sentences


def level_text(level: float) -> str:
    """95%, 98.33%, 98.75%: an interval's level to two decimals at most."""
    return f"{level * 100:.2f}".rstrip("0").rstrip(".") + "%"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
