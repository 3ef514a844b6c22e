"""Numbers for the gallery's rules: means and paired differences over seeds with their 95%
Student-t intervals (regbench.analysis.stats), and the run folders of one gallery experiment
read once."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from regbench.analysis import stats
from regbench.analysis.compare import build_comparison
from regbench.gallery.core import INCONCLUSIVE, NOT_REPRODUCED, PARTLY, REPRODUCED, Outcome
from regbench.report.plot_data import load_runs
from regbench.vocabulary import MIN_SEEDS

# ----------------------------------------------------------------------------- statistics

@dataclass
class Estimate:
    """Mean over seeds with a 95% t interval (NaN ends with fewer than 2 seeds)."""

    mean: float
    low: float
    high: float
    seeds: int

    def text(self, digits: int = 4, signed: bool = False) -> str:
        if math.isnan(self.mean):
            return "—"
        form = f"{{:{'+' if signed else ''}.{digits}f}}"
        if math.isnan(self.low):
            return form.format(self.mean)
        return f"{form.format(self.mean)} [{form.format(self.low)}, {form.format(self.high)}]"

    def below(self, bound: float = 0.0) -> bool:
        """The whole interval lies below ``bound``."""
        return not math.isnan(self.high) and self.high < bound

    def above(self, bound: float = 0.0) -> bool:
        return not math.isnan(self.low) and self.low > bound


def _estimate(diff: stats.Difference) -> Estimate:
    return Estimate(diff.mean, diff.low, diff.high, diff.pairs)


def mean_interval(values: Iterable[float]) -> Estimate:
    """Mean of per-seed values with its t interval over the seeds."""
    return _estimate(stats.mean_interval(values))


def paired(recipe: dict[int, float], baseline: dict[int, float]) -> Estimate:
    """recipe − baseline over shared seeds, with the paired t interval."""
    return _estimate(stats.paired_difference(recipe, baseline))


# ----------------------------------------------------------------------------- results

class Results:
    """The run folders of one gallery experiment, read once."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.runs = [r for r in load_runs(self.folder) if r.summary.get("status") == "completed"]
        self.summaries = [r.summary for r in self.runs]

    def points(self) -> list[str]:
        return sorted({r.point for r in self.runs})

    def of(self, point: str) -> list:
        return sorted((r for r in self.runs if r.point == point), key=lambda r: r.summary["seed"])

    def per_seed(self, point: str, value: Callable[[Any], float] | str) -> dict[int, float]:
        """{seed: value} for one point; ``value`` is a summary key or a function of a run."""
        get = (lambda run: run.summary.get(value)) if isinstance(value, str) else value
        out = {}
        for run in self.of(point):
            number = get(run)
            if number is not None and math.isfinite(float(number)):
                out[run.summary["seed"]] = float(number)
        return out

    def last_epoch(self) -> int:
        """The last epoch any run logged (1 when none logged any)."""
        return max((int(r.frame["epoch"].max()) for r in self.runs if r.frame is not None),
                   default=1)

    def seeds(self) -> int:
        counts = [len(self.of(p)) for p in self.points()]
        return min(counts) if counts else 0

    def comparison(self, metric: Optional[str] = None):
        return build_comparison(self.summaries, metric)


def verdict_of(holds: list[bool]) -> str:
    """All parts of a claim hold: reproduced; some: partly; none: not reproduced."""
    return REPRODUCED if all(holds) else PARTLY if any(holds) else NOT_REPRODUCED


def seed_gate(results: Results) -> Optional[Outcome]:
    """An inconclusive outcome when there are too few seeds for intervals to mean anything."""
    if results.seeds() < MIN_SEEDS:
        return Outcome(INCONCLUSIVE, f"only {results.seeds()} seed(s) per recipe: the rule needs "
                       f"{MIN_SEEDS} (a smoke run?)")
    return None
