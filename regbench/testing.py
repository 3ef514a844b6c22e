"""The conformance kit: the checks every built-in regularizer, model and dataset passes, for a
plugin's own tests.

Each check raises :class:`ConformanceError` (an ``AssertionError``, so pytest shows its
message) that says what failed and how to fix it; a check that returns passed. In a plugin's
tests::

    # tests/test_conformance.py of the package that registers these entries
    import my_plugin                        # registers them (or regbench.plugins.load_plugins)
    from regbench import testing

    def test_my_penalty_conforms():
        testing.check_regularizer("my_penalty")          # or the class itself

    def test_tinynet_conforms():
        testing.check_model("tinynet", {"width": 8})

    def test_moons_conforms():
        testing.check_dataset("moons", {"n_samples": 200})

``examples/test_my_plugin.py`` runs the kit on ``examples/my_plugin.py``. Every check trains
through regbench's own path (a config validated and planned as ``regbench run`` plans it, then
``train_run``) on the CPU, with a few tiny batches: seconds, not minutes.

What each check verifies:

- :func:`check_regularizer`: registered under its ``name``; a summary, a paper and a method
  card (its class's or module's docstring with ``Paper``, ``Hook``, its ``Formula`` (or
  ``Rule``) and a ``Deviations from the paper:`` line); every parameter has a default and the
  defaults validate; a batch hook declares its ``batch_stage``; it trains two batches on the
  first tiny setting (:data:`SETTINGS`) its compatibility rules accept, with finite metrics; and
  it changes something: trained with the same seed, its per-epoch metrics, final weights or test
  metrics differ from the baseline's. A regularizer whose effect needs particular settings to
  show in three epochs (early stopping's patience) names them in its ``conformance`` attribute;
  one that needs another regularizer in its recipe (rdrop: dropout) names it in
  ``conformance_with``, trains beside it, and must change something against it alone.
- :func:`check_model`: builds on a tiny dataset (8×8 digits by default), a forward gives one
  output per class, a backward gives every trainable parameter a finite gradient, and two
  batches train with finite metrics.
- :func:`check_dataset`: loads through the real loader; every split holds as many labels as
  inputs; inputs are finite float32, labels classes 0..K−1 (or finite regression targets); the
  loaded shapes, task and classes agree with what the dataset declares before loading; and a
  small model trains two batches on it with finite metrics.
"""
from __future__ import annotations

import inspect
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from pydantic import ValidationError

from regbench.data import DATASETS, DataBundle, data_spec, load_bundle, prepare
from regbench.data.base import DataSpec, RawData
from regbench.engine.metrics import classification_loss, regression_loss
from regbench.engine.result import RunResult
from regbench.engine.train import build_run_model, train_run
from regbench.errors import ConfigError, RegbenchError
from regbench.experiment.config import DATASET_PATHS, load_config
from regbench.experiment.plan import Plan, build_plan
from regbench.models import MODELS
from regbench.registry import UnknownName
from regbench.regularizers import REGULARIZERS, Regularizer
from regbench.regularizers.base import BATCH_STAGES
from regbench.vocabulary import RunSpec

__all__ = ["ConformanceError", "check_regularizer", "check_model", "check_dataset",
           "check_documented", "SETTINGS", "experiment_config", "plan_for", "train_recipe"]

BATCH = 32                     # samples per step; the tiny settings train 2·BATCH samples
EFFECT_EPOCHS = 3              # epochs that must show a regularizer's effect on the baseline
CPU = torch.device("cpu")
SMALL_MODEL = {"name": "mlp", "hidden": [16]}     # what check_dataset trains
DIGITS = {"name": "digits", "train_subset": 2 * BATCH}
# Tiny (dataset, model) settings tried in order; a recipe trains on the first its
# compatibility rules accept (images for image transforms, residual blocks for stochastic
# depth, conv layers for groupnorm, regression last).
SETTINGS = [
    (DIGITS, SMALL_MODEL),
    (DIGITS, {"name": "cnn", "channels": [4, 8], "hidden": [16], "kernel_size": 3}),
    (DIGITS, {"name": "resmlp", "width": 16, "blocks": 2}),
    (DIGITS, {"name": "resnet", "channels": [4, 8], "blocks": 1}),
    ({"name": "synthetic_regression", "n_samples": 200, "n_features": 8,
      "train_subset": 2 * BATCH}, SMALL_MODEL),
]
TIMING = ("seconds",)          # columns that differ between two identical runs


class ConformanceError(AssertionError):
    """A registered entry fails the shared checks; the message says which and how to fix it."""


