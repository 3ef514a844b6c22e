"""Run an experiment: plan the runs, skip completed ones, train the rest, write results.

Usable from Python without the CLI::

    from regbench import Launch, run_experiment
    outcome = run_experiment("configs/quickstart.yaml", Launch(out="results", workers=2))
"""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Protocol

from regbench.analysis.compare import check_metric, compare_results
from regbench.analysis.diagnose import diagnose_rows
from regbench.config.yaml_io import dump_yaml
from regbench.data import data_spec, forget_loaded, load_bundle
from regbench.engine.execute import check_device
from regbench.engine.executors import gpu_slots, make_executor
from regbench.engine.fused import ModelFacts, fuse_tasks, model_facts, solo_reason
from regbench.engine.result import GROUP_KEY, KeptFolder, StoppedGroup, members
from regbench.engine.slurm import run_elements
from regbench.engine.threads import available_cores, default_threads
from regbench.engine.train import build_run_model
from regbench.errors import ConfigError, RegbenchError
from regbench.experiment import confirm, sweeps
from regbench.experiment.config import (
    LoadedConfig,
    data_errors_located,
    load_config,
    placement_errors_located,
    select_recipes,
)
from regbench.experiment.launch import Launch
from regbench.experiment.plan import Plan, build_plan
from regbench.registry import UnknownName
from regbench.report.junit import testsuite, write_junit
from regbench.report.page import write_interrupted_page, write_report
from regbench.results import (
    ResultsLock,
    atomic_write_text,
    check_results_folder,
    completed_summary,
    inspect_summary,
    read_summary,
    to_json,
    write_run,
)
from regbench.tracking import TRACKERS, Trackers, open_trackers
from regbench.tracking.base import folder_record
from regbench.vocabulary import (
    CHECKPOINT_FILE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUN_FAILED,
    EXPERIMENT_FILE,
    PLAN_FILE,
    RUNS_DIR,
    SLURM_LIVE_STATES,
    SUMMARY,
    RunSpec,
    Task,
)


class Display(Protocol):
    """What a front end shows while an experiment runs (the CLI's terminal; none: quiet)."""

    def progress(self):
        """A fresh progress view for one experiment (see regbench.experiment.progress)."""

    def outcome(self, outcome: "ExperimentOutcome", title: str) -> None:
        """An experiment's comparison, as soon as it is made."""

    def note(self, text: str) -> None:
        """Plain text between two stages of one command."""

    def warning(self, text: str) -> None:
        """Something the user should know that does not stop the command."""


@dataclass
class ProgressOnly:
    """A Display that shows progress alone (the gallery prints its own verdicts)."""

    make: Callable[[], Any]              # a fresh progress view per experiment

    def progress(self):
        return self.make()

    def outcome(self, outcome: "ExperimentOutcome", title: str) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def warning(self, text: str) -> None:
        pass


@dataclass
class ExperimentOutcome:
    results_dir: Path
    plan: Plan
    summaries: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False
    comparison: Any = None
    warnings: list[str] = field(default_factory=list)
    confirmation: Optional["ExperimentOutcome"] = None   # --confirm-seeds: the headline
    outstanding: list[str] = field(default_factory=list)  # jobs still queued (--detach, Ctrl-C)

    def all(self) -> list["ExperimentOutcome"]:
        """This experiment and its confirmation, in the order they ran."""
        return [self] + ([self.confirmation] if self.confirmation is not None else [])

    @property
    def exit_code(self) -> int:
        """130 when interrupted, 1 when a run of either experiment did not complete, else 0."""
        if any(o.interrupted for o in self.all()):
            return EXIT_INTERRUPTED
        if any(s.get("status") != "completed" for o in self.all() for s in o.summaries):
            return EXIT_RUN_FAILED
        return EXIT_OK


def check_writable(folder: Path) -> None:
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):   # a fresh name: never through a planted link
            pass
    except OSError as exc:
        raise RegbenchError(f"--out: cannot write to {folder} ({exc.strerror or exc}); choose a "
                            "writable folder with --out") from None


def is_complete(run_dir: Path, spec: RunSpec) -> bool:
    return completed_summary(run_dir, spec["config_hash"]) is not None


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


