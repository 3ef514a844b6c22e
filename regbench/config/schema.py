"""The typed config schema (pydantic v2, unknown keys refused).

Component-specific parameters (a dataset's, a model's, a regularizer's) are declared by the
component's own ``Params`` model in its registry entry; this file holds what every experiment
shares. Every default sits on one line with its meaning or unit.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from regbench.registry import did_you_mean
from regbench.vocabulary import CLASSIFICATION, MAX_SEED, REGRESSION, lower_is_better

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
MAX_WIDTH = 65_536      # units or channels of one layer: far beyond what trains on one machine
Width = Annotated[int, Field(gt=0, le=MAX_WIDTH)]   # a layer's units or channels
MAX_EPOCHS = 100_000    # more would train for months; a typo such as 1e9 is refused at once
Beta = Annotated[float, Field(ge=0, lt=1)]   # what numpy, torch and scikit-learn all accept
Effect = Annotated[float, Field(gt=0)]       # a smallest difference of interest, in metric units


def _admits_bool(annotation: Any) -> bool:
    """Whether a field's type lets true/false through (bool itself, Any, or a union with one)."""
    if annotation is bool or annotation is Any:
        return True
    return any(_admits_bool(arg) for arg in get_args(annotation) if arg is not None)


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, numbers are finite and a
    true/false is never read as the number 1 or 0 (pydantic's lax mode would)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name) if info.field_name else None
        if field is None or _admits_bool(field.annotation):
            return value
        items = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(item, bool) for item in items):
            raise ValueError(f"must be {_expected(field.annotation)}, not true/false "
                             f"(got {value!r})")
        return value


class NoParams(StrictModel):
    """A component (regularizer, dataset, model) that takes no parameters of its own."""


def _expected(annotation: Any) -> str:
    """A few words for what a field holds, for the true/false refusal."""
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    names = {a for a in (annotation, *get_args(annotation))}
    nested = {b for a in names for b in get_args(a)}
    kinds = names | nested
    if int in kinds and float not in kinds:
        return "an integer"
    if float in kinds or int in kinds:
        return "a number"
    if str in kinds:
        return "a name"
    return "a value"


NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_seeds(value: list[int]) -> list[int]:
    """An experiment's or a suite's seeds: at least one, each once."""
    if not value:
        raise ValueError("at least one seed is needed")
    if len(set(value)) != len(value):
        raise ValueError("seeds must be distinct")
    return value


def check_safe_name(value: str, what: str) -> str:
    """Names become folder names: refuse anything that could escape the results folder."""
    if not NAME_PATTERN.fullmatch(value) or ".." in value or len(value) > 100:
        raise ValueError(f"{what} must be letters, digits, '_', '-' or '.', start with a "
                         f"letter or digit, contain no '..' and be at most 100 characters")
    return value


# optimizer -> the train.optimizer keys it takes besides its name (regbench.engine.schedules
# passes exactly these to torch's class; a key left unset, None, is torch's own default)
OPTIMIZER_KEYS: dict[str, tuple[str, ...]] = {
    "sgd": ("lr", "momentum", "nesterov"),
    "adam": ("lr", "betas", "eps"),
    "adamw": ("lr", "betas", "eps", "weight_decay"),
    "nadam": ("lr", "betas", "eps", "momentum_decay"),
    "rmsprop": ("lr", "alpha", "eps", "momentum", "centered"),
}


class OptimizerConfig(StrictModel):
    name: Literal["sgd", "adam", "adamw", "nadam", "rmsprop"] = "sgd"  # update rule: torch.optim's SGD, Adam, AdamW, NAdam or RMSprop
    lr: float = Field(0.1, gt=0)                    # learning rate η per step
    momentum: float = Field(0.0, ge=0, lt=1)        # momentum (sgd and rmsprop only)
    nesterov: bool = False                          # Nesterov momentum (sgd only)
    betas: tuple[Beta, Beta] = (0.9, 0.999)         # Adam moment decay rates in [0, 1) (adam/adamw/nadam only)
    weight_decay: Optional[float] = Field(None, ge=0)  # adamw only: torch.optim.AdamW's decoupled decay (None: its default 0.01); sgd/adam: use the weight_decay or l2 regularizer
    eps: Optional[float] = Field(None, gt=0, le=1)  # ε added to the denominator (adam/adamw/nadam/rmsprop only; None: torch's 1e-8)
    momentum_decay: Optional[float] = Field(None, ge=0)  # nadam only: ψ of its momentum schedule μ_t = β1·(1 − 0.5·0.96^(tψ)) (None: torch's 0.004)
    alpha: Optional[float] = Field(None, ge=0, lt=1)  # rmsprop only: decay rate of the running average of squared gradients (None: torch's 0.99)
    centered: bool = False                          # rmsprop only: divide by the gradient's estimated variance instead of its second moment

    @model_validator(mode="after")
    def _settings_of_this_optimizer(self) -> "OptimizerConfig":
        # a setting the chosen optimizer would ignore is refused, not dropped in silence; a
        # recipe's train: block inherits only the keys its optimizer takes (inherited_train)
        takes = OPTIMIZER_KEYS[self.name]
        for key in type(self).model_fields:
            if key == "name" or key in takes or key not in self.model_fields_set:
                continue
            owners = ", ".join(name for name, keys in OPTIMIZER_KEYS.items() if key in keys)
            message = (f"weight_decay is only an optimizer setting of adamw; with {self.name}, "
                       "add the weight_decay (decoupled) or l2 regularizer to a recipe instead"
                       if key == "weight_decay" else
                       f"a setting of {owners}, not of {self.name}; remove it or change the "
                       "optimizer")
            raise located_value_error(type(self).__name__, (key,), getattr(self, key),
                                      f"{message} ({self.name} takes: {', '.join(takes)})")
        return self


