"""Suite files: many tasks, one shared set of recipes (``regbench suite SUITE.yaml``).

::

    name: default                       # -> OUT/default/ (tasks in OUT/default/tasks/<task>/)
    seeds: [0, 1, 2]
    recipes:                            # shared by every task; baseline added when absent
      l2: {l2: {lambda: 1.0}}
      label_smoothing: {label_smoothing: {epsilon: 0.1}}
    tasks:
      digits:                           # inline: an experiment's dataset, model, train
        dataset: {name: digits}
        model: {name: mlp, hidden: [64]}
        train: {epochs: 10}
        recipes: {l2: {l2: {lambda: 0.5}}}   # this task's own values for a shared recipe
      diabetes:
        config: ../configs/diabetes.yaml     # or an experiment file's dataset, model, train …
        skip: [label_smoothing]              # recipes that do not apply to this task

Each task becomes an ordinary experiment named after it, validated exactly as an experiment
file (``resolve_experiment``), so ``regbench compare``, ``diagnose`` and ``report`` read its
folder. Every error is located where the value was written: ``suite.yaml:14:9:
tasks.digits.model.hidden: …`` or, for a key the task took from a config, that config's line.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from pydantic import field_validator

from regbench.config.schema import LoggingConfig, Seed, StrictModel, check_safe_name, check_seeds
from regbench.config.yaml_io import KEY_MARK, KeyPath, Position, read_yaml_file
from regbench.errors import ConfigError
from regbench.experiment.config import (
    LoadedConfig,
    located_error,
    relative_to_file,
    resolve_experiment,
    validate_model,
)
from regbench.experiment.sweeps import SMOKE_SUFFIX, shrink_for_smoke
from regbench.registry import did_you_mean

# what a task takes from an experiment file named by `config:`; its name, seeds, recipes,
# sweep and logging are the suite's business
TASK_SECTIONS = ("dataset", "model", "train", "diagnosis", "compare", "search")


class SuiteTask(StrictModel):
    """One task: an experiment's data, model and training budget (inline, or taken from an
    experiment file with `config:`, the keys written here merged over that file's), trained
    with every shared recipe."""

    config: Optional[str] = None                    # an experiment YAML (relative to the suite file) whose dataset, model, train, diagnosis, compare and search this task takes; its name, seeds, recipes, sweep and logging are not used
    dataset: Optional[dict[str, Any]] = None        # the data, as an experiment's dataset: (merged key by key over the config's)
    model: Optional[dict[str, Any]] = None          # the network, as an experiment's model: (merged over the config's)
    train: Optional[dict[str, Any]] = None          # the training budget every recipe shares on this task, as an experiment's train: (merged over the config's)
    diagnosis: Optional[dict[str, Any]] = None      # thresholds of the overfitting diagnosis, as an experiment's diagnosis:
    compare: Optional[dict[str, Any]] = None        # how this task's own table judges recipes, as an experiment's compare:
    search: Optional[dict[str, Any]] = None         # key path -> range, as an experiment's search: (read by `regbench tune` on the task's folder)
    recipes: dict[str, Optional[dict[str, Any]]] = {}  # recipe -> this task's own parameters or train settings for a shared recipe (merged over it; its regularizers stay the same)
    skip: list[str] = []                            # shared recipes not trained on this task (e.g. label_smoothing on a regression task); the aggregate counts the tasks each recipe ran on


class SuiteConfig(StrictModel):
    name: str                                       # suite name -> OUT/<name>/ (the aggregate) and OUT/<name>/tasks/<task>/ (each task's experiment folder)
    seeds: list[Seed] = [0, 1, 2]                   # every task × recipe runs once per seed; recipes pair with the baseline by seed
    recipes: dict[str, Any] = {}                    # recipe name -> {regularizer -> parameters}, as an experiment's recipes:, shared by every task; baseline added when absent
    tasks: dict[str, SuiteTask]                     # task name -> its data, model and budget (each task's results folder is named after it)
    logging: LoggingConfig = LoggingConfig()        # trackers every task's runs are logged to (--log adds to them)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_safe_name(value, "suite name")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        return check_seeds(value)

    @field_validator("tasks")
    @classmethod
    def _some_tasks(cls, value: dict[str, SuiteTask]) -> dict[str, SuiteTask]:
        if not value:
            raise ValueError("at least one task is needed: task name -> {dataset, model, train} "
                             "or {config: experiment.yaml}")
        return value


@dataclass
class TaskConfig(LoadedConfig):
    """One task's experiment, with the key path each of its keys was written under (errors
    found later, by the plan or the recipe rules, are told at those)."""

    task: str = ""
    paths: dict[KeyPath, KeyPath] = field(default_factory=dict)

    def retold(self, exc: ConfigError, hint: bool = False) -> ConfigError:
        """``exc`` about this task's experiment, told at the key path the user wrote and
        naming the task; with ``hint``, a refused shared recipe says how to leave it out."""
        path = tuple(exc.path.split(".")) if exc.path else ()
        recipe = path[1] if len(path) > 1 and path[0] == "recipes" else None
        for end in range(len(path), -1, -1):
            if path[:end] in self.paths:
                path = self.paths[path[:end]] + path[end:]
                break
        message = exc.message
        # a shared recipe's own value is wrong whatever the task; anything else is said of it
        shared = path[:1] == ("recipes",) and not hint
        if path[:2] != ("tasks", self.task) and not shared and \
                not message.startswith(f"task {self.task}:"):
            message = f"task {self.task}: {message}"
        if hint and recipe and path[:1] == ("recipes",):
            message += (f"; to leave recipe '{recipe}' out of task {self.task}: "
                        f"tasks.{self.task}.skip: [{recipe}]")
        return ConfigError(message, path=".".join(path), source=exc.source, line=exc.line,
                           column=exc.column)


@contextlib.contextmanager
def about_task(loaded: TaskConfig) -> Iterator[None]:
    """``with about_task(loaded): build_plan(loaded, …)``: a ConfigError about the task's
    experiment (a recipe the rules refuse for this task, a dataset file missing) is told at
    the suite's key, naming the task."""
    try:
        yield
    except ConfigError as exc:
        raise loaded.retold(exc, hint=True) from None


