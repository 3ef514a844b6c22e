"""``regbench tune``: the same tuning budget for every recipe, chosen on validation only, then
confirmed on fresh seeds.

The protocol (MLCommons AlgoPerf's external tuning, DeepOBS): each recipe with searched keys
(``search:``; see regbench.experiment.search) gets exactly N trials, drawn by an Optuna sampler
from its own search space and trained on the search seed; hopeless trials are pruned on their
per-epoch validation curve. A trial is never evaluated on the test split. Each recipe's best
trial on the validation metric, and the baseline, are then retrained on K seeds the search
never used, and those runs alone make the comparison table (interval, verdict, Holm).

``OUT/<name>-tune/`` holds::

    study.db        the Optuna studies, one per recipe ("<name>/<recipe>"), unless --storage
    search/         the trials: an ordinary results folder (runs/<recipe>__trial=<n>__seed=<s>/)
    tuning.json     the protocol and every trial (values, state), which the report plots
    runs/ comparison.* plots/ report.html    the confirmation on fresh seeds: the answer

A killed ``tune`` resumes: finished trials are read back from the study, and a trial that was
training when its process died (RUNNING, on this host, by a process that is gone) is trained
again under the same trial number, so every recipe still ends with N trials.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from regbench.analysis.compare import check_metric
from regbench.data import data_spec, forget_loaded, load_bundle
from regbench.engine.executors import make_executor
from regbench.engine.pruning import PRUNERS, open_storage, quiet_optuna
from regbench.engine.threads import available_cores, default_threads
from regbench.errors import ConfigError, RegbenchError
from regbench.experiment.config import (
    LoadedConfig,
    data_errors_located,
    load_config,
    resolve_experiment,
)
from regbench.experiment.confirm import fresh_seeds
from regbench.experiment.launch import Launch
from regbench.experiment.plan import build_plan, config_hash
from regbench.experiment.runner import (
    Display,
    ExperimentOutcome,
    check_models,
    drive,
    prepare_results_dir,
    train_experiment,
    write_diagnosed_run,
)
from regbench.experiment.search import SearchParam, search_space
from regbench.experiment.sweeps import sweep_error
from regbench.report.tuning import budget_text, chosen_value, chosen_values, read_tuning
from regbench.results import (
    ResultsLock,
    atomic_write_text,
    check_results_folder,
    read_summary,
    to_json,
)
from regbench.tracking import check_trackers
from regbench.vocabulary import (
    EXIT_INTERRUPTED,
    EXIT_RUN_FAILED,
    PLAN_FILE,
    RUNS_DIR,
    TUNING_FILE,
    RunSpec,
    default_metric,
    format_value,
    lower_is_better,
)

TUNE_SUFFIX = "-tune"
SEARCH_DIR = "search"
STUDY_FILE = "study.db"
TRIALS_TABLE = "trials.csv"
SAMPLERS = ("tpe", "qmc", "random", "grid")
SAMPLER_NAMES = {"tpe": "TPE", "qmc": "quasi-random (Sobol)", "random": "random",
                 "grid": "grid"}
DEFAULT_TRIALS = 20
DEFAULT_CONFIRM_SEEDS = 5
FINISHED = ("COMPLETE", "PRUNED", "FAIL")    # Optuna trial states that count as done
STALE_SECONDS = 600      # a shared study's RUNNING trial without a heartbeat for this long is
HEARTBEAT_SECONDS = 60   # taken over; the driver beats this often for the trials it handed out


@dataclass
class TuneOutcome:
    results_dir: Path
    recipes: dict[str, dict[str, Any]] = field(default_factory=dict)   # tuning.json's
    trained: int = 0                    # trials this call trained
    interrupted: bool = False
    confirmation: Optional[ExperimentOutcome] = None
    warnings: list[str] = field(default_factory=list)

    not_confirmed: list[str] = field(default_factory=list)   # tuned recipes with no trial done
    storage_failed: bool = False       # some trials could not reach the study: not finished

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.confirmation is None or self.not_confirmed or self.storage_failed:
            return EXIT_RUN_FAILED
        return self.confirmation.exit_code


def _stable_seed(*parts: Any) -> int:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:8], 16)


def make_sampler(name: str, space: list[SearchParam], trials: int, seed: int, done: int):
    """The Optuna sampler. TPE starts with min(10, N/2) random trials; random and TPE draw
    afresh after a resume (their seed moves on with the trials already done), quasi-random and
    grid continue their sequence from the study."""
    optuna = quiet_optuna()
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed + done,
                                          n_startup_trials=max(1, min(10, trials // 2)))
    if name == "qmc":
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed,
                                          warn_independent_sampling=False,
                                          warn_asynchronous_seeding=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed + done)
    points = max(2, math.ceil(trials ** (1 / len(space))))

    class AskTellGrid(optuna.samplers.GridSampler):
        """Optuna's grid, without its Study.stop() once the grid is covered: that works only
        inside study.optimize, and tune counts its trials itself."""

        def after_trial(self, study, trial, state, values) -> None:
            pass

    return AskTellGrid({p.path: p.grid(points) for p in space}, seed=seed)


SIGNIFICANT_DIGITS = 4   # a sampled float trains rounded to this many: tables and run ids read
                         # well, and no regularizer tells 1.234e-3 from 1.2345678e-3


def trained_values(sampled: dict[str, Any], space: list[SearchParam]) -> dict[str, Any]:
    """The sampler's draw as the trial trains it: floats of a continuous range rounded to
    SIGNIFICANT_DIGITS (the raw draw stays in the study and in tuning.json's ``sampled``)."""
    params = {p.path: p for p in space}
    values = {}
    for path, value in sampled.items():
        param = params.get(path)
        if isinstance(value, float) and param is not None and param.choices is None \
                and not param.integer:   # a step's multiples lose only float noise (0.30000000000000004)
            digits = 12 if param.step else SIGNIFICANT_DIGITS
            value = min(max(float(f"{value:.{digits}g}"), param.low), param.high)
        values[path] = value
    return values


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # someone else's process: alive
        return True
    return True


class Tuner:
    """The search stage: one Optuna study per recipe, trials handed to an executor one by one
    (each asked when a worker is free, so the sampler sees every finished trial first)."""

    def __init__(self, loaded: LoadedConfig, experiment: dict[str, Any],
                 space: dict[str, list[SearchParam]], *, trials: int, sampler: str,
                 pruner: str, storage: str, metric: str, device: Optional[str],
                 search_dir: Path, plugins: list[str], shared: bool = False):
        self.loaded, self.experiment, self.space = loaded, experiment, space
        self.trials, self.sampler_name, self.pruner = trials, sampler, pruner
        self.storage_url, self.metric, self.device = storage, metric, device
        self.search_dir, self.plugins = search_dir, plugins
        self.column = f"val_{metric}"
        self.direction = "minimize" if lower_is_better(metric) else "maximize"
        self.seed = experiment["seeds"][0]
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.optuna = quiet_optuna()
        self.storage = open_storage(storage)
        self.shared = shared      # --storage: other processes may hold trials of the study
        self.studies = {recipe: self._study(recipe) for recipe in space}
        self.retrain: list[tuple[str, Any]] = []     # (recipe, FrozenTrial) to train again
        self.in_flight: set[int] = set()             # trial ids handed out, not yet told

    # ------------------------------------------------------------------ studies
    def study_name(self, recipe: str) -> str:
        return f"{self.experiment['name']}/{recipe}"

    def _fingerprint(self, recipe: str) -> str:
        """What a trial of this recipe computes, but for the searched values: a study made for
        another config must not be continued."""
        base = self.trial_spec(recipe, {}, 0)
        payload = {"run": base["config_hash"], "space": [p.describe() for p in self.space[recipe]],
                   "paths": [p.path for p in self.space[recipe]], "metric": self.column,
                   "direction": self.direction}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def _study(self, recipe: str):
        """The recipe's study, created or continued: only one made for the same config,
        search space, metric, sampler and pruner (else the recipes' budgets would differ)."""
        name = self.study_name(recipe)
        made = {"fingerprint": self._fingerprint(recipe), "sampler": self.sampler_name,
                "pruner": self.pruner, "space": [p.describe() for p in self.space[recipe]]}
        study = self.optuna.create_study(study_name=name, storage=self.storage,
                                         direction=self.direction, load_if_exists=True)
        found = study.user_attrs.get("regbench")
        if found is None and not study.get_trials(deepcopy=False):
            study.set_user_attr("regbench", made)       # a new study (or one just created by
            found = made                                # another process sharing the storage)
        where = _shown_url(self.storage_url)
        if (found or {}).get("fingerprint") != made["fingerprint"]:
            raise RegbenchError(
                f"the study '{name}' in {where} was made for another config, search space or "
                f"metric, or by an earlier regbench whose runs computed otherwise (its trials "
                f"would not be comparable); start over with --fresh, or tune into another "
                f"--out or --storage")
        for key, option in (("sampler", "--sampler"), ("pruner", "--pruner")):
            if found.get(key) != made[key]:
                raise ConfigError(f"the study '{name}' in {where} was tuned with {key} "
                                  f"{found.get(key)}, and every trial of every recipe must be "
                                  f"drawn alike: continue with {option} {found.get(key)}, or "
                                  "start over with --fresh", source=option)
        done = len(self._counted(study))
        if done > self.trials:
            raise ConfigError(f"the study '{name}' already holds {done} trials: --trials can "
                              f"grow on a resume, not shrink (use --trials {done} or more, or "
                              "--fresh)", source="--trials")
        study.sampler = make_sampler(self.sampler_name, self.space[recipe], self.trials,
                                     _stable_seed(name, self.seed), done)
        return study

    def recover(self) -> list[tuple[RunSpec, Any]]:
        """Trials a dead process of this host left RUNNING: told from their run folder when it
        finished before the kill, else queued to train again (same trial number, same values)."""
        told = []
        for recipe, study in self.studies.items():
            for trial in self._counted(study):
                if trial.state.name != "RUNNING" or not self._stale(trial):
                    continue
                trial_id = trial._trial_id
                self.storage.set_trial_user_attr(trial_id, "host", self.host)  # ours now
                self.storage.set_trial_user_attr(trial_id, "pid", self.pid)
                self.storage.set_trial_user_attr(trial_id, "heartbeat", time.time())
                spec = self.trial_spec(recipe, self.values(recipe, trial), trial.number,
                                       trial._trial_id)
                summary = read_summary(self.search_dir / RUNS_DIR / spec["run_id"])
                self.storage.set_trial_user_attr(trial_id, "run_id", spec["run_id"])
                if summary and summary.get("config_hash") == spec["config_hash"] and \
                        summary.get("status") != "interrupted" and \
                        not summary.get("storage_error"):   # those never trained: train now
                    self.tell(recipe, trial.number, summary)
                    told.append(spec["run_id"])
                else:
                    self.retrain.append((recipe, trial))
        return told

    def values(self, recipe: str, trial) -> dict[str, Any]:
        """The values a trial trains with (see trained_values)."""
        return trial.user_attrs.get("values") or trained_values(trial.params, self.space[recipe])

    def _stale(self, trial) -> bool:
        """Whether a RUNNING trial's process is gone. In the folder's own study.db every one
        is: the folder's lock shows no other tune runs. In a shared --storage: its process on
        this host has exited, or its driver's heartbeat is older than STALE_SECONDS (another
        machine stopped)."""
        if not self.shared:
            return True
        attrs = trial.user_attrs
        if attrs.get("host") == self.host and not _process_alive(attrs.get("pid", -1)):
            return True
        started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
        return time.time() - attrs.get("heartbeat", started) > STALE_SECONDS

    def beat(self) -> None:
        """The driver's heartbeat on the trials it handed out (see _stale)."""
        now = time.time()
        for trial_id in list(self.in_flight):
            self.storage.set_trial_user_attr(trial_id, "heartbeat", now)

    @staticmethod
    def _counted(study) -> list:
        """The study's trials that count against the budget: all but the surplus ones (asked
        past N by a process racing another on a shared storage, and closed at once)."""
        return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]

    def counts(self) -> dict[str, int]:
        return {recipe: len(self._counted(study)) for recipe, study in self.studies.items()}

    def finished(self) -> int:
        return sum(1 for study in self.studies.values() for t in self._counted(study)
                   if t.state.name in FINISHED)

    # ------------------------------------------------------------------ trials
    def trial_spec(self, recipe: str, params: dict[str, Any], number: int,
                   trial_id: Optional[int] = None) -> RunSpec:
        """The run spec of one trial: the config with the trial's values, on the search seed,
        never evaluated on test."""
        raw = copy.deepcopy(self.loaded.raw)
        raw.pop("search", None)
        raw["seeds"] = [self.seed]
        recipes = raw.get("recipes") or {}
        raw["recipes"] = {recipe: recipes.get(recipe) or {}}
        if params:
            raw["sweep"] = {path: [value] for path, value in params.items()}
        else:
            raw.pop("sweep", None)
        plan = build_plan(dataclasses.replace(self.loaded, raw=raw), None, self.device)
        spec = next(s for s in plan.runs if s["recipe"] == recipe)
        spec["point_id"] = f"{recipe}__trial={number}"
        spec["run_id"] = f"{spec['point_id']}__seed={self.seed}"
        spec["sweep"] = {"trial": number, **spec["sweep"]}
        spec["config_hash"] = config_hash(spec)
        spec["withhold_test"] = True
        spec["plugins"] = list(self.plugins)
        if trial_id is not None:
            spec["trial"] = {"storage": self.storage_url, "study": self.study_name(recipe),
                             "trial_id": trial_id, "number": number, "pruner": self.pruner,
                             "column": self.column}
        return spec

    def specs(self) -> Iterator[RunSpec]:
        """The trials to train, asked one at a time: those to train again first, then a new
        trial of the recipe with the fewest so far, until each has N."""
        for recipe, trial in self.retrain:
            self.in_flight.add(trial._trial_id)
            yield self.trial_spec(recipe, self.values(recipe, trial), trial.number,
                                  trial._trial_id)
        while True:
            counts = self.counts()
            short = [r for r in self.studies if counts[r] < self.trials]
            if not short:
                return
            recipe = min(short, key=lambda r: counts[r])
            study = self.studies[recipe]
            trial = study.ask({p.path: p.distribution() for p in self.space[recipe]})
            for key, value in (("host", self.host), ("pid", self.pid),
                               ("heartbeat", time.time())):
                trial.set_user_attr(key, value)
            if trial.number >= self.trials:    # another process sharing the study asked first
                trial.set_user_attr("surplus", True)
                study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
                continue
            values = trained_values(trial.params, self.space[recipe])
            trial.set_user_attr("values", values)
            spec = self.trial_spec(recipe, values, trial.number, trial._trial_id)
            trial.set_user_attr("run_id", spec["run_id"])
            self.in_flight.add(trial._trial_id)
            yield spec

    def tell(self, recipe: str, number: int, summary: dict[str, Any]) -> None:
        """The trial's outcome into its study: its validation value, pruned, or failed (a
        diverged or failed trial counts against the budget like any other)."""
        state = self.optuna.trial.TrialState
        study = self.studies[recipe]
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(
            study._study_id, number)
        self.in_flight.discard(trial_id)
        if self.storage.get_trial(trial_id).state.is_finished():
            return      # told by another process that took the trial over
        for key in ("status", "val_loss", "stop_reason", "error"):
            if summary.get(key) is not None:
                self.storage.set_trial_user_attr(trial_id, key, summary[key])
        value = summary.get(self.column)
        status = summary.get("status")
        if status == "pruned":
            study.tell(number, state=state.PRUNED, skip_if_finished=True)
        elif status == "completed" and isinstance(value, (int, float)) and math.isfinite(value):
            study.tell(number, float(value), skip_if_finished=True)
        else:
            study.tell(number, state=state.FAIL, skip_if_finished=True)

    # ------------------------------------------------------------------ results
    def records(self) -> dict[str, dict[str, Any]]:
        """tuning.json's per-recipe part: the space, every trial, the chosen one."""
        out = {}
        for recipe, study in self.studies.items():
            trials = []
            for t in sorted(self._counted(study), key=lambda t: t.number):
                steps = sorted(t.intermediate_values.items())
                trials.append({
                    "number": t.number, "state": t.state.name.lower(),
                    "params": self.values(recipe, t), "sampled": dict(t.params),
                    "value": t.value, "last_value": steps[-1][1] if steps else None,
                    "epochs": steps[-1][0] if steps else None,
                    "val_loss": t.user_attrs.get("val_loss"),
                    "run_id": t.user_attrs.get("run_id"), "status": t.user_attrs.get("status")})
            complete = [t for t in trials if t["state"] == "complete" and t["value"] is not None]
            sign = 1 if self.direction == "minimize" else -1
            # ties on the metric go to the lower val loss, then the earlier trial
            best = min(complete, key=lambda t: (sign * t["value"],
                                                t["val_loss"] if isinstance(t["val_loss"], float)
                                                else math.inf, t["number"]), default=None)
            out[recipe] = {
                "space": [{"path": p.path, "name": p.name, "describe": p.describe(),
                           "log": p.log, "choices": list(p.choices) if p.choices else None}
                          for p in self.space[recipe]],
                "trials": trials,
                "chosen": best,
                "pruned": sum(t["state"] == "pruned" for t in trials),
                "failed": sum(t["state"] == "fail" for t in trials),
                "running": sum(t["state"] == "running" for t in trials)}
        return out

    def protocol(self, confirm_seeds: list[int]) -> dict[str, Any]:
        return {"experiment": self.experiment["name"], "metric": self.metric,
                "column": self.column, "direction": self.direction,
                "trials_per_recipe": self.trials, "sampler": self.sampler_name,
                "sampler_name": SAMPLER_NAMES[self.sampler_name], "pruner": self.pruner,
                "search_seed": self.seed, "confirm_seeds": confirm_seeds,
                "storage": _shown_url(self.storage_url),
                "untuned": [r for r in self.experiment["recipes"] if r not in self.space]}


