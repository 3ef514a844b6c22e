"""Load, override and validate experiment configs; every error is located in the file."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from pydantic import BaseModel, ValidationError

from regbench.config.schema import (
    DatasetConfig,
    ExperimentConfig,
    ModelConfig,
    StrictModel,
    TrainConfig,
    check_safe_name,
    inherited_train,
)
from regbench.config.yaml_io import KEY_MARK, KeyPath, Position, parse_value, read_yaml_file
from regbench.data import DATASETS
from regbench.errors import ConfigError, DataError
from regbench.models import MODELS
from regbench.models.targets import Unmatched
from regbench.registry import UnknownName, did_you_mean
from regbench.regularizers import REGULARIZERS
from regbench.tracking import TRACKERS

RESERVED_RECIPE_KEYS = ("train",)


@dataclass
class LoadedConfig:
    """A validated experiment plus the raw data and key positions it came from."""

    raw: dict[str, Any]
    positions: dict[KeyPath, Position]
    source: str
    config: ExperimentConfig
    warnings: list[str] = field(default_factory=list)


def _nearest_position(positions: dict[KeyPath, Position], path: KeyPath) -> Position | None:
    for end in range(len(path), -1, -1):
        if path[:end] in positions:
            return positions[path[:end]]
    return None


def located_error(message: str, path: Iterable[str], positions: dict[KeyPath, Position],
                  source: str) -> ConfigError:
    """A ConfigError at the nearest known position of ``path``.

    A position may be a string naming a command-line option (``--set key``) instead of a
    (line, column) pair when the value came from there.
    """
    path = tuple(str(p) for p in path)
    pos = _nearest_position(positions, path)
    if isinstance(pos, str):
        return ConfigError(message, path=".".join(path), source=pos)
    return ConfigError(message, path=".".join(path), source=source,
                       line=pos[0] if pos else None, column=pos[1] if pos else None)


@contextlib.contextmanager
def data_errors_located(loaded: LoadedConfig) -> Iterator[None]:
    """Turn a DataError about a ``dataset.<key>`` (a file not found, a bad column) into the
    same error at that key's line of the config."""
    try:
        yield
    except DataError as exc:
        match = re.match(r"(dataset(?:\.\w+)+): (.*)", str(exc), re.S)
        if match is None:
            raise
        raise located_error(match.group(2), match.group(1).split("."), loaded.positions,
                            loaded.source) from None


@contextlib.contextmanager
def placement_errors_located(loaded: LoadedConfig) -> Iterator[None]:
    """Turn a regularizer's ``modules:``/``types:`` that matches no place in its recipe's
    model (found when the model is built) into the same error at that key's line."""
    try:
        yield
    except Unmatched as exc:
        raise located_error(exc.message, exc.path, loaded.positions, loaded.source) from None


# ----------------------------------------------------------------------------- overrides

def split_assignment(text: str, option: str, expected: str = "key.path=value"
                     ) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(f"expected {expected} (got {text!r})", source=option)
    key, value = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"expected {expected} (got {text!r})", source=option)
    return key, value


def set_path(data: dict[str, Any], key_path: str, value: Any, source: str) -> None:
    """Set ``a.b.c`` in nested dicts, creating mappings on the way."""
    parts = key_path.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set '{key_path}': '{'.'.join(parts[:i + 1])}' is not a "
                              "mapping", path=key_path, source=source)
        node = child
    node[parts[-1]] = value


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str],
                    positions: dict[KeyPath, Position] | None = None) -> dict[str, Any]:
    """Apply ``--set key.path=value`` strings; values are parsed as YAML like the file.

    Errors in an overridden value are then located at the option, not at the file's line.
    """
    raw = copy.deepcopy(raw)
    for text in overrides:
        key, value_text = split_assignment(text, "--set")
        value = parse_value(value_text, f"--set {key}")
        set_path(raw, key, value, f"--set {key}")
        if positions is not None:
            prefix = tuple(key.split("."))
            for path in [p for p in positions if p[:len(prefix)] == prefix
                         or p[:len(prefix) + 1] == (KEY_MARK,) + prefix]:
                del positions[path]
            # Keys the option creates are located at the option (an unknown `--set trian.x=1`
            # must not point at line 1 of the file).
            for end in range(1, len(prefix) + 1):
                if prefix[:end] not in positions:
                    positions[prefix[:end]] = f"--set {key}"
                    positions[(KEY_MARK,) + prefix[:end]] = f"--set {key}"
            positions[prefix] = f"--set {key}"
    return raw


# ----------------------------------------------------------------------------- validation

