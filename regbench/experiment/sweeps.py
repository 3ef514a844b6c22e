"""Sweep grids: the file's ``sweep:``, command-line ``--param key.path=v1,v2``, the checks that
every swept key path names a real setting, and the ``--smoke`` budget.

A sweep key is a dotted path into the config, e.g. ``recipes.l2.l2.lambda`` (one recipe's
regularizer parameter), ``recipes.dropout_long.train.epochs`` (one recipe's training setting) or
``train.optimizer.lr`` (every recipe). A path that matches no setting is a located error, never a
silently added key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Iterable, Optional, Union, get_args, get_origin

from pydantic import BaseModel

from regbench.config.schema import (
    SCHEDULES,
    CVConfig,
    DatasetConfig,
    ModelConfig,
    OneCycleSchedule,
    TrainConfig,
)
from regbench.config.yaml_io import parse_value
from regbench.data import DATASETS
from regbench.errors import ConfigError
from regbench.experiment.config import (
    LoadedConfig,
    located_error,
    resolve_experiment,
    split_assignment,
)
from regbench.models import MODELS
from regbench.registry import did_you_mean
from regbench.regularizers import REGULARIZERS

SMOKE_EPOCHS = 1          # epochs per run in a smoke run
SMOKE_SAMPLES = 256       # training samples kept in a smoke run
# dataset.cv in a smoke run: 2 folds of one repeat, the fewest that still pair folds and give
# an interval, so the cross-validated path is run whole at twice one run's cost
SMOKE_FOLDS = 2
SWEEPABLE = ("dataset", "model", "train", "recipes")


@dataclass
class SweptConfig(LoadedConfig):
    """A loaded config whose sweep grid was (partly) given with ``--param`` on the command line.

    Errors about those keys name the option instead of a line of the file.
    """

    cli_params: tuple[str, ...] = ()


def sweep_error(message: str, path: str, loaded: LoadedConfig,
                section: str = "sweep") -> ConfigError:
    """A ConfigError located at the sweep key (or ``search`` key): its ``--param`` option, or
    its line in the file."""
    if section == "sweep" and path in getattr(loaded, "cli_params", ()):
        return ConfigError(message, source=f"--param {path}")
    return located_error(message, (section, path), loaded.positions, loaded.source)


# ----------------------------------------------------------------------------- parsing

def _top_level_parts(text: str) -> list[str]:
    """``text`` split at the commas outside brackets: ``[64,64],[128]`` -> two parts."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def parse_param(text: str) -> tuple[str, list]:
    """``key.path=v1,v2,...`` -> (path, values). A value may itself be a list
    (``model.hidden=[64,64],[128]``: two values); one YAML list alone is the list of values
    (``[0.1, 1]`` is 0.1 and 1; ``[[64,64]]`` is the one value [64, 64])."""
    key, value_text = split_assignment(text, "--param", "key.path=v1,v2,...")
    source = f"--param {key}"
    parts = [part.strip() for part in _top_level_parts(value_text.strip())]
    values = [parse_value(part, source) for part in parts]
    if len(values) == 1 and parts[0].startswith("["):
        values = values[0]
    if not isinstance(values, list) or not values or any(v is None for v in values):
        raise ConfigError(f"expected one or more comma-separated values (got {value_text!r})",
                          source=source)
    return key, values


def apply_params(loaded: LoadedConfig, params: Iterable[str]) -> SweptConfig:
    """Add command-line sweep keys to (or replace them in) the file's ``sweep:``."""
    import copy

    raw = copy.deepcopy(loaded.raw)
    sweep = dict(raw.get("sweep") or {})
    cli = list(getattr(loaded, "cli_params", ()))
    for text in params:
        key, values = parse_param(text)
        sweep[key] = values
        cli.append(key)
    raw["sweep"] = sweep
    config, _ = resolve_experiment(raw, loaded.positions, loaded.source)
    return SweptConfig(raw=raw, positions=dict(loaded.positions), source=loaded.source,
                       config=config, warnings=list(loaded.warnings), cli_params=tuple(cli))


# ----------------------------------------------------------------------------- path checks

def _field_names(model: type[BaseModel]) -> dict[str, Any]:
    """Field name and alias -> annotation."""
    names = {}
    for name, info in model.model_fields.items():
        names[info.alias or name] = info.annotation
        names[name] = info.annotation
    return names