def load_experiment(config: LoadedConfig | str | Path, launch: Launch,
                    overrides: Iterable[str] = (), params: Iterable[str] = (),
                    smoke: bool = False) -> LoadedConfig:
    """The config a command trains: the launch's plugins loaded first (a config names their
    entries), ``--set`` overrides, ``--param`` sweep values, ``--recipes`` and ``--smoke``'s
    budget applied, and a ``--confirm-seeds`` confirmation checked to be possible; exit 2 on
    any error."""
    launch.load_plugins()
    for name in launch.trackers:      # a typo: exit 2 before anything is loaded or written
        if name not in TRACKERS:
            raise ConfigError(str(UnknownName("tracker", name, TRACKERS.names())),
                              source="--log")
    loaded = config if isinstance(config, LoadedConfig) else load_config(config, overrides)
    if params:
        loaded = sweeps.apply_params(loaded, list(params))
    loaded = select_recipes(loaded, launch.recipes)   # after --param: one naming a left-out
    if smoke:                                         # recipe is refused, not dropped
        loaded = sweeps.shrink_for_smoke(loaded, own_folder=True)
    if launch.confirm_seeds is not None:
        confirm.check_confirmable(loaded, launch.confirm_seeds)
    return loaded


def plan_experiment(loaded: LoadedConfig, launch: Launch) -> Plan:
    """Every run of the experiment as the launch places it (seeds, device, fuse)."""
    return build_plan(loaded, launch.seeds, launch.device, launch.fuse)


def run_experiment(config: LoadedConfig | str | Path, launch: Launch = Launch(), *,
                   overrides: Iterable[str] = (), display: Optional[Display] = None
                   ) -> ExperimentOutcome:
    """Plan, train and compare every run of an experiment (see docs/architecture.md), then,
    with ``launch.confirm_seeds``, retrain each recipe's chosen point and the baseline on
    fresh seeds (``outcome.confirmation``: the headline). ``overrides`` are ``--set`` values
    for a config given as a path; ``display`` shows progress and each comparison as it is
    made (none: quiet). Writes ``launch.junit`` at the end."""
    loaded = load_experiment(config, launch, overrides)
    outcome = train_experiment(loaded, launch, display)
    if launch.confirm_seeds and outcome.comparison is not None and not outcome.interrupted:
        confirming, confirms = confirm.confirm_config(
            loaded, outcome.comparison, outcome.plan.experiment["seeds"], launch.confirm_seeds)
        if display is not None:
            display.note(f"\nconfirming on {launch.confirm_seeds} fresh seed(s)")
        # its own fresh seeds (confirm_config's), never the selection's --seeds
        outcome.confirmation = train_experiment(confirming, launch.replace(seeds=None), display,
                                                confirms,
                                                " (fresh seeds: the headline)")
    if launch.junit is not None:
        write_junit(launch.junit, [testsuite(o.results_dir.name, o.results_dir,
                                             [r["run_id"] for r in o.plan.runs])
                                   for o in outcome.all()])
    return outcome


