"""Run an experiment: plan the runs, skip completed ones, train the rest, write results.

Usable from Python without the CLI::

    from regbench import run_experiment
    outcome = run_experiment("configs/quickstart.yaml")
"""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from regbench.config import LoadedConfig, load_config
from regbench.config.yaml_io import dump_yaml
from regbench.errors import RegbenchError
from regbench.plan import Plan, build_plan
from regbench.results import (PLAN_FILE, SUMMARY, atomic_write_text, read_summary, to_json,
                              write_run)

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class ExperimentOutcome:
    results_dir: Path
    plan: Plan
    summaries: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False
    comparison: Any = None
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if any(s.get("status") != "completed" for s in self.summaries):
            return EXIT_RUN_FAILED
        return EXIT_OK


def available_cores() -> int:
    """Cores this process may use (the affinity mask, not the machine's total)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_threads(workers: int, cores: Optional[int] = None) -> int:
    """Split the cores between parallel runs (at least one thread each): oversubscribed torch
    threads make CPU training many times slower, so this is set even for one worker."""
    return max(1, (cores or available_cores()) // max(1, workers))


def failed_result(spec: dict[str, Any], message: str):
    """A RunResult for a run that could not train (its error is kept in summary.json)."""
    from regbench.train import RunResult

    summary = {"status": "failed", "run_id": spec["run_id"], "point_id": spec.get("point_id"),
               "recipe": spec["recipe"], "seed": spec["seed"], "sweep": spec.get("sweep", {}),
               "sweep_paths": spec.get("sweep_paths", {}), "config_hash": spec["config_hash"],
               "error": message, "train_differs": spec.get("train_differs", False)}
    return RunResult(status="failed", rows=[], summary=summary, error=message)


def execute_run(spec: dict[str, Any], threads: int, on_epoch=None):
    """Train one run in this process and diagnose it. Never raises for a run's own failure.

    The dataset comes from the per-process ``load_bundle`` cache: a worker loads it once.
    """
    import torch

    from regbench.data import load_bundle
    from regbench.diagnose import diagnose_rows
    from regbench.train import resolve_device, train_run

    torch.set_num_threads(spec["train"].get("threads") or threads)
    try:
        device = resolve_device(spec["train"]["device"])
        data = load_bundle(spec["dataset"], spec["train"]["train_eval_samples"])
        callback = (lambda row: on_epoch(spec, row)) if on_epoch else None
        result = train_run(spec, data, device, callback)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failing run must not stop the sweep
        return failed_result(spec, f"{type(exc).__name__}: {exc}")
    result.summary["sweep_paths"] = spec.get("sweep_paths", {})
    # a run cut short by Ctrl-C has no verdict: its curves end where the user stopped it
    result.summary["verdict"] = None if result.status == "interrupted" else diagnose_rows(
        result.rows, result.summary["task"], spec.get("diagnosis"), result.status)
    return result


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".regbench-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise RegbenchError(f"--out: cannot write to {folder} ({exc.strerror or exc}); choose a "
                            "writable folder with --out") from None


def is_complete(run_dir: Path, spec: dict[str, Any]) -> bool:
    summary = read_summary(run_dir)
    return bool(summary and summary.get("status") == "completed"
                and summary.get("config_hash") == spec["config_hash"])


def prepare_results_dir(out: Path, name: str, fresh: bool) -> Path:
    """``out/name``; with ``fresh`` an existing folder is renamed aside, never deleted."""
    results_dir = out / name
    if fresh and results_dir.exists() and any(results_dir.iterdir()):
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        aside = out / f"{name}.old-{stamp}"
        counter = 1
        while aside.exists():
            counter += 1
            aside = out / f"{name}.old-{stamp}-{counter}"
        results_dir.rename(aside)
    check_writable(results_dir)
    return results_dir


def run_experiment(config: LoadedConfig | str | Path, *, overrides: Iterable[str] = (),
                   out: str | Path = "results", seeds: Optional[list[int]] = None,
                   workers: int = 1, executor: str = "local", address: Optional[str] = None,
                   device: Optional[str] = None, resume: bool = True, progress=None,
                   report: bool = True, metric: Optional[str] = None) -> ExperimentOutcome:
    """Plan, train and compare every run of an experiment (see SPEC §6); ``metric`` is the one
    the comparison ranks by (default: accuracy or mse)."""
    from regbench.compare import check_metric, compare_results
    from regbench.executors import make_executor

    loaded = config if isinstance(config, LoadedConfig) else load_config(config, overrides)
    plan = build_plan(loaded, seeds, device)
    if metric:  # a typo must not cost a whole sweep
        from regbench.data import data_spec

        check_metric(metric, data_spec(plan.experiment["dataset"]).task)
    if executor != "ray":  # a Ray cluster's GPUs are not this machine's
        check_device(plan)
    results_dir = Path(out) / plan.experiment["name"]
    outcome = ExperimentOutcome(results_dir=results_dir, plan=plan)
    pending = []
    for spec in plan.runs:
        run_dir = results_dir / "runs" / spec["run_id"]
        if resume and is_complete(run_dir, spec):
            outcome.skipped.append(spec["run_id"])
            outcome.summaries.append(read_summary(run_dir))
        else:
            pending.append(spec)
    if pending:  # corrupt data files: one clear error before anything is written or trained
        from regbench.data import load_bundle

        load_bundle(plan.experiment["dataset"], plan.experiment["train"]["train_eval_samples"])
    prepare_results_dir(Path(out), plan.experiment["name"], fresh=not resume)
    atomic_write_text(results_dir / "experiment.yaml", dump_yaml(plan.experiment))
    # the runs of this plan: tables and plots leave out folders of an earlier grid
    atomic_write_text(results_dir / PLAN_FILE,
                      to_json({"run_ids": [r["run_id"] for r in plan.runs]}))
    # Ray without --workers: one thread per task, as many tasks as the cluster has CPUs
    threads = 1 if executor == "ray" and workers == 1 else default_threads(workers)
    runner = make_executor(executor, workers=workers, address=address, cores=available_cores())
    if progress is not None:
        progress.start(len(plan.runs), len(outcome.skipped))

    def record(spec: dict[str, Any], result) -> None:
        write_run(results_dir / "runs" / spec["run_id"], spec, result)
        outcome.summaries.append(result.summary)
        if progress is not None:
            progress.run_finished(spec, result.summary)

    try:
        try:
            for spec, result in runner.run(pending, threads, progress):
                record(spec, result)
                if result.status == "interrupted":  # Ctrl-C landed in the training loop
                    outcome.interrupted = True
                    break
        except KeyboardInterrupt:
            outcome.interrupted = True
        if outcome.interrupted:
            try:  # save what the runs in flight had done; a second Ctrl-C stops waiting
                for spec, result in runner.interrupt():
                    record(spec, result)
            except KeyboardInterrupt:
                pass
    finally:
        runner.close()
        if progress is not None:
            progress.close()
    if any(read_summary(p.parent) for p in (results_dir / "runs").glob(f"*/{SUMMARY}")):
        outcome.comparison = compare_results(results_dir, metric)
        if report and not outcome.interrupted:
            problem = write_report_if_available(results_dir)
            if problem:
                outcome.warnings.append(problem)
    return outcome


def check_device(plan: Plan) -> None:
    if any(run["train"]["device"] == "cuda" for run in plan.runs):
        import torch

        if not torch.cuda.is_available():
            raise RegbenchError("train.device: cuda was requested but no CUDA GPU is available "
                                "here; use device: auto or cpu")


def write_report_if_available(results_dir: Path) -> Optional[str]:
    """Plots and report.html (see regbench.report); a failure here never loses trained runs,
    so it is returned as a warning instead of raised."""
    from regbench.report import write_report

    try:
        write_report(results_dir)
    except Exception as exc:  # plotting must not turn a finished sweep into a crash
        return (f"the report could not be written ({type(exc).__name__}: {exc}); the runs are "
                f"saved: retry with `regbench report {results_dir}`")
    return None
