"""What a run returns to the driver, which alone writes run folders (no torch here: the driver
of a ``--workers`` run records results without loading it for this)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from regbench.vocabulary import RunSpec, Task


@dataclass
class RunResult:
    """One run's outcome: its epochs, its summary and the arrays its folder keeps."""

    status: str                                  # completed | diverged | failed | interrupted | pruned
    rows: list[dict[str, float]]
    summary: dict[str, Any]
    weights: Optional[Any] = None                # numpy sample of final penalizable weights
    model_state: Optional[bytes] = None          # torch.save'd state_dict when save_model
    error: Optional[str] = None


def failed_result(spec: RunSpec, message: str) -> RunResult:
    """A RunResult for a run that could not train (its error is kept in summary.json)."""
    summary = {"status": "failed", "run_id": spec["run_id"], "point_id": spec.get("point_id"),
               "recipe": spec["recipe"], "seed": spec["seed"], "sweep": spec.get("sweep", {}),
               "sweep_paths": spec.get("sweep_paths", {}), "config_hash": spec["config_hash"],
               "error": message, "train_differs": spec.get("train_differs", False)}
    return RunResult(status="failed", rows=[], summary=summary, error=message)


class RunStopped(Exception):
    """Raised by an epoch callback to end a run early with its own status (a tuning trial
    pruned on its validation curve); the epochs so far are kept, as after Ctrl-C."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


GROUP_KEY = "fused"          # a task spec that holds several runs' specs (regbench.engine.fused)


def failed_task(task: Task, message: str):
    """What a task that could not run returns: a failed RunResult, or for a fused group one
    (spec, failed RunResult) per member."""
    if GROUP_KEY in task:
        return [(spec, failed_result(spec, message)) for spec in task[GROUP_KEY]]
    return failed_result(task, message)


def members(task: Task, result) -> list[tuple[RunSpec, Any]]:
    """(spec, RunResult) of each run of a task: a run's own, or each member of a fused group
    (a group that failed as a whole, e.g. its worker died, fails every member with its
    message)."""
    if GROUP_KEY not in task:
        return [(task, result)]
    if isinstance(result, list):
        return result
    return failed_task(task, result.error or "the fused group failed")


@dataclass
class KeptFolder:
    """A run whose folder the driver leaves as it is: its worker wrote it (a Slurm element, on
    the disk the cluster shares; the driver reads it), or, with ``written`` false, its worker
    was lost before writing it (the folder keeps what it had, a checkpoint to resume from; the
    summary here, a failure, is this command's alone)."""

    summary: dict[str, Any]
    written: bool = True

    @property
    def status(self) -> str:
        return str(self.summary.get("status"))


class StoppedGroup(list):
    """A fused group's (spec, RunResult) pairs that finished before a Ctrl-C stopped it between
    two members: recorded, and the experiment stops as interrupted."""
