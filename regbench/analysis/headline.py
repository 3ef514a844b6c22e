"""The answer in a few sentences, generated from the comparison table.

Each sentence says only what the table's statistics say: a recipe is called better or worse
only where the Holm-corrected paired test says so, its difference is quoted with its interval,
the scope line says what the intervals cover, and inconclusive recipes get the next step that
would settle them (more seeds, as sized by the seed advice, or a confirmation of a sweep's pick).
"""
from __future__ import annotations

import math
from typing import Any

from regbench.analysis.stats import (
    BETTER,
    CONFIDENCE,
    INCONCLUSIVE,
    MAX_SEEDS_ADVISED,
    POWER,
    WORSE,
)


def _name(row: dict[str, Any], best: bool) -> str:
    name = row["point"].replace("__", " ")
    return f"{name} (best of its sweep on validation)" if best else name


def _signed(value: float) -> str:
    return f"{value:+.3g}".replace("-", "−")


def _difference(row: dict[str, Any]) -> str:
    if math.isnan(row["diff_low"]):
        return f"{_signed(row['diff'])} (no interval)"
    return (f"{_signed(row['diff'])} [{_signed(row['diff_low'])}, "
            f"{_signed(row['diff_high'])}]")


def headline(comparison, chosen: dict[str, dict[str, Any]]) -> list[str]:
    """Plain sentences for the top of the terminal output and of the report. ``chosen``: the
    row that stands for each recipe (``chosen_rows``)."""
    metric = comparison.metric
    rows = {recipe: row for recipe, row in chosen.items() if recipe != "baseline"}
    if not any(r["recipe"] == "baseline" and r["seeds"] for r in comparison.rows):
        return ["There are no baseline runs, so nothing can be called better or worse."]
    if not rows:
        return ["Only the baseline was trained: add recipes to compare."]
    seeds = sorted({row["pairs"] for row in rows.values() if row["pairs"]})
    if not seeds or seeds[-1] < 2:
        differences = ", ".join(f"{_name(r, False)} {_signed(r['diff'])}"
                                for r in rows.values() if not math.isnan(r["diff"]))
        return [("With one seed per recipe there is no interval and no verdict"
                 + (f": on test {metric} the differences from baseline are {differences}"
                    if differences else ", and no recipe has a completed run to compare")
                 + ". Train at least 3 seeds (--seeds 0-4) to know which are real.")]
    sentences = []
    groups = {verdict: [(recipe, row) for recipe, row in rows.items()
                        if (row["verdict"] or INCONCLUSIVE) == verdict]
              for verdict in (BETTER, WORSE, INCONCLUSIVE)}
    for verdict, words in ((BETTER, "better than"), (WORSE, "worse than")):
        if groups[verdict]:
            listed = "; ".join(f"{_name(row, recipe in comparison.best_points)} by "
                               f"{_difference(row)}" for recipe, row in groups[verdict])
            sentences.append(f"{len(groups[verdict])} recipe(s) {words} baseline on test "
                             f"{metric}: {listed}.")
    if groups[INCONCLUSIVE]:
        listed = "; ".join(f"{_name(row, recipe in comparison.best_points)} "
                           f"{_difference(row)}" for recipe, row in groups[INCONCLUSIVE])
        sentences.append(f"Inconclusive, these seeds cannot tell them from baseline: {listed}.")
    sentences.append(f"Δ is the mean paired test difference (recipe − baseline) with its "
                     f"{CONFIDENCE:.0%} interval over {seeds[0]}"
                     + (f"–{seeds[-1]}" if len(seeds) > 1 else "")
                     + f" seeds; the seeds vary {comparison.varied}; verdicts are paired t-tests "
                       f"Holm-corrected over {comparison.comparisons} comparison(s).")
    steps, negligible = [], []
    for recipe, row in groups[INCONCLUSIVE]:
        needed = comparison.seeds_needed.get(recipe)
        if needed and needed <= MAX_SEEDS_ADVISED:
            steps.append(f"about {needed} seeds for {_name(row, False)}")
        elif needed:
            negligible.append(_name(row, False))
    if steps:
        sentences.append("What would settle the inconclusive ones: " + ", ".join(steps)
                         + f" ({POWER:.0%} power at the spread seen, for the difference observed).")
    if negligible:
        sentences.append(f"{', '.join(negligible)}: more than {MAX_SEEDS_ADVISED} seeds would "
                         "be needed to detect the difference observed; for practical purposes "
                         "no different from baseline here.")
    picked = [recipe for recipe in rows if recipe in comparison.best_points]
    if picked:
        sentences.append("Sweep picks were chosen on validation with these same seeds, so "
                         "their test Δ is optimistic: confirm them on fresh seeds with "
                         "--confirm-seeds 5.")
    return sentences

