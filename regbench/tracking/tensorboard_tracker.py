"""``--log tensorboard``: an event file in every run folder, for
``tensorboard --logdir results/<name>``.

Each run's folder gets every per-epoch column of metrics.csv as a scalar under its own name
(``val_loss``, ``train_accuracy``, ``lr``, …, step = epoch), the final weight histogram, and its
hyper-parameters (recipe, seed, sweep values) with its final numbers for the HParams tab. The
experiment's folder holds the two things that span runs, written once (rewritten on resume):
the HParams experiment (one table of every run, not a sub-run per call as ``add_hparams``
makes) and a Custom Scalars layout that draws each train metric over its val metric.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from regbench.data import data_spec
from regbench.errors import RegbenchError
from regbench.tracking.base import final_metrics, run_hparams
from regbench.vocabulary import metric_names

EVENTS = "events.out.tfevents.*"
ROOT_DIR = "tensorboard"          # results/<name>/tensorboard/: the experiment-wide summaries
FINAL = "final/"                  # final numbers, the HParams tab's metrics


def _writer(folder: Path):
    from torch.utils.tensorboard import SummaryWriter  # deferred: needs the tensorboard package

    for old in folder.glob(EVENTS):    # a run trained again: no second copy of its curves
        old.unlink()
    return SummaryWriter(log_dir=str(folder))


def require_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401  (deferred: an optional extra)
    except ImportError:
        raise RegbenchError("--log tensorboard needs TensorBoard, which is not installed; "
                            "install it with pip install -e '.[tensorboard]' (or pip install "
                            "tensorboard)") from None


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, plan, results_dir: Path):
        require_tensorboard()
        self.plan, self.results_dir = plan, Path(results_dir)

    def log_run(self, spec: dict[str, Any], summary: dict[str, Any], rows: list[dict],
                weights, run_dir: Path) -> None:
        from torch.utils.tensorboard.summary import hparams  # deferred: torch

        writer = _writer(Path(run_dir))
        try:
            for row in rows:
                epoch = int(row["epoch"])
                for key, value in row.items():
                    if key != "epoch" and isinstance(value, (int, float)):
                        writer.add_scalar(key, float(value), epoch)
            last = int(rows[-1]["epoch"]) if rows else 0
            if weights is not None and len(weights):
                writer.add_histogram("weights", weights, last)
            metrics = {FINAL + k: v for k, v in final_metrics(summary).items()}
            for tag, value in metrics.items():
                writer.add_scalar(tag, value, last)
            _, start, end = hparams(_scalars(run_hparams(spec)), metrics)
            writer.file_writer.add_summary(start)
            writer.file_writer.add_summary(end)
        finally:
            writer.close()

    def finish(self) -> None:
        """The experiment's HParams table (every run's keys and final metrics) and the layout
        that overlays train and val."""
        from torch.utils.tensorboard.summary import hparams  # deferred: torch

        runs = [_scalars(run_hparams(spec)) for spec in self.plan.runs]
        keys = list(dict.fromkeys(k for run in runs for k in run))
        domains = {}
        for key in keys:      # each key's values, typed as the runs' sessions hold them
            values = {run[key] for run in runs if key in run}
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool)
                          for v in values)
            domains[key] = sorted(float(v) for v in values) if numeric else \
                sorted(str(v) for v in values)
        task_metrics = list(dict.fromkeys(("loss", *metric_names(self._task()))))
        metrics = {f"{FINAL}{split}_{m}": 0.0 for split in ("train", "val", "test")
                   for m in task_metrics}
        example = {k: domains[k][0] for k in keys}
        experiment, _, _ = hparams(example, metrics, hparam_domain_discrete=domains)
        folder = self.results_dir / ROOT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        writer = _writer(folder)
        try:
            writer.file_writer.add_summary(experiment)
            writer.add_custom_scalars({"train vs val": {
                m: ["Multiline", [f"^train_{m}$", f"^val_{m}$"]] for m in task_metrics}})
        finally:
            writer.close()

    def _task(self) -> str:
        return data_spec(self.plan.experiment["dataset"]).task


def _scalars(hparams: dict[str, Any]) -> dict[str, Any]:
    """HParams values must be numbers, strings or booleans: anything else as its text."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