# ------------------------------------------------------------------ configs, plans, runs
def experiment_config(recipe: Optional[dict[str, Any]], dataset: dict[str, Any],
                      model: dict[str, Any], *, epochs: int = 1,
                      batch_size: int = BATCH) -> dict[str, Any]:
    """A one-seed experiment: ``recipe`` (as recipe ``r``) beside the baseline, or the
    baseline alone when ``recipe`` is None."""
    return {"name": "conformance", "seeds": [0], "dataset": dataset, "model": model,
            "train": {"epochs": epochs, "batch_size": batch_size, "threads": 1,
                      "train_eval_samples": 1000,
                      "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}},
            "recipes": {"baseline": {}} if recipe is None else {"r": recipe}}


def plan_of(config: dict[str, Any]) -> Plan:
    """The plan ``regbench run`` makes of ``config``, validated as a file is (raises
    ConfigError). Relative dataset paths mean relative to the current folder."""
    config = json.loads(json.dumps(config, default=str))
    dataset = config["dataset"]
    for key in DATASET_PATHS:
        if isinstance(dataset.get(key), str) and dataset[key]:
            dataset[key] = str(Path(dataset[key]).expanduser().resolve())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "conformance.yaml"
        path.write_text(json.dumps(config))      # JSON is YAML
        return build_plan(load_config(path))


def plan_for(recipe: dict[str, Any], settings=SETTINGS, epochs: int = 1
             ) -> tuple[Optional[Plan], list[str]]:
    """The plan of the first setting that accepts ``recipe``, or None and every refusal."""
    refusals = []
    for dataset, model in settings:
        try:
            return plan_of(experiment_config(recipe, dataset, model, epochs=epochs)), []
        except ConfigError as exc:
            refusals.append(f"{dataset['name']} + {model['name']}: {exc.message}")
    return None, refusals


def run_of(plan: Plan, recipe: str) -> dict[str, Any]:
    return next(run for run in plan.runs if run["recipe"] == recipe)


def finite_run(spec: RunSpec, data: Optional[DataBundle] = None,
               what: str = "") -> RunResult:
    """Train ``spec`` (on ``data``, else its dataset as a run loads it) and check that it
    completed with every logged number and every test metric finite."""
    what = what or f"recipe '{spec['recipe']}'"
    if data is None:
        data = load_bundle(spec["dataset"], spec["train"]["train_eval_samples"])
    try:
        result = train_run(spec, data, CPU)
    except RegbenchError as exc:
        raise ConformanceError(f"{what} cannot train: {exc}") from exc
    if result.status != "completed":
        raise ConformanceError(f"{what} did not complete ({result.status}): "
                               f"{result.error or 'a logged loss is not finite'}")
    bad = sorted({k for row in result.rows for k, v in row.items() if not _finite(v)})
    tests = {k: v for k, v in result.summary.items() if k.startswith("test_")}
    bad += [k for k, v in tests.items() if not _finite(v)]
    if not result.rows or not tests or bad:
        raise ConformanceError(f"{what} logged non-finite or missing metrics: "
                               f"{', '.join(bad) or 'no epochs or no test metrics'}")
    return result


def train_recipe(plan: Plan, recipe: str = "r") -> RunResult:
    """Train ``recipe``'s run of ``plan`` and check that every logged number is finite."""
    return finite_run(run_of(plan, recipe))


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN (a metric undefined in both runs is no difference)."""
    nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return a == b or nan


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _setting_name(spec: RunSpec) -> str:
    return f"dataset {spec['dataset']['name']}, model {spec['model']['name']}"


# ------------------------------------------------------------------ regularizers
def _regularizer_class(regularizer: Union[type[Regularizer], str]) -> type[Regularizer]:
    if isinstance(regularizer, str):
        try:
            return REGULARIZERS.get(regularizer)
        except UnknownName as exc:
            raise ConformanceError(str(exc)) from None
    if not (isinstance(regularizer, type) and issubclass(regularizer, Regularizer)):
        raise ConformanceError(f"check_regularizer takes a regbench.Regularizer subclass or a "
                               f"registered name (got {regularizer!r})")
    return regularizer


def method_card(cls: type[Regularizer]) -> str:
    """What a regularizer says of itself: its module's docstring (a built-in's method card)
    and its class's docstring (where a plugin file holding several entries puts each card)."""
    module = sys.modules.get(cls.__module__)
    return "\n\n".join(doc for doc in (inspect.getdoc(module) if module else "",
                                       inspect.getdoc(cls)) if doc)


