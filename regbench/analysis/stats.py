"""Statistics over seeds: mean ± std, and a paired bootstrap of the difference to baseline."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000   # resamples of the seeds
CONFIDENCE = 0.95              # interval coverage
BOOTSTRAP_SEED = 0             # fixed: the same runs always give the same interval
TIE_TOLERANCE = 1e-12          # |bootstrap mean| below this is a tie (float noise of a − b)


@dataclass
class Difference:
    """recipe − baseline over seeds shared by both (higher = recipe larger)."""

    mean: float
    low: float                 # lower end of the 95% bootstrap interval
    high: float                # upper end
    p_better: float            # bootstrap probability that the recipe beats the baseline
    pairs: int                 # seeds used


def mean_std(values) -> tuple[float, float]:
    array = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if array.size == 0:
        return math.nan, math.nan
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def paired_difference(recipe: dict[int, float], baseline: dict[int, float],
                      higher_is_better: bool = True,
                      resamples: int = BOOTSTRAP_RESAMPLES) -> Difference:
    """Bootstrap the mean of per-seed differences d_s = recipe_s − baseline_s (percentile interval).

    Pairing by seed removes what the seed does to both runs (same split, same initialisation), so
    the interval is about the regularizer alone. Resample the seeds with replacement B times,
    take the mean of each resample: the interval is the 2.5% and 97.5% percentiles of those
    means, and P(better) is the share of them on the recipe's better side (ties count half).
    With one shared seed the interval is undefined (NaN).
    """
    seeds = sorted(s for s in recipe if s in baseline
                   and all(v is not None and math.isfinite(v) for v in (recipe[s], baseline[s])))
    if not seeds:
        return Difference(math.nan, math.nan, math.nan, math.nan, 0)
    diffs = np.array([recipe[s] - baseline[s] for s in seeds], dtype=float)
    if diffs.size < 2:
        return Difference(float(diffs.mean()), math.nan, math.nan, math.nan, int(diffs.size))
    from scipy import stats

    result = stats.bootstrap((diffs,), np.mean, n_resamples=resamples,
                             confidence_level=CONFIDENCE, method="percentile",
                             random_state=np.random.default_rng(BOOTSTRAP_SEED))
    means = result.bootstrap_distribution
    ties = np.abs(means) <= TIE_TOLERANCE
    better = ~ties & ((means > 0) if higher_is_better else (means < 0))
    p_better = float(better.mean() + 0.5 * ties.mean())
    low, high = result.confidence_interval
    if not math.isfinite(low):  # every resample equal (no spread): the interval is the point
        low = high = float(diffs.mean())
    return Difference(float(diffs.mean()), float(low), float(high), p_better, int(diffs.size))