@dataclass
class LoadedSuite:
    """A validated suite: each task as the experiment it trains."""

    name: str
    source: str
    seeds: list[int]
    recipes: list[str]                               # baseline first, then as written
    tasks: dict[str, TaskConfig]                     # task name -> its experiment
    skipped: dict[str, list[str]] = field(default_factory=dict)   # task -> recipes left out
    warnings: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


class _Origin:
    """A task's experiment as it is assembled from the suite file and the configs it names:
    its raw data, where each key was written (``file:line:col`` strings, which
    ``located_error`` prints as they are) and the key path the user wrote it under."""

    def __init__(self, root: str, suite_path: KeyPath):
        self.raw: dict[str, Any] = {}
        self.positions: dict[KeyPath, Position | str] = {(): root}
        self.paths: dict[KeyPath, KeyPath] = {(): suite_path}

    def graft(self, dest: KeyPath, value: Any, positions: dict, source: str,
              src: KeyPath) -> None:
        """Merge ``value`` (written at ``src`` in ``source``) over ``dest``, key by key."""
        node = self.raw
        for part in dest[:-1]:
            node = node.setdefault(part, {})
        node[dest[-1]] = _merge(node.get(dest[-1]), copy.deepcopy(value))
        for path, where in positions.items():
            marked = path[:1] == (KEY_MARK,)
            key = path[1:] if marked else path
            if key[:len(src)] != src:
                continue
            new = dest + key[len(src):]
            text = where if isinstance(where, str) else f"{source}:{where[0]}:{where[1]}"
            self.positions[(KEY_MARK,) + new if marked else new] = text
            self.paths[new] = src + key[len(src):]


def _merge(base: Any, update: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(update, dict):
        return update
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out.get(key), value)
    return out