def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the sub-model at ``loc`` (for did-you-mean on unknown keys)."""
    parts = list(loc)
    while parts:
        info = model.model_fields.get(str(parts.pop(0)))
        if info is None:
            return []
        annotation = info.annotation
        if getattr(annotation, "__origin__", None) is dict and parts:
            parts.pop(0)                          # a mapping's key (search: {path: range})
            annotation = annotation.__args__[1]
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        sub = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)),
                   None)
        if sub is None:
            return []
        model = sub
    return [info.alias or name for name, info in model.model_fields.items()]


def _describe(error: dict[str, Any]) -> str:
    kind, ctx, got = error["type"], error.get("ctx") or {}, error.get("input")
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}
    if kind in bounds:
        bound = next(iter(ctx.values()))
        bound = f"{bound:g}" if isinstance(bound, float) else bound
        return f"must be {bounds[kind]} {bound} (got {got!r})"
    if kind == "missing":
        return "is required"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be an integer (got {got!r})"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number (got {got!r})"
    if kind == "finite_number":
        return f"must be a finite number (got {got!r})"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false (got {got!r})"
    if kind in ("string_type",):
        return f"must be a string (got {got!r})"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list (got {got!r})"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping of keys to values (got {got!r})"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')} (got {got!r})"
    message = error["msg"]
    message = message.removeprefix("Value error, ")
    return f"{message} (got {got!r})" if got is not None and "got" not in message else message


def pydantic_error(exc: ValidationError, model: type[BaseModel], prefix: KeyPath,
                   positions: dict[KeyPath, Position], source: str) -> ConfigError:
    """Turn the first pydantic error into one located ConfigError."""
    error = exc.errors()[0]
    loc = tuple(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        choices = _fields_at(model, loc[:-1])
        message = (f"unknown key '{loc[-1]}'{did_you_mean(loc[-1], choices)}; "
                   f"expected one of: {', '.join(choices)}")
        key_position = positions.get((KEY_MARK,) + prefix + loc)
        if key_position is not None:
            return located_error(message, prefix + loc, {prefix + loc: key_position}, source)
    else:
        message = _describe(error)
    return located_error(message, prefix + loc, positions, source)


def validate_model(model: type[StrictModel], data: Any, prefix: KeyPath,
                   positions: dict[KeyPath, Position], source: str) -> Any:
    if data is None:
        data = {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise pydantic_error(exc, model, prefix, positions, source) from None


def _lookup(registry, name: Any, path: KeyPath, positions, source):
    if not isinstance(name, str):
        raise located_error(f"must be a name (got {name!r})", path, positions, source)
    try:
        return registry.get(name)
    except UnknownName as exc:
        raise located_error(str(exc), path, positions, source) from None


def _component_params(registry, section: BaseModel, prefix: str, positions, *, source,
                      common: type[BaseModel]) -> dict[str, Any]:
    """Validate a dataset/model section's own parameters against its registry entry."""
    entry = _lookup(registry, section.name, (prefix, "name"), positions, source)
    extras = dict(section.model_extra or {})
    params = validate_model(entry.Params, extras, (prefix,), positions, source)
    own = params.model_dump(by_alias=True)
    shared = section.model_dump(include=set(common.model_fields))
    return {**shared, **own}


def validate_recipe(name: str, recipe: Any, experiment_train: dict[str, Any],
                    positions: dict[KeyPath, Position], source: str) -> dict[str, Any]:
    """Validate one recipe: {regularizer -> params, train: overrides} -> resolved dict."""

    path = ("recipes", name)
    try:
        check_safe_name(name, "recipe name")
    except ValueError as exc:
        raise located_error(f"{exc} (got {name!r})", path, positions, source) from None
    if recipe is None:
        recipe = {}
    if not isinstance(recipe, dict):
        raise located_error(f"must be a mapping of regularizer names to parameters "
                            f"(got {recipe!r})", path, positions, source)
    regularizers: dict[str, dict[str, Any]] = {}
    train = experiment_train
    for key, params in recipe.items():
        if key == "train":
            merged = _deep_merge(inherited_train(experiment_train, params), params or {})
            train = validate_model(TrainConfig, merged, path + ("train",), positions,
                                   source).model_dump()
            if not isinstance(params, dict):
                raise located_error(f"must be a mapping of training settings (got {params!r})",
                                    path + ("train",), positions, source)
            continue
        cls = _lookup(REGULARIZERS, key, path + (key,), positions, source)
        if params is not None and not isinstance(params, dict):
            raise located_error(f"must be a mapping of parameters (got {params!r}); use {{}} "
                                "for the defaults", path + (key,), positions, source)
        regularizers[key] = validate_model(cls.Params, params, path + (key,), positions,
                                           source).model_dump(by_alias=True)
    return {"regularizers": regularizers, "train": train}


def _deep_merge(base: dict[str, Any], update: Any) -> Any:
    if not isinstance(update, dict) or not isinstance(base, dict):
        return copy.deepcopy(update)
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = _deep_merge(out[key], value) if key in out else copy.deepcopy(value)
    return out


