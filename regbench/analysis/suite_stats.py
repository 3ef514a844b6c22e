"""The statistics of a suite: one answer across many tasks (``regbench suite``).

Every function takes plain numbers (no folders) and is checked in ``tests/test_suite_stats.py``
against an independent computation or, for an interval, its coverage in a simulation.

- **Normalised improvement** of a recipe on task t and seed s: the relative error reduction
  ``(e_baseline[t,s] − e_recipe[t,s]) / mean_s e_baseline[t,s]``, paired by seed; the error is
  1 − accuracy for classification and the MSE for regression, so it is comparable between
  them (positive: better, 0.05 = 5% less error than the baseline).
- **IQM and mean** (Agarwal et al. 2021, rliable): the 25% trimmed mean of all task × seed
  values pooled, and the mean over tasks of each task's mean.
- **Stratified bootstrap interval**: seeds resampled within each task (rliable's stratified
  bootstrap), through ``scipy.stats.bootstrap``, whose samples are resampled independently of
  one another — one sample per task is exactly the stratification. Deviation from rliable, for
  coverage at few seeds: its plain percentile interval covers 86% at 3 seeds × 6 tasks (a
  stratum of n values resamples with (n−1)/n of its variance, and a 3-seed spread is itself
  uncertain), so each resampled value is rescaled around its task's mean by √(n/(n−1)) (Rao &
  Wu 1988's rescaling bootstrap for stratified samples) and the percentiles are read at the
  expanded level where the normal quantile equals Student t's with Welch–Satterthwaite degrees
  of freedom of the stratified mean (Hesterberg 2015's expanded percentile interval): 94% in
  the same simulation. A task needs two seeds or more for an interval.
- **Probability of improvement** (rliable): the mean over tasks of P(X > Y), X a recipe's seed
  score and Y the baseline's on that task (the Mann–Whitney U statistic ÷ n·m, ties counted
  half), with rliable's stratified percentile bootstrap interval (each method's seeds
  resampled within each task).
- **Verdict**: the Wilcoxon signed-rank test over tasks of each task's mean normalised
  improvement (Demšar 2006, for two methods over several data sets; zero differences split
  between the signs), Holm over the recipes. Its p cannot fall below 2/2^N with N tasks.
- **Friedman test and Nemenyi critical difference** over all recipes (Demšar 2006): average
  ranks of each task's mean error, CD = q_α·√(k(k+1)/(6N)), q_α the studentized range's
  quantile ÷ √2.
"""
from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
from scipy import stats

from regbench.analysis.stats import probability_of_improvement as improvement

LEVEL = 0.95            # every interval of the suite table
ALPHA = 0.05            # a verdict needs the Holm-adjusted p below this
RESAMPLES = 4000        # bootstrap resamples per interval
BOOTSTRAP_SEED = 0      # the same folders give the same intervals
TRIM = 0.25             # the IQM: the mean of the middle 50%


def relative_error_reduction(baseline: dict, recipe: dict) -> dict:
    """seed -> (e_baseline − e_recipe) / mean e_baseline, over the seeds both completed; the
    denominator is the mean over every completed baseline seed. Empty when the baseline's
    mean error is 0 (nothing to reduce) or not finite."""
    errors = [e for e in baseline.values() if math.isfinite(e)]
    scale = float(np.mean(errors)) if errors else math.nan
    if not (math.isfinite(scale) and scale > 0):
        return {}
    return {seed: (baseline[seed] - recipe[seed]) / scale for seed in recipe
            if seed in baseline and math.isfinite(recipe[seed]) and math.isfinite(baseline[seed])}


def iqm(values: Sequence[float]) -> float:
    """rliable's interquartile mean: ``scipy.stats.trim_mean(values, 0.25)`` of all values."""
    values = np.asarray(values, dtype=float).ravel()
    return float(stats.trim_mean(values, TRIM)) if values.size else math.nan