def _key_error(message: str, path: KeyPath, positions: dict, source: str) -> ConfigError:
    """A ConfigError at the line where the key ``path`` itself is written."""
    where = positions.get((KEY_MARK, *path))
    return located_error(message, path, {path: where} if where else positions, source)


def _at(positions: dict, path: KeyPath, source: str) -> str:
    """``file:line:col`` of ``path`` (or of the nearest key above it)."""
    for end in range(len(path), -1, -1):
        where = positions.get(path[:end])
        if where is not None:
            return where if isinstance(where, str) else f"{source}:{where[0]}:{where[1]}"
    return source


def load_suite(path: str | Path) -> LoadedSuite:
    """Read a suite file and validate every task as the experiment it trains (exit 2, one
    located line, on the first error)."""
    path = Path(path)
    raw, positions = read_yaml_file(path)
    source = str(path)
    if raw is None:
        raise ConfigError("the suite file is empty; expected a mapping with at least 'name' and "
                          "'tasks'", source=source, line=1, column=1)
    if not isinstance(raw, dict):
        raise located_error(f"the suite file must be a mapping of keys to values (got "
                            f"{type(raw).__name__})", (), positions, source)
    keys = list(SuiteConfig.model_fields)
    for key in raw:           # a misspelled `tasks:` is said as such, not as a missing one
        if key not in keys:
            raise _key_error(f"unknown key '{key}'{did_you_mean(key, keys)}; expected one of: "
                             f"{', '.join(keys)}", (key,), positions, source)
    suite = validate_model(SuiteConfig, raw, (), positions, source)
    written = _Written(raw, positions, source)
    recipes = dict(raw.get("recipes") or {})
    names = ["baseline", *(name for name in recipes if name != "baseline")]
    loaded: dict[str, TaskConfig] = {}
    skipped: dict[str, list[str]] = {}
    warnings: list[str] = []
    for task, spec in suite.tasks.items():
        where = ("tasks", task)
        try:
            check_safe_name(task, "task name")
        except ValueError as exc:
            raise _key_error(f"{exc} (got {task!r})", where, positions, source) from None
        skipped[task] = _skips(spec, names, positions, source, where)
        origin, more = _task_origin(task, spec, raw, positions, path)
        warnings += more
        origin.raw["recipes"] = {}
        for recipe in names:
            if recipe in skipped[task]:
                continue
            if recipe in recipes:
                origin.graft(("recipes", recipe), recipes[recipe] or {}, positions, source,
                             ("recipes", recipe))
            _override(origin, spec, recipe, task, written)
        unknown = [r for r in spec.recipes if r not in names]
        if unknown:
            raise _key_error(f"no shared recipe '{unknown[0]}'{did_you_mean(unknown[0], names)};"
                             f" a task changes the parameters of a shared recipe, it adds none "
                             f"(shared: {', '.join(names)})", (*where, "recipes", unknown[0]),
                             positions, source)
        origin.graft(("seeds",), raw.get("seeds", [0, 1, 2]), positions, source, ("seeds",))
        if raw.get("logging") is not None:
            origin.graft(("logging",), raw["logging"], positions, source, ("logging",))
        origin.raw["name"] = task
        at = _at(positions, where, source)
        unchecked = TaskConfig(raw=origin.raw, positions=origin.positions, source=at,
                               config=None, task=task, paths=origin.paths)
        try:
            config, _ = resolve_experiment(origin.raw, origin.positions, at)
        except ConfigError as exc:
            raise unchecked.retold(exc) from None
        loaded[task] = dataclasses.replace(unchecked, config=config)
    return LoadedSuite(name=suite.name, source=source, seeds=list(suite.seeds), recipes=names,
                       tasks=loaded, skipped=skipped, warnings=warnings, raw=raw)


def _skips(spec: SuiteTask, names: list[str], positions: dict, source: str,
           where: KeyPath) -> list[str]:
    for index, recipe in enumerate(spec.skip):
        if recipe == "baseline":
            raise located_error("the baseline cannot be skipped: every recipe on the task is "
                                "compared with it", (*where, "skip", str(index)), positions,
                                source)
        if recipe not in names:
            raise located_error(f"no shared recipe '{recipe}'{did_you_mean(recipe, names)}; "
                                f"expected one of: {', '.join(names[1:]) or '(none)'}",
                                (*where, "skip", str(index)), positions, source)
    return list(spec.skip)


