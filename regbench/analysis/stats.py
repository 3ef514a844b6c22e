"""Statistics over seeds: the paired difference to baseline with a Student-t interval and test,
the probability of improvement, the Holm–Bonferroni decision over a table's rows, and the number
of seeds that would settle an inconclusive row.

Why Student t: a table has 3–10 seeds. A percentile bootstrap of n = 3 paired differences is
their [min, max] and covers about 77% of the time for a nominal 95%; the t interval is exact for
normal differences and keeps 93–95% for the skewed per-seed noise of real runs (``tests/
test_stats.py`` simulates both). It assumes roughly symmetric differences: when one seed in a
few is far off in one direction, the coverage at n ≤ 10 drops to about 89%.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

CONFIDENCE = 0.95              # interval coverage, per row
ALPHA = 0.05                   # family-wise error of a table's verdicts (Holm–Bonferroni)
POWER = 0.80                   # power the seed advice aims at
MAX_SEEDS_ADVISED = 1000       # beyond this the advice says "more than" (a tiny effect)
TIE_TOLERANCE = 1e-12          # |difference| below this is float noise of a − b, not an effect

BETTER, WORSE, INCONCLUSIVE = "better", "worse", "inconclusive"


@dataclass
class Difference:
    """recipe − baseline over seeds shared by both (positive: the recipe's metric is larger)."""

    mean: float
    low: float                 # 95% Student-t interval of the mean paired difference
    high: float
    p_value: float             # two-sided paired t-test of "no difference" (uncorrected)
    sd: float                  # standard deviation of the per-seed differences
    pairs: int                 # seeds used


def finite(values: Iterable) -> np.ndarray:
    return np.asarray([float(v) for v in values if v is not None and math.isfinite(float(v))],
                      dtype=float)


def mean_std(values) -> tuple[float, float]:
    array = finite(values)
    if array.size == 0:
        return math.nan, math.nan
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def paired_difference(recipe: dict[int, float], baseline: dict[int, float]) -> Difference:
    """Mean of d_s = recipe_s − baseline_s over shared seeds, its t interval and p-value.

    Pairing by seed removes what the seed does to both runs (initialisation, batch order and,
    with ``dataset.resample: per_seed``, the split), so the interval is about the regularizer.
    With one shared seed there is no interval (NaN). Differences that are all equal have no
    spread: the interval is that value, p is 1 when it is zero and undefined (NaN, so
    inconclusive) otherwise.
    """
    seeds = sorted(s for s in recipe if s in baseline
                   and all(v is not None and math.isfinite(v) for v in (recipe[s], baseline[s])))
    diffs = np.array([recipe[s] - baseline[s] for s in seeds], dtype=float)
    return difference_of(diffs)


def difference_of(diffs: np.ndarray) -> Difference:
    """The t interval and paired test of per-seed differences (see :func:`paired_difference`)."""
    diffs = np.asarray(diffs, dtype=float)
    n = int(diffs.size)
    if n == 0:
        return Difference(math.nan, math.nan, math.nan, p_value=math.nan, sd=math.nan, pairs=0)
    mean = float(diffs.mean())
    if n < 2:
        return Difference(mean, math.nan, math.nan, p_value=math.nan, sd=math.nan, pairs=n)
    sd = float(diffs.std(ddof=1))
    if sd <= TIE_TOLERANCE * max(1.0, abs(mean)):   # no spread: t is 0/0 or ±inf
        # Equal differences in every pair (one more test example right in each of 2 seeds, or
        # a convex fit that every seed solves alike) give no estimate of the noise: the
        # interval is the point, and there is no test; the verdict stays inconclusive.
        zero = abs(mean) <= TIE_TOLERANCE
        point = 0.0 if zero else mean
        return Difference(point, point, point, p_value=1.0 if zero else math.nan, sd=0.0,
                          pairs=n)
    # the paired t-test by its formula: scipy's ttest_1samp gives the same numbers
    # (tests/test_stats.py) at 10× the cost, which the coverage simulations would pay
    error = sd / math.sqrt(n)
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * error
    p_value = 2 * t_sf(abs(mean) / error, n - 1)
    return Difference(mean, mean - half, mean + half, p_value=p_value, sd=sd, pairs=n)


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


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (NaN stays NaN and is not counted).

    Sorted ascending, p_(i) is scaled by (m − i + 1), made non-decreasing and capped at 1;
    rejecting where the adjusted value is below α keeps the chance of any false claim in the
    table at α. scipy has no Holm (only Benjamini–Hochberg), and statsmodels, which does, would
    be a dependency for these lines.
    """
    values = np.asarray(p_values, dtype=float)
    adjusted = np.full(values.shape, math.nan)
    index = np.flatnonzero(~np.isnan(values))
    order = index[np.argsort(values[index], kind="stable")]
    m = order.size
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * values[i]))
        adjusted[i] = running
    return adjusted.tolist()


def decide(mean: float, adjusted_p: float, higher_is_better: bool, alpha: float = ALPHA) -> str:
    """better / worse when the corrected test rejects "no difference", else inconclusive."""
    if math.isnan(mean) or math.isnan(adjusted_p) or adjusted_p >= alpha:
        return INCONCLUSIVE
    return BETTER if (mean > 0) == higher_is_better else WORSE


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


def seeds_needed(effect: float, sd: float, alpha: float = ALPHA,
                 power: float = POWER) -> Optional[int]:
    """Fewest seeds for which a paired t-test at ``alpha`` detects a true difference of
    ``effect`` with the given power, if the differences keep the spread ``sd``; None when that
    cannot be estimated (no spread, no effect), MAX_SEEDS_ADVISED + 1 beyond the search."""
    if not (math.isfinite(effect) and math.isfinite(sd)) or sd <= 0 or effect == 0:
        return None
    low, high = 2, MAX_SEEDS_ADVISED
    if t_test_power(effect, sd, high, alpha) < power:
        return MAX_SEEDS_ADVISED + 1
    while low < high:                       # power grows with n: bisect
        middle = (low + high) // 2
        if t_test_power(effect, sd, middle, alpha) >= power:
            high = middle
        else:
            low = middle + 1
    return low