CARD = {"Paper": ("Paper",), "Hook": ("Hook",), "Formula": ("Formula", "Rule"),
        "Deviations from the paper:": ("Deviations from the paper:",)}


def check_documented(cls: type[Regularizer]) -> None:
    """Registration, description and parameters: what `regbench list` and a config rely on."""
    name = cls.name
    if not name or name not in REGULARIZERS or REGULARIZERS.get(name) is not cls:
        raise ConformanceError(
            f"regularizer {cls.__name__} is not registered under its name {name!r}: decorate "
            f"it with @regbench.register_regularizer(\"<name>\")")
    missing = [attribute for attribute in ("summary", "paper") if not getattr(cls, attribute)]
    if missing:
        raise ConformanceError(f"regularizer '{name}' has no {' and no '.join(missing)}: set "
                               "the class attributes (one line each, shown by `regbench list`)")
    if not cls.hooks():
        raise ConformanceError(f"regularizer '{name}' overrides no hook, so it cannot change "
                               "training; override one of build, wrap, batch, penalty, "
                               "after_backward, after_step, epoch_end, fit_end")
    card = method_card(cls)
    lacking = [label for label, words in CARD.items() if not any(w in card for w in words)]
    if lacking:
        raise ConformanceError(
            f"regularizer '{name}': its docstring (the class's or its module's) lacks "
            f"{', '.join(repr(label) for label in lacking)}; a method card says its paper, "
            "the hooks it uses, the exact formula with the units of each parameter, and a "
            "'Deviations from the paper:' line (none, or what differs and why)")
    required = [field for field, info in cls.Params.model_fields.items() if info.is_required()]
    if required:
        raise ConformanceError(f"regularizer '{name}': parameter(s) {', '.join(required)} have "
                               f"no default; `{name}: {{}}` in a recipe must work")
    for label, params in (("default", {}), ("conformance", cls.conformance)):
        try:
            cls.Params.model_validate(params)
        except ValidationError as exc:
            raise ConformanceError(f"regularizer '{name}': its {label} parameters {params} do "
                                   f"not validate: {exc}") from None
    if cls.overrides("batch") and cls.batch_stage not in BATCH_STAGES:
        raise ConformanceError(f"regularizer '{name}' has a batch hook but batch_stage "
                               f"{cls.batch_stage!r}; set it to one of {', '.join(BATCH_STAGES)}")


def differences(baseline: RunResult, result: RunResult) -> list[str]:
    """Where ``result`` differs from ``baseline`` (timings aside): epochs, a metric of an epoch,
    the final penalizable weights, a test metric. Columns only ``result`` logs do not count."""
    found = []
    if len(baseline.rows) != len(result.rows):
        found.append(f"{len(result.rows)} epochs against the baseline's {len(baseline.rows)}")
    for base, row in zip(baseline.rows, result.rows):
        changed = [k for k, v in base.items() if k not in TIMING and not _same(v, row.get(k))]
        if changed:
            found.append(f"epoch {base['epoch']}: {', '.join(changed)}")
    weights = (baseline.weights, result.weights)
    if (weights[0] is None) != (weights[1] is None) or (
            weights[0] is not None and not np.array_equal(*weights)):
        found.append("final weights")
    tests = [k for k, v in baseline.summary.items()
             if k.startswith("test_") and not _same(v, result.summary.get(k))]
    if tests:
        found.append(", ".join(tests))
    return found


