"""Confirmation on fresh seeds (``--confirm-seeds K``).

Choosing each recipe's best sweep point on validation and then showing the test numbers of the
same seeds overstates the winner (a winner's curse: the choice fits those seeds' noise too).
The confirmation retrains the point each recipe chose, and the baseline's, on K seeds the
choice never saw, into ``OUT/<name>-confirm/``: its table is the headline comparison.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

from regbench.analysis.compare import Comparison, chosen_rows, seed_range
from regbench.errors import RegbenchError
from regbench.experiment.config import LoadedConfig, resolve_experiment
from regbench.experiment.sweeps import sweep_error
from regbench.vocabulary import MAX_SEED, format_value

CONFIRM_SUFFIX = "-confirm"   # results of the confirmation: OUT/<name>-confirm/
PER_RECIPE = ("recipes.", "train.")   # sweep keys a confirmation can set per recipe


def check_confirmable(loaded: LoadedConfig, k: int) -> None:
    """Before anything trains: K is positive and every sweep key can differ between recipes
    (``model.*`` and ``dataset.*`` are shared by all recipes, so a choice per recipe cannot be
    retrained)."""
    if k < 1:
        raise RegbenchError(f"--confirm-seeds: must be at least 1 (got {k})")
    for path in loaded.raw.get("sweep") or {}:
        if not str(path).startswith(PER_RECIPE):
            raise sweep_error(f"--confirm-seeds retrains each recipe at its own chosen values, "
                              f"but '{path}' is shared by every recipe; sweep recipes.* or "
                              "train.* keys, or confirm without this sweep", path, loaded)


def fresh_seeds(used: list[int], k: int) -> list[int]:
    """K seeds after the largest one used for the selection."""
    start = max(used) + 1
    if start + k - 1 > MAX_SEED:
        raise RegbenchError(f"--confirm-seeds: {k} seeds after seed {max(used)} would pass "
                            f"{MAX_SEED}; use smaller selection seeds")
    return list(range(start, start + k))


def chosen_points(comparison: Comparison) -> dict[str, dict[str, Any]]:
    """recipe -> {sweep key path: value} of the row each recipe chose on validation."""
    return {recipe: dict(row["sweep_paths"]) for recipe, row in chosen_rows(comparison).items()
            if row["seeds"]}


def confirm_config(loaded: LoadedConfig, comparison: Comparison, selection_seeds: list[int],
                   k: int) -> tuple[LoadedConfig, dict[str, Any]]:
    """The confirmation experiment and what it confirms (stored in its plan.json).

    Each recipe's chosen values become a one-value sweep of that recipe (``train.*`` keys move
    under ``recipes.<name>.train``), so run ids still show them: ``l2__lambda=0.1__seed=5``."""
    chosen = chosen_points(comparison)
    if "baseline" not in chosen:
        raise RegbenchError("--confirm-seeds: the baseline has no completed runs to confirm "
                            "against")
    raw = copy.deepcopy(loaded.raw)
    raw["name"] = f"{raw['name']}{CONFIRM_SUFFIX}"
    seeds = fresh_seeds(selection_seeds, k)
    raw["seeds"] = seeds
    sweep: dict[str, list[Any]] = {}
    for recipe, values in chosen.items():
        for path, value in values.items():
            key = path if path.startswith("recipes.") else f"recipes.{recipe}.{path}"
            sweep[key] = [value]
    recipes = raw.get("recipes") or {}
    dropped = [name for name in recipes if name not in chosen]
    raw["recipes"] = {"baseline": recipes.get("baseline") or {},
                      **{name: recipe for name, recipe in recipes.items() if name in chosen}}
    if sweep:
        raw["sweep"] = sweep
    else:
        raw.pop("sweep", None)
    config, _ = resolve_experiment(raw, loaded.positions, loaded.source)
    confirms = {"experiment": loaded.raw["name"], "metric": comparison.metric,
                "selection_seeds": list(selection_seeds), "seeds": seeds,
                "chosen": {recipe: {path: format_value(v) for path, v in values.items()}
                           for recipe, values in chosen.items()}}
    note = (f"confirmation: each recipe's chosen point and the baseline on {k} fresh seed(s) "
            f"{seed_range(seeds)}, results under {raw['name']}/")
    if dropped:
        note += f"; not confirmed (no completed runs to choose from): {', '.join(dropped)}"
    return dataclasses.replace(loaded, raw=raw, config=config, warnings=[note]), confirms
