"""The words every stage shares, with no heavy import (no torch, numpy or pandas): metric names
and which way is better, the near-zero threshold of the sparsity column, the fewest seeds an
interval needs, and the names of the files in a results folder.

    results/<name>/
      experiment.yaml  plan.json  runs.csv  comparison.{md,csv,tex}  plots/  report.html
      runs/<run_id>/config.yaml  metrics.csv  weights.npy  [model.pt]  summary.json (last)
"""
from __future__ import annotations

import re
from typing import Any, Optional, TypedDict, Union

CLASSIFICATION = ("loss", "accuracy", "precision", "recall", "f1", "ece")
REGRESSION = ("loss", "mse", "mae", "r2")
LOWER_IS_BETTER = ("loss", "mse", "mae", "ece", "objective", "gap")

NEAR_ZERO = 1e-3               # |w| below this counts as zero (the sparsity column and plots)
MIN_SEEDS = 3                  # fewest seeds for an interval over seeds to mean much
MAX_SEED = 2**32 - 1           # the largest seed numpy, torch and scikit-learn all accept

# The plain data that travels from the plan to the workers (and to Ray) and back. One name each:
# a *run spec* (``spec``) is one run, as plan.run_spec makes it; a *task* (``task``) is what
# an executor trains: one run spec, or a fused group of them (engine.fused.group_spec); a *run*
# is the training itself and its folder, named by the spec's ``run_id``.

class _RunSpecKeys(TypedDict):
    run_id: str                    # recipe[__key=value…]__seed=<s>[__repeat=<r>__fold=<f>]: the run's folder name
    point_id: str                  # the run id without its seed (and fold): one recipe or sweep point
    experiment: str                # the experiment's name
    recipe: str
    seed: int
    sweep: dict[str, Any]          # short key -> value of this sweep point ({} without a sweep)
    sweep_paths: dict[str, Any]    # full key path -> value, typed by the schema
    dataset: dict[str, Any]        # the resolved dataset section
    model: dict[str, Any]          # the resolved model section
    train: dict[str, Any]          # this recipe's training settings (device, threads and fuse
                                   # are placement: never in config_hash)
    regularizers: dict[str, dict[str, Any]]   # name -> resolved parameters
    train_differs: bool            # the recipe's own training settings differ (a † in tables)
    diagnosis: dict[str, Any]      # the overfitting rules' thresholds
    config_hash: str               # what changes the numbers: a resume retrains on a change


class RunSpec(_RunSpecKeys, total=False):
    """One run of a plan (see the keys above); the optional keys are set by the driver, but
    ``repeat`` and ``fold``, which the plan sets with ``dataset.cv``."""

    plugins: list[str]             # plugins a worker loads before the run
    repeat: int                    # dataset.cv: which partition of the seed's rows (0…repeats−1)
    fold: int                      # dataset.cv: which fold of it is the test split (0…folds−1)
    checkpoint: Optional[str]      # the run's checkpoint file (engine.checkpoint), None: none
    withhold_test: bool            # a tuning trial: never evaluated on the test split
    trial: dict[str, Any]          # a tuning trial's study, number and pruner


class GroupTask(TypedDict):
    """Runs trained as one stacked model (engine.fused): their specs and what they share."""

    run_id: str                    # "<first run id> +<n> fused", for progress and errors
    fused: list[RunSpec]           # the members (engine.result.GROUP_KEY)
    train: dict[str, Any]
    dataset: dict[str, Any]
    seed: int
    plugins: list[str]


Task = Union[RunSpec, GroupTask]


# exit codes of every command (README: "Exit codes, interruptions and resuming")
EXIT_OK = 0                    # every run completed
EXIT_RUN_FAILED = 1            # a run failed or diverged, or a results file could not be written
EXIT_USAGE = 2                 # bad input, found before anything trains
EXIT_INTERRUPTED = 130         # Ctrl-C: 128 + SIGINT
EXIT_TERMINATED = 143          # SIGTERM (kill, Slurm, CI): 128 + SIGTERM

# columns of metrics.csv, in this order, before the train_/val_ metrics and regularizer extras
LEADING_COLUMNS = ("epoch", "seconds", "lr", "objective", "penalty", "weight_norm", "sparsity",
                   "grad_norm")

# files of a results folder
EXPERIMENT_FILE = "experiment.yaml"   # the resolved config
TUNING_FILE = "tuning.json"            # `regbench tune`: its protocol and every trial
PLAN_FILE = "plan.json"               # run ids of the latest `regbench run` in this folder
RUNS_DIR = "runs"
RUNS_TABLE = "runs.csv"
COMPARISON = {"md": "comparison.md", "csv": "comparison.csv", "tex": "comparison.tex"}
REPORT_FILE = "report.html"
PLOTS_DIR = "plots"
# files of a run folder
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
WEIGHTS_FILE = "weights.npy"
MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"      # a run in progress: the state it resumes from
SUMMARY = "summary.json"              # written last: its presence means the folder is whole


def metric_names(task: str) -> tuple[str, ...]:
    """The metrics measured for a task, as suffixes of ``train_``/``val_``/``test_`` columns."""
    return CLASSIFICATION if task == "classification" else REGRESSION


def lower_is_better(metric: str) -> bool:
    """``val_loss``, ``mse``, ``test_ece``, ``gap``: smaller is better; anything else larger."""
    return metric.rsplit("_", 1)[-1] in LOWER_IS_BETTER


def default_metric(task: str) -> str:
    """The metric tables rank by unless ``--metric`` says otherwise."""
    return "accuracy" if task == "classification" else "mse"


def format_value(value: Any) -> str:
    """A sweep value as it appears in a run id: short, readable, safe as a folder name."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:.12g}"   # 0.1 not 0.1000000000000000055, 1e-05 kept short
    elif isinstance(value, (list, tuple)):
        text = "-".join(format_value(v) for v in value)
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)


ENTRY_POINT_GROUP = "regbench.plugins"   # installed packages register plugins under this group


# squeue states in which a Slurm job-array element still holds its runs (engine.slurm, status)
SLURM_LIVE_STATES = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
    "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"})