def resolve_experiment(raw: Any, positions: dict[KeyPath, Position], source: str
                       ) -> tuple[ExperimentConfig, dict[str, Any]]:
    """Validate raw data; return the schema object and the fully resolved plain dict."""

    if raw is None:
        raise ConfigError("the config is empty; expected a mapping with at least 'name' "
                          "and 'recipes'", source=source, line=1, column=1)
    if not isinstance(raw, dict):
        raise located_error(f"the config must be a mapping of keys to values (got "
                            f"{type(raw).__name__})", (), positions, source)
    config = validate_model(ExperimentConfig, raw, (), positions, source)
    dataset = _component_params(DATASETS, config.dataset, "dataset", positions, source=source,
                                common=DatasetConfig)
    model = _component_params(MODELS, config.model, "model", positions, source=source,
                              common=ModelConfig)
    for index, name in enumerate(config.logging.trackers):
        _lookup(TRACKERS, name, ("logging", "trackers", str(index)), positions, source)
    train = config.train.model_dump()
    recipes_raw = dict(config.recipes)
    if "baseline" not in recipes_raw:
        recipes_raw = {"baseline": {}, **recipes_raw}
    recipes = {name: validate_recipe(name, recipe, train, positions, source)
               for name, recipe in recipes_raw.items()}
    resolved = {
        "name": config.name,
        "seeds": list(config.seeds),
        "dataset": dataset,
        "model": model,
        "train": train,
        "recipes": recipes,
        "sweep": dict(config.sweep),
        "search": {path: spec.model_dump(exclude_none=True, exclude_defaults=True)
                   for path, spec in config.search.items()},
        "diagnosis": config.diagnosis.model_dump(),
        "logging": config.logging.model_dump(),
        "compare": config.compare.model_dump(),
        "execution": config.execution.model_dump(),
    }
    return config, resolved


def select_recipes(loaded: LoadedConfig, names: Iterable[str]) -> LoadedConfig:
    """The experiment with only the named recipes and the baseline (``--recipes``; the
    comparison needs the baseline): the ``sweep:`` and ``search:`` keys of the other recipes
    go with them, so a sweep or a tuning covers the selection alone. An unknown name, or a
    ``--param`` of a recipe left out, is exit 2 naming it."""
    names = list(names)
    if not names:
        return loaded
    present = ["baseline", *(name for name in loaded.config.recipes if name != "baseline")]
    for name in names:
        if name not in present:
            raise ConfigError(str(UnknownName("recipe", name, present)), source="--recipes")
    keep = {"baseline", *names}

    def left_out(path: str) -> bool:
        parts = path.split(".")
        return parts[0] == "recipes" and len(parts) > 1 and parts[1] not in keep

    for path in getattr(loaded, "cli_params", ()):   # asked for on the same command line
        if left_out(path):
            raise ConfigError(f"recipe '{path.split('.')[1]}' is not among --recipes "
                              f"{','.join(names)}; add it there or drop this --param",
                              source=f"--param {path}")
    raw = copy.deepcopy(loaded.raw)
    raw["recipes"] = {name: recipe for name, recipe in (raw.get("recipes") or {}).items()
                      if name in keep}
    for section in ("sweep", "search"):
        if isinstance(raw.get(section), dict):
            raw[section] = {path: value for path, value in raw[section].items()
                            if not left_out(path)}
    config, _ = resolve_experiment(raw, loaded.positions, loaded.source)
    others = [name for name in present if name not in keep]
    note = (f"--recipes: {', '.join(others)} not trained; their earlier runs stay in the "
            "results folder, out of this comparison") if others else None
    return dataclasses.replace(loaded, raw=raw, config=config,
                               warnings=list(loaded.warnings) + ([note] if note else []))


DATASET_PATHS = ("root", "path", "val_path", "test_path")   # files and folders a dataset reads


def relative_to_file(raw: dict[str, Any], path: Path) -> None:
    """Relative dataset paths written in a config file mean relative to that file, so that
    ``regbench run sub/cfg.yaml`` finds ``sub/data.csv`` from any folder (``--set`` values
    stay relative to the current folder, as the shell typed them)."""
    dataset = raw.get("dataset")
    if not isinstance(dataset, dict):
        return
    for key in DATASET_PATHS:
        value = dataset.get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            dataset[key] = str((path.parent / value).resolve())


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> LoadedConfig:
    """Read a YAML file, apply ``--set`` overrides and validate everything."""
    path = Path(path)
    raw, positions = read_yaml_file(path)
    if isinstance(raw, dict):
        relative_to_file(raw, path)
        raw = apply_overrides(raw, overrides, positions)
    config, _ = resolve_experiment(raw, positions, str(path))
    return LoadedConfig(raw=raw, positions=positions, source=str(path), config=config)