def _sub_models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside ``X``, ``Optional[X]`` or a union of models (the schedules,
    told apart by name), each ``Annotated`` or not."""
    if get_origin(annotation) is Annotated:
        return _sub_models(get_args(annotation)[0])
    if get_origin(annotation) is Union:
        return [model for arg in get_args(annotation) for model in _sub_models(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _walk(models: list[type[BaseModel]], parts: list[str], prefix: str) -> Optional[str]:
    """Follow ``parts`` through the schema; the reason it fails, or None when it names a field."""
    fields: dict[str, Any] = {}
    for model in models:
        fields.update(_field_names(model))
    head, rest = parts[0], parts[1:]
    if head not in fields:
        choices = sorted({info.alias or name for m in models
                          for name, info in m.model_fields.items()})
        return (f"'{head}' matches no setting of {prefix.rstrip('.')}{did_you_mean(head, choices)};"
                f" expected one of: {', '.join(choices)}")
    if not rest:
        return None
    subs = _sub_models(fields[head])
    if not subs:
        return f"{prefix}{head} is a single value, not a mapping of settings"
    return _walk(subs, rest, f"{prefix}{head}.")


def check_sweep_path(path: str, experiment: dict[str, Any], loaded: LoadedConfig,
                     section: str = "sweep") -> Optional[str]:
    """Raise a located error unless ``path`` names a real setting; return the recipe it belongs
    to (``recipes.<name>.…``) or None for a path that applies to every recipe. ``section``:
    where the path is written (``sweep`` or ``search``), for the error's line."""
    parts = path.split(".")
    if parts[0] not in SWEEPABLE:
        if parts[0] in ("name", "seeds", "sweep", "diagnosis"):
            reason = (f"'{parts[0]}' cannot be swept (use --seeds for seeds); sweep "
                      "dataset.*, model.*, train.* or recipes.*")
        else:
            reason = (f"'{parts[0]}' matches no setting{did_you_mean(parts[0], list(SWEEPABLE))}; "
                      "a sweep path starts with dataset, model, train or recipes")
        raise sweep_error(reason, path, loaded, section)
    if len(parts) == 1:
        raise sweep_error(f"'{path}' is a whole section; sweep one setting inside it, e.g. "
                          f"{parts[0]}.<key>", path, loaded, section)
    owner = None
    if parts[:2] == ["dataset", "cv"]:   # the folds are planned once for the experiment
        raise sweep_error("dataset.cv cannot be swept: every point is cross-validated with the "
                          "same folds; run one experiment per fold setting", path, loaded, section)
    if parts[0] == "dataset":
        models = [DatasetConfig, DATASETS.get(experiment["dataset"]["name"]).Params]
        reason = _walk(models, parts[1:], "dataset.")
    elif parts[0] == "model":
        models = [ModelConfig, MODELS.get(experiment["model"]["name"]).Params]
        reason = _walk(models, parts[1:], "model.")
    elif parts[0] == "train":
        reason = _walk([TrainConfig], parts[1:], "train.")
    else:
        owner = parts[1]
        recipes = experiment["recipes"]
        if owner not in recipes:
            raise sweep_error(f"no recipe '{owner}'{did_you_mean(owner, list(recipes))}; "
                              f"recipes are: {', '.join(recipes)}", path, loaded,
                              section)
        if len(parts) < 4:
            raise sweep_error("a recipe key path must name one setting: recipes.<recipe>."
                              "<regularizer>.<parameter> or recipes.<recipe>.train.<setting>",
                              path, loaded, section)
        prefix = f"recipes.{owner}."
        if parts[2] == "train":
            reason = _walk([TrainConfig], parts[3:], prefix + "train.")
        else:
            present = list(recipes[owner]["regularizers"])
            if parts[2] not in present:
                hint = did_you_mean(parts[2], present + ["train"])
                has = ", ".join(present) if present else "no regularizers"
                raise sweep_error(f"recipe '{owner}' has no regularizer '{parts[2]}'{hint} "
                                  f"(it has: {has}); add it to the recipe to sweep it", path,
                                  loaded, section)
            params = REGULARIZERS.get(parts[2]).Params
            reason = _walk([params], parts[3:], f"{prefix}{parts[2]}.")
    if reason:
        raise sweep_error(reason, path, loaded, section)
    return owner


# ----------------------------------------------------------------------------- smoke budget

SMOKE_SUFFIX = "-smoke"    # `regbench run --smoke` writes results/<name>-smoke/


