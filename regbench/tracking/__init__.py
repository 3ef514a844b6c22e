"""Trackers: the same numbers as the run folders, in TensorBoard and MLflow (``--log``).

The driver logs, after it has written each run's folder (workers and Ray tasks only return
rows), so logging works with every executor, changes no result and never fails a run: a
tracker's error is a warning naming the run, the tracker is then left out for the rest of the
experiment (one warning, not one per run), and the sweep goes on.

    trackers = open_trackers(["tensorboard"], plan, results_dir)   # bad names, a missing
    trackers.log_run(spec, summary, rows, weights, run_dir)           # package: exit 2 here
    trackers.replay(spec, run_dir)      # a completed run a tracker has not seen (--log added)
    trackers.finish(interrupted)        # after tables and report
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from regbench.errors import RegbenchError
from regbench.tracking.base import first_line
from regbench.tracking.mlflow_tracker import MlflowTracker, check_mlflow
from regbench.tracking.tensorboard_tracker import TensorBoardTracker, require_tensorboard

TRACKERS = ("tensorboard", "mlflow")



class Trackers:
    """The trackers of one experiment; each call is guarded (a failure becomes a warning)."""

    def __init__(self, trackers: list, warnings: list[str]):
        self.trackers, self.warnings = trackers, warnings

    def _each(self, what: str, method: str, *args) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:   # logging must never fail a run or the sweep
                self.trackers.remove(tracker)
                self.warnings.append(f"{what}: {tracker.name} logging failed ({first_line(exc)});"
                                     f" {tracker.name} is off for the rest of this experiment; "
                                     "the run folders are complete")

    def log_run(self, spec: dict[str, Any], summary: dict[str, Any], rows: list[dict],
                weights, run_dir: Path) -> None:
        self._each(f"run {spec['run_id']}", "log_run", spec, summary, rows, weights, run_dir)

    def replay(self, spec: dict[str, Any], run_dir: Path) -> None:
        """A completed run that was skipped: logged from its folder to a tracker that lacks it
        (a tracker added on a later command, or whose store was emptied)."""
        self._each(f"run {spec['run_id']}", "replay", spec, run_dir)

    def finish(self, interrupted: bool = False) -> None:
        self._each("experiment", "finish", interrupted)


def check_trackers(names: list[str], mlflow_uri: Optional[str] = None) -> None:
    """Before any training (``tune`` checks before its search): every name known, every
    package installed, the MLflow store usable."""
    for name in dict.fromkeys(names):
        if name not in TRACKERS:
            raise RegbenchError(f"--log: unknown tracker '{name}'; expected one of: "
                                f"{', '.join(TRACKERS)}")
        if name == "tensorboard":
            require_tensorboard()
        else:
            check_mlflow(mlflow_uri)


def open_trackers(names: list[str], plan, results_dir: Path, mlflow_uri: Optional[str] = None,
                  resume: bool = True) -> Trackers:
    """The trackers ``names`` asks for (``--log`` and the config's ``logging.trackers``), each
    checked before anything trains: an unknown name or a missing package is an error."""
    names = list(dict.fromkeys(names))
    check_trackers(names, mlflow_uri)
    warnings: list[str] = []
    if mlflow_uri and "mlflow" not in names:
        warnings.append("an MLflow tracking URI was given but mlflow is not among the "
                        "trackers: add --log mlflow to log there")
    trackers = []
    for name in names:
        if name == "tensorboard":
            trackers.append(TensorBoardTracker(plan, results_dir))
        else:
            trackers.append(MlflowTracker(plan, results_dir, mlflow_uri, resume))
    return Trackers(trackers, warnings)
