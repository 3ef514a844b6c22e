"""Statistics over seeds: the paired difference to baseline with a Student-t interval and test,
the verdict read off that interval (better / worse / equivalent / inconclusive, Bonferroni over a
table's rows), the probability of improvement, and the number of seeds that would settle an
inconclusive row.

Why Student t: a table has 3–10 seeds. A percentile bootstrap of n = 3 paired differences is
their [min, max] and covers about 77% of the time for a nominal 95%; the t interval is exact for
normal differences and keeps 93–95% for the skewed per-seed noise of real runs (``tests/
test_stats.py`` simulates both). It assumes roughly symmetric differences: when one seed in a
few is far off in one direction, the coverage at n ≤ 10 drops to about 89%.

Why Bonferroni and not Holm: the verdict is read off the interval the table shows. Each row's
interval is at level 1 − α/m (m rows compared with baseline), so all m hold together with 95%,
and a row is better or worse exactly when its shown interval excludes 0 (the paired t-test at
α/m), equivalent exactly when it lies inside ±δ (two one-sided tests at α/2m each, as
conservative). Holm rejects a little more often, but a Holm verdict has no interval of its own:
rows whose per-row 95% interval excluded 0 were listed as "cannot tell" (issue 30).

Why a corrected variance with ``dataset.cv``: the differences of the J runs of repeated k-fold
(seeds × repeats × folds) are not independent. Their training sets overlap and their test
folds come from one draw of the data, so the differences agree more than independent ones
would, and the plain paired t-test's s²/J underestimates the variance of their mean: naive
repeated 10-fold tests reject a true null far more often than α (Nadeau & Bengio 2003;
Bouckaert & Frank 2004). The corrected resampled t-test (Nadeau & Bengio 2003, "Inference
for the generalization error", Machine Learning 52) replaces s²/J by s²·(1/J + n_test/n_train),
with J − 1 degrees of freedom; over repeated k-fold it is Bouckaert & Frank's corrected
repeated k-fold test. ``test_train_ratio`` carries n_test/n_train into the same interval,
test and verdict (``tests/test_cv.py`` simulates its false-positive rate against the naive
test's).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Iterable, Optional, Sequence

import numpy as np

CONFIDENCE = 0.95              # interval coverage of a table's rows together
ALPHA = 0.05                   # family-wise error of a table's verdicts (Bonferroni)
POWER = 0.80                   # power the seed advice aims at
SPREAD_BOUND = 0.70            # the seed advice sizes for the spread's upper 70% confidence bound,
                               # not the spread seen: with 3 seeds the sd seen is below the true
                               # one half of the time, and advice sized on it settled 40–60%
                               # (tests/test_stats.py simulates the advice followed)
MAX_SEEDS_ADVISED = 1000       # beyond this the advice says "more than" (a tiny effect)
TIE_TOLERANCE = 1e-12          # |difference| below this is float noise of a − b, not an effect

BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = "better", "worse", "equivalent", "inconclusive"


@dataclass
class Difference:
    """recipe − baseline over seeds shared by both (positive: the recipe's metric is larger)."""

    mean: float
    low: float                 # Student-t interval of the mean paired difference (at ``level``)
    high: float
    p_value: float             # two-sided paired t-test of "no difference" (uncorrected)
    sd: float                  # standard deviation of the per-seed differences
    pairs: int                 # seeds used
    level: float = CONFIDENCE  # the interval's confidence
    test_train_ratio: float = 0.0  # corrected test's n_test/n_train; 0: plain; NaN: unknown


def finite(values: Iterable) -> np.ndarray:
    return np.asarray([float(v) for v in values if v is not None and math.isfinite(float(v))],
                      dtype=float)


def mean_std(values) -> tuple[float, float]:
    array = finite(values)
    if array.size == 0:
        return math.nan, math.nan
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def paired_difference(recipe: dict[Hashable, float], baseline: dict[Hashable, float],
                      level: float = CONFIDENCE, test_train_ratio: float = 0.0) -> Difference:
    """Mean of d_s = recipe_s − baseline_s over shared seeds, its t interval and p-value.

    Pairing by seed removes what the seed does to both runs (initialisation, batch order and,
    with ``dataset.resample: per_seed``, the split), so the interval is about the regularizer.
    With ``dataset.cv`` the keys are (seed, repeat, fold) and ``test_train_ratio`` > 0 makes it
    the corrected resampled t-test (see the module's note).
    With one shared seed there is no interval (NaN). Differences that are all equal have no
    spread: the interval is that value, p is 1 when it is zero and undefined (NaN, so
    inconclusive) otherwise.
    """
    seeds = sorted(s for s in recipe if s in baseline
                   and all(v is not None and math.isfinite(v) for v in (recipe[s], baseline[s])))
    diffs = np.array([recipe[s] - baseline[s] for s in seeds], dtype=float)
    return difference_of(diffs, level, test_train_ratio)


def difference_of(diffs: np.ndarray, level: float = CONFIDENCE,
                  test_train_ratio: float = 0.0) -> Difference:
    """The t interval and paired test of per-seed differences (see :func:`paired_difference`);
    with ``test_train_ratio`` = n_test/n_train > 0, of the corrected resampled t-test: the
    variance of the mean s²/J becomes s²·(1/J + n_test/n_train), still with J − 1 df; NaN (a
    cross-validated ratio not known): the mean and spread only, no interval and no p-value,
    since the plain test's would be too narrow."""
    diffs = np.asarray(diffs, dtype=float)
    n = int(diffs.size)
    ratio = float(test_train_ratio)
    if n == 0:
        return Difference(math.nan, math.nan, math.nan, p_value=math.nan, sd=math.nan, pairs=0,
                          level=level, test_train_ratio=ratio)
    mean = float(diffs.mean())
    if n < 2:
        return Difference(mean, math.nan, math.nan, p_value=math.nan, sd=math.nan, pairs=n,
                          level=level, test_train_ratio=ratio)
    sd = float(diffs.std(ddof=1))
    if math.isnan(ratio):
        return Difference(mean, math.nan, math.nan, p_value=math.nan, sd=sd, pairs=n,
                          level=level, test_train_ratio=ratio)
    if sd <= TIE_TOLERANCE * max(1.0, abs(mean)):   # no spread: t is 0/0 or ±inf
        # Equal differences in every pair (one more test example right in each of 2 seeds, or
        # a convex fit that every seed solves alike) give no estimate of the noise: the
        # interval is the point, and there is no test; the verdict stays inconclusive.
        zero = abs(mean) <= TIE_TOLERANCE
        point = 0.0 if zero else mean
        return Difference(point, point, point, p_value=1.0 if zero else math.nan, sd=0.0,
                          pairs=n, level=level, test_train_ratio=ratio)
    # the paired t-test by its formula: scipy's ttest_1samp gives the same numbers
    # (tests/test_stats.py) at 10× the cost, which the coverage simulations would pay.
    # Two formulas, not sd·√(1/n + 0): sd/√n and sd·√(1/n) differ in the last bit for a third
    # of (sd, n), and the plain test keeps the exact digits that earlier versions wrote to
    # comparison.csv (tests/test_cv.py pins them)
    error = sd / math.sqrt(n) if not ratio else sd * math.sqrt(1 / n + ratio)
    half = t_quantile(0.5 + level / 2, n - 1) * error
    p_value = 2 * t_sf(abs(mean) / error, n - 1)
    return Difference(mean, mean - half, mean + half, p_value=p_value, sd=sd, pairs=n,
                      level=level, test_train_ratio=ratio)


# Student-t and normal distributions from scipy.special, whose import costs a quarter of
# scipy.stats' (0.4 s vs 1.5 s on 2 cores; benchmarks/startup.py): the same functions that
# scipy.stats' t, nct and norm evaluate (tests/test_stats.py compares them)

def t_quantile(p: float, df: float) -> float:
    from scipy import special  # deferred: a table without differences needs no scipy

    return float(special.stdtrit(df, p))


def t_sf(x: float, df: float) -> float:
    from scipy import special

    return float(special.stdtr(df, -x))


def mean_interval(values: Iterable[float]) -> Difference:
    """The mean of per-seed values with its 95% t interval (a difference against zero)."""
    return difference_of(finite(values))


def probability_of_improvement(recipe: Sequence[float], baseline: Sequence[float],
                               higher_is_better: bool = True) -> float:
    """P(a run of the recipe beats a run of the baseline), ties counting half, over every
    (recipe seed, baseline seed) pair: the Mann–Whitney U statistic divided by n·m, as rliable
    (Agarwal et al. 2021) defines the probability of improvement. 0.5 is a coin toss; it says
    how often one wins, not how sure we are (that is the interval's and the verdict's job)."""
    x, y = finite(recipe), finite(baseline)
    if x.size == 0 or y.size == 0:
        return math.nan
    if not higher_is_better:
        x, y = -x, -y
    # U by its definition over the n·m pairs (a few seeds each): equal to scipy.stats'
    # mannwhitneyu statistic (tests/test_stats.py) without importing scipy.stats
    wins = (x[:, None] > y[None, :]).sum() + 0.5 * (x[:, None] == y[None, :]).sum()
    return float(wins / (x.size * y.size))


def family_level(comparisons: int, alpha: float = ALPHA) -> float:
    """Each row's interval level when ``comparisons`` rows are judged together: 1 − α/m, so that
    all m intervals hold at once with probability 1 − α (Bonferroni)."""
    return 1.0 - alpha / max(1, comparisons)


def bonferroni(p_value: float, comparisons: int) -> float:
    """A row's p-value corrected for the ``comparisons`` rows of its table: min(1, m·p)."""
    return p_value if math.isnan(p_value) else min(1.0, max(1, comparisons) * p_value)


def decide(difference: Difference, higher_is_better: bool,
           min_effect: Optional[float] = None) -> str:
    """The verdict read off the shown interval (at the family's level, see the module's note):

    - ``equivalent``: with a smallest effect of interest δ, the interval lies inside ±δ (the
      two one-sided tests reject both "≤ −δ" and "≥ +δ"): whatever the difference is, it is
      smaller than δ. This comes first: a real but negligible difference is equivalent;
    - ``better`` / ``worse``: the interval excludes 0 (the paired t-test rejects "no
      difference"); never from differences that all agree (no spread: no test);
    - ``inconclusive``: neither. Without δ nothing is ever called equivalent.
    """
    low, high = difference.low, difference.high
    if math.isnan(low) or math.isnan(high):
        return INCONCLUSIVE
    if min_effect and -abs(min_effect) < low and high < abs(min_effect):
        return EQUIVALENT
    if math.isnan(difference.p_value) or difference.sd == 0 or (low <= 0 <= high):
        return INCONCLUSIVE
    return BETTER if (difference.mean > 0) == higher_is_better else WORSE


def t_test_power(effect: float, sd: float, n: int, alpha: float) -> float:
    """Power of a two-sided paired t-test with ``n`` pairs (noncentral t)."""
    from scipy import special

    df = n - 1
    critical = t_quantile(1 - alpha / 2, df)
    shift = abs(effect) / sd * math.sqrt(n)
    upper = 1.0 - float(special.nctdtr(df, shift, critical))
    lower = float(special.nctdtr(df, shift, -critical))   # the wrong-sign rejections: tiny
    if not (math.isfinite(upper) and math.isfinite(lower)):
        # the series gives NaN far in the tail (large n · effect/sd), where the normal limit
        # is exact to many digits
        upper = float(special.ndtr(shift - critical))
        lower = float(special.ndtr(-critical - shift))
    return upper + lower


def equivalence_power(margin: float, sd: float, n: int, alpha: float) -> float:
    """A lower bound on the chance that the interval at level 1 − α of ``n`` pairs lies inside
    ±``margin`` when the true difference is 0: each side fails its one-sided test (noncentral t,
    as in ``t_test_power``) with probability q, so both pass with at least 1 − 2q."""
    from scipy import special

    df = n - 1
    critical = t_quantile(1 - alpha / 2, df)
    shift = abs(margin) / sd * math.sqrt(n)
    miss = float(special.nctdtr(df, shift, critical))
    if not math.isfinite(miss):
        miss = float(special.ndtr(critical - shift))
    return max(0.0, 1.0 - 2.0 * miss)


def spread_bound(sd: float, pairs: int, bound: Optional[float] = None) -> float:
    """The upper ``bound`` confidence limit (default SPREAD_BOUND) of the differences' standard
    deviation, from the ``sd`` of ``pairs`` seeds: s·√(df / χ²_df quantile at 1 − bound)."""
    from scipy import special

    bound = SPREAD_BOUND if bound is None else bound
    df = pairs - 1
    return sd * math.sqrt(df / float(special.chdtri(df, bound)))


def _fewest(enough, limit: int = MAX_SEEDS_ADVISED) -> int:
    """The smallest n in [2, limit] for which ``enough(n)`` (monotone in n); limit + 1 if none."""
    if not enough(limit):
        return limit + 1
    low, high = 2, limit
    while low < high:                       # power grows with n: bisect
        middle = (low + high) // 2
        if enough(middle):
            high = middle
        else:
            low = middle + 1
    return low


def seeds_needed(effect: float, sd: float, alpha: float = ALPHA,
                 power: float = POWER) -> Optional[int]:
    """Fewest seeds for which a paired t-test at ``alpha`` detects a true difference of
    ``effect`` with the given power, if the differences keep the spread ``sd``; None when that
    cannot be estimated (no spread, no effect), MAX_SEEDS_ADVISED + 1 beyond the search."""
    if not (math.isfinite(effect) and math.isfinite(sd)) or sd <= 0 or effect == 0:
        return None
    return _fewest(lambda n: t_test_power(effect, sd, n, alpha) >= power)


def seeds_to_settle(min_effect: float, sd: float, pairs: int, alpha: float = ALPHA,
                    power: float = POWER) -> Optional[int]:
    """Seeds (in all) after which a row is settled with the given power whether the true
    difference is 0 (its interval inside ±δ: equivalent) or at least δ (excluding 0: better or
    worse), sized for the spread's upper confidence bound from its ``pairs`` seeds, never for
    the difference observed. None when it cannot be sized (no δ, no spread, one pair)."""
    if not min_effect or not math.isfinite(sd) or sd <= 0 or pairs < 2:
        return None
    bound = spread_bound(sd, pairs)
    detect = seeds_needed(min_effect, bound, alpha, power)
    equivalent = _fewest(lambda n: equivalence_power(min_effect, bound, n, alpha) >= power)
    return max(detect, equivalent)


def interval_half_width(sd: float, n: int, level: float) -> float:
    """The half-width of a level ``level`` t interval of ``n`` pairs of spread ``sd``."""
    return t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
