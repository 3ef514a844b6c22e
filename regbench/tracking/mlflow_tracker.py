"""``--log mlflow``: one MLflow parent run per experiment, one nested run per regbench run.

A nested run holds the run's resolved config (flattened: ``train.optimizer.lr``), recipe, seed
and sweep values as params, every metrics.csv column per epoch (step = epoch, sent as each
epoch ends: the driver's ``log_epoch``) and the final test numbers as metrics, status and
verdict as tags (``regbench.status`` is ``running`` until the run ends), and its summary.json
and metrics.csv as artifacts; the parent holds the plots, report.html and the comparison
tables. MLflow params never change once logged, so a resumed experiment reuses its parent
(found by the experiment's hash) and logs only the runs it trains: completed runs are skipped,
as in the folder.

Each step is sent once; MLflow cannot take a value back, so nothing is sent twice. A run that
starts at epoch 1 gets a new nested run (an earlier attempt's is deleted: MLflow keeps it in
its trash). A run resumed from its checkpoint at epoch k + 1 continues the nested run of its
earlier attempt: the one under the same parent with the same ``regbench.run_id`` and
``regbench.config_hash`` tags whose history holds epochs 1..k (the store is the record, so the
run folder needs no MLflow id, and another store simply gets a new nested run); its epochs
already there are not sent again. A completed run whose nested run never got its final state
(the command was killed between writing the folder and logging it) is completed on the next
command the same way.

The tracking URI comes from ``--mlflow-uri``, ``logging.mlflow_uri`` or ``MLFLOW_TRACKING_URI``,
else MLflow's own default (MLflow 3: ``sqlite:///mlflow.db`` in the current folder; its
``./mlruns`` file store is in maintenance mode and refused unless ``MLFLOW_ALLOW_FILE_STORE``).
The store is checked before anything trains, in seconds: a SQLite file that cannot be written
(or created) is one line and exit 2, not MLflow's minutes of retries.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from regbench.errors import RegbenchError
from regbench.registry import register_tracker
from regbench.results import run_config
from regbench.tracking.base import (
    final_metrics,
    first_line,
    flatten,
    from_folder,
    run_hparams,
    verdict_label,
)
from regbench.vocabulary import (
    COMPARISON,
    METRICS_FILE,
    PLOTS_DIR,
    REPORT_FILE,
    RUNS_TABLE,
    SUMMARY,
    RunSpec,
)

KIND_TAG, HASH_TAG = "regbench.kind", "regbench.experiment_hash"
PARAM_LENGTH = 6000            # MLflow's longest param value
BATCH = {"metrics": 1000, "params": 100, "tags": 100}   # MLflow's log_batch limits
STATES = {"completed": "FINISHED", "interrupted": "KILLED"}   # anything else: FAILED
RUNNING = "running"            # regbench.status of a nested run whose run has not ended
EPOCH_METRIC = "seconds"       # in every epoch's row, always finite: the epochs a run holds
PARENT_ARTIFACTS = (REPORT_FILE, COMPARISON["md"], COMPARISON["csv"], RUNS_TABLE)


def require_mlflow():
    import logging
    import os

    # a tracking server that does not answer must cost seconds, not MLflow's minutes of retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        import mlflow  # deferred: an optional extra
    except ImportError:
        raise RegbenchError("--log mlflow needs MLflow, which is not installed; install it with "
                            "pip install -e '.[mlflow]' (or pip install mlflow)") from None
    for name in ("mlflow", "alembic"):   # its INFO lines (creating tables…) are not ours to print
        logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow


PLACEMENT = ("device", "threads", "fuse")   # where a run trains, not what it computes


def _computed(train: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in train.items() if k not in PLACEMENT}


def experiment_hash(experiment: dict[str, Any]) -> str:
    """What the experiment computes, whatever its seeds and placement: one parent run."""
    payload = {k: experiment.get(k) for k in ("name", "dataset", "model", "sweep")}
    payload["train"] = _computed(experiment["train"])
    payload["recipes"] = {name: {**recipe, "train": _computed(recipe.get("train") or {})}
                          for name, recipe in experiment["recipes"].items()}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]



def sqlite_problem(uri: str) -> Optional[str]:
    """Why SQLite could not write the store at ``uri`` (None when it can, or when ``uri`` is
    not a SQLite file): MLflow finds a file it cannot create only after ten tries over ~100 s,
    one multi-line warning each, and a read-only one only at its first write."""
    from sqlalchemy.engine import make_url  # deferred: MLflow's own dependency

    try:
        url = make_url(uri)
    except Exception:           # not a database URI (http://, file://): MLflow's to judge
        return None
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:") \
            or "uri" in url.query:       # file:...?mode=ro: SQLite's own URI, opened as given
        return None
    path = Path(url.database).absolute()
    if path.is_dir():
        return f"{path} is a folder; expected an SQLite database file"
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            return f"{path} is read-only; expected a database file MLflow can write"
        folder = path.parent
    else:                        # MLflow makes the missing folders: the nearest one must do
        folder = next(parent for parent in path.parents if parent.exists())
        if not folder.is_dir():
            return f"{folder} is not a folder; expected a path for the database file"
    if not os.access(folder, os.W_OK | os.X_OK):
        what = f"SQLite writes {path.name} and its journal there" if folder == path.parent \
            else f"MLflow would create {path.parent} there"
        return f"the folder {folder} is read-only ({what}); expected a folder you can write"
    return None


@contextmanager
def _no_engine_retries():
    """MLflow opens a database store up to 10 times over ~100 s, printing each failure; a store
    that cannot be opened now is one line at once (as for an HTTP server, above). Reset after:
    a store that opens keeps its engine for the rest of the process."""
    try:
        from mlflow.store.db import utils  # deferred: mlflow
    except ImportError:            # a layout without it: MLflow's own retries stand
        yield
        return
    retries = getattr(utils, "MAX_RETRY_COUNT", None)
    utils.MAX_RETRY_COUNT = 1
    try:
        yield
    finally:
        if retries is None:
            del utils.MAX_RETRY_COUNT
        else:
            utils.MAX_RETRY_COUNT = retries


def check_mlflow(uri: Optional[str]):
    """MLflow installed and the store usable (exit 2 otherwise); returns the client."""
    mlflow = require_mlflow()
    if uri is not None and uri.rstrip("/") in ("sqlite:", "sqlite:/", "sqlite:///:memory:"):
        raise RegbenchError(f"--log mlflow: {uri} is an in-memory database, gone when regbench "
                            "exits; give a file, e.g. sqlite:///mlflow.db")
    store = uri or mlflow.get_tracking_uri()
    problem = sqlite_problem(store)
    if problem:
        raise RegbenchError(f"--log mlflow: cannot use the tracking store {store}: {problem} "
                            "(--mlflow-uri sqlite:///PATH/mlflow.db)")
    try:
        with _no_engine_retries():
            client = mlflow.MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)
    except Exception as exc:    # a URI it cannot use: before anything trains, exit 2
        raise RegbenchError(f"--log mlflow: cannot use the tracking store "
                            f"{store} ({first_line(exc)})") from None
    return client


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass
class _Nested:
    """A run's nested run while it trains."""

    run_id: str                                    # MLflow's
    sent: set[int] = field(default_factory=set)    # the epochs it holds
    last: int = 0                                  # the last epoch this process sent
    continued: bool = False                        # an earlier attempt's


