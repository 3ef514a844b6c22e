"""Trackers: the same numbers as the run folders, in TensorBoard, MLflow or a plugin's tracker
(``--log NAME``: any name in the ``TRACKERS`` registry; each built-in registers itself in its
module with ``register_tracker``, as a plugin's does).

The driver logs: each epoch's row as the epoch ends (``log_epoch``: from the training loop in
this process, or relayed from worker processes and Ray tasks, which send their rows to the
driver as they train), then the run's final state after it has written the run's folder
(``log_run``), so logging works with every executor, changes no result and never fails a run:
a tracker's error is a warning naming the run, the tracker is then left out for the rest of
the experiment (one warning, not one per run), and the sweep goes on. Nothing is sent twice:
``log_run`` sends only the epochs not sent live, a row that arrives after its run was logged is
dropped, and a resumed run continues what its killed attempt sent (each tracker's module says
how).

    trackers = open_trackers(["tensorboard"], plan, results_dir)   # bad names, a missing
    trackers.log_epoch(spec, row, run_dir)                            # package: exit 2 here
    trackers.log_run(spec, summary, rows, weights, run_dir)
    trackers.replay(spec, run_dir)      # a completed run a tracker has not seen (--log added)
    trackers.finish(interrupted)        # after tables and report

``log_epoch`` is optional for a plugin's tracker (one without it gets each run whole from
``log_run``, as before).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from regbench.errors import ConfigError
from regbench.registry import TRACKERS, Tracker, UnknownName, register_tracker
from regbench.tracking import mlflow_tracker, tensorboard_tracker  # noqa: F401  (register them)
from regbench.tracking.base import first_line
from regbench.vocabulary import RunSpec

__all__ = ["TRACKERS", "Tracker", "Trackers", "check_trackers", "open_trackers",
           "register_tracker"]


class Trackers:
    """The trackers of one experiment; each call is guarded (a failure becomes a warning)."""

    def __init__(self, trackers: dict[str, Tracker], warnings: list[str]):
        self.trackers, self.warnings = trackers, warnings      # registered name -> tracker

    def _each(self, what: str, call: Callable[[Tracker], None]) -> None:
        for name, tracker in list(self.trackers.items()):
            try:
                call(tracker)
            except Exception as exc:   # logging must never fail a run or the sweep
                del self.trackers[name]
                self.warnings.append(f"{what}: {name} logging failed ({first_line(exc)});"
                                     f" {name} is off for the rest of this experiment; "
                                     "the run folders are complete")

    def log_epoch(self, spec: RunSpec, row: dict[str, Any], run_dir: Path) -> None:
        """A run's epoch, as it ends, to each tracker that logs epochs live."""
        self._each(f"run {spec['run_id']}",
                   lambda tracker: getattr(tracker, "log_epoch", _not_live)(spec, row, run_dir))

    @property
    def owns_event_files(self) -> bool:
        """Whether a tracker writes event files into the run folders and replaces an earlier
        attempt's itself (``results.write_run`` then leaves them: they may be this run's)."""
        return any(getattr(tracker, "owns_event_files", False)
                   for tracker in self.trackers.values())

    def log_run(self, spec: RunSpec, summary: dict[str, Any], rows: list[dict],
                weights, run_dir: Path) -> None:
        self._each(f"run {spec['run_id']}",
                   lambda tracker: tracker.log_run(spec, summary, rows, weights, run_dir))

    def replay(self, spec: RunSpec, run_dir: Path) -> None:
        """A completed run that was skipped: logged from its folder to a tracker that lacks it
        (a tracker added on a later command, or whose store was emptied)."""
        self._each(f"run {spec['run_id']}", lambda tracker: tracker.replay(spec, run_dir))

    def finish(self, interrupted: bool = False) -> None:
        self._each("experiment", lambda tracker: tracker.finish(interrupted))


def _not_live(spec: RunSpec, row: dict[str, Any], run_dir: Path) -> None:
    """A tracker without ``log_epoch`` gets each run whole, from ``log_run``."""


def _entries(names: list[str]) -> dict:
    """Each tracker named once, in order; an unknown name lists the registered ones."""
    try:
        return {name: TRACKERS.get(name) for name in dict.fromkeys(names)}
    except UnknownName as exc:
        raise ConfigError(str(exc), source="--log") from None


def check_trackers(names: list[str], mlflow_uri: Optional[str] = None) -> None:
    """Before any training (``tune`` checks before its search): every name registered, every
    tracker usable (its package installed, the MLflow store reachable): exit 2 otherwise."""
    for entry in _entries(names).values():
        entry.check(mlflow_uri=mlflow_uri)


def open_trackers(names: list[str], plan, results_dir: Path, mlflow_uri: Optional[str] = None,
                  resume: bool = True) -> Trackers:
    """The trackers ``names`` asks for (``--log`` and the config's ``logging.trackers``), each
    checked before anything trains: an unknown name or a missing package is an error."""
    entries = _entries(names)
    check_trackers(list(entries), mlflow_uri)
    warnings: list[str] = []
    if mlflow_uri and "mlflow" not in entries:
        warnings.append("an MLflow tracking URI was given but mlflow is not among the "
                        "trackers: add --log mlflow to log there")
    trackers = {name: entry.open(plan, results_dir, mlflow_uri=mlflow_uri, resume=resume)
                for name, entry in entries.items()}
    return Trackers(trackers, warnings)