def train_experiment(loaded: LoadedConfig, launch: Launch, display: Optional[Display] = None,
                     confirms: Optional[dict[str, Any]] = None, title: str = ""
                     ) -> ExperimentOutcome:
    """One experiment (no confirmation): ``confirms`` says which selection a confirmation
    experiment retrains (kept in plan.json); ``title`` follows the table's in ``display``."""
    plugins = launch.load_plugins()
    plan = plan_experiment(loaded, launch)
    if plan.experiment.get("search"):
        plan.warnings.append("search: is read by `regbench tune`; `regbench run` trains each "
                             "recipe's own values as written")
    forget_loaded()                   # this experiment reads its data files afresh
    for spec in plan.runs:
        spec["plugins"] = list(plugins)
    if launch.metric:  # a typo must not cost a whole sweep
        check_metric(launch.metric, data_spec(plan.experiment["dataset"]).task)
    if launch.executor not in ("ray", "slurm"):  # a cluster's GPUs are not this machine's
        check_device(plan.runs)
    gpus = gpu_assignment(plan.runs, launch) if launch.executor == "local" else ([], [])
    results_dir = launch.out / plan.experiment["name"]
    check_results_folder(results_dir, [spec["run_id"] for spec in plan.runs])
    if not launch.resume or _pending(plan, results_dir):  # corrupt data files, or a regularizer
        # that cannot apply to the model: one clear error before anything is written or trained
        with data_errors_located(loaded):
            data = load_bundle(plan.experiment["dataset"],
                               plan.experiment["train"]["train_eval_samples"])
        with placement_errors_located(loaded):   # a target that matches nothing: its line
            plan.models = check_models(plan, data)
    if launch.executor != "slurm" or not launch.resume:   # (--fresh would set the folder
        check_not_held(results_dir, plan)                 # aside under the jobs' feet)
    logging = plan.experiment["logging"]
    with ResultsLock(results_dir):   # a second process on this folder stops here (exit 2)
        trackers = open_trackers([*logging["trackers"], *launch.trackers], plan, results_dir,
                                 launch.mlflow_uri or logging["mlflow_uri"],
                                 launch.resume)     # exit 2 if unusable
        try:
            outcome = _train(plan, results_dir, launch, display,
                             confirms=confirms, trackers=trackers, gpus=gpus[0])
            outcome.warnings += gpus[1]
        except BaseException:
            trackers.finish(interrupted=True)      # no tracker run is left open
            raise
        trackers.finish(outcome.interrupted)
        outcome.warnings += trackers.warnings
    if display is not None:
        display.outcome(outcome, title)
    return outcome


def gpu_assignment(specs: list[RunSpec], launch: Launch) -> tuple[list[str], list[str]]:
    """Each local worker process's GPU, round-robin (``gpu_slots``), when the runs train on
    CUDA and either ``--gpus`` names GPUs or ``--workers N`` meets several; [] where every
    process may use the default GPU. A GPU is named as this process sees it: an index, or
    the entry of an inherited CUDA_VISIBLE_DEVICES (``--gpus`` counts its positions). With
    the warnings to show (workers capped at GPUs × ``train.runs_per_gpu``, when set). Exit 2
    for ``--gpus`` this machine does not have."""
    import torch  # deferred: loaded with the engine anyway

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    on_gpu = [s for s in specs if s["train"]["device"] == "cuda"
              or (s["train"]["device"] == "auto" and count)]
    if launch.gpus:
        bad = [g for g in launch.gpus if g >= count]
        if bad or not on_gpu:
            have = f"{count} CUDA GPU(s) (0-{count - 1})" if count else "no CUDA GPU"
            raise ConfigError(f"this machine has {have}; got {bad[0]}" if bad else
                              "the runs train on the CPU (train.device: cpu)", source="--gpus")
    if not on_gpu or (not launch.gpus and (count < 2 or launch.workers < 2)):
        return [], []
    caps = [s["train"].get("runs_per_gpu") for s in on_gpu]
    per = min(c for c in caps if c) if any(caps) else None
    gpus = list(launch.gpus or range(count))
    wanted = launch.workers if launch.workers > 1 else len(gpus) * (per or 1)
    slots = gpu_slots(gpus, per or wanted, wanted)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [v.strip() for v in visible.split(",")] if visible else None
    warnings = [f"--workers {wanted}: {len(slots)} processes, {per} per GPU on {len(gpus)} "
                "GPU(s) (train.runs_per_gpu)"] if wanted > len(slots) else []
    return [names[g] if names and g < len(names) else str(g) for g in slots], warnings


def check_not_held(results_dir: Path, plan: Plan) -> None:
    """Refuse (exit 2) to train runs that a Slurm element of an earlier ``--detach`` still
    holds: both would write their folders. Where Slurm cannot be asked (the folder copied to
    another machine) nothing is known to hold them."""
    elements = run_elements(results_dir)
    held = sorted({elements[r["run_id"]][0].split("_")[0] for r in plan.runs
                   if elements.get(r["run_id"], ("", None))[1] in SLURM_LIVE_STATES})
    if held:
        raise RegbenchError(f"{results_dir}: Slurm job(s) {', '.join(held)} still train runs "
                            f"of this folder (regbench status {results_dir}); collect them "
                            "with the same command and --executor slurm, or scancel "
                            f"{' '.join(held)} first")