def check_regularizer(regularizer: Union[type[Regularizer], str],
                      params: Optional[dict[str, Any]] = None, *,
                      dataset: Optional[dict[str, Any]] = None,
                      model: Optional[dict[str, Any]] = None,
                      epochs: int = EFFECT_EPOCHS) -> None:
    """Check a regularizer (class or registered name) as every built-in is checked.

    ``params`` are the parameters whose effect is checked (default: the class's
    ``conformance``, else its defaults); ``dataset`` and ``model`` (config sections) replace
    the tiny :data:`SETTINGS` for a regularizer that needs a model or data of its own.
    """
    cls = _regularizer_class(regularizer)
    check_documented(cls)
    name = cls.name
    settings = SETTINGS
    if dataset is not None or model is not None:
        settings = [(dataset or SETTINGS[0][0], model or SETTINGS[0][1])]
    effect = dict(cls.conformance if params is None else params)
    needed = dict(cls.conformance_with)     # the regularizers it needs beside it (rdrop: dropout)
    if effect:     # the defaults train too, not only the parameters that show the effect
        plan, refusals = plan_for({**needed, name: {}}, settings)
        if plan is None:
            raise ConformanceError(f"regularizer '{name}' with its default parameters fits no "
                                   f"tiny setting: {'; '.join(refusals)}")
        train_recipe(plan)
    plan, refusals = plan_for({**needed, name: effect}, settings, epochs=epochs)
    if plan is None:
        raise ConformanceError(f"regularizer '{name}' with parameters {effect or 'defaulted'} "
                               f"fits no tiny setting: {'; '.join(refusals)}")
    spec = run_of(plan, "r")
    result = finite_run(spec, what=f"regularizer '{name}'")
    baseline_spec = run_of(plan, "baseline")
    if needed:     # its effect is what it adds to the regularizers it needs, alone on this setting
        setting = next(s for s in settings if (s[0]["name"], s[1]["name"]) ==
                       (spec["dataset"]["name"], spec["model"]["name"]))
        alone, refusals = plan_for(needed, [setting], epochs=epochs)
        if alone is None:
            raise ConformanceError(f"regularizer '{name}': the regularizers it needs "
                                   f"({', '.join(needed)}) alone fit no tiny setting: "
                                   f"{'; '.join(refusals)}")
        baseline_spec = run_of(alone, "r")
    baseline = finite_run(baseline_spec, what=f"the baseline of '{name}'")
    if not differences(baseline, result):
        raise ConformanceError(
            f"regularizer '{name}' changed nothing: its run's metrics equal the baseline's in "
            f"every epoch ({epochs} epochs, same seed, {_setting_name(spec)}, parameters "
            f"{effect or 'defaulted'}), and so do its final weights and test metrics. Check "
            f"that its hooks ({', '.join(cls.hooks())}) act, or, if its effect needs other "
            "settings to show in a few epochs, name them in its `conformance` attribute")


# ------------------------------------------------------------------ models
def check_model(name: str, params: Optional[dict[str, Any]] = None, *,
                dataset: Optional[dict[str, Any]] = None) -> None:
    """Check a registered model: built on ``dataset`` (a dataset config section; default 8×8
    digits, 64 training samples), one forward gives one output per class, one backward a
    finite gradient for every trainable parameter, and two batches train with finite
    metrics."""
    try:
        MODELS.get(name)
    except UnknownName as exc:
        raise ConformanceError(str(exc)) from None
    dataset = dataset or DIGITS
    what = f"model '{name}'"
    try:
        spec = run_of(plan_of(experiment_config(None, dataset, {"name": name, **(params or {})})),
                      "baseline")
    except ConfigError as exc:
        raise ConformanceError(f"{what} with parameters {params or {}} on dataset "
                               f"{dataset['name']}: {exc.message}") from None
    data = load_bundle(spec["dataset"], spec["train"]["train_eval_samples"])
    try:
        net, _, _ = build_run_model(spec, data, CPU)
    except RegbenchError as exc:
        raise ConformanceError(f"{what} cannot be built on dataset {dataset['name']}: "
                               f"{exc}") from None
    x, y = data.x_train[:BATCH], data.y_train[:BATCH]
    expected = (len(x), data.output_dim)
    kind = "class" if data.task == "classification" else "regression target"
    net.train()
    output = net(x)
    if tuple(output.shape) != expected:
        raise ConformanceError(
            f"{what} returns outputs of shape {tuple(output.shape)} for a batch of {len(x)} "
            f"inputs of shape {data.input_shape}; expected {expected}: one output per {kind} "
            f"(the builder's output_dim, {data.output_dim} here)")
    if not torch.isfinite(output).all():
        raise ConformanceError(f"{what} returns non-finite outputs for finite inputs")
    loss = (classification_loss if data.task == "classification" else regression_loss)(output, y)
    loss.backward()
    trainable = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    if not trainable:
        raise ConformanceError(f"{what} has no trainable parameters")
    without = [n for n, p in trainable if p.grad is None]
    if without:
        raise ConformanceError(
            f"{what}: {len(without)} trainable parameter(s) get no gradient from the loss "
            f"({', '.join(without[:5])}{', …' if len(without) > 5 else ''}); every trainable "
            "parameter must take part in the forward (or set requires_grad=False)")
    bad = [n for n, p in trainable if not torch.isfinite(p.grad).all()]
    if bad:
        raise ConformanceError(f"{what}: non-finite gradients for {', '.join(bad[:5])}")
    net.eval()
    with torch.no_grad():
        shape = tuple(net(x).shape)
    if shape != expected:
        raise ConformanceError(f"{what} returns outputs of shape {shape} in eval mode (train "
                               f"mode: {expected}); expected {expected}")
    finite_run(spec, data, what=f"{what} on dataset {dataset['name']}")


