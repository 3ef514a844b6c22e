"""Expand an experiment into runs: recipes × sweep points × seeds (× repeats × folds with
``dataset.cv``), with readable ids.

A sweep key under ``recipes.<name>.`` varies only that recipe; any other key path (e.g.
``train.optimizer.lr``) varies every recipe, baseline included. Each sweep point is validated like
the file. Run ids read ``<recipe>[__<key>=<value>...]__seed=<s>``, with each key shortened to the
shortest suffix of its path that is unique among the recipe's sweep keys
(``l2__lambda=0.1__seed=2``). With ``dataset.cv`` every seed has one run per repeat and fold,
``l2__seed=2__repeat=0__fold=3``, whose dataset section names that fold (``cv.repeat``,
``cv.fold``: all a worker needs to load its data).
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from regbench.data.base import SPLIT_METHOD, cv_warnings
from regbench.errors import ConfigError
from regbench.experiment.config import (
    LoadedConfig,
    data_errors_located,
    located_error,
    resolve_experiment,
    set_path,
)
from regbench.experiment.rules import check_experiment, check_recipe
from regbench.experiment.sweeps import check_sweep_path, sweep_error
from regbench.vocabulary import RunSpec, format_value


@dataclass
class Plan:
    """Every run of an experiment, in execution order."""

    experiment: dict[str, Any]          # resolved experiment (defaults filled in)
    runs: list[RunSpec]          # run specs (plain data; see ``run_spec``)
    warnings: list[str]
    models: dict[str, Any] = field(default_factory=dict)  # run id -> fused.ModelFacts, once built

    @property
    def total_epochs(self) -> int:
        return sum(run["train"]["epochs"] for run in self.runs)


# where, how and how often a run is checkpointed: none of it changes what it computes
RUN_PLACEMENT = ("device", "threads", "fuse", "checkpoint_every", "keep_checkpoint",
                 "runs_per_gpu")
# settings added after runs were made, at the default that reproduces those runs: left out of the
# hash, so that completed runs still resume
HASH_NEUTRAL = (("dataset", "resample", "fixed"), ("dataset", "label_noise_mode", "different"),
                ("dataset", "val_limit", None), ("dataset", "test_limit", None),
                ("dataset", "cv", None))
# how a run's numbers are computed: 3 = every draw of a fusable regularizer from the run's own
# streams, the loss as the mean of per-sample losses, member-axis max-norm, clipping, noise and
# smoothing (the same arithmetic solo and fused); 4 = weight noise and DropConnect draw from
# each layer's own run stream too. Runs computed otherwise retrain on resume instead of mixing
# with runs of the new arithmetic.
ARITHMETIC = 4


# optimizer settings added after runs were made, at the default that reproduces those runs (None:
# torch's own default)
OPTIMIZER_NEUTRAL = {"weight_decay": None, "eps": None, "momentum_decay": None, "alpha": None,
                     "centered": False}
WARMUP_KEYS = ("warmup_epochs", "warmup_method", "warmup_factor")
# cosine and step were hashed with the keys they shared when they were the only schedules
SHARED_SCHEDULE_KEYS = {"step_size": 10, "gamma": 0.1}


def _hash_neutral_train(train: dict[str, Any]) -> dict[str, Any]:
    """``train`` without the settings added later at their neutral values (above; a schedule's
    warmup keys without a warmup), and cosine and step as they were hashed before."""
    train = dict(train)
    if train.get("optimizer"):
        train["optimizer"] = {k: v for k, v in train["optimizer"].items()
                              if k not in OPTIMIZER_NEUTRAL or v != OPTIMIZER_NEUTRAL[k]}
    schedule = train.get("scheduler")
    if schedule and not schedule.get("warmup_epochs"):
        schedule = {k: v for k, v in schedule.items() if k not in WARMUP_KEYS}
        if schedule["name"] in ("cosine", "step"):
            schedule = {**SHARED_SCHEDULE_KEYS, **schedule}
        train["scheduler"] = schedule
    return train


def config_hash(spec: RunSpec) -> str:
    """Hash of everything that changes what a run computes (a resumed run must match it)."""
    keys = ("recipe", "seed", "dataset", "model", "train", "regularizers", "sweep")
    payload = {k: spec[k] for k in keys}
    # where and with how many threads a run trains does not change what it computes (beyond
    # float rounding): resuming with another --device or --workers keeps completed runs
    payload["train"] = {k: v for k, v in spec["train"].items() if k not in RUN_PLACEMENT}
    if payload["dataset"].get("cv"):
        # a fold's rows do not depend on how many repeats there are (the r-th partition is the
        # r-th its seed's generator draws): raising repeats keeps the completed runs
        payload["dataset"] = {**payload["dataset"], "cv": {
            k: v for k, v in payload["dataset"]["cv"].items() if k != "repeats"}}
    for section, key, default in HASH_NEUTRAL:
        if payload[section].get(key, default) == default:
            payload[section] = {k: v for k, v in payload[section].items() if k != key}
    payload["train"] = _hash_neutral_train(payload["train"])
    payload["split_method"] = SPLIT_METHOD   # how rows were split: another way, another run
    payload["arithmetic"] = ARITHMETIC
    payload = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def short_names(paths: list[str]) -> dict[str, str]:
    """Shortest unique suffix of each key path: recipes.l2.l2.lambda -> lambda."""
    names = {}
    for path in paths:
        parts = path.split(".")
        for length in range(1, len(parts) + 1):
            if sum(p.split(".")[-length:] == parts[-length:] for p in paths) == 1:
                names[path] = ".".join(parts[-length:])
                break
        else:
            names[path] = path
    return names


def _point_experiment(loaded: LoadedConfig, recipe: str, values: dict[str, Any],
                      short: dict[str, str]) -> dict[str, Any]:
    """Resolve the experiment with one sweep point's values set; errors point at the sweep key."""
    raw = copy.deepcopy(loaded.raw)
    raw.setdefault("recipes", {})
    if recipe == "baseline" and "baseline" not in raw["recipes"]:
        raw["recipes"]["baseline"] = {}
    raw.pop("sweep", None)
    described = ", ".join(f"{short[p]}={format_value(v)}" for p, v in values.items())
    where = f" [sweep point {described}]" if len(values) > 1 else ""
    for path, value in values.items():
        try:
            set_path(raw, path, value, f"sweep {path}")
        except ConfigError as exc:
            raise sweep_error(exc.message, path, loaded) from None
    try:
        _, experiment = resolve_experiment(raw, loaded.positions, loaded.source)
    except ConfigError as exc:
        if exc.path in values:
            raise sweep_error(f"{exc.message}{where}", exc.path,
                              loaded) from None
        raise ConfigError(f"{exc.message} [sweep point {described}]", path=exc.path,
                          source=exc.source, line=exc.line, column=exc.column) from None
    return experiment