class SchedulerConfig(StrictModel):
    """The learning rate over the run, as one of `torch.optim.lr_scheduler`'s schedules, stepped
    once per epoch after it: the `lr` column of `metrics.csv` is the rate that epoch trained
    with, and every length is in epochs. `train.optimizer.lr` is the rate the schedule starts
    from (the peak, for `one_cycle`). `cosine`, `step`, `linear`, `constant` and `exponential`
    take an optional warmup of `warmup_epochs` epochs first (torch's `LinearLR`, or
    `ConstantLR` with `warmup_method: constant`, then the schedule proper, joined by
    `SequentialLR`), and the schedule proper runs over the epochs after it. `plateau`
    (`ReduceLROnPlateau`) lowers the rate when a run's own `monitor` column stops improving, so
    its runs train solo, never fused; every other schedule depends only on the epoch and fuses
    (each member's parameter group scheduled from its own rate). `scheduler: cosine` is
    shorthand for `{name: cosine}`."""

    name: Literal["cosine", "step", "linear", "constant", "exponential", "one_cycle", "plateau"]  # the schedule; its keys are in its own table below

    def length_problem(self, epochs: int) -> Optional[tuple[str, str]]:
        """(key, what is wrong) where this schedule does not fit a run of ``epochs`` epochs."""
        return None


class _Warmup(SchedulerConfig):
    warmup_epochs: int = Field(0, ge=0, le=MAX_EPOCHS)  # epochs of warmup before the schedule proper (0: none); fewer than train.epochs
    warmup_method: Literal["linear", "constant"] = "linear"  # linear: the rate rises from warmup_factor × lr to lr (LinearLR); constant: it stays at warmup_factor × lr (ConstantLR)
    warmup_factor: float = Field(0.01, gt=0, le=1)  # the first warmup epoch's rate as a fraction of lr (torchvision's lr_warmup_decay)

    def length_problem(self, epochs: int) -> Optional[tuple[str, str]]:
        if self.warmup_epochs >= epochs:
            return "warmup_epochs", (f"must be below train.epochs ({epochs}): the schedule "
                                     "needs at least one epoch after the warmup")
        return None


# keys of the one schedule model that cosine and step shared before the other schedules: a
# cosine schedule still accepts them (ignored, with a warning) so that those configs load and
# their runs keep their config hash, which saw them
SHARED_BEFORE = ("step_size", "gamma")


def _unset(value: Any) -> bool:
    return value is None


class CosineSchedule(_Warmup):
    """Cosine annealing from lr to 0 over the epochs after the warmup (`CosineAnnealingLR`,
    T_max = epochs − warmup_epochs): η_t = lr · (1 + cos(π·t / T_max)) / 2."""

    name: Literal["cosine"]                         # the schedule
    step_size: SkipJsonSchema[Optional[int]] = Field(None, ge=1, exclude_if=_unset)  # ignored: step's key, accepted from configs written when cosine and step shared their keys
    gamma: SkipJsonSchema[Optional[float]] = Field(None, gt=0, le=1, exclude_if=_unset)  # ignored: step's key, accepted as step_size is


class StepSchedule(_Warmup):
    """The rate × gamma every step_size epochs after the warmup (`StepLR`)."""

    name: Literal["step"]                           # the schedule
    step_size: int = Field(10, ge=1)                # epochs between decays
    gamma: float = Field(0.1, gt=0, le=1)           # decay factor


