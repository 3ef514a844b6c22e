"""The headline says what the table's statistics say and no more: a recipe is called better or
worse only where the Bonferroni-corrected paired test (checked here with scipy) says so, with
the interval at the same level; equivalent only within a given ±δ; inconclusive recipes get the
seeds that would settle them at δ, or are asked for δ; one seed gives no verdict."""
from __future__ import annotations

import numpy as np
from scipy import stats

from regbench.analysis.compare import build_comparison, display_rows

BASE = np.array([0.80, 0.82, 0.81, 0.79, 0.83])


def summaries(effects: dict[str, np.ndarray], seeds: int = 5) -> list[dict]:
    out = []
    for recipe, test in {"baseline": BASE[:seeds], **effects}.items():
        for seed, value in enumerate(test[:seeds]):
            out.append({"recipe": recipe, "point_id": recipe, "run_id": f"{recipe}__seed={seed}",
                        "seed": seed, "status": "completed", "task": "classification",
                        "test_accuracy": float(value), "val_accuracy": float(value),
                        "train_accuracy": 1.0, "regularizers": {}})
    return out


EFFECTS = {
    "helps": BASE + np.array([0.050, 0.046, 0.052, 0.049, 0.051]),
    "hurts": BASE - np.array([0.030, 0.034, 0.029, 0.031, 0.032]),
    "noise": BASE + np.array([0.01, -0.012, 0.004, -0.006, 0.003]),    # Δ −0.0002: negligible
    "maybe": BASE + np.array([0.03, -0.004, 0.02, 0.001, 0.012]),       # Δ +0.012, sd 0.014
}


def test_headline_names_each_verdict_with_its_interval():
    comparison = build_comparison(summaries(EFFECTS))
    text = " ".join(comparison.headline)
    p = {name: stats.ttest_rel(test, BASE).pvalue for name, test in EFFECTS.items()}
    assert p["helps"] * 4 < 0.05 and p["hurts"] * 4 < 0.05          # Bonferroni: both reject
    assert p["noise"] > 0.05 and p["maybe"] > 0.05
    better = next(s for s in comparison.headline if "better than baseline" in s)
    worse = next(s for s in comparison.headline if "worse than baseline" in s)
    unsure = next(s for s in comparison.headline if s.startswith("Inconclusive"))
    assert "helps" in better and "hurts" not in better and "noise" not in better
    assert "hurts" in worse and "noise" in unsure and "maybe" in unsure
    # the interval at the family's level: 1 − 0.05/4 each, 95% together
    low, high = stats.t.interval(1 - 0.05 / 4, 4, loc=(EFFECTS["helps"] - BASE).mean(),
                                 scale=stats.sem(EFFECTS["helps"] - BASE))
    assert f"[{low:+.3g}, {high:+.3g}]".replace("-", "−") in better
    assert "98.75% interval (Bonferroni over 4 comparisons: together 95%)" in text
    assert "5 seeds" in text
    assert "the train/val split and the test set are fixed" in text   # what the intervals cover
    # without δ: nothing is equivalent or "no different", and δ is what sizes more seeds
    assert "equivalent" not in text and "no different" not in text
    assert "--min-effect D" in text and "about" not in text
    with_delta = build_comparison(summaries(EFFECTS), min_effect=0.02)
    text = " ".join(with_delta.headline)
    equivalent = next(s for s in with_delta.headline if "equivalent to baseline within ±0.02" in s)
    assert "noise" in equivalent and "maybe" not in equivalent
    needed = with_delta.seeds_needed["maybe"]           # the next step for the inconclusive one
    assert 5 < needed <= 1000 and f"about {needed} seeds for maybe (--seeds 0-{needed - 1})" in text


def test_one_seed_gives_no_verdict_and_no_baseline_gives_no_comparison():
    single = build_comparison(summaries(EFFECTS, seeds=1))
    one = single.headline
    assert len(one) == 1 and "no interval and no verdict" in one[0]
    _, cells = display_rows(single)              # one seed: no "± 0.0000" spread to show
    assert all(c[2].endswith("(n=1)") and "±" not in c[2] + c[3] for c in cells)
    assert {row["status"] for row in single.rows} == {"completed"}
    assert "better" not in one[0].replace("no verdict", "")
    alone = [s for s in summaries(EFFECTS) if s["recipe"] != "baseline"]
    assert build_comparison(alone).headline == [
        "There are no baseline runs, so nothing can be called better or worse."]


def test_one_seed_with_no_completed_recipe_says_so():
    runs = summaries({"helps": EFFECTS["helps"]}, seeds=1)
    runs[1]["status"] = "failed"
    sentence, cause = build_comparison(runs).headline
    assert "no recipe has a completed run to compare" in sentence
    assert "are ." not in sentence
    # the cause, not too few seeds: the failed run is named with where its error is
    assert cause.startswith("helps: 1 of 1 runs failed: see the run's summary.json error")
    assert "runs/helps__seed=0/summary.json" in cause and "seeds" not in cause.split(";")[0]
