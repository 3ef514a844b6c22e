"""`regbench status OUT/NAME`: where a results folder stands, read without touching it.

Each run of the folder's latest plan (``plan.json``) is *completed*, *failed*, *diverged* or
*interrupted* (its ``summary.json`` says so), *in progress* (no summary yet, but a checkpoint:
the epoch it holds, from the checkpoint's JSON header alone; a fused group's checkpoint names
every member) or, when no process holds the folder, *stopped* there (killed: the next run
resumes it from that checkpoint), *damaged* (a summary that cannot be read: the next run trains it again) or
*pending*. Whether a regbench process is working on the folder now comes from its lock
(``ResultsLock.holder``: the pid, host and start time it wrote). A run that an element of the
folder's Slurm jobs holds (``slurm/jobs.json``; the CLI asks squeue) is *running* or *queued*
there, *unknown* where squeue cannot be asked from this machine: Slurm elements write their
own run folders, without the driver or its lock. Nothing is written or locked.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from regbench.errors import RegbenchError
from regbench.results import ResultsLock, inspect_summary
from regbench.vocabulary import CHECKPOINT_FILE, PLAN_FILE, RUNS_DIR, SLURM_LIVE_STATES

HEADER_BYTES = 1 << 20         # a checkpoint's JSON header line is read up to this size (a group of
                               # thousands of members names them all)
QUEUED = SLURM_LIVE_STATES | {"UNKNOWN"}    # UNKNOWN: squeue cannot be asked from here
ORDER = ("completed", "running", "queued", "unknown", "in progress", "pending", "stopped", "interrupted", "failed", "diverged",
         "damaged")


@dataclass
class RunState:
    run_id: str
    state: str
    detail: str = ""


@dataclass
class FolderStatus:
    folder: Path
    runs: list[RunState] = field(default_factory=list)
    holder: Optional[str] = None             # who is working on the folder now
    jobs: set[str] = field(default_factory=set)   # Slurm arrays that still hold runs

    def counts(self) -> dict[str, int]:
        counted = Counter(run.state for run in self.runs)
        return {state: counted[state] for state in (*ORDER, *sorted(set(counted) - set(ORDER)))
                if counted[state]}


def _plan_ids(folder: Path) -> list[str]:
    path = folder / PLAN_FILE
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))["run_ids"]
    except FileNotFoundError:
        raise RegbenchError(f"{folder}: not a regbench results folder (no {PLAN_FILE}); name "
                            "the folder a run wrote, OUT/<experiment name>") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise RegbenchError(f"{path}: cannot be read as regbench's plan "
                            f"({type(exc).__name__}); run the command again to rewrite it") \
            from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise RegbenchError(f"{path}: run_ids is not a list of run names; run the command again "
                            "to rewrite it")
    return ids


def _checkpoints(runs_dir: Path) -> dict[str, tuple[int, str]]:
    """run id -> (the epoch its checkpoint holds, the folder it sits in), from every
    checkpoint's header; a file that is not a plain file or has no JSON header is skipped."""
    found: dict[str, tuple[int, str]] = {}
    for path in runs_dir.glob(f"*/{CHECKPOINT_FILE}"):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            with path.open("rb") as handle:
                header = json.loads(handle.readline(HEADER_BYTES))
            epoch, ids = int(header["epoch"]), header["run_ids"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for run_id in ids if isinstance(ids, list) else []:
            found[str(run_id)] = (epoch, path.parent.name)
    return found


def folder_status(folder: Path,
                  jobs: Optional[dict[str, tuple[str, Optional[str], str]]] = None
                  ) -> FolderStatus:
    """``jobs``: run id -> (the Slurm element that took it last, its queue state or None once
    it left the queue, squeue's reason), from ``engine.slurm.run_elements`` (the CLI's:
    analysis never asks Slurm). A live element's run shows as running or queued whatever an
    earlier attempt's summary says (it is being trained again)."""
    folder = Path(folder)
    jobs = jobs or {}
    if not folder.is_dir():
        raise RegbenchError(f"{folder}: no such results folder; name the folder a run wrote, "
                            "OUT/<experiment name>")
    status = FolderStatus(folder, holder=ResultsLock(folder).holder())
    runs_dir = folder / RUNS_DIR
    checkpoints = _checkpoints(runs_dir) if runs_dir.is_dir() else {}
    for run_id in _plan_ids(folder):
        summary, damage = inspect_summary(runs_dir / run_id)
        element, queued, reason = jobs.get(run_id, ("", None, ""))
        epoch = f"checkpoint after epoch {checkpoints[run_id][0]}" \
            if run_id in checkpoints else ""
        if queued in QUEUED and str((summary or {}).get("status")) != "completed":
            held = "running" if queued == "RUNNING" else \
                "unknown" if queued == "UNKNOWN" else "queued"
            said = f"{queued} ({reason})" if reason and reason != "None" else queued
            status.runs.append(RunState(run_id, held, "; ".join(
                filter(None, [f"Slurm {element} {said}", epoch]))))
            if held != "unknown":
                status.jobs.add(element.split("_")[0])
            continue
        if summary is not None:
            state = str(summary.get("status") or "completed")
            detail = (f"after epoch {summary.get('stopped_epoch')}" if state == "interrupted" else
                      str(summary.get("error") or "").splitlines()[0][:120]
                      if state == "failed" and summary.get("error") else "")
            status.runs.append(RunState(run_id, state, detail))
        elif damage:
            status.runs.append(RunState(run_id, "damaged", f"summary.json {damage}"))
        elif run_id in checkpoints:    # training now, or killed: it resumes from there
            _, where = checkpoints[run_id]
            shared = "" if where == run_id else f" (the fused group's, in {where})"
            status.runs.append(RunState(run_id, "in progress" if status.holder else "stopped",
                                        epoch + shared))
        else:
            status.runs.append(RunState(run_id, "pending"))
        if element:
            status.runs[-1].detail = "; ".join(filter(None, [
                status.runs[-1].detail, f"Slurm {element}" + (f" {queued}" if queued else "")]))
    return status


def render_status(status: FolderStatus, console, show_all: bool = False) -> None:
    """Counts, who is working on the folder, and every run not completed (all with
    ``show_all``)."""
    from rich.table import Table

    counts = ", ".join(f"{n} {state}" for state, n in status.counts().items()) or "no runs"
    console.print(f"{status.folder}: {len(status.runs)} runs in its plan: {counts}",
                  markup=False)
    if status.jobs:
        held = sum(run.state in ("running", "queued") for run in status.runs)
        console.print(f"Slurm job(s) {', '.join(sorted(status.jobs))} hold {held} run(s); run "
                      "the same command again to collect them (it waits for them, or with "
                      "--detach returns at once)", markup=False)
    if status.holder:
        console.print(f"working on it now: {status.holder}", markup=False)
    elif not status.jobs:
        unfinished = sum(run.state != "completed" for run in status.runs)
        console.print("no regbench process is working on it" +
                      (f"; run the same command again to train the {unfinished} unfinished "
                       "run(s)" if unfinished else ""), markup=False)
    shown = [run for run in status.runs if show_all or run.state != "completed"]
    if shown:
        table = Table(show_edge=False)
        for column in ("run", "state", "detail"):
            table.add_column(column)
        for run in shown:
            table.add_row(run.run_id, run.state, run.detail)
        console.print(table)