def mean_of_means(samples: Sequence[Sequence[float]]) -> float:
    """rliable's mean: each task's mean, then their mean (every task weighs the same)."""
    return float(np.mean([np.mean(s) for s in samples])) if samples else math.nan


def _rng_option() -> str:
    """scipy ≥ 1.15 names the generator ``rng``; earlier ones ``random_state``."""
    return "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"


def expanded_level(samples: Sequence[np.ndarray], level: float = LEVEL) -> float:
    """The percentile level whose normal quantile equals Student t's at ``level`` with the
    Welch–Satterthwaite degrees of freedom of a stratified mean (Hesterberg 2015)."""
    shares = np.array([np.var(s, ddof=1) / len(s) for s in samples])
    dof = np.array([len(s) - 1 for s in samples], dtype=float)
    df = shares.sum() ** 2 / np.sum(shares ** 2 / dof)
    return min(2 * stats.norm.cdf(stats.t.ppf((1 + level) / 2, df)) - 1, 0.999)


def stratified_interval(samples: Sequence[Sequence[float]],
                        statistic: Callable[[list[np.ndarray]], np.ndarray],
                        level: float = LEVEL, resamples: int = RESAMPLES,
                        seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """The rescaled, expanded stratified bootstrap interval (module docstring) of
    ``statistic(list of per-task arrays, resampled along the last axis)``; NaNs when a task
    has fewer than two values."""
    arrays = [np.asarray(s, dtype=float) for s in samples]
    if not arrays or any(a.size < 2 for a in arrays):
        return math.nan, math.nan
    if all(np.ptp(a) == 0 for a in arrays):      # no spread anywhere: nothing to resample
        value = float(statistic(arrays))
        return value, value
    centres = [a.mean() for a in arrays]
    scales = [math.sqrt(a.size / (a.size - 1)) for a in arrays]

    def rescaled(*drawn, axis=-1):
        return statistic([c + k * (d - c) for d, c, k in zip(drawn, centres, scales)])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # DegenerateDataWarning: a task with no spread
        result = stats.bootstrap(tuple(arrays), rescaled, vectorized=True, paired=False,
                                 method="percentile", n_resamples=resamples,
                                 confidence_level=expanded_level(arrays, level),
                                 **{_rng_option(): np.random.default_rng(seed)})
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def pooled_iqm(drawn: list[np.ndarray]) -> np.ndarray:
    """IQM over tasks pooled, for arrays with the resamples on the leading axes."""
    return stats.trim_mean(np.concatenate(drawn, axis=-1), TRIM, axis=-1)


def stacked_mean(drawn: list[np.ndarray]) -> np.ndarray:
    """The mean of task means, for arrays with the resamples on the leading axes."""
    return np.mean(np.stack([d.mean(axis=-1) for d in drawn], axis=-1), axis=-1)


def _improvement_chance(recipe: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """P(recipe error < baseline error) over all seed pairs, ties counted half (U ÷ n·m)."""
    x, y = recipe[..., :, None], baseline[..., None, :]
    return np.mean((x < y) + 0.5 * (x == y), axis=(-2, -1))


def probability_of_improvement(recipe: Sequence[Sequence[float]],
                               baseline: Sequence[Sequence[float]]) -> float:
    """rliable's P(improve): per task, the chance that a recipe's seed has the lower error than
    a baseline's seed (ties half; a run with no error left out), averaged over tasks."""
    chances = [improvement(r, b, higher_is_better=False) for r, b in zip(recipe, baseline)]
    return float(np.nanmean(chances)) if chances and not np.all(np.isnan(chances)) else math.nan


def improvement_interval(recipe: Sequence[Sequence[float]], baseline: Sequence[Sequence[float]],
                         level: float = LEVEL, resamples: int = RESAMPLES,
                         seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """rliable's interval of P(improve): each method's seeds resampled within each task, the
    percentile interval; NaNs when a task has fewer than two seeds of either."""
    arrays = [np.asarray(a, dtype=float) for pair in zip(recipe, baseline) for a in pair]
    if not arrays or any(a.size < 2 for a in arrays):
        return math.nan, math.nan

    def chance(*drawn, axis=-1):
        pairs = zip(drawn[0::2], drawn[1::2])
        return np.mean(np.stack([_improvement_chance(r, b) for r, b in pairs], axis=-1),
                       axis=-1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.bootstrap(tuple(arrays), chance, vectorized=True, paired=False,
                                 method="percentile", n_resamples=resamples,
                                 confidence_level=level,
                                 **{_rng_option(): np.random.default_rng(seed)})
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def signed_rank_test(values: Sequence[float]) -> tuple[float, int]:
    """Wilcoxon's signed-rank test that the per-task values are centred on 0 (two-sided; zero
    differences split between the signs, as Demšar 2006 advises): (p, direction), the
    direction +1 when the positive ranks outweigh the negative, −1 the other way, 0 even."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return math.nan, 0
    ranks = stats.rankdata(np.abs(values))
    lead = ranks[values > 0].sum() - ranks[values < 0].sum()
    if not np.any(values):
        return 1.0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # scipy warns on ties and zeros at small n
        p = stats.wilcoxon(values, zero_method="zsplit").pvalue
    return (1.0 if math.isnan(p) else float(p)), int(np.sign(lead))


def smallest_signed_rank_p(tasks: int) -> float:
    """The least two-sided p the exact signed-rank test can give over ``tasks`` tasks: every
    task on one side, 2 / 2^N."""
    return min(1.0, 2.0 / 2 ** tasks) if tasks else 1.0


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count)."""
    order = [i for i in np.argsort(pvalues, kind="stable") if not math.isnan(pvalues[i])]
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for step, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - step) * pvalues[i]))
        adjusted[i] = running
    return adjusted


@dataclass
class Friedman:
    """The Friedman test over a tasks × recipes table and the Nemenyi critical difference."""

    recipes: list[str]
    tasks: int
    average_ranks: dict[str, float]     # 1 = the lowest error on every task
    statistic: float
    p_value: float
    critical_difference: float          # two recipes further apart in average rank differ
    q_alpha: float                      # the studentized range's quantile ÷ √2


def friedman_nemenyi(errors: np.ndarray, recipes: Sequence[str],
                     alpha: float = ALPHA) -> Optional[Friedman]:
    """Average ranks (each task's lowest error ranked 1, ties averaged), Friedman's χ² test
    (``scipy.stats.friedmanchisquare``) and Nemenyi's CD; None below 3 recipes or 2 tasks."""
    errors = np.asarray(errors, dtype=float)
    tasks, k = errors.shape if errors.ndim == 2 else (0, 0)
    if k < 3 or tasks < 2:
        return None
    ranks = np.apply_along_axis(stats.rankdata, 1, errors).mean(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # every task ranking alike: p is still defined
        test = stats.friedmanchisquare(*errors.T)
    q = float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))
    return Friedman(recipes=list(recipes), tasks=tasks,
                    average_ranks=dict(zip(recipes, map(float, ranks))),
                    statistic=float(test.statistic), p_value=float(test.pvalue),
                    critical_difference=q * math.sqrt(k * (k + 1) / (6 * tasks)), q_alpha=q)


def geometric_mean(values: Sequence[float]) -> float:
    """Of the positive, finite values (a time ratio); NaN when there is none."""
    kept = [v for v in values if v > 0 and math.isfinite(v)]
    return float(stats.gmean(kept)) if kept else math.nan


def performance_profile(errors: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Dolan & Moré's performance profile: for each recipe (column) and τ, the fraction of
    tasks (rows) whose error is at most τ × that task's best error."""
    errors = np.asarray(errors, dtype=float)
    best = errors.min(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(errors == best, 1.0, errors / best)
    return (ratios[None, :, :] <= np.asarray(taus)[:, None, None]).mean(axis=1)
