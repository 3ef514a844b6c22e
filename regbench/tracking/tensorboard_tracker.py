"""``--log tensorboard``: an event file in every run folder, for
``tensorboard --logdir results/<name>``.

Each run's folder gets every per-epoch column of metrics.csv as a scalar under its own name
(``val_loss``, ``train_accuracy``, ``lr``, …, step = epoch), written as each epoch ends (the
driver's ``log_epoch``, flushed: TensorBoard shows a curve while its run trains), then, when the
run ends, the final weight histogram and its hyper-parameters (recipe, seed, sweep values) with
its final numbers and its status for the HParams tab. The experiment's ``tensorboard/`` folder
holds what spans runs, rewritten at the end of every command: the HParams experiment (one table
of every planned run, not a sub-run per call as ``add_hparams`` makes) and a Custom Scalars
layout that overlays each train metric and its val metric in one chart. The Scalars tab shows
them as neighbouring cards (filter ``^(train|val)_loss$``). Run folders outside the plan (an
earlier sweep grid) lose their event files, as they are left out of the tables.

Each step is written once. A run that starts at epoch 1 replaces the event files of an earlier
attempt; a run resumed from its checkpoint at epoch k + 1 keeps the earlier attempt's epochs
1..k (copied into its own new event file, the old files then removed: a kill in between leaves
both, and the next copy still keeps one value per step) and drops whatever that attempt wrote
after them (epochs past its checkpoint, the final state of an interrupted attempt). A completed
run whose event files lack their final state (the command was killed between writing its folder
and logging it) is logged again, whole, on the next command.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from regbench.data import data_spec
from regbench.errors import RegbenchError
from regbench.registry import register_tracker
from regbench.results import check_inside
from regbench.tracking.base import final_metrics, folder_record, run_hparams
from regbench.vocabulary import RUNS_DIR, RunSpec, metric_names

EVENTS = "events.out.tfevents.*"
ROOT_DIR = "tensorboard"          # results/<name>/tensorboard/: the experiment-wide summaries
FINAL = "final/"                  # final numbers, the HParams tab's metrics
# how a run ended, as the HParams tab says it (else FAILURE); it has no "aborted": an
# interrupted run, which resumes, is UNKNOWN
SESSION_STATUS = {"completed": "STATUS_SUCCESS", "interrupted": "STATUS_UNKNOWN"}
SESSION_END = "_hparams_/session_end_info"   # written last: a run's event files are whole


def remove_events(folder: Path) -> None:
    for old in folder.glob(EVENTS):
        if old.is_file() or old.is_symlink():
            old.unlink()


def _event_files(folder: Path) -> list[Path]:
    """The folder's event files, oldest first (their names start with the time they were
    made), never read through a link."""
    return sorted(p for p in folder.glob(EVENTS) if p.is_file() and not p.is_symlink())


def _events(paths: list[Path]) -> Iterator[Any]:
    """Every event of ``paths`` as written (scalars as ``simple_value``, not migrated to
    tensors); a record cut short by a kill ends its file."""
    from tensorboard.backend.event_processing.event_file_loader import (  # deferred: an extra
        LegacyEventFileLoader,
    )

    for path in paths:
        yield from LegacyEventFileLoader(str(path)).Load()


def _epochs_before(paths: list[Path], first: int) -> dict[tuple[int, str], tuple[float, float]]:
    """(step, tag) -> (value, wall time) of the per-epoch scalars of ``paths`` before epoch
    ``first``: what a resumed run keeps of its earlier attempt (the last value of a step when
    files repeat it)."""
    kept: dict[tuple[int, str], tuple[float, float]] = {}
    for event in _events(paths):
        if event.step < first and event.HasField("summary"):
            for value in event.summary.value:
                if value.HasField("simple_value") and not value.tag.startswith(FINAL):
                    kept[(event.step, value.tag)] = (value.simple_value, event.wall_time)
    return kept


def _whole(folder: Path) -> bool:
    """Whether the folder's event files end with a run's final state (its HParams session)."""
    return any(value.tag == SESSION_END for event in _events(_event_files(folder))
               if event.HasField("summary") for value in event.summary.value)


@contextmanager
def _writer(folder: Path):
    """A SummaryWriter on ``folder``, closed after. A write that fails (a full disk, the folder
    removed or read-only) raises here, once, and leaves no partial event file: the next
    command logs the run again (``replay`` skips a folder whose run is whole)."""
    from torch.utils.tensorboard import SummaryWriter  # deferred: needs the tensorboard package

    remove_events(folder)          # a run logged again: no second copy of its curves
    try:
        with _thread_errors_raised_here():
            writer = SummaryWriter(log_dir=str(folder))
            try:
                yield writer
            finally:
                writer.close()
    except BaseException:
        with suppress(OSError):    # the folder may be gone or read-only
            remove_events(folder)
        raise


def _from_tensorboard(args) -> bool:
    return type(args.thread).__module__.startswith("tensorboard.")


@contextmanager
def _thread_errors_raised_here():
    """TensorBoard writes from a thread of its own. A write that fails there is printed as a
    traceback by the thread, though the run is fine and the caller is told at its next call
    (or never, if the writer was being closed). Here the thread's error is kept instead, and
    raised in the caller after the writer closed (its thread has ended by then): the tracker's
    failure is then one warning (``Trackers``), never a traceback."""
    failed: list[BaseException] = []
    previous = threading.excepthook

    def keep(args) -> None:
        if _from_tensorboard(args):
            failed.append(args.exc_value)
        else:
            previous(args)

    threading.excepthook = keep
    try:
        yield
    finally:
        threading.excepthook = previous
    if failed:
        raise failed[0]


class _ThreadErrors:
    """``_thread_errors_raised_here`` for writers that stay open across calls (a run's, while
    it trains): kept from the first live writer opened to the last closed, each error raised
    at the tracker's next call."""

    def __init__(self):
        self.failed: list[BaseException] = []
        self.previous = None

    def _keep(self, args) -> None:
        if _from_tensorboard(args):
            self.failed.append(args.exc_value)
        else:
            (self.previous or threading.__excepthook__)(args)

    def install(self) -> None:
        if self.previous is None:
            self.previous, threading.excepthook = threading.excepthook, self._keep

    def uninstall(self) -> None:
        if self.previous is not None:
            if threading.excepthook == self._keep:   # unless someone replaced it since
                threading.excepthook = self.previous
            self.previous = None

    def check(self) -> None:
        if self.failed:
            raise self.failed.pop(0)


