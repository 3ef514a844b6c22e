"""The typed config schema (pydantic v2, unknown keys refused).

Component-specific parameters (a dataset's, a model's, a regularizer's) are declared by the
component's own ``Params`` model in its registry entry; this file holds what every experiment
shares. Every default sits on one line with its meaning or unit.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from regbench.vocabulary import CLASSIFICATION, MAX_SEED, REGRESSION

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


def check_safe_name(value: str, what: str) -> str:
    """Names become folder names: refuse anything that could escape the results folder."""
    if not NAME_PATTERN.fullmatch(value) or ".." in value or len(value) > 100:
        raise ValueError(f"{what} must be letters, digits, '_', '-' or '.', start with a "
                         f"letter or digit, contain no '..' and be at most 100 characters")
    return value


class OptimizerConfig(StrictModel):
    name: Literal["sgd", "adam", "adamw"] = "sgd"   # update rule
    lr: float = Field(0.1, gt=0)                    # learning rate η per step
    momentum: float = Field(0.0, ge=0, lt=1)        # SGD momentum (sgd only)
    nesterov: bool = False                          # Nesterov momentum (sgd only)
    betas: tuple[Beta, Beta] = (0.9, 0.999)         # Adam moment decay rates in [0, 1) (adam/adamw only)
    weight_decay: Optional[float] = Field(None, ge=0)  # adamw only: torch.optim.AdamW's decoupled decay (None: its default 0.01); sgd/adam: use the weight_decay or l2 regularizer

    @model_validator(mode="after")
    def _decay_only_in_adamw(self) -> "OptimizerConfig":
        if self.weight_decay is not None and self.name != "adamw":
            raise ValueError(f"weight_decay is only an optimizer setting of adamw; with "
                             f"{self.name}, add the weight_decay (decoupled) or l2 regularizer "
                             "to a recipe instead")
        return self


class SchedulerConfig(StrictModel):
    name: Literal["cosine", "step"]                 # cosine: anneal to 0 over the run; step: × gamma every step_size epochs
    step_size: int = Field(10, ge=1)                # epochs between decays (step only)
    gamma: float = Field(0.1, gt=0, le=1)           # decay factor (step only)


class TrainConfig(StrictModel):
    epochs: int = Field(10, ge=1, le=MAX_EPOCHS)    # passes over the training split
    batch_size: int = Field(64, ge=1)               # samples per SGD step
    optimizer: OptimizerConfig = OptimizerConfig()  # the update rule and its settings
    scheduler: Optional[SchedulerConfig] = None     # learning-rate schedule, per epoch
    device: Literal["auto", "cpu", "cuda"] = "auto" # auto: cuda when available
    threads: Optional[int] = Field(None, ge=1, le=1024)  # torch CPU threads per run; None: cores ÷ workers
    fuse: Literal["auto", "on", "off"] = "auto"     # train runs that share data, model and settings as one stacked model: auto where measured faster (GPU; small CPU models), on, off
    train_eval_samples: int = Field(10_000, ge=1)   # size of the fixed subset measured for train metrics
    save_model: bool = False                        # also write model.pt (a state_dict)
    checkpoint_every: Literal["auto"] | Annotated[int, Field(ge=1)] | None = "auto"  # write a checkpoint every K epochs (a killed run resumes from the last one); auto: when 30 s of training have passed since the run began or its last checkpoint; null: never
    keep_checkpoint: bool = False                   # keep checkpoint.pt in the run folder after the run completes

    @field_validator("scheduler", mode="before")
    @classmethod
    def _scheduler_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("fuse", mode="before")
    @classmethod
    def _fuse_yaml_on_off(cls, value: Any) -> Any:
        # YAML 1.1 (PyYAML) reads a bare on/off as true/false
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


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
    compare: CompareConfig = CompareConfig()        # how recipes are judged: the smallest difference of interest

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_safe_name(value, "experiment name")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("at least one seed is needed")
        if len(set(value)) != len(value):
            raise ValueError("seeds must be distinct")
        return value

    @field_validator("sweep")
    @classmethod
    def _sweep(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in value.items():
            if not values:
                raise ValueError(f"sweep '{key}' needs at least one value")
        return value