def typed_value(experiment: dict[str, Any], path: str, default: Any) -> Any:
    """The value a sweep path resolved to (``lambda: 1`` is the float 1.0 once validated)."""
    parts = path.split(".")
    if parts[0] == "recipes":
        recipe = experiment["recipes"][parts[1]]
        node = recipe["train"] if parts[2] == "train" else recipe["regularizers"][parts[2]]
        parts = parts[3:]
    else:
        node = experiment
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def build_plan(loaded: LoadedConfig, seeds: Sequence[int] | None = None,
               device: str | None = None, fuse: str | None = None) -> Plan:
    """All runs of the experiment; every sweep point is validated before anything runs.
    ``seeds`` replace the config's; ``device`` and ``fuse`` (placement: never in a run's
    hash) replace ``train.device`` and ``train.fuse`` in every run.

    Order: recipe (as in the file, baseline first) → sweep point (grid order) → seed.
    """
    with data_errors_located(loaded):
        plan = _build_plan(loaded, seeds, device)
    if fuse:
        plan.experiment["train"]["fuse"] = fuse
        for run in plan.runs:
            run["train"] = {**run["train"], "fuse": fuse}
    return plan


def _build_plan(loaded: LoadedConfig, seeds: Sequence[int] | None, device: str | None) -> Plan:
    _, experiment = resolve_experiment(loaded.raw, loaded.positions, loaded.source)
    seeds = list(seeds) if seeds else experiment["seeds"]
    experiment["seeds"] = seeds
    if device:
        experiment["train"]["device"] = device
    sweep = experiment["sweep"]
    recipes = experiment["recipes"]
    owners = {path: check_sweep_path(path, experiment, loaded) for path in sweep}
    warnings = list(loaded.warnings) + check_experiment(experiment) + \
        cv_warnings(experiment["dataset"])
    folds = cv_folds(experiment["dataset"])
    runs: list[RunSpec] = []
    for recipe in recipes:
        paths = [p for p in sweep if owners[p] in (None, recipe)]
        short = short_names(paths)   # unique within this recipe's run ids
        for point in itertools.product(*(sweep[p] for p in paths)):
            values = dict(zip(paths, point))
            point_experiment = (_point_experiment(loaded, recipe, values, short) if values
                                else copy.deepcopy(experiment))
            values = {p: typed_value(point_experiment, p, v) for p, v in values.items()}
            if device:
                point_experiment["train"]["device"] = device
            resolved_recipe = point_experiment["recipes"][recipe]
            for warning in check_recipe(point_experiment, recipe, resolved_recipe, loaded):
                if warning not in warnings:
                    warnings.append(warning)
            for seed in seeds:
                for fold in folds:
                    runs.append(run_spec(point_experiment, recipe, resolved_recipe, seed,
                                         sweep_values=values, short=short,
                                         experiment_train=experiment["train"], fold=fold))
    _refuse_duplicates(runs, loaded)
    return Plan(experiment=experiment, runs=runs, warnings=warnings)