@dataclass
class _Live:
    """A run's event file while it trains."""

    folder: Path
    writer: Any
    sent: set[int] = field(default_factory=set)   # the epochs it holds
    last: int = 0                                   # the last epoch this process wrote


def require_tensorboard(**options) -> None:
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (deferred: an extra)
    except ImportError:
        raise RegbenchError("--log tensorboard needs TensorBoard, which is not installed; "
                            "install it with pip install -e '.[tensorboard]' (or pip install "
                            "tensorboard)") from None


def _kinds(runs: list[RunSpec]) -> dict[str, str]:
    """Each hyper-parameter's type over all runs: ``number`` when every value is a number
    (not true/false), else ``text``: sessions and the table must agree."""
    keys = dict.fromkeys(k for run in runs for k in run)
    return {k: "number" if all(isinstance(run.get(k), (int, float))
                               and not isinstance(run.get(k), bool) for run in runs if k in run)
            else "text" for k in keys}


def _typed(hparams: dict[str, Any], kinds: dict[str, str]) -> dict[str, Any]:
    return {k: float(v) if kinds.get(k) == "number" else str(v) for k, v in hparams.items()}


def _add_row(writer, row: dict[str, Any]) -> None:
    epoch = int(row["epoch"])
    for key, value in row.items():
        if key != "epoch" and isinstance(value, (int, float)):
            writer.add_scalar(key, float(value), epoch)


@register_tracker("tensorboard", check=require_tensorboard,
                  summary="an event file in every run folder, for tensorboard --logdir")
