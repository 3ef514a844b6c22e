"""The suite's statistics (regbench.analysis.suite_stats) against independent computations:
hand-computed IQM, P(improve), Holm, average ranks and the Nemenyi CD, the exact signed-rank
distribution by enumeration, scipy's Friedman test and Demšar's closed form, and the
stratified bootstrap interval's coverage in a simulation."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from regbench.analysis import suite_stats as st


def test_relative_error_reduction_by_hand():
    baseline = {0: 0.10, 1: 0.20, 2: 0.30}          # mean 0.2
    recipe = {0: 0.08, 1: 0.22, 3: 0.5}              # seed 3 has no baseline pair
    assert st.relative_error_reduction(baseline, recipe) == pytest.approx(
        {0: 0.02 / 0.2, 1: -0.02 / 0.2})
    # nothing to reduce: the baseline made no error
    assert st.relative_error_reduction({0: 0.0, 1: 0.0}, {0: 0.1, 1: 0.0}) == {}


def test_iqm_of_a_tiny_table_by_hand():
    # 3 tasks × 4 seeds, pooled: 12 values; the IQM drops the 3 lowest and the 3 highest
    table = [[0.9, -0.3, 0.1, 0.2], [0.05, 0.4, -0.1, 0.3], [0.0, 0.6, 0.25, -0.5]]
    middle = sorted(v for row in table for v in row)[3:9]
    assert st.iqm(table) == pytest.approx(sum(middle) / 6)
    assert st.mean_of_means(table) == pytest.approx(
        (np.mean(table[0]) + np.mean(table[1]) + np.mean(table[2])) / 3)


def test_probability_of_improvement_by_rliables_formula():
    # errors: lower is better; ties count half
    recipe = [[0.1, 0.2], [0.3, 0.3, 0.1]]
    baseline = [[0.2, 0.3], [0.3, 0.2]]
    # task 1: (0.1<0.2) (0.1<0.3) (0.2=0.2 half) (0.2<0.3) -> 3.5/4
    # task 2: 0.3 vs 0.3 half, 0.3 vs 0.2 no, twice; 0.1 beats both -> (0.5+0.5+2)/6
    hand = (3.5 / 4 + 3.0 / 6) / 2
    assert st.probability_of_improvement(recipe, baseline) == pytest.approx(hand)
    # rliable: scipy's Mann-Whitney U of (recipe > baseline) on scores (higher is better) / n·m
    by_u = np.mean([stats.mannwhitneyu(-np.array(r), -np.array(b)).statistic / (len(r) * len(b))
                    for r, b in zip(recipe, baseline)])
    assert st.probability_of_improvement(recipe, baseline) == pytest.approx(by_u)
    # a completed run with no test error is left out, never counted as a loss
    with_gap = [[0.1, 0.2, math.nan], [0.3, 0.3, 0.1]]
    assert st.probability_of_improvement(with_gap, baseline) == pytest.approx(hand)


def _exact_signed_rank_p(values):
    """Two-sided p of the signed-rank statistic by enumerating every sign assignment."""
    ranks = stats.rankdata(np.abs(values))
    observed = abs(ranks[np.asarray(values) > 0].sum() - ranks[np.asarray(values) < 0].sum())
    flips = [abs(sum(r * s for r, s in zip(ranks, signs)))
             for signs in itertools.product((1, -1), repeat=len(values))]
    return np.mean([f >= observed - 1e-12 for f in flips])


@pytest.mark.parametrize("values", [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                                    [0.05, -0.02, 0.11, 0.3, 0.21, -0.07, 0.15],
                                    [-0.4, -0.1, -0.25]])
def test_signed_rank_p_is_the_exact_enumerated_one(values):
    p, direction = st.signed_rank_test(values)
    assert p == pytest.approx(_exact_signed_rank_p(values))
    assert direction == int(np.sign(np.median(values)))


def test_the_smallest_signed_rank_p_over_n_tasks():
    for n in (3, 6, 8):
        assert st.smallest_signed_rank_p(n) == pytest.approx(_exact_signed_rank_p([1.0] * n))
    assert st.smallest_signed_rank_p(3) == 0.25       # three tasks can never reach 5%
    assert st.signed_rank_test([0.0, 0.0, 0.0]) == (1.0, 0)


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert st.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = st.holm([0.2, math.nan, 0.01])
    assert adjusted[0] == pytest.approx(0.2) and adjusted[2] == pytest.approx(0.02)
    assert math.isnan(adjusted[1])
    assert st.holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])


# errors of 4 recipes on 5 tasks, no ties within a task
TABLE = np.array([[0.10, 0.12, 0.15, 0.11],
                  [0.20, 0.18, 0.25, 0.22],
                  [0.05, 0.07, 0.09, 0.06],
                  [0.30, 0.29, 0.35, 0.33],
                  [0.40, 0.42, 0.41, 0.45]])


def test_friedman_agrees_with_scipy_and_demsars_formula():
    result = st.friedman_nemenyi(TABLE, ["a", "b", "c", "d"])
    ranks = {"a": (1 + 2 + 1 + 2 + 1) / 5, "b": (3 + 1 + 3 + 1 + 3) / 5,
             "c": (4 + 4 + 4 + 4 + 2) / 5, "d": (2 + 3 + 2 + 3 + 4) / 5}
    assert result.average_ranks == pytest.approx(ranks)
    scipy_test = stats.friedmanchisquare(*TABLE.T)
    assert result.statistic == pytest.approx(scipy_test.statistic)
    assert result.p_value == pytest.approx(scipy_test.pvalue)
    n, k = 5, 4      # Demšar (2006), eq. for χ²_F without ties
    closed = 12 * n / (k * (k + 1)) * (sum(r ** 2 for r in ranks.values()) - k * (k + 1) ** 2 / 4)
    assert result.statistic == pytest.approx(closed)


def test_nemenyi_critical_difference_by_hand():
    result = st.friedman_nemenyi(TABLE, ["a", "b", "c", "d"])
    # Demšar (2006) table 5: q_0.05 = 2.569 for k = 4; CD = q·√(k(k+1)/(6N))
    assert result.q_alpha == pytest.approx(2.569, abs=5e-4)
    assert result.critical_difference == pytest.approx(2.569 * math.sqrt(4 * 5 / (6 * 5)),
                                                       abs=1e-3)
    assert st.friedman_nemenyi(TABLE[:, :2], ["a", "b"]) is None      # needs 3 recipes


def test_performance_profile_and_geometric_mean_by_hand():
    errors = np.array([[0.1, 0.2], [0.3, 0.3], [0.4, 0.2]])
    profile = st.performance_profile(errors, np.array([1.0, 1.5, 2.0]))
    # ratios: a = 1, 1, 2; b = 2, 1, 1
    np.testing.assert_allclose(profile, [[2 / 3, 2 / 3], [2 / 3, 2 / 3], [1.0, 1.0]])
    assert st.geometric_mean([2.0, 8.0, math.nan]) == pytest.approx(4.0)


def test_an_interval_needs_two_seeds_per_task_and_no_spread_gives_a_point():
    assert all(math.isnan(v) for v in st.stratified_interval([[0.1, 0.2], [0.3]],
                                                              st.stacked_mean))
    assert st.stratified_interval([[0.1, 0.1], [0.3, 0.3]], st.stacked_mean) == \
        pytest.approx((0.2, 0.2))


def test_stratified_interval_resamples_within_tasks_only():
    # two tasks far apart: a resample that mixed tasks would put the mean outside
    low, high = st.stratified_interval([[0.0, 0.01, 0.02], [1.0, 1.01, 1.02]], st.stacked_mean)
    assert 0.48 < low <= 0.51 <= high < 0.54


def test_stratified_bootstrap_covers_at_3_seeds_and_6_tasks():
    """Coverage of the 95% intervals of the mean and the IQM, 400 simulated suites of 3 seeds ×
    6 tasks whose seed spreads differ by task (rliable's plain percentile interval: ~0.86)."""
    rng = np.random.default_rng(7)
    means = np.array([0.02, -0.01, 0.05, 0.0, 0.03, 0.1])
    spreads = np.array([0.02, 0.03, 0.01, 0.05, 0.02, 0.04])
    truth_mean = means.mean()
    truth_iqm = st.iqm(rng.normal(means[:, None], spreads[:, None], size=(6, 400_000)))
    trials, covered_mean, covered_iqm = 400, 0, 0
    for trial in range(trials):
        table = list(rng.normal(means[:, None], spreads[:, None], size=(6, 3)))
        low, high = st.stratified_interval(table, st.stacked_mean, resamples=1000, seed=trial)
        covered_mean += low <= truth_mean <= high
        low, high = st.stratified_interval(table, st.pooled_iqm, resamples=1000, seed=trial)
        covered_iqm += low <= truth_iqm <= high
    assert covered_mean / trials >= 0.93
    assert covered_iqm / trials >= 0.93
