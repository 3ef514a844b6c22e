"""``--log tensorboard``: an event file in every run folder, for
``tensorboard --logdir results/<name>``.

Each run's folder gets every per-epoch column of metrics.csv as a scalar under its own name
(``val_loss``, ``train_accuracy``, ``lr``, …, step = epoch), the final weight histogram, and its
hyper-parameters (recipe, seed, sweep values) with its final numbers and its status for the
HParams tab. The experiment's ``tensorboard/`` folder holds what spans runs, rewritten at the
end of every command: the HParams experiment (one table of every planned run, not a sub-run per
call as ``add_hparams`` makes) and a Custom Scalars layout that overlays each train metric and
its val metric in one chart. The Scalars tab shows them as neighbouring cards (filter
``^(train|val)_loss$``). Run folders outside the plan (an earlier sweep grid) lose their event
files, as they are left out of the tables.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from regbench.data import data_spec
from regbench.errors import RegbenchError
from regbench.registry import register_tracker
from regbench.results import check_inside
from regbench.tracking.base import final_metrics, from_folder, run_hparams
from regbench.vocabulary import RUNS_DIR, WEIGHTS_FILE, RunSpec, metric_names

EVENTS = "events.out.tfevents.*"
ROOT_DIR = "tensorboard"          # results/<name>/tensorboard/: the experiment-wide summaries
FINAL = "final/"                  # final numbers, the HParams tab's metrics
SESSION_STATUS = {"completed": "STATUS_SUCCESS", "interrupted": "STATUS_ABORTED"}  # else FAILURE


def remove_events(folder: Path) -> None:
    for old in folder.glob(EVENTS):
        if old.is_file() or old.is_symlink():
            old.unlink()


@contextmanager
def _writer(folder: Path):
    """A SummaryWriter on ``folder``, closed after. A write that fails (a full disk, the folder
    removed or read-only) raises here, once, and leaves no partial event file: the next
    command logs the run again (``replay`` skips a folder that has one)."""
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
        if type(args.thread).__module__.startswith("tensorboard."):
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


@register_tracker("tensorboard", check=require_tensorboard,
                  summary="an event file in every run folder, for tensorboard --logdir")
class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, plan, results_dir: Path, **options):
        require_tensorboard()
        self.plan, self.results_dir = plan, Path(results_dir)
        self.kinds = _kinds([run_hparams(spec) for spec in plan.runs])

    def log_run(self, spec: RunSpec, summary: dict[str, Any], rows: list[dict],
                weights, run_dir: Path) -> None:
        from tensorboard.plugins.hparams.api_pb2 import Status  # deferred: an extra
        from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
        from torch.utils.tensorboard.summary import hparams  # deferred: torch

        with _writer(Path(run_dir)) as writer:
            for row in rows:
                epoch = int(row["epoch"])
                for key, value in row.items():
                    if key != "epoch" and isinstance(value, (int, float)):
                        writer.add_scalar(key, float(value), epoch)
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
        if any(run_dir.glob(EVENTS)):
            return
        summary, rows = from_folder(run_dir)
        weights = np.load(run_dir / WEIGHTS_FILE) if (run_dir / WEIGHTS_FILE).exists() else None
        self.log_run(spec, summary, rows, weights, run_dir)

    def finish(self, interrupted: bool = False) -> None:
        """The experiment's HParams table (every planned run's keys and final metrics) and
        the layout that overlays train and val; event files of runs outside the plan go."""
        from torch.utils.tensorboard.summary import hparams  # deferred: torch

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