def check_models(plan: Plan, data) -> dict[str, ModelFacts]:
    """Build each recipe's and sweep point's model once on the CPU: a regularizer that would
    change nothing in it is refused here (exit 2), not found after training. Returns each
    run's model facts (what ``fuse: auto`` decides on and fused members must share; none for
    a model that ran out of memory)."""
    import torch  # deferred: loaded with the engine anyway

    facts: dict[str, Optional[ModelFacts]] = {}
    for spec in plan.runs:
        key = repr((spec["model"], sorted(spec["regularizers"].items())))
        if key not in facts:
            facts[key] = None
            try:
                model, _, _ = build_run_model(spec, data, torch.device("cpu"))
                facts[key] = model_facts(model)
                _check_outputs(spec, model, data)
            except RegbenchError:
                raise
            except (MemoryError, RuntimeError):   # out of memory: a runtime fault of that run,
                continue                          # which fails on its own; the rest train
            except Exception as exc:              # anything else is the config's: exit 2
                raise RegbenchError(f"recipe '{spec['recipe']}': model {spec['model']['name']} "
                                    f"cannot be built ({type(exc).__name__}: {exc})") from None
    by_run = {spec["run_id"]: facts[repr((spec["model"], sorted(spec["regularizers"].items())))]
              for spec in plan.runs}
    return {run_id: value for run_id, value in by_run.items() if value is not None}


def _check_outputs(spec: RunSpec, model, data) -> None:
    """One forward of the built model on two training samples: one output per class (or
    regression target) per sample, or exit 2 naming the model (a plugin's model with too
    many outputs would train, and one with too few would fail every run)."""
    import torch  # deferred: loaded with the engine anyway

    model.eval()
    with torch.no_grad():
        shape = tuple(model(data.x_train[:2]).shape)
    if shape != (min(2, data.n_train), data.output_dim):
        what = "classes" if data.task == "classification" else "regression targets"
        raise RegbenchError(f"model: {spec['model']['name']} returns outputs of shape {shape} "
                            f"for {min(2, data.n_train)} samples; expected "
                            f"({min(2, data.n_train)}, {data.output_dim}): the dataset has "
                            f"{data.output_dim} {what}")


def _pending(plan: Plan, results_dir: Path) -> list[dict[str, Any]]:
    return [spec for spec in plan.runs
            if not is_complete(results_dir / RUNS_DIR / spec["run_id"], spec)]


