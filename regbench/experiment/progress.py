"""Progress display: a live rich view on a terminal, plain log lines otherwise (CI).

Both receive the same calls from the driver: ``start(total, skipped)``, ``run_started(task)``,
``epoch(spec, row)`` (from this process or relayed from worker processes and Ray tasks; a fused
group's rows come one per member, with the member's spec), ``run_finished(spec, summary)``,
``task_finished(task)`` and ``close()``.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Optional

from regbench.analysis.diagnose import label
from regbench.engine.result import GROUP_KEY
from regbench.vocabulary import RunSpec, Task


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def eta_seconds(elapsed: float, finished: int, remaining: int) -> Optional[float]:
    """Remaining wall time at the pace of the runs finished in this session (skipped runs cost
    nothing, so they do not count); parallel runs are included since the pace is wall time."""
    if finished <= 0:
        return None
    return elapsed / finished * remaining


def _outcome(summary: dict[str, Any]) -> str:
    """'completed (ok)', or the error of a failed run."""
    if summary.get("error"):
        from rich.markup import escape  # errors hold brackets that are not markup

        return f"{summary['status']}: {escape(summary['error'])}"
    verdict = label(summary["verdict"]) if summary.get("verdict") else ""
    return f"{summary['status']} ({verdict})" if verdict else summary["status"]


def _metric_text(row: dict[str, Any]) -> str:
    keys = [k for k in ("train_loss", "val_loss", "val_accuracy", "val_mse") if k in row]
    return "  ".join(f"{k} {row[k]:.4f}" for k in keys)


class PlainProgress:
    """One line per finished run (and per epoch with ``verbose``)."""

    def __init__(self, console=None, verbose: bool = False):
        from rich.console import Console

        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.verbose = verbose
        self.total = 0
        self.done = 0
        self.started = time.perf_counter()

    def start(self, total: int, skipped: int) -> None:
        self.total, self.done, self.skipped = total, skipped, skipped
        self.started = time.perf_counter()
        note = f" ({skipped} already completed, skipped)" if skipped else ""
        self.console.print(f"regbench: {total} runs{note}")

    def run_started(self, spec: RunSpec) -> None:
        pass

    def epoch(self, spec: RunSpec, row: dict[str, Any]) -> None:
        if self.verbose:
            self.console.print(f"  {spec['run_id']} epoch {row['epoch']}/"
                               f"{spec['train']['epochs']}  {_metric_text(row)}")

    def run_finished(self, spec: RunSpec, summary: dict[str, Any]) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.started
        eta = eta_seconds(elapsed, self.done - self.skipped, self.total - self.done)
        eta_text = f", ETA {_duration(eta)}" if eta is not None and self.done < self.total else ""
        self.console.print(f"[{self.done}/{self.total}] {spec['run_id']}: {_outcome(summary)}"
                           f" in {summary.get('seconds') or 0:.2f}s"
                           f"  elapsed {_duration(elapsed)}{eta_text}")

    def task_finished(self, task: Task) -> None:
        """A fused group's runs are all recorded (each was reported by run_finished)."""

    def close(self) -> None:
        pass


class LiveProgress(PlainProgress):
    """Sweep bar with ETA, one bar per active run with its epoch and latest metrics (one per
    fused group, showing the first of its members that trained each epoch)."""

    def __init__(self, console=None):
        super().__init__(console)
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"))
        self.bars = Progress(*columns, console=self.console, transient=False)
        self.sweep_task = None
        self.run_tasks: dict[str, Any] = {}
        self.group_of: dict[str, str] = {}      # a fused member's run id -> its group's
        self.shown: dict[str, int] = {}         # a group's bar -> the epoch it shows

    def start(self, total: int, skipped: int) -> None:
        self.total, self.done, self.skipped = total, skipped, skipped
        self.bars.start()
        self.sweep_task = self.bars.add_task("all runs", total=total, completed=skipped,
                                             metrics=f"{skipped} skipped" if skipped else "")

    def run_started(self, spec: Task) -> None:
        known = self.run_tasks.get(spec["run_id"])
        if known is not None:          # started again (a Ray task retried on another node)
            self.bars.reset(known, total=spec["train"]["epochs"])
            return
        self.run_tasks[spec["run_id"]] = self.bars.add_task(
            f"  {spec['run_id']}", total=spec["train"]["epochs"], metrics="")
        self.group_of.update({member["run_id"]: spec["run_id"]
                              for member in spec.get(GROUP_KEY, ())})

    def epoch(self, spec: RunSpec, row: dict[str, Any]) -> None:
        key = self.group_of.get(spec["run_id"], spec["run_id"])
        if key != spec["run_id"]:
            if self.shown.get(key) == row["epoch"]:   # another member's row of that epoch
                return
            self.shown[key] = row["epoch"]
        task = self.run_tasks.get(key)
        if task is None:
            self.run_started(spec)
            task = self.run_tasks[key]
        self.bars.update(task, completed=row["epoch"], metrics=_metric_text(row))

    def run_finished(self, spec: RunSpec, summary: dict[str, Any]) -> None:
        self.done += 1
        task = self.run_tasks.pop(spec["run_id"], None)
        if task is not None:
            self.bars.remove_task(task)
        self.bars.console.print(f"  {spec['run_id']}: {_outcome(summary)} "
                                f"({summary.get('seconds') or 0:.1f}s)", markup=False)
        self.bars.update(self.sweep_task, completed=self.done)

    def task_finished(self, task: Task) -> None:
        bar = self.run_tasks.pop(task["run_id"], None)
        if bar is not None:
            self.bars.remove_task(bar)
        self.shown.pop(task["run_id"], None)
        for member in task.get(GROUP_KEY, ()):
            self.group_of.pop(member["run_id"], None)

    def close(self) -> None:
        self.bars.stop()


def make_progress(console=None, live: Optional[bool] = None):
    from rich.console import Console

    console = console or Console(stderr=True, highlight=False, soft_wrap=True)
    if live is None:
        live = console.is_terminal and sys.stderr.isatty()
    return LiveProgress(console) if live else PlainProgress(console)