@register_tracker("mlflow", check=lambda mlflow_uri=None, **options: check_mlflow(mlflow_uri),
                  summary="one MLflow parent run per experiment, a nested run per run")
class MlflowTracker:
    name = "mlflow"

    def __init__(self, plan, results_dir: Path, mlflow_uri: Optional[str] = None,
                 resume: bool = True, **options):
        """The experiment's parent run: the one made for the same experiment hash when
        resuming, a new one otherwise (``--fresh`` moved the old folder aside: its runs stay
        under their own parent)."""
        self.client = check_mlflow(mlflow_uri)
        from mlflow.entities import Metric, Param, RunTag  # deferred: mlflow

        self.Metric, self.Param, self.RunTag = Metric, Param, RunTag
        self.live: dict[str, _Nested] = {}     # run id -> its nested run, while it trains
        self.ended: set[str] = set()           # runs logged whole: a late row is not sent
        self.results_dir = Path(results_dir)
        name = plan.experiment["name"]
        digest = experiment_hash(plan.experiment)
        try:
            found = self.client.get_experiment_by_name(name)
            self.experiment_id = found.experiment_id if found else \
                self.client.create_experiment(name)
            parents = self.client.search_runs(
                [self.experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
                filter_string=f"tags.`{KIND_TAG}` = 'experiment' and tags.`{HASH_TAG}` = "
                              f"'{digest}'") if resume else []
            self.parent = parents[0].info.run_id if parents else self.client.create_run(
                self.experiment_id, run_name=name,
                tags={KIND_TAG: "experiment", HASH_TAG: digest,
                      "regbench.results": str(self.results_dir.resolve())}).info.run_id
            self.logged = self._nested()
        except Exception as exc:
            raise RegbenchError(f"--log mlflow: cannot use the tracking store "
                                f"{mlflow_uri or self.client.tracking_uri} "
                                f"({first_line(exc)})") from None

    def _nested(self) -> dict[str, list]:
        """regbench run id -> the nested runs logged for it under the parent."""
        runs: dict[str, list] = {}
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], max_results=1000, page_token=token,
                filter_string=f"tags.`mlflow.parentRunId` = '{self.parent}'")
            for run in page:
                runs.setdefault(run.data.tags.get("regbench.run_id", ""), []).append(run)
            token = page.token
            if not token:
                return runs

    def log_epoch(self, spec: RunSpec, row: dict[str, Any], run_dir: Path) -> None:
        """One epoch's row as it ends, in the run's nested run (made at its first row)."""
        run_id, epoch = spec["run_id"], int(row["epoch"])
        if run_id in self.ended:      # a worker's row that arrived after its run's result
            return
        try:
            live = self.live.get(run_id)
            if live is not None and epoch <= live.last:   # it started over (a fused group's
                del self.live[run_id]                       # members trained solo)
                self.client.delete_run(live.run_id)
                live = None
            if live is None:
                live = self.live[run_id] = self._begin(spec, epoch)
            self._send(live, [row])
            live.last = epoch
        except Exception:             # the tracker is left out now: no nested run left RUNNING
            for live in self.live.values():
                with suppress(Exception):
                    self.client.set_terminated(live.run_id, "FAILED")
            self.live.clear()
            raise

    def _begin(self, spec: RunSpec, first: int, continue_any: bool = False) -> "_Nested":
        """The nested run that receives this run's epochs from ``first`` on: its earlier
        attempt's when that holds epochs 1..first-1 (``continue_any``: any epochs; a
        completed run whose logging was cut short), else a new one; other attempts are
        deleted."""
        earlier = self.logged.pop(spec["run_id"], [])
        kept = self._continued(spec, earlier, first, continue_any) \
            if first > 1 or continue_any else None
        for old in earlier:
            if kept is None or old.info.run_id != kept.run_id:
                self.client.delete_run(old.info.run_id)
        if kept is not None:
            self.client.update_run(kept.run_id, status="RUNNING")
            self.client.set_tag(kept.run_id, "regbench.status", RUNNING)
            return kept
        tags = {"mlflow.parentRunId": self.parent, KIND_TAG: "run",
                "regbench.run_id": spec["run_id"], "regbench.recipe": spec["recipe"],
                "regbench.status": RUNNING, "regbench.config_hash": spec["config_hash"]}
        run_id = self.client.create_run(self.experiment_id, run_name=spec["run_id"],
                                        tags=tags).info.run_id
        config = {k: v for k, v in run_config(spec).items()
                  if k not in ("run_id", "experiment", "config_hash", "sweep")}
        params = {**flatten(config), **run_hparams(spec)}
        try:
            for batch in _chunks([self.Param(k, str(v)[:PARAM_LENGTH])
                                  for k, v in params.items()], BATCH["params"]):
                self.client.log_batch(run_id, params=batch)
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")   # never left RUNNING
            raise
        return _Nested(run_id)

    def _continued(self, spec: RunSpec, earlier: list, first: int,
                   continue_any: bool) -> Optional["_Nested"]:
        """The latest earlier attempt of the same config that this one continues, if any."""
        for run in sorted(earlier, key=lambda run: run.info.start_time or 0, reverse=True):
            if run.data.tags.get("regbench.config_hash") != spec["config_hash"]:
                continue
            sent = {int(m.step) for m in self.client.get_metric_history(run.info.run_id,
                                                                        EPOCH_METRIC)}
            if continue_any or set(range(1, first)) <= sent:
                return _Nested(run.info.run_id, sent, continued=True)
        return None

    def _send(self, live: "_Nested", rows: list[dict]) -> None:
        """The rows' numbers at step = epoch, for the epochs ``live`` does not hold yet."""
        now = int(time.time() * 1000)
        rows = [row for row in rows if int(row["epoch"]) not in live.sent]
        metrics = [self.Metric(key, float(value), now, int(row["epoch"]))
                   for row in rows for key, value in row.items()
                   if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value)]
        for batch in _chunks(metrics, BATCH["metrics"]):
            self.client.log_batch(live.run_id, metrics=batch)
        live.sent.update(int(row["epoch"]) for row in rows)

    def log_run(self, spec: RunSpec, summary: dict[str, Any], rows: list[dict],
                weights, run_dir: Path) -> None:
        """The run's final state in its nested run, after the epochs it does not hold yet
        (all of them for a run not logged live, in a new nested run: an earlier one for the
        same run id, a failed or interrupted attempt now trained again, is deleted, as the
        folder it described was replaced)."""
        self.ended.add(spec["run_id"])
        live = self.live.pop(spec["run_id"], None) or \
            self._begin(spec, int(rows[0]["epoch"]) if rows else 1)
        try:
            self._fill(live, summary, rows, run_dir)
        except BaseException:
            self.client.set_terminated(live.run_id, "FAILED")   # never left RUNNING
            raise
        self.client.set_terminated(live.run_id, STATES.get(summary["status"], "FAILED"))

    def _fill(self, live: "_Nested", summary: dict[str, Any], rows: list[dict],
              run_dir: Path) -> None:
        self._send(live, rows)
        last = int(rows[-1]["epoch"]) if rows else 0
        now = int(time.time() * 1000)
        final = {key: value for key, value in final_metrics(summary).items()
                 if key.startswith("test_")}
        if live.continued:            # an attempt that ended before may hold them at this step
            final = {key: value for key, value in final.items()
                     if last not in {m.step for m in self.client.get_metric_history(
                         live.run_id, key)}}
        tags = [self.RunTag("regbench.status", summary["status"]),
                self.RunTag("regbench.verdict", verdict_label(summary))]
        self.client.log_batch(live.run_id, tags=tags, metrics=[
            self.Metric(key, value, now, last) for key, value in final.items()])
        for name in (SUMMARY, METRICS_FILE):
            if (Path(run_dir) / name).exists():
                self.client.log_artifact(live.run_id, str(Path(run_dir) / name))

    def replay(self, spec: RunSpec, run_dir: Path) -> None:
        """A completed run that was skipped, logged from its folder unless the parent already
        holds it whole (same run id and config hash, its final state logged)."""
        same = [run for run in self.logged.get(spec["run_id"], [])
                if run.data.tags.get("regbench.config_hash") == spec["config_hash"]]
        if any(run.data.tags.get("regbench.status", RUNNING) != RUNNING for run in same):
            return
        summary, rows = from_folder(run_dir)
        if same:                      # its epochs were sent; its end never was
            self.live[spec["run_id"]] = self._begin(spec, 1, continue_any=True)
        self.log_run(spec, summary, rows, None, run_dir)

    def finish(self, interrupted: bool = False) -> None:
        for run_id, live in list(self.live.items()):   # its result never came (a cancelled Ray
            del self.live[run_id]                       # task): it keeps the epochs it holds
            self.client.set_tag(live.run_id, "regbench.status", "interrupted")
            self.client.set_terminated(live.run_id, "KILLED")
        try:
            for name in PARENT_ARTIFACTS:
                if (self.results_dir / name).is_file():
                    self.client.log_artifact(self.parent, str(self.results_dir / name))
            if (self.results_dir / PLOTS_DIR).is_dir():
                self.client.log_artifacts(self.parent, str(self.results_dir / PLOTS_DIR),
                                          PLOTS_DIR)
        finally:
            self.client.set_terminated(self.parent, "KILLED" if interrupted else "FINISHED")
