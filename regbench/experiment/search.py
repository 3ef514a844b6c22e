"""The ``search:`` section: what ``regbench tune`` may try for each key, checked before anything
trains::

    search:
      recipes.l2.l2.lambda: {low: 1.0e-3, high: 1.0e+3, log: true}
      recipes.dropout.dropout.p: {low: 0.0, high: 0.8}
      train.optimizer.lr: {low: 1.0e-3, high: 0.3, log: true}

A path under ``recipes.<name>.`` is searched for that recipe only; a ``train.*`` path for every
recipe, the baseline included, each on its own trials (every recipe tunes its own learning
rate). ``dataset.*`` and ``model.*`` are shared by all recipes and cannot be chosen per recipe.
Both ends of a range and every choice are validated as the parameter's value, so a range the
parameter cannot take (p up to 1.2, a negative λ) is a located error, not a failed trial.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Optional

from regbench.errors import ConfigError
from regbench.experiment.config import LoadedConfig, located_error, resolve_experiment, set_path
from regbench.experiment.plan import typed_value
from regbench.experiment.sweeps import check_sweep_path, sweep_error

PER_RECIPE = ("recipes.", "train.")   # paths a recipe can take its own value of


@dataclass(frozen=True)
class SearchParam:
    """One searched key: a numeric range or a list of choices, typed by its parameter."""

    path: str
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: Optional[tuple] = None
    integer: bool = False             # an integer parameter (epochs, a patience): int values

    @property
    def name(self) -> str:
        return self.path.split(".")[-1]

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.name} in {{{', '.join(map(str, self.choices))}}}"
        scale = ", log" if self.log else (f", step {self.step:g}" if self.step else "")
        return f"{self.name} in [{self.low:g}, {self.high:g}{scale}]"

    def distribution(self):
        """The Optuna distribution trials are drawn from."""
        import optuna  # deferred: only `regbench tune` uses it

        if self.choices is not None:
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.integer:
            return optuna.distributions.IntDistribution(int(self.low), int(self.high),
                                                        log=self.log,
                                                        step=int(self.step or 1))
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log,
                                                      step=self.step)

    def grid_size(self, points: int) -> int:
        """``len(self.grid(points))`` (for ``points`` >= 2), counted without building the list:
        a grid is checked against its limit before Optuna enumerates it."""
        if self.choices is not None:
            return len(self.choices)
        if self.integer or self.step:
            return min(points, int(math.floor((self.high - self.low) / (self.step or 1)
                                              + 1e-9)) + 1)
        return points

    def grid(self, points: int) -> list:
        """``points`` values spread over the range (all of them for choices, or when the range
        holds fewer), for the grid sampler."""
        if self.choices is not None:
            return list(self.choices)
        if self.integer or self.step:
            step = self.step or 1
            count = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
            picks = sorted({round(i * (count - 1) / max(1, points - 1)) for i in range(points)})
            values = [self.low + i * step for i in picks] if count > points else \
                [self.low + i * step for i in range(count)]
            return [int(v) for v in values] if self.integer else values
        if points == 1:
            return [math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2]
        if self.log:
            ratio = math.log(self.high / self.low)
            values = [self.low * math.exp(ratio * i / (points - 1)) for i in range(points)]
        else:
            values = [self.low + (self.high - self.low) * i / (points - 1) for i in range(points)]
        return [min(max(v, self.low), self.high) for v in values]   # no rounding past an end


def search_error(message: str, path: str, loaded: LoadedConfig, key: str = "") -> ConfigError:
    """A ConfigError at the search key (or one of its keys: low, high, choices)."""
    if key:
        return located_error(message, ("search", path, key), loaded.positions, loaded.source)
    return sweep_error(message, path, loaded, section="search")


def _value_at(loaded: LoadedConfig, path: str, value: Any, recipe: str, key: str) -> Any:
    """``value`` validated as the parameter at ``path`` of ``recipe`` (typed as the schema reads
    it); a value the parameter cannot take is a located error at search.<path>.<key>."""
    raw = copy.deepcopy(loaded.raw)
    raw.pop("sweep", None)
    raw.pop("search", None)
    raw.setdefault("recipes", {}).setdefault(recipe, raw["recipes"].get(recipe) or {})
    target = path if path.startswith("recipes.") else f"recipes.{recipe}.{path}"
    set_path(raw, target, value, f"search {path}")
    try:
        _, experiment = resolve_experiment(raw, loaded.positions, loaded.source)
    except ConfigError as exc:
        raise search_error(f"{key} {value!r} is not a value this setting takes: {exc.message}",
                           path, loaded, key) from None
    return typed_value(experiment, target, value)


def _checked(path: str, spec: dict[str, Any], recipe: str, loaded: LoadedConfig) -> SearchParam:
    if "choices" in spec:
        choices = tuple(_value_at(loaded, path, choice, recipe, "choices")
                        for choice in spec["choices"])
        return SearchParam(path, choices=choices)
    low = _value_at(loaded, path, spec["low"], recipe, "low")
    high = _value_at(loaded, path, spec["high"], recipe, "high")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (low, high)):
        raise search_error(f"{path} takes {type(low).__name__} values, not a numeric range; "
                           "list them as choices: [...]", path, loaded)
    integer = isinstance(low, int) and isinstance(high, int)
    step = spec.get("step")
    if integer and step is not None and float(step) != int(step):
        raise search_error(f"{path} is an integer setting: step must be a whole number (got "
                           f"{step:g})", path, loaded, "step")
    if step is not None and step > high - low:
        raise search_error(f"step {step:g} is wider than the range [{low:g}, {high:g}]", path,
                           loaded, "step")
    return SearchParam(path, low=low, high=high, log=bool(spec.get("log")), step=step,
                       integer=integer)


def search_space(loaded: LoadedConfig, experiment: dict[str, Any]) -> dict[str, list[SearchParam]]:
    """recipe -> its searched parameters, in the file's order (recipes with none left out)."""
    space: dict[str, list[SearchParam]] = {}
    seen: dict[str, str] = {}     # recipes.<r>.<key> -> the search path that set it
    for path, spec in experiment.get("search", {}).items():
        owner = check_sweep_path(path, experiment, loaded, section="search")
        if not path.startswith(PER_RECIPE):
            raise search_error(f"'{path}' is shared by every recipe, so a recipe cannot be tuned "
                               "on it; search a recipe's own settings (recipes.<name>.…) or "
                               "train.* (each recipe then tunes its own value)", path, loaded)
        for recipe in [owner] if owner else list(experiment["recipes"]):
            key = path if owner else f"recipes.{recipe}.{path}"
            if key in seen:
                raise search_error(f"recipe '{recipe}' would search this setting twice (also "
                                   f"as '{seen[key]}'); keep one of the two", path, loaded)
            seen[key] = path
            space.setdefault(recipe, []).append(_checked(path, spec, recipe, loaded))
    return space


def grid_points(trials: int, params: list[SearchParam]) -> int:
    """Values per searched key of the grid sampler: N trials spread over d keys as N^(1/d) each
    (at least 2)."""
    return max(2, math.ceil(trials ** (1 / len(params))))


def grid_size(trials: int, params: list[SearchParam]) -> int:
    """How many points the grid of ``trials`` over ``params`` holds, by arithmetic alone."""
    points = grid_points(trials, params)
    return math.prod(p.grid_size(points) for p in params)