def _task_origin(task: str, spec: SuiteTask, raw: dict[str, Any], positions: dict,
                 path: Path) -> tuple[_Origin, list[str]]:
    """The task's dataset, model, train, … from its config file (if any), then the keys
    written in the suite under it."""
    source = str(path)
    where = ("tasks", task)
    written = raw["tasks"][task] or {}
    origin = _Origin(_at(positions, where, source), where)
    warnings: list[str] = []
    if spec.config is not None:
        config_path = Path(spec.config).expanduser()
        if not config_path.is_absolute():
            config_path = path.parent / config_path
        try:
            config_raw, config_positions = read_yaml_file(config_path)
        except ConfigError as exc:
            if exc.line is None:      # not found or unreadable: said at the suite's key
                raise located_error(f"{config_path}: {exc.message}", (*where, "config"),
                                    positions, source) from None
            raise
        if not isinstance(config_raw, dict):
            raise located_error(f"{config_path} is not an experiment file (a mapping of keys to "
                                "values)", (*where, "config"), positions, source)
        relative_to_file(config_raw, config_path)
        for section in TASK_SECTIONS:
            if section in config_raw:
                origin.graft((section,), config_raw[section], config_positions,
                             str(config_path), (section,))
        if config_raw.get("sweep"):
            warnings.append(f"task {task}: the sweep: of {spec.config} is not trained (a suite "
                            "trains each shared recipe as written)")
    elif spec.dataset is None:
        raise located_error("a task needs dataset: (with model: and train:) or config: (an "
                            "experiment file)", where, positions, source)
    inline = {key: copy.deepcopy(written[key]) for key in TASK_SECTIONS
              if written.get(key) is not None}
    if "dataset" in inline:
        relative_to_file(inline, path)
    for section, value in inline.items():
        origin.graft((section,), value, positions, source, (*where, section))
    return origin, warnings


@dataclass
class _Written:
    """The suite file as read: its data, the position of every key, its name."""

    raw: dict[str, Any]
    positions: dict
    source: str


def _override(origin: _Origin, spec: SuiteTask, recipe: str, task: str,
              written: _Written) -> None:
    """The task's own values for a shared recipe, merged over it: parameters of the recipe's
    regularizers and ``train`` settings, never a regularizer the recipe does not have."""
    raw, positions, source = written.raw, written.positions, written.source
    shared = (raw.get("recipes") or {}).get(recipe)
    if recipe not in spec.recipes:
        origin.raw["recipes"].setdefault(recipe, {})
        return
    where = ("tasks", task, "recipes", recipe)
    if recipe in spec.skip:
        raise _key_error(f"recipe '{recipe}' is skipped on this task (skip:); remove one of the "
                         "two", where, positions, source)
    override = raw["tasks"][task]["recipes"][recipe] or {}
    present = list((shared or {}).keys()) if isinstance(shared, dict) else []
    for key in override:
        if key != "train" and key not in present:
            has = ", ".join(k for k in present if k != "train") or "no regularizers"
            raise _key_error(f"recipe '{recipe}' has no regularizer '{key}' (it has: {has}); a "
                             "task may change a shared recipe's parameters and train settings, "
                             "not its regularizers", (*where, key), positions, source)
    origin.graft(("recipes", recipe), override, positions, source, where)


def smoke_suite(suite: LoadedSuite) -> LoadedSuite:
    """``--smoke``: every task at ``run --smoke``'s budget (one epoch, a few hundred samples,
    one seed), the suite renamed ``<name>-smoke`` so that it never replaces the full runs."""
    tasks = {}
    for task, loaded in suite.tasks.items():
        with about_task(loaded):
            tasks[task] = shrink_for_smoke(loaded)
    return dataclasses.replace(suite, name=suite.name + SMOKE_SUFFIX, seeds=suite.seeds[:1],
                               tasks=tasks)