# ------------------------------------------------------------------ datasets
def _check_raw(name: str, raw: RawData, declared: DataSpec) -> None:
    """The loader's arrays: as many targets as inputs in every split it returns."""
    if raw.task != declared.task:
        raise ConformanceError(f"dataset '{name}' declares task {declared.task} but its loader "
                               f"returns {raw.task} data")
    for split in ("train", "val", "test"):
        x, y = getattr(raw, f"x_{split}"), getattr(raw, f"y_{split}")
        if (x is None) != (y is None):
            raise ConformanceError(f"dataset '{name}': the {split} split has "
                                   f"{'targets' if x is None else 'inputs'} only")
        if x is not None and len(x) != len(y):
            raise ConformanceError(f"dataset '{name}': the {split} split has {len(x)} inputs "
                                   f"but {len(y)} targets")


def _check_bundle(name: str, data: DataBundle, declared: DataSpec) -> None:
    """The prepared tensors every run trains on, against what the dataset declares."""
    where = f"dataset '{name}'"
    if data.task != declared.task:
        raise ConformanceError(f"{where} declares task {declared.task} but loads as {data.task}")
    if declared.input_shape is not None and tuple(declared.input_shape) != data.input_shape:
        raise ConformanceError(f"{where} declares inputs of shape {declared.input_shape} but "
                               f"loads {data.input_shape}; validation checks models and "
                               "regularizers against the declared shape")
    for split in ("train", "val", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if len(x) == 0 or len(x) != len(y):
            raise ConformanceError(f"{where}: the prepared {split} split has {len(x)} inputs "
                                   f"and {len(y)} targets")
        if tuple(x.shape[1:]) != data.input_shape or x.dtype != torch.float32:
            raise ConformanceError(f"{where}: {split} inputs are {x.dtype} of shape "
                                   f"{tuple(x.shape)}; expected float32 (N, *{data.input_shape})")
        if not torch.isfinite(x).all():
            raise ConformanceError(f"{where}: the {split} inputs hold non-finite values")
        if data.task == "classification":
            if y.dtype != torch.int64 or y.dim() != 1:
                raise ConformanceError(f"{where}: {split} labels are {y.dtype} of shape "
                                       f"{tuple(y.shape)}; expected int64 class indices (N,)")
            if y.min() < 0 or y.max() >= data.output_dim:
                raise ConformanceError(f"{where}: {split} labels run from {int(y.min())} to "
                                       f"{int(y.max())}; expected classes 0 to "
                                       f"{data.output_dim - 1}")
        elif y.dtype != torch.float32 or tuple(y.shape[1:]) != (data.output_dim,) \
                or not torch.isfinite(y).all():
            raise ConformanceError(f"{where}: {split} targets are {y.dtype} of shape "
                                   f"{tuple(y.shape)}; expected finite float32 "
                                   f"(N, {data.output_dim})")
    if data.task == "classification":
        if data.output_dim < 2:
            raise ConformanceError(f"{where} has {data.output_dim} class; expected at least 2")
        if declared.num_classes is not None and declared.num_classes != data.output_dim:
            raise ConformanceError(f"{where} declares {declared.num_classes} classes but loads "
                                   f"{data.output_dim}")


def check_dataset(name: str, params: Optional[dict[str, Any]] = None, *,
                  model: Optional[dict[str, Any]] = None) -> None:
    """Check a registered dataset with ``params`` (its config keys, e.g. a path): loaded
    through its loader and prepared as a run prepares it, its arrays and declared spec agree,
    and ``model`` (default a small mlp) trains two batches on it with finite metrics."""
    try:
        entry = DATASETS.get(name)
    except UnknownName as exc:
        raise ConformanceError(str(exc)) from None
    config = {"name": name, "train_subset": 2 * BATCH, **(params or {})}
    try:
        spec = run_of(plan_of(experiment_config(None, config, model or SMALL_MODEL)), "baseline")
    except ConfigError as exc:
        raise ConformanceError(f"dataset '{name}' with parameters {params or {}}: "
                               f"{exc.message}") from None
    dataset = spec["dataset"]
    try:
        declared = data_spec(dataset)
        _check_raw(name, entry.load(dataset), declared)
        data = prepare(dataset, spec["train"]["train_eval_samples"])
    except RegbenchError as exc:
        raise ConformanceError(f"dataset '{name}' does not load: {exc}") from None
    _check_bundle(name, data, declared)
    finite_run(spec, data, what=f"model {spec['model']['name']} on dataset '{name}'")