def absolute_sqlite(url: str) -> str:
    """A relative SQLite path made absolute: worker processes and Ray tasks may start in
    another folder."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and \
            url[len(prefix):] not in ("", ":memory:"):
        return prefix + str(Path(url[len(prefix):]).resolve())
    return url


def _shown_url(url: str) -> str:
    """A storage URL without its password."""
    head, at, tail = url.rpartition("@")
    if not at or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':')[0]}:***@{tail}"


def chosen_table(outcome: TuneOutcome) -> str:
    """What the search chose, recipe by recipe, with the budget each was given."""
    protocol = read_tuning(outcome.results_dir)
    rows = [(recipe, chosen_values(record),
             chosen_value(record),
             budget_text(protocol, record)) for recipe, record in outcome.recipes.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"tuned on validation {protocol['metric']} (search seed {protocol['search_seed']}),"
             f" the same budget for every recipe:"]
    for row in rows:
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths))
                     + f"  {row[3]}")
    for recipe in protocol["untuned"]:
        lines.append(f"  {recipe}: nothing searched, trained as written")
    return "\n".join(lines)


def confirmation_config(loaded: LoadedConfig, tuner: Tuner, records: dict[str, dict],
                        seeds: list[int], metric: str) -> tuple[LoadedConfig, dict[str, Any]]:
    """The confirmation experiment: each tuned recipe at its chosen values (one-value sweeps,
    so run ids show them), the untuned recipes and the baseline as written, on fresh seeds."""
    raw = copy.deepcopy(loaded.raw)
    name = raw["name"]
    raw["name"] = f"{name}{TUNE_SUFFIX}"
    raw["seeds"] = seeds
    raw.pop("search", None)
    sweep: dict[str, list[Any]] = {}
    chosen: dict[str, dict[str, str]] = {}
    dropped = []
    for recipe, record in records.items():
        if record["chosen"] is None:
            dropped.append(recipe)
            continue
        values = record["chosen"]["params"]
        chosen[recipe] = {path: format_value(v) for path, v in values.items()}
        for path, value in values.items():
            key = path if path.startswith("recipes.") else f"recipes.{recipe}.{path}"
            sweep[key] = [value]
    recipes = raw.get("recipes") or {}
    raw["recipes"] = {"baseline": recipes.get("baseline") or {},
                      **{r: v for r, v in recipes.items() if r not in dropped}}
    if "baseline" in dropped:
        raise RegbenchError("tune: no trial of the baseline completed, so there is nothing to "
                            "compare the recipes with; see search/ for why its trials failed")
    if sweep:
        raw["sweep"] = sweep
    else:
        raw.pop("sweep", None)
    config, _ = resolve_experiment(raw, loaded.positions, loaded.source)
    protocol = tuner.protocol(seeds)
    confirms = {"experiment": name, "metric": metric, "selection_seeds": [tuner.seed],
                "seeds": seeds, "chosen": chosen,
                "tuning": {**protocol, "budgets": {r: budget_text(protocol, rec)
                                                   for r, rec in records.items()},
                           "not_confirmed": dropped}}
    warnings = [f"no trial of {r} completed: it is not confirmed" for r in dropped]
    return dataclasses.replace(loaded, raw=raw, config=config, warnings=warnings), confirms


@dataclass(frozen=True)
class Search:
    """How ``regbench tune`` searches (its own options; how it runs is the Launch)."""

    trials: int = DEFAULT_TRIALS           # trials per recipe: every searched recipe gets N
    sampler: str = "tpe"                   # tpe | qmc | random | grid (Optuna)
    pruner: str = "median"                 # median | halving | none, on the val curve
    storage: Optional[str] = None          # Optuna storage URL shared by several processes

    def __post_init__(self) -> None:
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 1:
            raise ConfigError(f"must be at least 1 (got {self.trials})", source="--trials")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler '{self.sampler}'; expected one of: "
                              f"{', '.join(SAMPLERS)}", source="--sampler")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"unknown pruner '{self.pruner}'; expected one of: "
                              f"{', '.join(PRUNERS)}", source="--pruner")


def tune_experiment(config: LoadedConfig | str | Path, launch: Launch = Launch(),
                    search: Search = Search(), *, overrides: Iterable[str] = (),
                    display: Optional[Display] = None) -> TuneOutcome:
    """Search every recipe with the same budget, then confirm the choices on
    ``launch.confirm_seeds`` fresh seeds (default 5; see the module's docstring). Bad input
    raises ConfigError/RegbenchError before anything is written or trained; ``display`` shows
    progress, the choice and the confirmation as they come."""
    launch.load_plugins()
    loaded = config if isinstance(config, LoadedConfig) else load_config(config, overrides)
    confirm_seeds = launch.confirm_seeds or DEFAULT_CONFIRM_SEEDS
    storage, device, metric = search.storage, launch.device, launch.metric
    plan = build_plan(loaded, launch.seeds, device, launch.fuse)
    experiment = plan.experiment
    if experiment["sweep"]:
        path = next(iter(experiment["sweep"]))
        raise sweep_error("tune chooses values from search:, not from a sweep grid; remove "
                          "sweep: (or give its values as choices: [...] under search:)", path,
                          loaded)
    space = search_space(loaded, experiment)
    if not space:
        raise ConfigError("nothing to tune: add a search: section, e.g. search: "
                          "{recipes.l2.l2.lambda: {low: 1.0e-4, high: 1.0, log: true}} "
                          "(docs/config.md#search)", source=loaded.source)
    if metric is None:
        metric = default_metric(data_spec(experiment["dataset"]).task)
    check_metric(metric, data_spec(experiment["dataset"]).task)
    if storage and not launch.resume:
        raise ConfigError("--fresh starts a new results folder, but the study in --storage is "
                          "shared and is never deleted by regbench; tune under another "
                          "experiment name (--set name=…), or delete the study yourself "
                          "(optuna delete-study)", source="--fresh")
    if launch.executor == "ray":       # Ray itself was checked with the launch's plugins
        if launch.address and (not storage or storage.startswith("sqlite")):
            raise ConfigError("a Ray cluster's nodes cannot open the study.db in this "
                              "machine's results folder; give a database every node reaches, "
                              "e.g. --storage postgresql://user@host/db", source="--storage")
    if storage:
        check_storage(absolute_sqlite(storage))
    # the confirmation's trackers, checked now: not after the whole search has trained
    check_trackers([*experiment["logging"]["trackers"], *launch.trackers],
                   launch.mlflow_uri or experiment["logging"]["mlflow_uri"])
    seeds = fresh_seeds([experiment["seeds"][0]], confirm_seeds)
    name = f"{experiment['name']}{TUNE_SUFFIX}"
    results_dir = launch.out / name
    search_dir = results_dir / SEARCH_DIR
    check_results_folder(results_dir)
    plugins = launch.load_plugins()
    with ResultsLock(results_dir):
        prepare_results_dir(launch.out, name, fresh=not launch.resume)
        check_results_folder(search_dir)
        url = absolute_sqlite(storage) if storage else \
            f"sqlite:///{(results_dir / STUDY_FILE).resolve()}"
        forget_loaded()
        with data_errors_located(loaded):
            data = load_bundle(experiment["dataset"], experiment["train"]["train_eval_samples"])
        check_models(plan, data)       # a regularizer that would change nothing: exit 2 now
        tuner = Tuner(loaded, experiment, space, trials=search.trials, sampler=search.sampler,
                      pruner=search.pruner, storage=url, metric=metric, device=device,
                      search_dir=search_dir, plugins=plugins, shared=bool(storage))
        outcome = TuneOutcome(results_dir=results_dir)
        outcome.warnings += plan.warnings + grid_warnings(search.sampler, space, search.trials) \
            + protocol_warnings(experiment, space)
        outcome.interrupted = _search(tuner, outcome, launch,
                                      display.progress() if display is not None else None)
        records = tuner.records()
        outcome.recipes = records
        atomic_write_text(search_dir / PLAN_FILE, to_json({
            "search": experiment["name"],
            "run_ids": [t["run_id"] for r in records.values() for t in r["trials"]
                        if t["run_id"]]}))
        atomic_write_text(results_dir / TUNING_FILE,
                          to_json({**tuner.protocol(seeds), "recipes": records}))
        _write_trials_table(results_dir, records)
        if outcome.interrupted or outcome.storage_failed:   # not every trial is done: the
            return outcome                                  # same command resumes them
        running = sum(r["running"] for r in records.values())
        if running and tuner.shared:
            outcome.warnings.append(f"{running} trial(s) are still running in other processes "
                                    "sharing the study; the choice is made from the finished "
                                    "ones")
        confirming, confirms = confirmation_config(loaded, tuner, records, seeds, metric)
        outcome.not_confirmed = confirms["tuning"]["not_confirmed"]
        if display is not None:        # what was chosen, before the confirmation trains
            for warning in outcome.warnings:
                display.warning(warning)
            display.note(chosen_table(outcome))
        # the confirmation resumes its own runs (--fresh was for the search): the trials
        # are in the study
        outcome.confirmation = train_experiment(
            confirming, launch.replace(resume=True, metric=metric, seeds=None), display, confirms,
            " (tuned, fresh seeds)")
        outcome.interrupted = outcome.confirmation.interrupted
        return outcome


def check_storage(url: str) -> None:
    """--storage opens (scheme, driver, reachable server, writable file), or exit 2 before
    anything is written."""
    try:
        open_storage(url)
    except Exception as exc:
        raise ConfigError(f"cannot open the Optuna storage {_shown_url(url)} "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0]}); expected a "
                          "SQLAlchemy URL such as sqlite:///study.db or "
                          "postgresql://user@host/db", source="--storage") from None


def protocol_warnings(experiment: dict[str, Any], space: dict[str, list[SearchParam]]) -> list[str]:
    """What a user might expect tune to use and it does not: more seeds, untuned recipes."""
    out = []
    if len(experiment["seeds"]) > 1:
        out.append(f"tune trains each trial on seed {experiment['seeds'][0]} (the first of "
                   "seeds:); the other seeds are not used (the confirmation draws its own)")
    untuned = [r for r in experiment["recipes"] if r not in space and r != "baseline"]
    if untuned:
        out.append(f"{', '.join(untuned)}: nothing under search:, so compared as written "
                   "against recipes that were tuned")
    return out


def grid_warnings(sampler: str, space: dict[str, list[SearchParam]], trials: int) -> list[str]:
    """A grid smaller than the budget repeats points (the same budget still, less searched)."""
    if sampler != "grid":
        return []
    out = []
    for recipe, params in space.items():
        points = max(2, math.ceil(trials ** (1 / len(params))))
        size = math.prod(len(p.grid(points)) for p in params)
        if size < trials:
            out.append(f"{recipe}: its grid has {size} point(s), fewer than --trials {trials}: "
                       "some trials repeat a point")
    return out


def _search(tuner: Tuner, outcome: TuneOutcome, launch: Launch, progress) -> bool:
    """Train the trials still owed; whether Ctrl-C stopped it."""
    search_dir = tuner.search_dir
    told = tuner.recover()
    if told:
        outcome.warnings.append(f"{len(told)} trial(s) had finished before the last tune "
                                f"stopped and were recorded from their run folders")
    owed = sum(max(0, tuner.trials - n) for n in tuner.counts().values()) + len(tuner.retrain)
    search_dir.mkdir(parents=True, exist_ok=True)
    if not owed:
        return False
    threads = 1 if launch.executor == "ray" and launch.workers == 1 else \
        default_threads(launch.workers)
    runner = make_executor(launch.executor, workers=launch.workers, address=launch.address,
                           cores=available_cores())
    if progress is not None:
        progress.start(owed + tuner.finished(), tuner.finished())

    def handle(spec: RunSpec, result) -> bool:
        write_diagnosed_run(search_dir, spec, result)
        if progress is not None:
            progress.run_finished(spec, result.summary)
        if result.status == "interrupted":
            return True           # the trial stays RUNNING: trained again on resume
        if result.summary.get("storage_error"):   # not the trial's fault: not told as failed
            unreachable.append(f"{spec['run_id']}: {result.summary['error']}")
            tuner.in_flight.discard(spec["trial"]["trial_id"])
            return False
        tuner.tell(spec["recipe"], spec["trial"]["number"], result.summary)
        outcome.trained += 1
        return False

    unreachable: list[str] = []
    stop = threading.Event()
    beating = threading.Thread(target=_heartbeat, args=(tuner, stop), daemon=True,
                               name="regbench-tune-heartbeat")
    if tuner.shared:
        beating.start()
    try:
        interrupted = drive(runner, tuner.specs(), threads, progress, handle)
    finally:
        stop.set()
    if unreachable:
        outcome.warnings.append(f"{len(unreachable)} trial(s) could not reach the study "
                                f"storage and stay unfinished (run the same command again "
                                f"to train them): {unreachable[0]}")
        outcome.storage_failed = True
    return interrupted


def _heartbeat(tuner: Tuner, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        try:
            tuner.beat()
        except Exception:      # a storage hiccup: the next beat tries again
            pass


def _write_trials_table(results_dir: Path, records: dict[str, dict[str, Any]]) -> None:
    """trials.csv: one row per trial (recipe, number, state, each searched value, value)."""
    import csv
    import io

    paths = list(dict.fromkeys(p["path"] for r in records.values() for p in r["space"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["recipe", "trial", "state", *paths, "value", "epochs", "chosen", "run_id"])
    for recipe, record in records.items():
        chosen = (record["chosen"] or {}).get("number")
        for t in record["trials"]:
            writer.writerow([recipe, t["number"], t["state"],
                             *(t["params"].get(p, "") for p in paths),
                             "" if t["value"] is None else t["value"], t["epochs"] or "",
                             t["number"] == chosen, t["run_id"] or ""])
    atomic_write_text(results_dir / TRIALS_TABLE, buffer.getvalue())