def _train(plan: Plan, results_dir: Path, launch: Launch, display: Optional[Display], *,
           confirms: Optional[dict[str, Any]], trackers: Trackers,
           gpus: Optional[list[str]] = None) -> ExperimentOutcome:
    """The locked part of run_experiment: skip completed runs, train the rest, write results."""
    resume, workers, executor = launch.resume, launch.workers, launch.executor
    progress = display.progress() if display is not None else None
    outcome = ExperimentOutcome(results_dir=results_dir, plan=plan)
    pending = _pending(plan, results_dir) if resume else list(plan.runs)
    to_train = {spec["run_id"] for spec in pending}
    for spec in plan.runs:
        run_dir = results_dir / RUNS_DIR / spec["run_id"]
        if spec["run_id"] not in to_train:
            outcome.skipped.append(spec["run_id"])
            outcome.summaries.append(read_summary(run_dir))
            trackers.replay(spec, run_dir)    # a tracker added since it trained gets it too
            continue
        _, damage = inspect_summary(run_dir)
        if resume and damage:
            outcome.warnings.append(f"run {spec['run_id']}: {SUMMARY} {damage}; trained again")
    prepare_results_dir(launch.out, plan.experiment["name"], fresh=not resume)
    atomic_write_text(results_dir / EXPERIMENT_FILE, dump_yaml(plan.experiment))
    # the runs of this plan: tables and plots leave out folders of an earlier grid
    atomic_write_text(results_dir / PLAN_FILE, to_json(
        {"run_ids": [r["run_id"] for r in plan.runs], **({"confirms": confirms} if confirms else {})}))
    tasks = fuse_tasks(pending, plan.models)
    if gpus:                  # one process per GPU slot (gpu_assignment)
        workers = len(gpus)
    if executor == "local":   # never more processes than tasks: one task trains here
        workers = max(1, min(workers, len(tasks)))
        gpus = (gpus or [])[:workers] if workers > 1 or launch.gpus else []
    # Ray without --workers: one thread per task, as many tasks as the cluster has CPUs
    threads = 1 if executor == "ray" and workers == 1 else default_threads(workers)
    runner = make_executor(executor, workers=workers, address=launch.address,
                           cores=available_cores(), results_dir=results_dir, gpus=gpus,
                           plugins=pending[0]["plugins"] if pending else (),
                           write=write_diagnosed_run, detach=launch.detach,
                           settings=plan.experiment["execution"])
    if progress is not None:
        progress.start(len(plan.runs), len(outcome.skipped))

    def record(spec: RunSpec, result) -> None:
        run_dir = results_dir / RUNS_DIR / spec["run_id"]
        if isinstance(result, KeptFolder):    # a Slurm element wrote it, or was lost before
            if result.written:                # a new attempt of the run: every tracker logs it
                trackers.log_run(spec, *folder_record(run_dir), run_dir)
        else:
            write_diagnosed_run(results_dir, spec, result, keep_events=trackers.owns_event_files)
            trackers.log_run(spec, result.summary, result.rows, result.weights, run_dir)
        outcome.summaries.append(result.summary)
        if progress is not None:
            progress.run_finished(spec, result.summary)

    def record_task(task: Task, result) -> bool:
        """Record a task's runs (one, or a fused group's); whether one was interrupted."""
        for spec, one in members(task, result):
            record(spec, one)
        if progress is not None and GROUP_KEY in task:
            progress.task_finished(task)
        return isinstance(result, StoppedGroup) or any(
            one.status == "interrupted" for _, one in members(task, result))

    # a checkpoint is written where the run trains: on this machine's disk only for this
    # process, --workers and a local Ray (a remote worker would write on its own disk)
    # (Slurm's nodes share the results folder by design: its elements write the run folders)
    here = executor in ("local", "slurm") or (executor == "ray" and not launch.address)
    for spec in pending:
        set_checkpoint(spec, results_dir if here else None)
    # each epoch's row to the trackers as it ends, and to the display (None: nobody reads it)
    relay = EpochRelay(trackers, results_dir / RUNS_DIR, progress) \
        if progress is not None or trackers.trackers else None
    outcome.interrupted = drive(runner, tasks, threads, relay, record_task)
    outcome.outstanding = list(getattr(runner, "outstanding", None) or [])
    if outcome.outstanding and not outcome.interrupted:
        return outcome    # --detach: the jobs write the runs; the same command collects them
    if any(read_summary(p.parent) for p in (results_dir / RUNS_DIR).glob(f"*/{SUMMARY}")):
        outcome.comparison = compare_results(results_dir, launch.metric, write=True,
                                             min_effect=launch.min_effect)
        if launch.report and not outcome.interrupted:
            problem = write_report_if_available(results_dir)
            if problem:
                outcome.warnings.append(problem)
    if launch.report and outcome.interrupted:   # never leave the report of an earlier state standing
        finished = sum(1 for s in outcome.summaries   # the skipped runs' summaries included
                       if s and s.get("status") != "interrupted")
        write_interrupted_page(results_dir, finished, len(plan.runs))
    return outcome


def set_checkpoint(spec: RunSpec, results_dir: Optional[Path]) -> None:
    """Where a run (or the fused group it leads) keeps its checkpoint: its own folder, as an
    absolute path (a worker's or a Ray task's working folder is another). None for a tuning
    trial (its study resumes it), for a run folder that is a link (never written through) and
    without ``results_dir`` (an executor whose workers may not share this disk)."""
    if results_dir is None:
        spec["checkpoint"] = None
        return
    run_dir = results_dir / RUNS_DIR / spec["run_id"]
    trial = spec.get("trial") or spec.get("withhold_test")
    spec["checkpoint"] = None if trial or run_dir.is_symlink() else \
        os.path.abspath(run_dir / CHECKPOINT_FILE)


