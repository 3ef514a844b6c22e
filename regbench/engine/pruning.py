"""A `regbench tune` trial as it trains: its validation curve reported to the Optuna study epoch
by epoch, and the study's pruner asked whether to stop it (Optuna's median or successive-halving
rule over the other trials' curves at the same epoch).

This runs wherever the trial trains (the driver, a ``--workers`` process or a Ray task): each
opens the study's storage itself, which is how Optuna shares one study between processes and
machines. A pruned trial ends with status ``pruned`` and keeps its epochs so far.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

from regbench.engine.result import RunStopped

PRUNERS = ("median", "halving", "none")
SQLITE_WAIT_SECONDS = 60    # how long a process waits for another's write to the SQLite file


def quiet_optuna():
    """Optuna, with its per-trial INFO lines and experimental-feature warnings off (regbench
    reports trials itself)."""
    import warnings

    import optuna  # deferred: only `regbench tune` uses it

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_storage(url: str):
    """An Optuna RDB storage; a SQLite file waits for other processes' writes instead of
    failing with "database is locked"."""
    optuna = quiet_optuna()
    engine = {"connect_args": {"timeout": SQLITE_WAIT_SECONDS}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine)


def make_pruner(name: str, epochs: int):
    """``median``: stop a trial whose value is worse than the median of earlier trials at the
    same epoch (after 5 trials and the first fifth of the epochs); ``halving``: asynchronous
    successive halving; ``none``: every trial trains its whole budget."""
    optuna = quiet_optuna()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5,
                                           n_warmup_steps=max(1, epochs // 5))
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def trial_reporter(trial: dict[str, Any], epochs: int,
                   on_epoch: Optional[Callable[[dict], None]]) -> Callable[[dict], None]:
    """The epoch callback of a tuning trial: ``on_epoch`` (progress), then the epoch's value of
    the selection column (e.g. ``val_accuracy``) reported at step = epoch, and RunStopped when
    the pruner says so. A non-finite value is not reported: the run diverges on its own."""
    optuna = quiet_optuna()
    storage = open_storage(trial["storage"])
    study = optuna.load_study(study_name=trial["study"], storage=storage,
                              pruner=make_pruner(trial["pruner"], epochs))
    handle = optuna.trial.Trial(study, trial["trial_id"])
    # a trial trained again after its process died: the epochs it reported then stay (the same
    # numbers: a seeded run repeats itself), and Optuna refuses a step twice
    reported = set(storage.get_trial(trial["trial_id"]).intermediate_values)

    reachable = [True]     # a storage hiccup mid-trial: the trial trains on, unpruned

    def report(row: dict) -> None:
        if on_epoch is not None:
            on_epoch(row)
        value = row.get(trial["column"])
        epoch = int(row["epoch"])
        if not isinstance(value, (int, float)) or not math.isfinite(value) or not reachable[0]:
            return
        try:
            if epoch not in reported:
                handle.report(float(value), epoch)
            # a trial that trained its whole budget is finished, not pruned
            prune = epoch < epochs and handle.should_prune()
        except Exception:
            reachable[0] = False
            return
        if prune:
            raise RunStopped("pruned", f"pruned after epoch {epoch} by the {trial['pruner']} "
                             f"pruner ({trial['column']} {value:.4g})")
    return report
