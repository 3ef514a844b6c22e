"""Expand an experiment into runs: recipes × sweep points × seeds, with readable ids.

A sweep key under ``recipes.<name>.`` varies only that recipe; any other key path (e.g.
``train.optimizer.lr``) varies every recipe. Each sweep point is validated like the file.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from regbench.config import (LoadedConfig, located_error, resolve_experiment, set_path)
from regbench.compat import check_recipe
from regbench.config.schema import ExperimentConfig
from regbench.errors import ConfigError


@dataclass
class Plan:
    """Every run of an experiment, in execution order."""

    experiment: dict[str, Any]          # resolved experiment (defaults filled in)
    runs: list[dict[str, Any]]          # run specs (plain data; see ``run_spec``)
    warnings: list[str]

    @property
    def total_epochs(self) -> int:
        return sum(run["train"]["epochs"] for run in self.runs)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (list, tuple)):
        text = "-".join(format_value(v) for v in value)
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)


def config_hash(spec: dict[str, Any]) -> str:
    """Hash of everything that changes what a run computes."""
    keys = ("recipe", "seed", "dataset", "model", "train", "regularizers", "sweep")
    payload = json.dumps({k: spec[k] for k in keys}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _short_names(paths: list[str]) -> dict[str, str]:
    """Shortest unique suffix of each key path: recipes.l2.l2.lambda -> lambda."""
    names = {}
    for path in paths:
        parts = path.split(".")
        for length in range(1, len(parts) + 1):
            candidate = ".".join(parts[-length:])
            if sum(p.split(".")[-length:] == parts[-length:] for p in paths) == 1:
                names[path] = candidate
                break
        else:
            names[path] = path
    return names


def _sweep_owner(path: str, recipes: dict[str, Any], loaded: LoadedConfig) -> str | None:
    parts = path.split(".")
    if parts[0] == "recipes":
        if len(parts) < 3:
            raise located_error(f"sweep path '{path}' must name a recipe and a setting "
                                "(recipes.<recipe>.<regularizer>.<parameter>)",
                                ("sweep", path), loaded.positions, loaded.source)
        if parts[1] not in recipes:
            raise located_error(f"sweep path '{path}' matches no recipe; recipes are: "
                                f"{', '.join(recipes)}", ("sweep", path), loaded.positions,
                                loaded.source)
        return parts[1]
    if parts[0] in ("name", "seeds", "sweep", "diagnosis"):
        raise located_error(f"sweep path '{path}' cannot be swept (sweep dataset.*, model.*, "
                            "train.* or recipes.*)", ("sweep", path), loaded.positions,
                            loaded.source)
    if parts[0] not in ExperimentConfig.model_fields:
        raise located_error(f"sweep path '{path}' matches no setting; it must start with "
                            "dataset, model, train or recipes", ("sweep", path),
                            loaded.positions, loaded.source)
    return None


def build_plan(loaded: LoadedConfig, seeds: list[int] | None = None,
               device: str | None = None) -> Plan:
    """All runs of the experiment; every sweep point is validated before anything runs."""
    config, experiment = resolve_experiment(loaded.raw, loaded.positions, loaded.source)
    seeds = list(seeds) if seeds else experiment["seeds"]
    experiment["seeds"] = seeds
    if device:
        experiment["train"]["device"] = device
    sweep = experiment["sweep"]
    recipes = experiment["recipes"]
    owners = {path: _sweep_owner(path, recipes, loaded) for path in sweep}
    short = _short_names(list(sweep))
    warnings = list(loaded.warnings)
    runs: list[dict[str, Any]] = []
    for recipe in recipes:
        paths = [p for p in sweep if owners[p] in (None, recipe)]
        for point in itertools.product(*(sweep[p] for p in paths)):
            values = dict(zip(paths, point))
            if values:
                raw = copy.deepcopy(loaded.raw)
                raw.setdefault("recipes", {})
                if recipe == "baseline" and "baseline" not in raw["recipes"]:
                    raw["recipes"]["baseline"] = {}
                raw.pop("sweep", None)
                for path, value in values.items():
                    set_path(raw, path, value, f"sweep {path}")
                positions = {**loaded.positions}
                for path in values:
                    # errors in a swept value point at its line in `sweep:`
                    key = tuple(path.split("."))
                    positions[key] = loaded.positions.get(("sweep", path), (0, 0))
                try:
                    _, point_experiment = resolve_experiment(raw, positions, loaded.source)
                except ConfigError as exc:
                    exc.message = f"{exc.message} [sweep value {format_value(values)}]"
                    raise ConfigError(exc.message, path=exc.path, source=exc.source,
                                      line=exc.line, column=exc.column) from None
                if device:
                    point_experiment["train"]["device"] = device
            else:
                point_experiment = experiment
            resolved_recipe = point_experiment["recipes"][recipe]
            for warning in check_recipe(point_experiment, recipe, resolved_recipe, loaded):
                if warning not in warnings:
                    warnings.append(warning)
            for seed in seeds:
                runs.append(run_spec(point_experiment, recipe, resolved_recipe, seed, values,
                                     short, experiment["train"]))
    return Plan(experiment=experiment, runs=runs, warnings=warnings)


def run_spec(experiment: dict[str, Any], recipe: str, resolved_recipe: dict[str, Any],
             seed: int, sweep_values: dict[str, Any], short: dict[str, str],
             experiment_train: dict[str, Any]) -> dict[str, Any]:
    parts = [recipe] + [f"{short[p]}={format_value(v)}" for p, v in sweep_values.items()]
    run_id = "__".join(parts + [f"seed={seed}"])
    train = resolved_recipe["train"]
    spec = {
        "run_id": run_id,
        "point_id": "__".join(parts),
        "experiment": experiment["name"],
        "recipe": recipe,
        "seed": seed,
        "sweep": {short[p]: v for p, v in sweep_values.items()},
        "sweep_paths": dict(sweep_values),
        "dataset": experiment["dataset"],
        "model": experiment["model"],
        "train": train,
        "regularizers": resolved_recipe["regularizers"],
        "train_differs": _differs(train, experiment_train, sweep_values),
        "diagnosis": experiment["diagnosis"],
    }
    spec["config_hash"] = config_hash(spec)
    return spec


def _differs(train: dict[str, Any], experiment_train: dict[str, Any],
             sweep_values: dict[str, Any]) -> bool:
    """A recipe whose training settings differ from the experiment's (not by a global sweep)."""
    if any(p.startswith("train.") for p in sweep_values):
        return False
    return train != experiment_train