@dataclass
class EpochRelay:
    """What an executor reports while runs train (its ``progress``), passed on: each epoch's
    row to the trackers as the epoch ends (live curves, written by this driver process for
    every executor) and to the progress display (None: quiet)."""

    trackers: Trackers
    runs_dir: Path
    progress: Any = None

    def run_started(self, task: Task) -> None:
        if self.progress is not None:
            self.progress.run_started(task)

    def epoch(self, spec: Task, row: dict[str, Any]) -> None:
        if GROUP_KEY not in spec:     # a plugin executor's group row names no run folder
            self.trackers.log_epoch(spec, row, self.runs_dir / spec["run_id"])
        if self.progress is not None:
            self.progress.epoch(spec, row)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()


def drive(runner, tasks, threads: int, progress, handle) -> bool:
    """Train ``tasks`` on an executor, handing each (task, result) to ``handle`` as it finishes
    (``handle`` returns True when Ctrl-C landed in the training loop: stop there). After Ctrl-C
    the runs in flight are collected and handed on too; a second Ctrl-C stops waiting. Returns
    whether the work was interrupted; the executor is closed either way."""
    interrupted = False
    try:
        try:
            for task, result in runner.run(tasks, threads, progress):
                if handle(task, result):
                    interrupted = True
                    break
        except KeyboardInterrupt:
            interrupted = True
        if interrupted:
            try:  # save what the runs in flight had done
                for task, result in runner.interrupt():
                    handle(task, result)
            except KeyboardInterrupt:
                pass
    finally:
        runner.close()
        if progress is not None:
            progress.close()
    return interrupted


def write_diagnosed_run(results_dir: Path, spec: RunSpec, result,
                        keep_events: bool = False) -> None:
    """The run's folder, with the overfitting diagnosis in its summary (a run cut short by
    Ctrl-C has none: its curves end where the user stopped it). ``keep_events``: a tracker
    wrote the folder's event files as the run trained (``results.write_run``)."""
    if result.status != "failed":
        result.summary["verdict"] = None if result.status == "interrupted" else diagnose_rows(
            result.rows, result.summary["task"], spec.get("diagnosis"), result.status,
            result.summary.get("chosen_epoch"))
    write_run(results_dir / RUNS_DIR / spec["run_id"], spec, result, keep_events=keep_events)


def fusion_lines(specs: list[RunSpec]) -> list[str]:
    """What --dry-run says about fused training: each group of runs that trains as one model,
    then the runs that train solo, by reason."""
    tasks = fuse_tasks(specs)
    groups = [task for task in tasks if GROUP_KEY in task]
    lines = []
    if groups:
        lines.append(f"fused: {sum(len(g[GROUP_KEY]) for g in groups)} runs in {len(groups)} "
                     "group(s), each trained as one stacked model (with train.fuse: auto, a "
                     "group whose model is too large to gain on the CPU trains solo, and a group "
                     "splits where the built models differ in their layers or use dropout, "
                     "weight noise or DropConnect outside an MLP; --fuse off trains every run "
                     "alone):")
        for group in groups:
            lines.append(f"  {len(group[GROUP_KEY])} runs: "
                         f"{_some([spec['run_id'] for spec in group[GROUP_KEY]])}")
    solo: dict[str, list[str]] = {}
    for task in tasks:
        if GROUP_KEY not in task:
            solo.setdefault(solo_reason(task), []).append(task["run_id"])
    if solo:
        lines.append(f"solo: {sum(map(len, solo.values()))} run(s), each trained alone:")
        lines += [f"  {len(runs)} run(s), {reason}: {_some(runs)}" for reason, runs in solo.items()]
    return lines


def _some(run_ids: list[str]) -> str:
    return ", ".join(run_ids[:3]) + (f" and {len(run_ids) - 3} more" if len(run_ids) > 3 else "")


def write_report_if_available(results_dir: Path) -> Optional[str]:
    """Plots and report.html (see regbench.report); a failure here never loses trained runs,
    so it is returned as a warning instead of raised."""
    try:
        write_report(results_dir)
    except Exception as exc:  # plotting must not turn a finished sweep into a crash
        return (f"the report could not be written ({type(exc).__name__}: {exc}); the runs are "
                f"saved: retry with `regbench report {results_dir}`")
    return None