class LinearSchedule(_Warmup):
    """A straight line from lr to end_factor × lr over the epochs after the warmup
    (`LinearLR`; the end is reached after the last epoch, as cosine reaches 0)."""

    name: Literal["linear"]                         # the schedule
    end_factor: float = Field(0.0, ge=0, le=1)      # the rate the line ends at, as a fraction of lr


class ConstantSchedule(_Warmup):
    """lr throughout, after the warmup: constant-with-warmup."""

    name: Literal["constant"]                       # the schedule


class ExponentialSchedule(_Warmup):
    """The rate × gamma after every epoch after the warmup (`ExponentialLR`)."""

    name: Literal["exponential"]                    # the schedule
    gamma: float = Field(0.9, gt=0, le=1)           # decay factor per epoch


class OneCycleSchedule(SchedulerConfig):
    """Smith & Topin's one-cycle policy (`OneCycleLR`, one step per epoch, total_steps =
    epochs): from lr / div_factor up to lr over the first pct_start of the run, then down to
    lr / (div_factor · final_div_factor). Each parameter group peaks at its own lr. The rise
    takes pct_start · epochs − 1 steps, so pct_start · epochs must exceed 1 (with 10 epochs
    and pct_start 0.3 the third epoch trains at lr); with three_phase the fall back to
    lr / div_factor takes as long again, and 2 · pct_start · epochs < epochs + 1 leaves the
    final decay at least one step."""

    name: Literal["one_cycle"]                      # the schedule
    pct_start: float = Field(0.3, gt=0, lt=1)       # fraction of the run spent rising to lr
    anneal_strategy: Literal["cos", "linear"] = "cos"  # shape of the rise and the fall
    div_factor: float = Field(25.0, ge=1)           # the first epoch's rate is lr / div_factor
    final_div_factor: float = Field(1e4, ge=1)      # the last rate is lr / (div_factor · final_div_factor)
    three_phase: bool = False                       # true: back down to lr / div_factor as fast as the rise, then on to the last rate (Smith's shape); false: from lr straight to the last rate
    cycle_momentum: bool = False                    # true: momentum (sgd, rmsprop) or beta1 (adam family) cycles inversely between max_momentum and base_momentum, replacing the optimizer's own; false: the optimizer's settings stay
    base_momentum: float = Field(0.85, ge=0, lt=1)  # the lowest momentum, at the peak rate (cycle_momentum only)
    max_momentum: float = Field(0.95, ge=0, lt=1)   # the highest momentum, at the lowest rates (cycle_momentum only)

    def length_problem(self, epochs: int) -> Optional[tuple[str, str]]:
        # torch's OneCycleLR divides by each phase's length in steps: the rise's is
        # pct_start·epochs − 1 (0 crashes; below 0 the run starts past the peak), with
        # three_phase the last one's is epochs + 1 − 2·pct_start·epochs
        rise = self.pct_start * epochs
        if rise - 1 <= 0:
            if epochs < 2:
                return "pct_start", (f"one_cycle needs at least 2 epochs to rise and fall "
                                     f"(train.epochs is {epochs}); use another schedule")
            smallest = f"above {1 / epochs:.4g}"
            if 2 / epochs < 1:
                smallest += f" ({2 / epochs:.4g} peaks at lr in epoch 2)"
            return "pct_start", (f"pct_start × train.epochs must be above 1 (got "
                                 f"{self.pct_start:g} × {epochs} = {rise:g}): the rise to lr "
                                 f"needs more than one epoch; with {epochs} epochs use "
                                 f"pct_start {smallest}")
        if self.three_phase and 2 * rise >= epochs + 1:
            return "pct_start", (f"with three_phase, 2 × pct_start × train.epochs must be below "
                                 f"train.epochs + 1 (got 2 × {self.pct_start:g} × {epochs} = "
                                 f"{2 * rise:g}): the rise and the fall back leave the final "
                                 f"decay no epoch; use pct_start below "
                                 f"{(epochs + 1) / (2 * epochs):.4g}")
        return None

    @model_validator(mode="after")
    def _momentum_range(self) -> "OneCycleSchedule":
        if self.base_momentum > self.max_momentum:
            raise located_value_error(type(self).__name__, ("base_momentum",), self.base_momentum,
                                      f"must not exceed max_momentum ({self.max_momentum:g})")
        return self


def monitored_columns(metrics: tuple[str, ...]) -> tuple[str, ...]:
    """The metrics.csv columns measured every epoch for ``metrics`` (a task's, see
    ``vocabulary.metric_names``), which a plateau schedule may watch."""
    return ("objective", *(f"{split}_{metric}" for split in ("val", "train")
                           for metric in metrics))