class TensorBoardTracker:
    name = "tensorboard"
    owns_event_files = True     # it replaces an earlier attempt's itself (results.write_run
                                # keeps those of a run it is writing)

    def __init__(self, plan, results_dir: Path, **options):
        require_tensorboard()
        self.plan, self.results_dir = plan, Path(results_dir)
        self.kinds = _kinds([run_hparams(spec) for spec in plan.runs])
        self.live: dict[str, _Live] = {}      # run id -> its open event file, while it trains
        self.ended: set[str] = set()          # runs logged whole: a late row is not sent
        self.errors = _ThreadErrors()

    @contextmanager
    def _guarded(self):
        """A failure closes every live writer and removes their runs' event files (the tracker
        is then left out, and the next command logs those runs whole), and raises once."""
        try:
            yield
            self.errors.check()
        except Exception:
            for live in self.live.values():
                with suppress(Exception):
                    live.writer.close()
                with suppress(OSError):
                    remove_events(live.folder)
            self.live.clear()
            self.errors.uninstall()
            raise

    def log_epoch(self, spec: RunSpec, row: dict[str, Any], run_dir: Path) -> None:
        """One epoch's row as it ends, on disk before this returns."""
        run_id, epoch = spec["run_id"], int(row["epoch"])
        if run_id in self.ended:      # a worker's row that arrived after its run's result
            return
        with self._guarded():
            live = self.live.get(run_id)
            if live is not None and epoch <= live.last:   # it started over (a fused group's
                self._close(run_id)                         # members trained solo)
                live = None
            if live is None:
                live = self._open(run_id, Path(run_dir), epoch)
            _add_row(live.writer, row)
            live.sent.add(epoch)
            live.last = epoch
            live.writer.flush()

    def _open(self, run_id: str, folder: Path, first: int) -> _Live:
        """The event file of a run whose first row here is epoch ``first``: a fresh one, with
        the earlier attempt's epochs before ``first`` copied in when it resumes."""
        from torch.utils.tensorboard import SummaryWriter  # deferred: an extra

        check_inside(self.results_dir, folder)     # never written or cleaned through a link
        folder.mkdir(parents=True, exist_ok=True)
        earlier = _event_files(folder)
        kept = _epochs_before(earlier, first) if first > 1 else {}
        if first == 1:
            remove_events(folder)
        self.errors.install()
        writer = SummaryWriter(log_dir=str(folder))
        live = _Live(folder, writer)
        self.live[run_id] = live          # closed by _guarded should the copy fail
        for (step, tag), (value, wall_time) in sorted(kept.items()):
            writer.add_scalar(tag, value, step, walltime=wall_time)
            live.sent.add(step)
        writer.flush()
        for old in earlier:               # only once the copy is on disk
            old.unlink(missing_ok=True)
        return live

    def _close(self, run_id: str, remove: bool = True) -> None:
        live = self.live.pop(run_id)
        live.writer.close()
        if remove:
            remove_events(live.folder)
        if not self.live:
            self.errors.uninstall()

    def log_run(self, spec: RunSpec, summary: dict[str, Any], rows: list[dict],
                weights, run_dir: Path) -> None:
        """The run's final state, after the epochs it has not sent yet (all of them for a
        run not logged live: its event files are then written anew)."""
        self.ended.add(spec["run_id"])
        with self._guarded():
            live = self.live.get(spec["run_id"])
            missing = [int(row["epoch"]) for row in rows if int(row["epoch"]) not in
                       (live.sent if live is not None else ())]
            if live is not None and missing and min(missing) < live.last:
                # epochs before those sent live (an attempt's event files lost): written
                # after them, the steps would be out of order; the run is written anew
                self._close(spec["run_id"], remove=False)
                live = None
            if live is None:
                with _writer(Path(run_dir)) as writer:
                    self._final(writer, spec, summary, rows, weights, sent=set())
                return
            self._final(live.writer, spec, summary, rows, weights, sent=live.sent)
            live.writer.flush()
            self._close(spec["run_id"], remove=False)

    def _final(self, writer, spec: RunSpec, summary: dict[str, Any], rows: list[dict],
               weights, *, sent: set[int]) -> None:
        from tensorboard.plugins.hparams.api_pb2 import Status  # deferred: an extra
        from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
        from torch.utils.tensorboard.summary import hparams  # deferred: torch

        for row in rows:
            if int(row["epoch"]) not in sent:
                _add_row(writer, row)
        last = int(rows[-1]["epoch"]) if rows else 0
        finite = weights[np.isfinite(weights)] if weights is not None else []
        if len(finite):           # a diverged run's NaN weights make no histogram
            writer.add_histogram("weights", finite, last)
        metrics = {FINAL + k: v for k, v in final_metrics(summary).items()}
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, last)
        _, start, end = hparams(_typed(run_hparams(spec), self.kinds), metrics)
        # torch writes every session as a success: say how the run ended
        value = end.value[0].metadata.plugin_data
        data = HParamsPluginData.FromString(value.content)
        data.session_end_info.status = Status.Value(
            SESSION_STATUS.get(summary["status"], "STATUS_FAILURE"))
        value.content = data.SerializeToString()
        writer.file_writer.add_summary(start)
        writer.file_writer.add_summary(end)

    def replay(self, spec: RunSpec, run_dir: Path) -> None:
        run_dir = Path(run_dir)
        if _whole(run_dir):
            return
        self.log_run(spec, *folder_record(run_dir), run_dir)

    def finish(self, interrupted: bool = False) -> None:
        """The experiment's HParams table (every planned run's keys and final metrics) and
        the layout that overlays train and val; event files of runs outside the plan go. A run
        still open (its result never came: a cancelled Ray task) keeps the epochs it sent."""
        from torch.utils.tensorboard.summary import hparams  # deferred: torch

        with self._guarded():
            for run_id in list(self.live):
                self._close(run_id, remove=False)
        planned = {spec["run_id"] for spec in self.plan.runs}
        runs_dir = self.results_dir / RUNS_DIR
        for folder in runs_dir.iterdir() if runs_dir.is_dir() else []:
            if folder.is_dir() and not folder.is_symlink() and folder.name not in planned:
                remove_events(folder)
        runs = [_typed(run_hparams(spec), self.kinds) for spec in self.plan.runs]
        domains = {k: sorted({run[k] for run in runs if k in run}) for k in self.kinds}
        task_metrics = list(dict.fromkeys(("loss", *metric_names(self._task()))))
        metrics = {f"{FINAL}{split}_{m}": 0.0 for split in ("train", "val", "test")
                   for m in task_metrics}
        example = {k: values[0] for k, values in domains.items()}
        experiment, _, _ = hparams(example, metrics, hparam_domain_discrete=domains)
        folder = self.results_dir / ROOT_DIR
        check_inside(self.results_dir, folder)     # never written or cleaned through a link
        folder.mkdir(parents=True, exist_ok=True)
        with _writer(folder) as writer:
            writer.file_writer.add_summary(experiment)
            writer.add_custom_scalars({"train vs val": {
                m: ["Multiline", [f"^train_{m}$", f"^val_{m}$"]] for m in task_metrics}})

    def _task(self) -> str:
        return data_spec(self.plan.experiment["dataset"]).task
