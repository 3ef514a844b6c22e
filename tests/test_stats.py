"""Statistics over seeds: the paired bootstrap against an exact enumeration, mean ± std against
numpy, and the comparison's choices (best λ by validation only, the few-seeds warning)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from regbench.analysis.compare import build_comparison, to_csv, to_latex, to_markdown
from regbench.analysis.stats import mean_std, paired_difference

RECIPE = {0: 0.91, 1: 0.88, 2: 0.93, 3: 0.90, 4: 0.86}
BASELINE = {0: 0.89, 1: 0.89, 2: 0.90, 3: 0.87, 4: 0.88}


def exact_bootstrap(diffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every one of the n^n equally likely resamples: (means, probabilities)."""
    n = len(diffs)
    means = np.array([diffs[list(idx)].mean() for idx in itertools.product(range(n), repeat=n)])
    return means, np.full(means.size, 1.0 / means.size)


def quantile(means: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(means)
    cdf = np.cumsum(weights[order])
    return float(means[order][np.searchsorted(cdf, q)])


def test_paired_bootstrap_matches_exact_enumeration():
    diffs = np.array([RECIPE[s] - BASELINE[s] for s in sorted(RECIPE)])
    means, weights = exact_bootstrap(diffs)
    exact_p = float(weights[means > 1e-12].sum() + 0.5 * weights[np.abs(means) <= 1e-12].sum())

    result = paired_difference(RECIPE, BASELINE, higher_is_better=True)

    assert result.pairs == 5
    assert result.mean == pytest.approx(diffs.mean(), abs=1e-12)
    # 10,000 resamples: Monte-Carlo error of a probability is about 0.005
    assert result.p_better == pytest.approx(exact_p, abs=0.02)
    # the percentile ends fall between the exact 1.5%/3.5% and 96.5%/98.5% quantiles
    assert quantile(means, weights, 0.015) <= result.low <= quantile(means, weights, 0.035)
    assert quantile(means, weights, 0.965) <= result.high <= quantile(means, weights, 0.985)


def test_lower_is_better_flips_p_better_and_pairs_by_seed_only():
    shuffled_baseline = dict(reversed(list(BASELINE.items())))
    higher = paired_difference(RECIPE, BASELINE, higher_is_better=True)
    lower = paired_difference(RECIPE, shuffled_baseline, higher_is_better=False)
    assert lower.mean == pytest.approx(higher.mean)          # pairing by seed, not by order
    assert lower.p_better == pytest.approx(1 - higher.p_better, abs=1e-9)


def test_unpaired_seeds_are_dropped_and_one_pair_has_no_interval():
    result = paired_difference({0: 0.9, 7: 0.5}, {0: 0.8, 1: 0.1})
    assert result.pairs == 1 and result.mean == pytest.approx(0.1)
    assert math.isnan(result.low) and math.isnan(result.p_better)


def test_identical_runs_give_a_zero_interval_and_even_odds():
    result = paired_difference(BASELINE, BASELINE)
    assert (result.mean, result.low, result.high, result.p_better) == (0.0, 0.0, 0.0, 0.5)


def test_mean_std_matches_numpy_and_skips_missing_values():
    values = [0.5, 0.7, float("nan"), None, 0.9]
    mean, std = mean_std(values)
    assert mean == pytest.approx(np.mean([0.5, 0.7, 0.9]))
    assert std == pytest.approx(np.std([0.5, 0.7, 0.9], ddof=1))


def _summary(recipe, seed, val, test, lam=None, val_loss=1.0):
    sweep = {"lambda": lam} if lam is not None else {}
    point = recipe + (f"__lambda={lam:g}" if lam is not None else "")
    return {"status": "completed", "recipe": recipe, "seed": seed, "point_id": point,
            "run_id": f"{point}__seed={seed}", "sweep": sweep,
            "sweep_paths": {f"recipes.{recipe}.l2.lambda": lam} if lam is not None else {},
            "task": "classification", "val_accuracy": val, "test_accuracy": test,
            "val_loss": val_loss, "train_accuracy": 1.0, "parameter_count": 10,
            "seconds_per_epoch": 0.1, "verdict": {"verdict": "ok"}}


def test_best_lambda_is_chosen_by_validation_never_by_test():
    summaries = [_summary("baseline", s, 0.80, 0.80) for s in range(3)]
    # λ=1 is best on validation; λ=10 would win on test
    summaries += [_summary("l2", s, 0.90, 0.81, lam=1.0) for s in range(3)]
    summaries += [_summary("l2", s, 0.85, 0.95, lam=10.0) for s in range(3)]
    comparison = build_comparison(summaries)
    best = comparison.best_points["l2"]
    assert best["sweep"] == {"lambda": 1.0}
    assert any("best l2 by validation accuracy: lambda=1.0" in n for n in comparison.notes)
    assert not any("warning: only" in n for n in comparison.notes)   # 3 seeds is enough
    row = next(r for r in comparison.rows if r["point"] == "l2__lambda=10")
    assert row["diff"] == pytest.approx(0.15) and row["p_better"] == 1.0


def test_ties_on_validation_go_to_the_lower_validation_loss():
    summaries = [_summary("baseline", s, 0.8, 0.8) for s in range(3)]
    summaries += [_summary("l2", s, 0.9, 0.9, lam=1.0, val_loss=0.5) for s in range(3)]
    summaries += [_summary("l2", s, 0.9, 0.9, lam=0.1, val_loss=0.4) for s in range(3)]
    assert build_comparison(summaries).best_points["l2"]["sweep"] == {"lambda": 0.1}


def test_fewer_than_three_seeds_warns_and_tables_carry_the_interval():
    summaries = [_summary("baseline", s, 0.8, 0.80 + s / 100) for s in range(2)]
    summaries += [_summary("l2", s, 0.9, 0.85 + s / 50, lam=1.0) for s in range(2)]
    comparison = build_comparison(summaries)
    assert any("only 2 seed(s)" in n for n in comparison.notes)
    header = to_csv(comparison).splitlines()[0].split(",")
    for column in ("seeds", "diff", "diff_low", "diff_high", "p_better", "val_accuracy_std"):
        assert column in header
    assert "95% CI" in to_markdown(comparison)
    assert r"\begin{tabular}" in to_latex(comparison) and r"$\pm$" in to_latex(comparison)