# what a plateau schedule may watch under either task; the task's own is checked with the plan
MONITORED = monitored_columns(tuple(dict.fromkeys(CLASSIFICATION + REGRESSION)))


class PlateauSchedule(SchedulerConfig):
    """× factor when the run's `monitor` column has not improved for `patience` epochs
    (`ReduceLROnPlateau`, stepped with that epoch's value). A run's rate depends on its own
    metrics, so these runs train solo."""

    name: Literal["plateau"]                        # the schedule
    monitor: str = "val_loss"                       # the metrics.csv column watched: objective, val_<metric> or train_<metric> (loss, accuracy, f1, … for classification; loss, mse, mae, r2 for regression)
    mode: Optional[Literal["min", "max"]] = None    # min: lower is an improvement; max: higher; None: min for a loss or error (loss, mse, mae, ece, objective), max for a score
    factor: float = Field(0.1, gt=0, lt=1)          # the rate × factor at each reduction
    patience: int = Field(10, ge=0)                 # epochs without improvement before a reduction
    threshold: float = Field(1e-4, ge=0)            # the least change that counts as an improvement
    threshold_mode: Literal["rel", "abs"] = "rel"   # rel: threshold is a fraction of the best value; abs: in the metric's units
    cooldown: int = Field(0, ge=0)                  # epochs after a reduction before counting resumes
    min_lr: float = Field(0.0, ge=0)                # the rate is never reduced below this

    @field_validator("monitor")
    @classmethod
    def _a_measured_column(cls, value: str) -> str:
        if value not in MONITORED:
            raise ValueError(f"not a metrics.csv column that is measured every epoch"
                             f"{did_you_mean(value, list(MONITORED))}; expected one of: "
                             f"{', '.join(MONITORED)}")
        return value

    def resolved_mode(self) -> str:
        """``mode``, or the monitored metric's own direction."""
        return self.mode or ("min" if lower_is_better(self.monitor) else "max")


SCHEDULES: dict[str, type[SchedulerConfig]] = {   # name -> its model
    "cosine": CosineSchedule, "step": StepSchedule, "linear": LinearSchedule,
    "constant": ConstantSchedule, "exponential": ExponentialSchedule,
    "one_cycle": OneCycleSchedule, "plateau": PlateauSchedule}


def _schedule_name(value: Any) -> Any:
    return value.get("name") if isinstance(value, dict) else getattr(value, "name", None)


# the schedules, told apart by name (a callable discriminator: StrictModel's check of every
# field, `name` included, is a before-validator, which pydantic's name-keyed form refuses)
Schedule = Annotated[Union[tuple(Annotated[model, Tag(name)]
                                 for name, model in SCHEDULES.items())],
                     Discriminator(_schedule_name)]


def _schedule_error(error: dict[str, Any], value: Any) -> dict[str, Any]:
    """One of pydantic's errors of a schedule, as at the key the user wrote: pydantic puts the
    union's tag into the path (scheduler.one_cycle.pct_start), and an unknown key should list
    that schedule's keys."""
    names = ", ".join(SCHEDULES)
    loc = tuple(error["loc"])
    if not isinstance(value, dict):
        return _value_error((), f"must be a schedule's name ({names}) or a mapping of its name "
                                f"and keys (got {value!r})")
    if error["type"] == "union_tag_invalid":
        tag = str(error["ctx"]["tag"])
        return _value_error(("name",), f"unknown schedule '{tag}'"
                            f"{did_you_mean(tag, list(SCHEDULES))}; expected one of: {names}")
    if error["type"] == "union_tag_not_found":
        return _value_error(("name",), f"a schedule needs a name: one of {names}")
    if loc and loc[0] in SCHEDULES:
        model, loc = SCHEDULES[str(loc[0])], loc[1:]
        if error["type"] == "extra_forbidden" and loc:
            keys = [key for key in model.model_fields
                    if not (model is CosineSchedule and key in SHARED_BEFORE)]
            return _value_error(loc, f"unknown key '{loc[-1]}' for schedule '{value['name']}'"
                                f"{did_you_mean(str(loc[-1]), keys)}; expected one of: "
                                f"{', '.join(keys)}")
    return {**error, "loc": loc}


def _value_error(loc: tuple, message: str, value: Any = None) -> dict[str, Any]:
    """pydantic's error line for ``message`` at ``loc`` (no input: the message says what it
    got)."""
    return {"type": "value_error", "loc": loc, "input": value,
            "ctx": {"error": ValueError(message)}}


