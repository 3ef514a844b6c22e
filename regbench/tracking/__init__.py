"""Trackers: the same numbers as the run folders, in TensorBoard and MLflow (``--log``).

The driver logs, after it has written each run's folder (workers and Ray tasks only return
rows), so logging works with every executor, changes no result and never fails a run: a
tracker's error is a warning naming the run, and the sweep goes on.

    trackers = open_trackers(["tensorboard"], plan, results_dir)   # bad names, a missing
    trackers.log_run(spec, summary, rows, weights, run_dir)           # package: exit 2 here
    trackers.finish()                                                # after tables and report
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from regbench.errors import RegbenchError
from regbench.tracking.mlflow_tracker import MlflowTracker
from regbench.tracking.tensorboard_tracker import TensorBoardTracker

TRACKERS = ("tensorboard", "mlflow")


class Trackers:
    """The trackers of one experiment; each call is guarded (a failure becomes a warning)."""

    def __init__(self, trackers: list, warnings: list[str]):
        self.trackers, self.warnings = trackers, warnings

    def _guard(self, tracker, what: str, call, *args) -> None:
        try:
            call(*args)
        except Exception as exc:   # logging must never fail a run or the sweep
            self.warnings.append(f"{what}: {tracker.name} logging failed ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}); the run "
                                 "folder is complete")

    def log_run(self, spec: dict[str, Any], summary: dict[str, Any], rows: list[dict],
                weights, run_dir: Path) -> None:
        for tracker in self.trackers:
            self._guard(tracker, f"run {spec['run_id']}", tracker.log_run, spec, summary, rows,
                        weights, run_dir)

    def finish(self) -> None:
        for tracker in self.trackers:
            self._guard(tracker, "experiment", tracker.finish)


def open_trackers(names: list[str], plan, results_dir: Path,
                  mlflow_uri: Optional[str] = None) -> Trackers:
    """The trackers ``names`` asks for (``--log`` and the config's ``logging.trackers``), each
    checked before anything trains: an unknown name or a missing package is an error."""
    warnings: list[str] = []
    trackers = []
    for name in dict.fromkeys(names):
        if name == "tensorboard":
            trackers.append(TensorBoardTracker(plan, results_dir))
        elif name == "mlflow":
            trackers.append(MlflowTracker(plan, results_dir, mlflow_uri))
        else:
            raise RegbenchError(f"--log: unknown tracker '{name}'; expected one of: "
                                f"{', '.join(TRACKERS)}")
    return Trackers(trackers, warnings)
