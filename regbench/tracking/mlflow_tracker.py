"""``--log mlflow``: one MLflow parent run per experiment, one nested run per regbench run.

A nested run holds the run's resolved config (flattened: ``train.optimizer.lr``), recipe, seed
and sweep values as params, every metrics.csv column per epoch (step = epoch) and the final
test numbers as metrics, status and verdict as tags, and its summary.json and metrics.csv as
artifacts; the parent holds the plots, report.html and the comparison tables. MLflow params
never change once logged, so a resumed experiment reuses its parent (found by the
experiment's hash) and logs only the runs it trains: completed runs are skipped, as in the
folder.

The tracking URI comes from ``--mlflow-uri``, ``logging.mlflow_uri`` or ``MLFLOW_TRACKING_URI``,
else MLflow's own default (MLflow 3: ``sqlite:///mlflow.db`` in the current folder; its
``./mlruns`` file store is in maintenance mode and refused unless ``MLFLOW_ALLOW_FILE_STORE``).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any, Optional

from regbench.errors import RegbenchError
from regbench.results import run_config
from regbench.tracking.base import final_metrics, flatten, run_hparams, verdict_label
from regbench.vocabulary import METRICS_FILE, PLOTS_DIR, SUMMARY

KIND_TAG, HASH_TAG = "regbench.kind", "regbench.experiment_hash"
PARAM_LENGTH = 6000            # MLflow's longest param value
BATCH = {"metrics": 1000, "params": 100, "tags": 100}   # MLflow's log_batch limits
STATES = {"completed": "FINISHED", "interrupted": "KILLED"}   # anything else: FAILED
PARENT_ARTIFACTS = ("report.html", "comparison.md", "comparison.csv", "runs.csv")


def require_mlflow():
    import logging

    try:
        import mlflow  # deferred: an optional extra
    except ImportError:
        raise RegbenchError("--log mlflow needs MLflow, which is not installed; install it with "
                            "pip install -e '.[mlflow]' (or pip install mlflow)") from None
    for name in ("mlflow", "alembic"):   # its INFO lines (creating tables…) are not ours to print
        logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow


def experiment_hash(experiment: dict[str, Any]) -> str:
    """What the experiment computes, whatever its seeds and placement: one parent run."""
    keys = ("name", "dataset", "model", "recipes", "sweep")
    payload = {k: experiment.get(k) for k in keys}
    payload["train"] = {k: v for k, v in experiment["train"].items()
                        if k not in ("device", "threads", "fuse")}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


class MlflowTracker:
    name = "mlflow"

    def __init__(self, plan, results_dir: Path, uri: Optional[str] = None):
        mlflow = require_mlflow()
        from mlflow.entities import Metric, Param, RunTag  # deferred: mlflow

        self.Metric, self.Param, self.RunTag = Metric, Param, RunTag
        self.results_dir = Path(results_dir)
        name = plan.experiment["name"]
        digest = experiment_hash(plan.experiment)
        try:
            self.client = mlflow.MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(name)
            self.experiment_id = found.experiment_id if found else \
                self.client.create_experiment(name)
            parents = self.client.search_runs(
                [self.experiment_id], max_results=1,
                filter_string=f"tags.`{KIND_TAG}` = 'experiment' and tags.`{HASH_TAG}` = "
                              f"'{digest}'")
            self.parent = parents[0].info.run_id if parents else self.client.create_run(
                self.experiment_id, run_name=name,
                tags={KIND_TAG: "experiment", HASH_TAG: digest,
                      "regbench.results": str(self.results_dir.resolve())}).info.run_id
        except Exception as exc:    # a URI it cannot use: before anything trains, exit 2
            where = uri or mlflow.get_tracking_uri()
            raise RegbenchError(f"--log mlflow: cannot use the tracking store {where} "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None

    def log_run(self, spec: dict[str, Any], summary: dict[str, Any], rows: list[dict],
                weights, run_dir: Path) -> None:
        status = summary["status"]
        tags = {"mlflow.parentRunId": self.parent, KIND_TAG: "run",
                "regbench.run_id": spec["run_id"], "regbench.recipe": spec["recipe"],
                "regbench.status": status, "regbench.verdict": verdict_label(summary),
                "regbench.config_hash": spec["config_hash"]}
        run_id = self.client.create_run(self.experiment_id, run_name=spec["run_id"],
                                        tags=tags).info.run_id
        config = {k: v for k, v in run_config(spec).items()
                  if k not in ("run_id", "experiment", "config_hash", "sweep")}
        params = {**flatten(config), **run_hparams(spec)}
        now = int(time.time() * 1000)
        metrics = [self.Metric(key, float(value), now, int(row["epoch"]))
                   for row in rows for key, value in row.items()
                   if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value)]
        last = int(rows[-1]["epoch"]) if rows else 0
        metrics += [self.Metric(key, value, now, last)
                    for key, value in final_metrics(summary).items() if key.startswith("test_")]
        for batch in _chunks([self.Param(k, str(v)[:PARAM_LENGTH]) for k, v in params.items()],
                             BATCH["params"]):
            self.client.log_batch(run_id, params=batch)
        for batch in _chunks(metrics, BATCH["metrics"]):
            self.client.log_batch(run_id, metrics=batch)
        for name in (SUMMARY, METRICS_FILE):
            if (Path(run_dir) / name).exists():
                self.client.log_artifact(run_id, str(Path(run_dir) / name))
        self.client.set_terminated(run_id, STATES.get(status, "FAILED"))

    def finish(self) -> None:
        for name in PARENT_ARTIFACTS:
            if (self.results_dir / name).is_file():
                self.client.log_artifact(self.parent, str(self.results_dir / name))
        if (self.results_dir / PLOTS_DIR).is_dir():
            self.client.log_artifacts(self.parent, str(self.results_dir / PLOTS_DIR), PLOTS_DIR)
        self.client.set_terminated(self.parent, "FINISHED")
