"""Recipe rules: refuse recipes that cannot work, warn about doubtful ones.

The knowledge lives on the components; this module only applies it, for every regularizer of a
recipe in this order:
1. the model's needs (``needs_images``) against the dataset;
2. the regularizer's declared attributes: ``tasks`` (e.g. label smoothing, mixup, cutmix:
   classification only), ``needs_images`` (image transforms on a table), ``needs_residual``
   (stochastic depth on a model without residual blocks) and ``exclusive`` (two norm layers;
   two replacements of the linear/conv layers);
3. its own ``check`` classmethod (parameter-dependent: batch sizes, patch sizes, groupnorm on
   a model without convs, a flip on digits);
4. its ``conflicts_with`` classmethod, for combinations that work but defeat each other.

The recipe's schedule is checked against the task too (``check_schedule``): a plateau
schedule must watch a column the task's runs measure.
"""
from __future__ import annotations

from typing import Any

from regbench.config.schema import SHARED_BEFORE, monitored_columns
from regbench.data import data_spec
from regbench.experiment.config import LoadedConfig, located_error
from regbench.experiment.sweeps import sweep_error
from regbench.models import MODELS
from regbench.registry import did_you_mean
from regbench.regularizers import REGULARIZERS, CheckContext, Incompatible
from regbench.regularizers.base import EXCLUSIVE_MEANING
from regbench.vocabulary import metric_names


def check_recipe(experiment: dict[str, Any], recipe: str, resolved: dict[str, Any],
                 loaded: LoadedConfig) -> list[str]:
    """Raise a located ConfigError for a refused combination; return warnings."""
    spec = data_spec(experiment["dataset"])
    model_name = experiment["model"]["name"]
    model_entry = MODELS.get(model_name)
    ctx = CheckContext(task=spec.task, input_shape=spec.input_shape, model_name=model_name,
                       model_residual=model_entry.residual,
                       batch_size=resolved["train"]["batch_size"], recipe=resolved["regularizers"],
                       train=resolved["train"], model_convolutional=(model_entry.needs_images or None
                                            if model_entry.plugin else model_entry.needs_images),
                       mirror_changes_class=spec.mirror_changes_class)
    warnings: list[str] = check_schedule(spec.task, recipe, resolved["train"], loaded)
    exclusive: dict[str, str] = {}
    regularizers = resolved["regularizers"]

    def refuse(name: str, reason: str):
        return located_error(reason, ("recipes", recipe, name), loaded.positions, loaded.source)

    def warn(name: str, message: str) -> None:
        warnings.append(f"recipe '{recipe}': {name}: {message}")

    if model_entry.needs_images and not spec.is_image:
        gives = ("a csv table is flat (use mlp, resmlp or linear)" if spec.input_shape is None
                 else f"dataset '{experiment['dataset']['name']}' gives {spec.input_shape}")
        raise located_error(f"model '{model_name}' needs image inputs (C, H, W); {gives}",
                            ("model", "name"), loaded.positions, loaded.source)
    for name, params in regularizers.items():
        cls = REGULARIZERS.get(name)
        if spec.task not in cls.tasks:
            raise refuse(name, f"{name} does not apply to {spec.task} "
                         f"(it is for {' and '.join(sorted(cls.tasks))})")
        if cls.needs_images and not ctx.is_image:
            raise refuse(name, f"{name} transforms images; dataset "
                         f"'{experiment['dataset']['name']}' is tabular")
        if cls.needs_residual and not ctx.model_residual:
            raise refuse(name, f"{name} needs a model with residual blocks (resnet or resmlp); "
                         f"model '{model_name}' has none")
        if cls.exclusive:
            if cls.exclusive in exclusive:
                meaning = EXCLUSIVE_MEANING.get(cls.exclusive, f"{cls.exclusive} regularizers")
                raise refuse(name, f"{name} and {exclusive[cls.exclusive]} are both {meaning}; "
                             "a recipe may use only one")
            exclusive[cls.exclusive] = name
        try:
            found = cls.check(cls.Params.model_validate(params), ctx)
        except Incompatible as exc:
            raise refuse(name, str(exc)) from None
        for message in found:
            warn(name, message)
    for first in regularizers:
        for second in regularizers:
            message = (REGULARIZERS.get(first).conflicts_with(REGULARIZERS.get(second))
                       if first != second else None)
            if message:
                warn(f"{first} + {second}", message)
    return warnings


def check_schedule(task: str, recipe: str, train: dict[str, Any], loaded: LoadedConfig
                   ) -> list[str]:
    """Refuse a plateau schedule watching a column that this task's runs do not measure
    (every run would fail after its first epoch); warn that a cosine schedule ignores the
    step_size and gamma written on it (accepted so that configs written when cosine and step
    shared their keys still load)."""
    schedule = train.get("scheduler") or {}
    monitor = schedule.get("monitor")
    valid = monitored_columns(metric_names(task))
    if schedule.get("name") == "plateau" and monitor not in valid:
        message = (f"'{monitor}' is not measured in a {task} run"
                   f"{did_you_mean(monitor, list(valid))}; expected one of: {', '.join(valid)}")
        where = _written_at(loaded, recipe, "monitor")
        if where[0] == "sweep":
            raise sweep_error(message, where[1], loaded)
        raise located_error(message, where, loaded.positions, loaded.source)
    if schedule.get("name") != "cosine":
        return []
    warnings = []
    for prefix in (("train",), ("recipes", recipe, "train")):
        written = _raw_at(loaded.raw, prefix + ("scheduler",))
        if not isinstance(written, dict) or written.get("name", "cosine") != "cosine":
            continue     # (a recipe's schedule without a name is the cosine resolved here)
        ignored = [key for key in SHARED_BEFORE if key in written]
        if ignored:
            warnings.append(f"{'.'.join(prefix)}.scheduler: cosine ignores {', '.join(ignored)} "
                            "(keys of step, accepted so that configs written when cosine and "
                            "step shared their keys still load)")
    return warnings


def _raw_at(raw: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` of the config as written (None where it has none)."""
    for part in path:
        raw = raw.get(part) if isinstance(raw, dict) else None
    return raw


def _written_at(loaded: LoadedConfig, recipe: str, key: str) -> tuple[str, ...]:
    """Where a recipe's ``train.scheduler.<key>`` was written, the last word first: its own
    sweep key, its train: block, a sweep key of every recipe, else the experiment's train:
    (``("sweep", path)`` for a sweep key)."""
    sweep = _raw_at(loaded.raw, ("sweep",)) or {}
    for prefix in (("recipes", recipe, "train"), ("train",)):
        path = prefix + ("scheduler", key)
        if ".".join(path) in sweep:
            return "sweep", ".".join(path)
        written = _raw_at(loaded.raw, path[:-1])
        if isinstance(written, dict) and key in written:
            return path
    return ("train", "scheduler", key)


def check_experiment(experiment: dict[str, Any]) -> list[str]:
    """Settings that are legal but do nothing, or not what a table then means: warnings."""
    warnings = []
    dataset = experiment["dataset"]
    if dataset.get("label_noise") and data_spec(dataset).task == "regression":
        warnings.append(f"dataset.label_noise: {dataset['label_noise']:g} has no effect: dataset "
                        f"'{dataset['name']}' is a regression task (label noise replaces class "
                        "labels)")
    baseline = experiment["recipes"].get("baseline")
    if baseline and baseline["regularizers"]:
        names = ", ".join(baseline["regularizers"])
        warnings.append(f"recipe 'baseline' has regularizers ({names}): every Δ in the tables is "
                        "measured against it; name this recipe otherwise and regbench adds a "
                        "plain baseline")
    return warnings