def located_value_error(title: str, loc: tuple, value: Any, message: str) -> ValidationError:
    """A model validator's refusal placed at the key it is about (a ValueError would place it at
    the whole section)."""
    return ValidationError.from_exception_data(title, [_value_error(loc, message, value)])


class TrainConfig(StrictModel):
    epochs: int = Field(10, ge=1, le=MAX_EPOCHS)    # passes over the training split
    batch_size: int = Field(64, ge=1)               # samples per SGD step
    optimizer: OptimizerConfig = OptimizerConfig()  # the update rule and its settings
    scheduler: Optional[Schedule] = None             # learning-rate schedule, stepped once per epoch (a name, or a mapping with its name and keys)
    device: Literal["auto", "cpu", "cuda"] = "auto" # auto: cuda when available
    threads: Optional[int] = Field(None, ge=1, le=1024)  # torch CPU threads per run; None: cores ÷ workers
    runs_per_gpu: Optional[int] = Field(None, ge=1, le=64)  # at most this many runs at once on one GPU (local --workers processes; Ray tasks ask for 1/runs_per_gpu of a GPU); unset: --workers spread over the GPUs, and a whole GPU per Ray task; placement, not in the config hash
    fuse: Literal["auto", "on", "off"] = "auto"     # train runs that share data, model and settings as one stacked model: auto where measured faster (GPU; small CPU models), on, off
    train_eval_samples: int = Field(10_000, ge=1)   # size of the fixed subset measured for train metrics
    save_model: bool = False                        # also write model.pt (a state_dict)
    checkpoint_every: Literal["auto"] | Annotated[int, Field(ge=1)] | None = "auto"  # write a checkpoint every K epochs (a killed run resumes from the last one); auto: when 30 s of training have passed since the run began or its last checkpoint; null: never
    keep_checkpoint: bool = False                   # keep checkpoint.pt in the run folder after the run completes

    @field_validator("scheduler", mode="wrap")
    @classmethod
    def _schedule_by_name(cls, value: Any, handler) -> Any:
        value = {"name": value} if isinstance(value, str) else value   # `scheduler: cosine`
        try:
            return handler(value)
        except ValidationError as exc:
            errors = [_schedule_error(error, value) for error in exc.errors()]
            raise ValidationError.from_exception_data(exc.title, errors) from None

    @model_validator(mode="after")
    def _schedule_within_the_run(self) -> "TrainConfig":
        problem = self.scheduler.length_problem(self.epochs) if self.scheduler else None
        if problem:
            key, message = problem
            raise located_value_error(type(self).__name__, ("scheduler", key),
                                      getattr(self.scheduler, key), message)
        return self

    @field_validator("fuse", mode="before")
    @classmethod
    def _fuse_yaml_on_off(cls, value: Any) -> Any:
        # YAML 1.1 (PyYAML) reads a bare on/off as true/false
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


def inherited_train(train: dict[str, Any], override: Any) -> dict[str, Any]:
    """What a recipe's ``train:`` block (``override``) is merged over: the experiment's
    resolved ``train`` with only the optimizer keys that the recipe's optimizer takes, and
    where the recipe names another schedule, only the keys that schedule has. A recipe that
    switches to adam does not inherit the experiment's sgd momentum, which adam would refuse,
    nor one_cycle the warmup of the experiment's cosine."""
    override = override if isinstance(override, dict) else {}
    train = dict(train)
    optimizer = override.get("optimizer")
    name = optimizer.get("name") if isinstance(optimizer, dict) else None
    takes = OPTIMIZER_KEYS.get(name) or OPTIMIZER_KEYS[train["optimizer"]["name"]]
    train["optimizer"] = {key: value for key, value in train["optimizer"].items()
                          if key == "name" or key in takes}
    schedule, own = train.get("scheduler"), override.get("scheduler")
    name = own.get("name") if isinstance(own, dict) else None
    if isinstance(schedule, dict) and name in SCHEDULES and name != schedule["name"]:
        # cosine takes step's step_size and gamma (SHARED_BEFORE), as the merge did before
        train["scheduler"] = {key: value for key, value in schedule.items()
                              if key in SCHEDULES[name].model_fields}
    return train