def shrink_for_smoke(loaded: LoadedConfig, own_folder: bool = False) -> LoadedConfig:
    """One epoch, a few hundred samples, one seed (with ``dataset.cv`` two folds of one
    repeat), the first value of each sweep list; with ``own_folder`` the experiment is renamed ``<name>-smoke`` so that its results never
    replace the full runs of the same experiment."""
    import copy

    raw = copy.deepcopy(loaded.raw)
    if own_folder and isinstance(raw.get("name"), str):
        raw["name"] += SMOKE_SUFFIX
    raw.setdefault("train", {})["epochs"] = SMOKE_EPOCHS
    dataset = raw.setdefault("dataset", {})
    subset = dataset.get("train_subset")
    dataset["train_subset"] = min(subset, SMOKE_SAMPLES) if isinstance(subset, int) else SMOKE_SAMPLES
    folds = _smoke_folds(dataset)
    seeds = raw.get("seeds") or [0]
    raw["seeds"] = seeds[:1] if isinstance(seeds, list) else seeds
    for recipe in (raw.get("recipes") or {}).values():
        if isinstance(recipe, dict) and isinstance(recipe.get("train"), dict):
            recipe["train"]["epochs"] = SMOKE_EPOCHS
    if isinstance(raw.get("sweep"), dict):
        raw["sweep"] = {k: v[:1] if isinstance(v, list) else v for k, v in raw["sweep"].items()}
    one_cycle = _fit_one_epoch(raw)
    config, _ = resolve_experiment(raw, loaded.positions, loaded.source)
    note = f"smoke run: 1 epoch, at most {SMOKE_SAMPLES} training samples, one seed" + (
        ", no one_cycle schedule (its rise needs more than one epoch)" if one_cycle else "") + (
        f", {SMOKE_FOLDS} folds of one repeat" if folds else "") + (
        f", results under {raw['name']}/" if own_folder else "")
    return dataclasses.replace(loaded, raw=raw, config=config,
                               warnings=list(loaded.warnings) + [note])


def _smoke_folds(dataset: dict[str, Any]) -> bool:
    """``dataset.cv`` cut to at most SMOKE_FOLDS folds of one repeat, in place; whether the
    dataset is cross-validated. A value the schema refuses is left for it to refuse."""
    cv = dataset.get("cv")
    if _whole(cv):                                   # cv: 5
        dataset["cv"] = min(cv, SMOKE_FOLDS)
    elif isinstance(cv, dict):
        for key, most in (("folds", SMOKE_FOLDS), ("repeats", 1)):
            if _whole(value := cv.get(key, CVConfig.model_fields[key].default)):
                cv[key] = min(value, most)
    return cv is not None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fit_one_epoch(raw: dict[str, Any]) -> bool:
    """Schedules fitted to one epoch: a warmup set to 0 epochs (a warmup must be shorter than
    the run), and one_cycle, whose rise needs more than one epoch, left out with its swept
    keys (the run keeps the optimizer's rate). Whether a one_cycle was left out."""
    trains = [raw.get("train")] + [r.get("train") for r in (raw.get("recipes") or {}).values()
                                   if isinstance(r, dict)]
    dropped = False
    for index, train in enumerate(trains):
        schedule = train.get("scheduler") if isinstance(train, dict) else None
        if isinstance(schedule, dict) and "warmup_epochs" in schedule:
            schedule["warmup_epochs"] = 0
        name = schedule.get("name") if isinstance(schedule, dict) else schedule
        # a recipe's schedule without a name adds to the experiment's (trains[0])
        if name == "one_cycle" or (index and dropped and isinstance(schedule, dict)
                                   and "name" not in schedule):
            train["scheduler"] = None
            dropped = True
    sweep = raw.get("sweep") if isinstance(raw.get("sweep"), dict) else {}
    for path, values in list(sweep.items()):      # a swept schedule: its first value only
        first = values[0] if isinstance(values, list) and values else values
        if str(path).endswith("scheduler") and "one_cycle" in (
                first, first.get("name") if isinstance(first, dict) else None):
            sweep[path] = [None]
            dropped = True
    for path in list(sweep):
        parent, _, key = str(path).rpartition(".")
        if parent.endswith("scheduler") and key == "warmup_epochs":
            sweep[path] = [0]
        elif parent.endswith("scheduler") and key in ONE_CYCLE_ONLY and dropped:
            del sweep[path]
    return dropped


# the keys that only one_cycle has: a smoke run's sweep drops them with the schedule
ONE_CYCLE_ONLY = set(OneCycleSchedule.model_fields) - {
    key for name, model in SCHEDULES.items() if name != "one_cycle" for key in model.model_fields}