NAME_MAX = 255   # bytes in one file name on Linux and macOS file systems


def _refuse_duplicates(runs: list[RunSpec], loaded: LoadedConfig) -> None:
    """Two sweep values that print alike (1 and 1.0) would share one run folder; a run id
    longer than a file name may be would fail only after training."""
    seen: dict[str, dict[str, Any]] = {}
    for run in runs:
        length = len(run["run_id"].encode("utf-8"))
        if length > NAME_MAX:
            message = (f"the run id '{run['run_id'][:60]}…' is {length} bytes; a run folder name "
                       f"may have at most {NAME_MAX}: shorten the recipe name or the swept values")
            path = next(iter(run["sweep_paths"]), None)
            if path:
                raise sweep_error(message, path, loaded)
            raise located_error(message, ("recipes", run["recipe"]), loaded.positions,
                                loaded.source)
        other = seen.setdefault(run["run_id"], run)
        if other is not run:
            path = next(iter(run["sweep_paths"]), "")
            raise sweep_error(f"two sweep values give the same run id '{run['run_id']}' "
                              "(e.g. 1 and 1.0); remove the duplicate", path, loaded)


def cv_folds(dataset: dict[str, Any]) -> list[Optional[tuple[int, int]]]:
    """The (repeat, fold) of each run of a seed with ``dataset.cv``; [None] without it."""
    cv = dataset.get("cv")
    if not cv:
        return [None]
    return [(repeat, fold) for repeat in range(cv["repeats"]) for fold in range(cv["folds"])]


def run_spec(experiment: dict[str, Any], recipe: str, resolved_recipe: dict[str, Any],
             seed: int, sweep_values: dict[str, Any], short: dict[str, str],
             experiment_train: dict[str, Any],
             fold: Optional[tuple[int, int]] = None) -> RunSpec:
    """One run; ``fold``: its (repeat, fold) with ``dataset.cv``, named in its id, its
    dataset section (what its data are) and the spec's ``repeat`` and ``fold``."""
    parts = [recipe] + [f"{short[p]}={format_value(v)}" for p, v in sweep_values.items()]
    run_id = "__".join(parts + [f"seed={seed}"])
    dataset = experiment["dataset"]
    if fold is not None:
        run_id += f"__repeat={fold[0]}__fold={fold[1]}"
        dataset = {**dataset, "cv": {**dataset["cv"], "repeat": fold[0], "fold": fold[1]}}
    train = resolved_recipe["train"]
    spec = {
        "run_id": run_id,
        "point_id": "__".join(parts),
        "experiment": experiment["name"],
        "recipe": recipe,
        "seed": seed,
        "sweep": {short[p]: v for p, v in sweep_values.items()},
        "sweep_paths": dict(sweep_values),     # full key path -> value (typed by the schema)
        "dataset": dataset,
        "model": experiment["model"],
        "train": train,
        "regularizers": resolved_recipe["regularizers"],
        "train_differs": _differs(train, experiment_train, sweep_values),
        "diagnosis": experiment["diagnosis"],
    }
    if fold is not None:
        spec["repeat"], spec["fold"] = fold
    spec["config_hash"] = config_hash(spec)
    return spec


def _differs(train: dict[str, Any], experiment_train: dict[str, Any],
             sweep_values: dict[str, Any]) -> bool:
    """A recipe whose training settings differ from the experiment's (not by a global sweep)."""
    if any(p.startswith("train.") or p.split(".")[2:3] == ["train"] for p in sweep_values):
        return False      # a swept training setting (global, or a recipe's own): not a †
    return train != experiment_train