class DiagnosisConfig(StrictModel):
    """Thresholds of the overfitting diagnosis; the rules and their reasons are in regbench/analysis/diagnose.py."""

    accuracy_gap: float = Field(0.05, ge=0, le=1)   # train − val accuracy (fraction) above this is a large gap
    r2_gap: float = Field(0.1, ge=0)                # train − val R² above this is a large gap (regression)
    loss_ratio: float = Field(2.0, ge=1)            # val ÷ train loss above this is a gap, if also ...
    loss_gap: float = Field(0.2, ge=0)              # ... val − train loss exceeds this (loss units; nats for cross-entropy)
    rise_tolerance: float = Field(0.1, ge=0)        # val loss ending this fraction above its minimum counts as rising
    rise_window: int = Field(3, ge=1)               # ... when the end is at least this many epochs after the minimum
    f1_drop: float = Field(0.05, ge=0, le=1)        # train − val macro F1 (else precision/recall) drop that counts
    underfit_accuracy: float = Field(0.6, ge=0, le=1)  # train accuracy below this (no gap) is underfitting
    underfit_r2: float = Field(0.3, le=1)           # train R² below this (no gap) is underfitting (regression)
    underfit_loss_drop: float = Field(0.1, ge=0, le=1)  # losses-only logs: train loss falling less than this fraction is flat


class CVConfig(StrictModel):
    """Repeated k-fold cross-validation (``dataset.cv``): every seed × repeat × fold is a run
    whose test split is that fold (the validation split is drawn from the other folds)."""

    folds: int = Field(5, ge=2, le=10_000)          # k: each repeat splits the rows into k folds (stratified for classification), each the test split of one run
    repeats: int = Field(1, ge=1, le=1_000)         # r: partitions per seed, each drawn afresh; runs per recipe and seed = folds × repeats


class DatasetConfig(StrictModel):
    """Options shared by every dataset; the dataset's own parameters sit beside them."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = "digits"                            # registry name (see `regbench list datasets`)
    root: str = "data"                              # folder holding (or receiving) dataset files
    download: bool = False                          # fetch torchvision datasets when missing
    val_fraction: float = Field(0.1, gt=0, lt=1)    # held out of the training split, stratified
    test_fraction: float = Field(0.2, gt=0, lt=1)   # held out first when the dataset has no test split
    train_subset: Optional[int] = Field(None, ge=2) # cap on training samples (after the split)
    val_limit: Optional[int] = Field(None, ge=1)    # cap on validation samples: a seeded subset, stratified for classification (a quick look at a large dataset)
    test_limit: Optional[int] = Field(None, ge=1)   # cap on test samples: a seeded subset, stratified for classification (a quick look at a large dataset)
    label_noise: float = Field(0.0, ge=0, le=1)     # fraction of training labels replaced at random (see label_noise_mode)
    label_noise_mode: Literal["different", "uniform"] = "different"  # different: a noisy label is always another class (exactly that fraction is wrong); uniform: replaced by a uniformly drawn class, which may be the true one (Zhang et al. 2017; 1.0 gives fully random labels)
    split_seed: Seed = 0                            # seed of every split, shared by all runs
    resample: Literal["fixed", "per_seed", "per_seed_with_test"] = "fixed"  # per_seed: each seed draws its own train/val split, subset and label noise (the test set stays fixed); per_seed_with_test: its own test split too (datasets without a test split of their own), so that intervals include the test sample's variance
    standardize_target: bool = False                # regression: scale targets to unit variance
    cv: Optional[CVConfig] = None                   # repeated k-fold instead of one test split ({folds: 5, repeats: 2}, or cv: 5): each fold's held-out rows are a run's test split; each seed draws its own partitions

    @field_validator("cv", mode="before")
    @classmethod
    def _cv_shorthand(cls, value: Any) -> Any:
        # anything but a mapping or a whole number (5.0, "5", true) is refused here: pydantic
        # would say "a valid dictionary", which hides the shorthand
        if isinstance(value, int) and not isinstance(value, bool):
            return {"folds": value}
        if value is None or isinstance(value, (dict, CVConfig)):
            return value
        shown = str(value).lower() if isinstance(value, bool) else repr(value)
        raise ValueError(f"expected a number of folds (integer ≥ 2) or {{folds: k, repeats: r}} "
                         f"(got {shown})")

    @field_validator("cv")
    @classmethod
    def _cv_owns_the_test_split(cls, value: Optional[CVConfig], info: ValidationInfo
                                ) -> Optional[CVConfig]:
        # cv is declared last, so the settings it conflicts with are validated by now
        if value is None:
            return value
        resample = info.data.get("resample", "fixed")
        if resample != "fixed":
            raise ValueError(f"cannot be combined with resample: {resample}: with cv every seed "
                             "already draws its own folds (and each fold its own validation "
                             "split); remove resample or cv")
        default_test = cls.model_fields["test_fraction"].default
        if info.data.get("test_fraction", default_test) != default_test:
            raise ValueError("cannot be combined with test_fraction: with cv each fold is the "
                             "test split (1/folds of the rows); remove test_fraction or cv")
        if info.data.get("test_limit") is not None:
            raise ValueError("cannot be combined with test_limit: every row must be tested "
                             "once per repeat; remove test_limit or cv")
        return value

    @model_validator(mode="after")
    def _all_wrong_needs_uniform(self) -> "DatasetConfig":
        if self.label_noise >= 1 and self.label_noise_mode == "different":
            raise ValueError("label_noise 1 with label_noise_mode 'different' makes every label "
                             "wrong on purpose; for fully random labels (Zhang et al. 2017) set "
                             "label_noise_mode: uniform, or lower label_noise below 1")
        return self


class ModelConfig(StrictModel):
    """A model's registry name; the model's own parameters sit beside it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = "mlp"                               # registry name (see `regbench list models`)


class LoggingConfig(StrictModel):
    """Trackers that receive every run's numbers besides its folder (`--log` adds to them)."""

    trackers: list[str] = []                        # registered trackers (tensorboard: event files in each run folder; mlflow: MLflow runs; a plugin's)
    mlflow_uri: Optional[str] = None                # MLflow tracking URI (--mlflow-uri overrides it; unset: MLFLOW_TRACKING_URI, else MLflow's default)


SLURM_NAME = re.compile(r"[A-Za-z0-9_.\-]+(?:,[A-Za-z0-9_.\-]+)*")
SLURM_OPTION = re.compile(r"[a-z][a-z0-9_\-]*")
# sbatch options an element's script already has: the field that sets them, or "" (regbench's
# or submitit's own: the array, the logs, the warning signal, requeueing)
SLURM_OWN_OPTIONS = {"partition": "partition", "time": "time", "cpus-per-task": "cpus_per_task",
                     "gpus-per-task": "gpus_per_task", "mem": "mem", "array": "", "signal": "",
                     "output": "", "error": "", "open-mode": "", "job-name": "", "wckey": "",
                     "nodes": "", "ntasks-per-node": "", "requeue": "", "no-requeue": ""}
SLURM_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


class SlurmConfig(StrictModel):
    """How `--executor slurm` asks for each job-array element (sbatch's options, through
    submitit). Where and how runs are placed: not part of any run's config hash."""

    partition: Optional[str] = None                 # the partition (unset: the cluster's default)
    time: Union[int, str] = 60                      # each element's time limit: minutes, or Slurm's [D-]HH:MM[:SS]; near it the element is requeued and resumes its run from its checkpoint
    cpus_per_task: int = Field(1, ge=1)             # cores per element: its runs' torch threads (unless train.threads)
    gpus_per_task: int = Field(0, ge=0)             # GPUs per element (device: auto then trains on it)
    mem: Optional[str] = None                       # memory per element in Slurm's units (4G, 8000M; unset: the partition's default)
    array_parallelism: Optional[int] = Field(None, ge=1)  # elements running at once (unset: --workers when over 1, else 64)
    runs_per_element: int = Field(1, ge=1)          # tasks each element trains in turn (a fused group counts as one)
    additional: dict[str, Union[str, int]] = {}     # further sbatch options by their long name, e.g. {account: proj1, qos: short}

    @field_validator("time")
    @classmethod
    def _minutes(cls, value: Union[int, str]) -> int:
        """Minutes; text as Slurm writes a time limit: MM, HH:MM:SS or D-HH[:MM[:SS]]."""
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"must be at least 1 minute (got {value})")
            return value
        found = SLURM_TIME.match(value.strip())
        if not found:
            raise ValueError(f"expected minutes or Slurm's [D-]HH:MM[:SS] (got {value!r})")
        days, first, second, third = (int(g) if g else 0 for g in found.groups())
        if found.group(1):                          # D-HH[:MM[:SS]]
            minutes = days * 1440 + first * 60 + second + (third > 0)
        elif found.group(4):                        # HH:MM:SS
            minutes = first * 60 + second + (third > 0)
        elif found.group(3):                        # MM:SS
            minutes = first + (second > 0)
        else:                                       # MM
            minutes = first
        if minutes < 1:
            raise ValueError(f"must be at least 1 minute (got {value!r})")
        return minutes

    @field_validator("partition")
    @classmethod
    def _partition(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not SLURM_NAME.fullmatch(value):
            raise ValueError(f"expected a partition name, or several joined by commas (got "
                             f"{value!r})")
        return value

    @field_validator("additional")
    @classmethod
    def _sbatch_options(cls, value: dict[str, Union[str, int]]) -> dict[str, Union[str, int]]:
        """Options the sbatch script takes one per line: a name, a value on one line, and
        none that regbench or submitit set themselves."""
        for key, option in value.items():
            flag = key.replace("_", "-")
            if not SLURM_OPTION.fullmatch(key):
                raise ValueError(f"{key!r} is not an sbatch option's long name (e.g. account, "
                                 "qos, constraint)")
            if flag in SLURM_OWN_OPTIONS:
                own = SLURM_OWN_OPTIONS[flag]
                raise ValueError(f"{key}: {'set it as execution.slurm.' + own if own else 'regbench sets it itself'}")
            if isinstance(option, str) and any(ord(c) < 32 or ord(c) == 127 for c in option):
                raise ValueError(f"{key}: the value must be one line of text")
        return value

    @field_validator("mem")
    @classmethod
    def _memory(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.fullmatch(r"\d+[KMGT]?B?", value.strip(), re.I):
            raise ValueError(f"expected an amount such as 4G or 8000M (got {value!r})")
        return value


class ExecutionConfig(StrictModel):
    """Where runs train, for the executors that read settings from the config."""

    slurm: SlurmConfig = SlurmConfig()              # `--executor slurm`: each job-array element's sbatch options


class CompareConfig(StrictModel):
    """How the comparison judges a recipe against the baseline."""

    min_effect: Optional[Effect | dict[str, Effect]] = None  # smallest difference of interest δ on the default metric (accuracy, or mse for regression; e.g. 0.01), or per metric ({accuracy: 0.01, loss: 0.05}): a recipe whose interval lies inside ±δ is `equivalent`, and the seed advice sizes seeds for it; unset: nothing is called equivalent (--min-effect overrides it)

    @field_validator("min_effect")
    @classmethod
    def _known_metrics(cls, value: Any) -> Any:
        if isinstance(value, dict):
            known = sorted(set(CLASSIFICATION) | set(REGRESSION))
            unknown = [k for k in value if k not in known]
            if unknown:
                raise ValueError(f"unknown metric {unknown[0]!r}; expected one of: "
                                 f"{', '.join(known)}")
        return value


class SearchRange(StrictModel):
    """What `regbench tune` may try for one key: a numeric range (low, high, optionally log or
    step) or a list of choices."""

    low: Optional[float] = None                     # smallest value tried (inclusive)
    high: Optional[float] = None                    # largest value tried (inclusive)
    log: bool = False                               # sample log-uniformly (needs low > 0)
    step: Optional[float] = Field(None, gt=0)       # only multiples of step above low
    choices: Optional[list[Any]] = None             # instead of a range: the values to try

    @model_validator(mode="after")
    def _range_or_choices(self) -> "SearchRange":
        ranged = self.low is not None or self.high is not None
        if self.choices is not None:
            if ranged or self.log or self.step is not None:
                raise ValueError("give either choices or a range (low, high), not both")
            if not self.choices:
                raise ValueError("choices needs at least one value")
            if any(isinstance(c, (list, dict)) or c is None for c in self.choices):
                raise ValueError("each choice must be a single number, true/false or text")
            return self
        if self.low is None or self.high is None:
            raise ValueError("expected a range {low: …, high: …} or {choices: [...]}")
        if self.low >= self.high:
            raise ValueError(f"low must be below high (got low {self.low:g}, high "
                             f"{self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0 (got low {self.low:g}): a log scale "
                             "has no zero")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        return self


class ExperimentConfig(StrictModel):
    name: str                                       # experiment name -> results/<name>/
    seeds: list[Seed] = [0]                         # every recipe and sweep point runs once per seed
    dataset: DatasetConfig = DatasetConfig()        # the data: a registry name and its options
    model: ModelConfig = ModelConfig()              # the network: a registry name and its options
    train: TrainConfig = TrainConfig()              # the training budget every recipe shares
    recipes: dict[str, dict[str, Any]] = {}         # recipe name -> {regularizer -> parameters}
    sweep: dict[str, list[Any]] = {}                # key path -> values; grid product with seeds
    search: dict[str, SearchRange] = {}             # key path -> range `regbench tune` searches
    diagnosis: DiagnosisConfig = DiagnosisConfig()  # thresholds of the overfitting diagnosis
    logging: LoggingConfig = LoggingConfig()        # trackers: TensorBoard, MLflow
    execution: ExecutionConfig = ExecutionConfig()  # executor settings (execution.slurm); no run's result depends on them
    compare: CompareConfig = CompareConfig()        # how recipes are judged: the smallest difference of interest

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_safe_name(value, "experiment name")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        return check_seeds(value)

    @field_validator("sweep")
    @classmethod
    def _sweep(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in value.items():
            if not values:
                raise ValueError(f"sweep '{key}' needs at least one value")
        return value
