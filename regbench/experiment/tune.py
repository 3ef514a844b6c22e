"""``regbench tune``: the same tuning budget for every recipe, chosen on validation only, then
confirmed on fresh seeds.

The protocol (MLCommons AlgoPerf's external tuning, DeepOBS): each recipe with searched keys
(``search:``; see regbench.experiment.search) gets exactly N trials, drawn by an Optuna sampler
from its own search space and trained on the search seed; hopeless trials are pruned on their
per-epoch validation curve. A trial is never evaluated on the test split. Each recipe's best
trial on the validation metric, and the baseline, are then retrained on K seeds the search
never used, and those runs alone make the comparison table (interval, verdict, Holm).

``--trial-seeds k`` makes a trial the mean of k runs (the first k of ``seeds:``, continued by
the next integers), each an ordinary run folder of search/: ``--trials N`` still counts trials
(the sampler's draws), so a recipe's budget is N × k runs, said in the output and the report.
Such trials are not pruned: their k runs train apart (other workers, other times), so there is
no mean curve to stop them on while they train, and one run's curve is the noise the k seeds
are there to average out.

``OUT/<name>-tune/`` holds::

    study.db        the Optuna studies, one per recipe ("<name>/<recipe>"), unless --storage;
                    checked read-only before Optuna opens it (see check_study_file)
    search/         the trials: an ordinary results folder (runs/<recipe>__trial=<n>__seed=<s>/)
    tuning.json     the protocol and every trial (values, state), which the report plots
    runs/ comparison.* plots/ report.html    the confirmation on fresh seeds: the answer

A choice decided by fewer than 3 validation examples over the runner-up (accuracy) is said in
the output, the notes and the report (regbench.report.tuning.close_call).

A killed ``tune`` resumes: finished trials are read back from the study, and a trial that was
training when its process died (RUNNING, on this host, by a process that is gone) is trained
again under the same trial number, so every recipe still ends with N trials.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import socket
import sqlite3
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
from regbench.errors import ConfigError, OutputError, RegbenchError
from regbench.experiment.config import (
    LoadedConfig,
    data_errors_located,
    load_config,
    located_error,
    placement_errors_located,
    resolve_experiment,
    select_recipes,
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
from regbench.experiment.search import SearchParam, grid_points, grid_size, search_space
from regbench.experiment.sweeps import sweep_error
from regbench.report.tuning import (
    budget_text,
    chosen_value,
    chosen_values,
    close_call,
    read_tuning,
)
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
MAX_GRID_POINTS = 100_000   # Optuna's grid sampler lists (and shuffles) every point in memory:
                            # ~100 bytes each; a larger space is for qmc or random
MAX_TRIAL_SEEDS = 100       # --trial-seeds: a trial's runs are planned together
FINISHED = ("COMPLETE", "PRUNED", "FAIL")    # Optuna trial states that count as done
STALE_SECONDS = 600      # a shared study's RUNNING trial without a heartbeat for this long is
HEARTBEAT_SECONDS = 60   # taken over; the driver beats this often for the trials it handed out


@dataclass
class TuneOutcome:
    results_dir: Path
    recipes: dict[str, dict[str, Any]] = field(default_factory=dict)   # tuning.json's
    trained: int = 0                    # runs this call trained (trials × trial seeds)
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
    points = grid_points(trials, space)    # tune_experiment checked the size against the limit

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
                 space: dict[str, list[SearchParam]], search: Search, *, storage: str,
                 metric: str, device: Optional[str], search_dir: Path, plugins: list[str],
                 n_val: int = 0, shared: bool = False):
        self.loaded, self.experiment, self.space = loaded, experiment, space
        self.trials, self.sampler_name, self.pruner = search.trials, search.sampler, search.pruner
        self.storage_url, self.metric, self.device = storage, metric, device
        self.search_dir, self.plugins, self.n_val = search_dir, plugins, n_val
        self.column = f"val_{metric}"
        self.direction = "minimize" if lower_is_better(metric) else "maximize"
        self.seeds = search_seeds(experiment["seeds"], search.trial_seeds)
        self.seed = self.seeds[0]
        # a grid smaller than --trials is trained once through: a seeded trial repeated gives
        # the same numbers, so more trials of it would search nothing more
        self.budget = {recipe: min(self.trials, grid_size(self.trials, params))
                       if self.sampler_name == "grid" else self.trials
                       for recipe, params in space.items()}
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.optuna = quiet_optuna()
        self.storage = open_storage(storage)
        self.shared = shared      # --storage: other processes may hold trials of the study
        self.studies = {recipe: self._study(recipe) for recipe in space}
        self.retrain: list[RunSpec] = []             # runs of stale trials to train again
        self.in_flight: set[int] = set()             # trial ids handed out, not yet told
        self.pending: dict[int, dict[int, dict]] = {}   # trial id -> seed -> summary, until
                                                        # every seed of the trial is in

    # ------------------------------------------------------------------ studies
    def study_name(self, recipe: str) -> str:
        return f"{self.experiment['name']}/{recipe}"

    def _fingerprint(self, recipe: str) -> str:
        """What a trial of this recipe computes, but for the searched values: a study made for
        another config must not be continued."""
        base = self.trial_specs(recipe, {}, 0)[0]
        payload = {"run": base["config_hash"], "space": [p.describe() for p in self.space[recipe]],
                   "paths": [p.path for p in self.space[recipe]], "metric": self.column,
                   "direction": self.direction}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def _study(self, recipe: str):
        """The recipe's study, created or continued: only one made for the same config,
        search space, metric, sampler and pruner (else the recipes' budgets would differ)."""
        name = self.study_name(recipe)
        made = {"fingerprint": self._fingerprint(recipe), "sampler": self.sampler_name,
                "pruner": self.pruner, "trial_seeds": len(self.seeds),
                "space": [p.describe() for p in self.space[recipe]]}
        study = self.optuna.create_study(study_name=name, storage=self.storage,
                                         direction=self.direction, load_if_exists=True)
        found = study.user_attrs.get("regbench")
        if found is None and not study.get_trials(deepcopy=False):
            study.set_user_attr("regbench", made)       # a new study (or one just created by
            found = made                                # another process sharing the storage)
        found = {"trial_seeds": 1, **(found or {})}     # a study from before --trial-seeds
        where = _shown_url(self.storage_url)
        if (found or {}).get("fingerprint") != made["fingerprint"]:
            raise RegbenchError(
                f"the study '{name}' in {where} was made for another config, search space or "
                f"metric, or by an earlier regbench whose runs computed otherwise (its trials "
                f"would not be comparable); start over with --fresh, or tune into another "
                f"--out or --storage")
        for key, option in (("trial_seeds", "--trial-seeds"), ("sampler", "--sampler"),
                            ("pruner", "--pruner")):
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

    def recover(self) -> list[str]:
        """Trials a dead process of this host left RUNNING: each of their runs told from its
        run folder when it finished before the kill, else queued to train again (same trial
        number, same values); the run ids told."""
        told = []
        state = self.optuna.trial.TrialState
        for recipe, study in self.studies.items():
            for trial in self._counted(study):
                if trial.state.name != "RUNNING" or not self._stale(trial):
                    continue
                trial_id = trial._trial_id
                if not {p.path for p in self.space[recipe]} <= set(trial.params):
                    # asked, but its process died (or the disk filled) before every value was
                    # drawn: nothing to train; set aside like a surplus trial, not counted
                    self.storage.set_trial_user_attr(trial_id, "surplus", True)
                    study.tell(trial.number, state=state.FAIL, skip_if_finished=True)
                    continue
                self.storage.set_trial_user_attr(trial_id, "host", self.host)  # ours now
                self.storage.set_trial_user_attr(trial_id, "pid", self.pid)
                self.storage.set_trial_user_attr(trial_id, "heartbeat", time.time())
                specs = self.trial_specs(recipe, self.values(recipe, trial), trial.number,
                                         trial_id)
                self.storage.set_trial_user_attr(trial_id, "run_id", specs[0]["run_id"])
                self.in_flight.add(trial_id)
                for spec in specs:
                    summary = read_summary(self.search_dir / RUNS_DIR / spec["run_id"])
                    if summary and summary.get("config_hash") == spec["config_hash"] and \
                            summary.get("status") != "interrupted" and \
                            not summary.get("storage_error"):  # those never trained: train now
                        told.append(spec["run_id"])
                        self.collect(spec, summary)
                    else:
                        self.retrain.append(spec)
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
    def trial_specs(self, recipe: str, params: dict[str, Any], number: int,
                    trial_id: Optional[int] = None) -> list[RunSpec]:
        """The run specs of one trial, one per search seed: the config with the trial's
        values, never evaluated on test."""
        raw = copy.deepcopy(self.loaded.raw)
        raw.pop("search", None)
        raw["seeds"] = list(self.seeds)
        recipes = raw.get("recipes") or {}
        raw["recipes"] = {recipe: recipes.get(recipe) or {}}
        if params:
            raw["sweep"] = {path: [value] for path, value in params.items()}
        else:
            raw.pop("sweep", None)
        plan = build_plan(dataclasses.replace(self.loaded, raw=raw), None, self.device)
        specs = [s for s in plan.runs if s["recipe"] == recipe]
        for spec in specs:
            spec["point_id"] = f"{recipe}__trial={number}"
            spec["run_id"] = f"{spec['point_id']}__seed={spec['seed']}"
            spec["sweep"] = {"trial": number, **spec["sweep"]}
            spec["config_hash"] = config_hash(spec)
            spec["withhold_test"] = True
            spec["plugins"] = list(self.plugins)
            if trial_id is None:
                continue
            spec["tuning"] = {"trial_id": trial_id, "number": number}   # the driver's own
            if len(self.seeds) == 1:    # reported epoch by epoch to the study, maybe pruned
                spec["trial"] = {"storage": self.storage_url, "study": self.study_name(recipe),
                                 "trial_id": trial_id, "number": number,
                                 "pruner": self.pruner, "column": self.column}
        return specs

    def specs(self) -> Iterator[RunSpec]:
        """The runs to train, a trial's seeds together, each trial asked when the previous
        one is handed out: those to train again first, then a new trial of the recipe with
        the fewest so far, until each has its budget."""
        yield from self.retrain
        while True:
            counts = self.counts()
            short = [r for r in self.studies if counts[r] < self.budget[r]]
            if not short:
                return
            recipe = min(short, key=lambda r: counts[r])
            study = self.studies[recipe]
            trial = study.ask({p.path: p.distribution() for p in self.space[recipe]})
            for key, value in (("host", self.host), ("pid", self.pid),
                               ("heartbeat", time.time())):
                trial.set_user_attr(key, value)
            earlier = sum(t.number < trial.number for t in self._counted(study))
            if earlier >= self.budget[recipe]:   # another process sharing the study asked first
                trial.set_user_attr("surplus", True)
                study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
                continue
            values = trained_values(trial.params, self.space[recipe])
            trial.set_user_attr("values", values)
            specs = self.trial_specs(recipe, values, trial.number, trial._trial_id)
            trial.set_user_attr("run_id", specs[0]["run_id"])
            self.in_flight.add(trial._trial_id)
            yield from specs

    def collect(self, spec: RunSpec, summary: dict[str, Any]) -> None:
        """One run of a trial has finished: the trial is told once all its seeds are in."""
        trial = spec["tuning"]
        runs = self.pending.setdefault(trial["trial_id"], {})
        runs[spec["seed"]] = summary
        if len(runs) == len(self.seeds):
            del self.pending[trial["trial_id"]]
            self.tell(spec["recipe"], trial["number"], [runs[s] for s in sorted(runs)])

    def tell(self, recipe: str, number: int, summaries: list[dict[str, Any]]) -> None:
        """The trial's outcome into its study: the mean validation value of its runs, pruned,
        or failed (a trial with a diverged or failed run counts against the budget like any
        other)."""
        state = self.optuna.trial.TrialState
        study = self.studies[recipe]
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(
            study._study_id, number)
        self.in_flight.discard(trial_id)
        if self.storage.get_trial(trial_id).state.is_finished():
            return      # told by another process that took the trial over
        values = [s.get(self.column) for s in summaries]
        statuses = [s.get("status") for s in summaries]
        status = next((st for st in statuses if st != "completed"), "completed")
        losses = [s.get("val_loss") for s in summaries]
        attrs = {"status": status,
                 "val_loss": sum(losses) / len(losses)
                 if all(isinstance(v, float) for v in losses) else None,
                 "stop_reason": next((s["stop_reason"] for s in summaries
                                      if s.get("stop_reason")), None),
                 "error": next((s["error"] for s in summaries if s.get("error")), None)}
        if len(summaries) > 1:
            attrs["run_ids"] = [s.get("run_id") for s in summaries]
            attrs["seed_values"] = values
            attrs["epochs"] = max((s.get("stopped_epoch") or 0 for s in summaries), default=0)
        for key, value in attrs.items():
            if value is not None:
                self.storage.set_trial_user_attr(trial_id, key, value)
        if status == "pruned":
            study.tell(number, state=state.PRUNED, skip_if_finished=True)
        elif status == "completed" and all(isinstance(v, (int, float)) and math.isfinite(v)
                                           for v in values):
            study.tell(number, sum(map(float, values)) / len(values), skip_if_finished=True)
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
                    "epochs": steps[-1][0] if steps else t.user_attrs.get("epochs"),
                    "val_loss": t.user_attrs.get("val_loss"),
                    "run_id": t.user_attrs.get("run_id"),
                    "run_ids": t.user_attrs.get("run_ids") or [t.user_attrs.get("run_id")],
                    "status": t.user_attrs.get("status")})
            complete = [t for t in trials if t["state"] == "complete" and t["value"] is not None]
            sign = 1 if self.direction == "minimize" else -1
            # ties on the metric go to the lower val loss, then the earlier trial
            ranked = sorted(complete, key=lambda t: (
                sign * t["value"], t["val_loss"] if isinstance(t["val_loss"], float)
                else math.inf, t["number"]))
            out[recipe] = {
                "space": [{"path": p.path, "name": p.name, "describe": p.describe(),
                           "log": p.log, "choices": list(p.choices) if p.choices else None}
                          for p in self.space[recipe]],
                "budget": self.budget[recipe],
                "trials": trials,
                "chosen": ranked[0] if ranked else None,
                "margin": self.margin(ranked),
                "pruned": sum(t["state"] == "pruned" for t in trials),
                "failed": sum(t["state"] == "fail" for t in trials),
                "running": sum(t["state"] == "running" for t in trials)}
        return out

    def margin(self, ranked: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
        """By how many validation examples the chosen trial beat the runner-up, for accuracy
        (a fraction of examples; other metrics have no such unit): see close_call."""
        if self.metric != "accuracy" or len(ranked) < 2 or not self.n_val:
            return None
        best, runner_up = ranked[:2]
        return {"runner_up": runner_up["number"], "runner_up_value": runner_up["value"],
                "examples": abs(best["value"] - runner_up["value"]) * self.n_val,
                "n_val": self.n_val, "trial_seeds": len(self.seeds)}

    def protocol(self, confirm_seeds: list[int]) -> dict[str, Any]:
        return {"experiment": self.experiment["name"], "metric": self.metric,
                "column": self.column, "direction": self.direction,
                "trials_per_recipe": self.trials, "sampler": self.sampler_name,
                "sampler_name": SAMPLER_NAMES[self.sampler_name], "pruner": self.pruner,
                "search_seed": self.seed, "search_seeds": self.seeds,
                "trial_seeds": len(self.seeds), "confirm_seeds": confirm_seeds,
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
    seeds = protocol.get("search_seeds") or [protocol["search_seed"]]
    searched = f"search seed {seeds[0]}" if len(seeds) == 1 else \
        f"search seeds {seeds[0]}–{seeds[-1]}, each trial the mean of {len(seeds)} runs"
    lines = [f"tuned on validation {protocol['metric']} ({searched}), the same budget for "
             "every recipe:"]
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
    budgets = {r: budget_text(protocol, rec) + (f"; {close}" if (close := close_call(
        rec, short=True)) else "") for r, rec in records.items()}
    confirms = {"experiment": name, "metric": metric, "selection_seeds": list(tuner.seeds),
                "seeds": seeds, "chosen": chosen,
                "tuning": {**protocol, "budgets": budgets, "not_confirmed": dropped}}
    warnings = [f"no trial of {r} completed: it is not confirmed" for r in dropped]
    return dataclasses.replace(loaded, raw=raw, config=config, warnings=warnings), confirms


@dataclass(frozen=True)
class Search:
    """How ``regbench tune`` searches (its own options; how it runs is the Launch)."""

    trials: int = DEFAULT_TRIALS           # trials per recipe: every searched recipe gets N
    sampler: str = "tpe"                   # tpe | qmc | random | grid (Optuna)
    pruner: Optional[str] = None           # median | halving | none, on the val curve;
                                           # default median, none with trial_seeds > 1
    storage: Optional[str] = None          # Optuna storage URL shared by several processes
    trial_seeds: int = 1                   # runs per trial, on different seeds: its value is
                                           # their mean; a recipe trains trials × trial_seeds

    def __post_init__(self) -> None:
        for value, option, most in ((self.trials, "--trials", None),
                                    (self.trial_seeds, "--trial-seeds", MAX_TRIAL_SEEDS)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"must be a whole number, at least 1 (got {value!r})",
                                  source=option)
            if most is not None and value > most:
                raise ConfigError(f"at most {most} (got {value}): each trial would train "
                                  f"{value} runs", source=option)
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler '{self.sampler}'; expected one of: "
                              f"{', '.join(SAMPLERS)}", source="--sampler")
        if self.pruner is None:      # frozen: the resolved default is set once, here
            object.__setattr__(self, "pruner", "median" if self.trial_seeds == 1 else "none")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"unknown pruner '{self.pruner}'; expected one of: "
                              f"{', '.join(PRUNERS)}", source="--pruner")
        if self.pruner != "none" and self.trial_seeds > 1:
            raise ConfigError(f"a trial of --trial-seeds {self.trial_seeds} is the mean of "
                              f"{self.trial_seeds} runs that train apart (other workers, other "
                              "times), so there is no mean curve to prune on while they train, "
                              "and one run's curve is the noise the seeds are there to average "
                              "out; use --pruner none (the default with --trial-seeds)",
                              source="--pruner")


def tune_experiment(config: LoadedConfig | str | Path, launch: Launch = Launch(),
                    search: Search = Search(), *, overrides: Iterable[str] = (),
                    display: Optional[Display] = None) -> TuneOutcome:
    """Search every recipe with the same budget, then confirm the choices on
    ``launch.confirm_seeds`` fresh seeds (default 5; see the module's docstring). Bad input
    raises ConfigError/RegbenchError before anything is written or trained; ``display`` shows
    progress, the choice and the confirmation as they come."""
    launch.load_plugins()
    loaded = config if isinstance(config, LoadedConfig) else load_config(config, overrides)
    loaded = select_recipes(loaded, launch.recipes)    # only these are searched and confirmed
    confirm_seeds = launch.confirm_seeds or DEFAULT_CONFIRM_SEEDS
    storage, device, metric = search.storage, launch.device, launch.metric
    plan = build_plan(loaded, launch.seeds, device, launch.fuse)
    experiment = plan.experiment
    if experiment["sweep"]:
        path = next(iter(experiment["sweep"]))
        raise sweep_error("tune chooses values from search:, not from a sweep grid; remove "
                          "sweep: (or give its values as choices: [...] under search:)", path,
                          loaded)
    if experiment["dataset"].get("cv"):   # a trial is one run per seed, tested on no fold
        raise located_error("regbench tune trains one run per trial and seed; remove cv to "
                            "tune, then compare the chosen values with cv under regbench run",
                            ("dataset", "cv"), loaded.positions, loaded.source)
    space = search_space(loaded, experiment)
    if not space:
        raise ConfigError("nothing to tune: add a search: section, e.g. search: "
                          "{recipes.l2.l2.lambda: {low: 1.0e-4, high: 1.0, log: true}} "
                          "(docs/config.md#search)", source=loaded.source)
    if metric is None:
        metric = default_metric(data_spec(experiment["dataset"]).task)
    check_metric(metric, data_spec(experiment["dataset"]).task)
    if search.sampler == "grid":
        check_grid(space, search.trials)
    directions = {f"{experiment['name']}/{recipe}":
                  "minimize" if lower_is_better(metric) else "maximize" for recipe in space}
    if storage and not launch.resume:
        raise ConfigError("--fresh starts a new results folder, but the study in --storage is "
                          "shared and is never deleted by regbench; tune under another "
                          "experiment name (--set name=…), or delete the study yourself "
                          "(optuna delete-study)", source="--fresh")
    if launch.executor == "slurm":
        raise ConfigError("tune asks its study for one trial at a time, which a Slurm job "
                          "array cannot; run several `regbench tune --storage URL` as Slurm "
                          "jobs sharing one study, or tune with --executor local or ray",
                          source="--executor")
    if launch.executor == "ray":       # Ray itself was checked with the launch's plugins
        if launch.address and (not storage or storage.startswith("sqlite")):
            raise ConfigError("a Ray cluster's nodes cannot open the study.db in this "
                              "machine's results folder; give a database every node reaches, "
                              "e.g. --storage postgresql://user@host/db", source="--storage")
    if storage:
        check_study_file(absolute_sqlite(storage), directions)   # before Optuna writes to it
        check_storage(absolute_sqlite(storage))
    # the confirmation's trackers, checked now: not after the whole search has trained
    check_trackers([*experiment["logging"]["trackers"], *launch.trackers],
                   launch.mlflow_uri or experiment["logging"]["mlflow_uri"])
    seeds = fresh_seeds(search_seeds(experiment["seeds"], search.trial_seeds), confirm_seeds)
    name = f"{experiment['name']}{TUNE_SUFFIX}"
    results_dir = launch.out / name
    search_dir = results_dir / SEARCH_DIR
    check_results_folder(results_dir)
    plugins = launch.load_plugins()
    made_folder = not results_dir.exists()
    with ResultsLock(results_dir):
        prepare_results_dir(launch.out, name, fresh=not launch.resume)
        check_results_folder(search_dir)
        url = absolute_sqlite(storage) if storage else \
            f"sqlite:///{(results_dir / STUDY_FILE).resolve()}"
        if not storage:      # the folder's own study.db, as the lock shows it: no one writes it
            check_study_file(url, directions, experiment["name"])
        forget_loaded()
        with data_errors_located(loaded):
            data = load_bundle(experiment["dataset"], experiment["train"]["train_eval_samples"])
        with placement_errors_located(loaded):
            check_models(plan, data)   # a regularizer that would change nothing: exit 2 now
        with study_errors(url, training=False,
                          made_folder=results_dir if made_folder and not storage else None):
            tuner = Tuner(loaded, experiment, space, search, storage=url, metric=metric,
                          device=device, search_dir=search_dir, plugins=plugins,
                          n_val=data.meta["n_val"], shared=bool(storage))
        outcome = TuneOutcome(results_dir=results_dir)
        outcome.warnings += plan.warnings + grid_warnings(tuner) \
            + protocol_warnings(experiment, space, tuner.seeds)
        with study_errors(url, training=True):
            outcome.interrupted = _search(tuner, outcome, launch,
                                          display.progress() if display is not None else None)
            records = tuner.records()
        outcome.recipes = records
        outcome.warnings += [f"{recipe}: {text}" for recipe, record in records.items()
                             if (text := close_call(record)) is not None]
        atomic_write_text(search_dir / PLAN_FILE, to_json({
            "search": experiment["name"],
            "run_ids": [run_id for r in records.values() for t in r["trials"]
                        for run_id in t["run_ids"] if run_id]}))
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
    anything is written (a SQLite file it began, on a full disk say, is removed again)."""
    path = _sqlite_file(url)
    new = path is not None and not os.path.lexists(path)
    try:
        open_storage(url)
    except Exception as exc:
        if new:
            _remove_new_file(path)
        raise ConfigError(f"cannot open the Optuna storage {_shown_url(url)} "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0]}); expected a "
                          "SQLAlchemy URL such as sqlite:///study.db or "
                          "postgresql://user@host/db", source="--storage") from None


def search_seeds(seeds: list[int], k: int) -> list[int]:
    """The seeds each trial trains on: the first k of ``seeds:``, continued by the integers
    after the largest of them."""
    chosen = list(seeds[:k])
    chosen += range(max(chosen) + 1, max(chosen) + 1 + k - len(chosen))
    return chosen


SQLITE_HEADER = b"SQLite format 3\x00"


def _sqlite_file(url: str) -> Optional[Path]:
    """The file of a SQLite storage URL (None for a server's database or SQLite in memory)."""
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url  # deferred: comes with optuna

    try:
        database = make_url(url).database
    except Exception:          # check_storage says what is wrong with the URL
        return None
    return Path(database) if database and database != ":memory:" else None


def _read_sqlite(path: Path) -> tuple[str, set[str], list[tuple], int]:
    """(integrity check, table names, (study, direction) rows, version rows) of a SQLite
    file, read without writing to it. A journal left by a writer that was killed needs a
    rollback, which a read-only connection refuses: then the copy is read, rolled back."""
    import shutil
    import tempfile

    def read(file: Path, mode: str):
        connection = sqlite3.connect(f"{file.resolve().as_uri()}?mode={mode}", uri=True)
        try:
            check = connection.execute("PRAGMA quick_check").fetchone()[0]
            tables = {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            studies, versions = [], 0
            if {"studies", "study_directions", "version_info", "alembic_version"} <= tables:
                studies = connection.execute(
                    "SELECT s.study_name, d.direction FROM studies s LEFT JOIN "
                    "study_directions d ON d.study_id = s.study_id").fetchall()
                versions = min(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                               for table in ("version_info", "alembic_version"))
            return check, tables, studies, versions
        finally:
            connection.close()

    try:
        return read(path, "ro")
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorcode", None) != 776:   # SQLITE_READONLY_ROLLBACK
            raise
    with tempfile.TemporaryDirectory(prefix="regbench-study-") as folder:
        copy_path = Path(folder) / path.name
        shutil.copyfile(path, copy_path)
        shutil.copyfile(f"{path}-journal", f"{copy_path}-journal")
        return read(copy_path, "rw")


def check_study_file(url: str, directions: dict[str, str],
                     experiment: Optional[str] = None) -> None:
    """A SQLite study storage checked without writing a byte, before Optuna opens it: Optuna
    adds its tables to any SQLite file it is given (and migrates an older one), and a damaged
    one fails deep in SQLAlchemy. Accepted: no file, an empty one, or a whole Optuna storage of
    this Optuna in which each study of ``directions`` (name -> minimize | maximize) runs that
    way; with ``experiment`` (the results folder's own study.db) it holds no study of another
    experiment. Anything else: exit 2 naming the file and the way out, the file untouched."""
    path = _sqlite_file(url)
    if path is None or not os.path.lexists(path):
        return
    way_out = "move it away, or start over with --fresh (which renames the folder aside)" \
        if experiment else "move it away, or pass another --storage"

    def refuse(what: str):
        return ConfigError(f"{what}; regbench leaves it as it is: {way_out}",
                           source=str(path))

    if not path.is_file():
        raise refuse("is not a file, so not an Optuna study")
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
        if not header:
            return          # SQLite's empty database: Optuna makes its tables in it
        if header != SQLITE_HEADER:
            raise refuse("is not an SQLite database (damaged, or another kind of file), so "
                         "not an Optuna study")
        check, tables, studies, versions = _read_sqlite(path)
    except sqlite3.Error as exc:
        raise refuse(f"is a damaged SQLite database ({exc})") from None
    except OSError as exc:
        raise refuse(f"cannot be read ({exc.strerror or exc})") from None
    if check != "ok":
        raise refuse(f"is a damaged SQLite database (integrity check: {check})")
    if not tables:
        return
    if not {"studies", "version_info"} <= tables:
        shown = ", ".join(sorted(tables)[:5]) + (", …" if len(tables) > 5 else "")
        raise refuse(f"is an SQLite database but not an Optuna storage (its tables: {shown}), "
                     "and Optuna would add its own tables to it")
    from optuna.storages._rdb import models  # deferred: Optuna's own list of its tables

    missing = sorted({*models.BaseModel.metadata.tables, "alembic_version"} - tables)
    if missing or not versions:
        raise refuse(f"is an Optuna storage of another Optuna version, or one left half made "
                     f"(no {', '.join(missing) or 'version row'}), which Optuna would change to "
                     f"open it; upgrade it yourself (optuna storage upgrade --storage {url}) if "
                     "it is an older one's")
    for name, direction in studies:
        if experiment is not None and not name.startswith(f"{experiment}/"):
            raise refuse(f"holds the Optuna study '{name}', not a study of experiment "
                         f"'{experiment}' (a study.db from another tune?)")
        if name in directions and (direction or "").lower() != directions[name]:
            raise refuse(f"holds the study '{name}', which is to {(direction or 'none').lower()} "
                         f"its objective, but this tune must {directions[name]} it (another "
                         "--metric?): its trials cannot be continued")


def _remove_new_file(path: Path) -> None:
    """A SQLite file (and journal) this call began and could not finish: not left behind."""
    for leftover in (path, Path(f"{path}-journal")):
        if leftover.is_file() and not leftover.is_symlink():
            leftover.unlink()


def _storage_reason(exc: BaseException) -> str:
    """The database's own words for a failure (Optuna wraps SQLAlchemy's error, which wraps
    the driver's in a page of text)."""
    while exc.__cause__ is not None and not hasattr(exc, "orig"):
        exc = exc.__cause__
    return (str(getattr(exc, "orig", None) or exc).strip() or type(exc).__name__).splitlines()[0]


@contextlib.contextmanager
def study_errors(url: str, *, training: bool, made_folder: Optional[Path] = None):
    """The study storage's failures (a full disk, a read-only file, a server gone, a schema of
    another Optuna) as one line. Before any trial trains: exit 2, and a SQLite file this block
    created is removed again, with ``made_folder`` if that is left empty. While trials train:
    OutputError (exit 1); the trials told so far stay in the study for the same command to
    resume (SQLite writes each change whole or not at all)."""
    import sqlalchemy.exc  # deferred: comes with optuna

    optuna = quiet_optuna()
    path = _sqlite_file(url)
    new = path is not None and not os.path.lexists(path)
    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError,
            sqlite3.Error, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and (training or "optuna" not in str(exc)):
            raise                 # not the storage's: only Optuna's schema check is
        reason = _storage_reason(exc)
        full = any(word in reason.lower() for word in ("full", "i/o error", "quota"))
        remedy = "free space (or raise the quota)" if full else \
            "make it writable, or pass --storage elsewhere" if "readonly" in reason.lower() \
            else "check the storage, or pass --storage elsewhere"
        where = str(path) if path else f"--storage {_shown_url(url)}"
        if training:
            raise OutputError(f"{where}: cannot write the Optuna study ({reason}); the trials "
                              f"told before are kept in it, their runs in search/; {remedy}, "
                              "then run the same command again to resume") from exc
        if new:
            _remove_new_file(path)
            if made_folder is not None:
                with contextlib.suppress(OSError):   # only when empty: nothing else is ours
                    made_folder.rmdir()
        raise ConfigError(f"cannot open the Optuna study ({reason}); nothing was trained"
                          + (" and nothing is left" if new else "") + f"; {remedy}",
                          source=where) from exc


def protocol_warnings(experiment: dict[str, Any], space: dict[str, list[SearchParam]],
                      seeds: list[int]) -> list[str]:
    """What a user might expect tune to use and it does not: more seeds, untuned recipes."""
    out = []
    if len(experiment["seeds"]) > len(seeds):
        used = f"seed {seeds[0]} (the first of seeds:)" if len(seeds) == 1 else \
            f"seeds {', '.join(map(str, seeds))} (--trial-seeds {len(seeds)})"
        out.append(f"tune trains each trial on {used}; the other seeds are not used (the "
                   "confirmation draws its own)")
    untuned = [r for r in experiment["recipes"] if r not in space and r != "baseline"]
    if untuned:
        out.append(f"{', '.join(untuned)}: nothing under search:, so compared as written "
                   "against recipes that were tuned")
    return out


def check_grid(space: dict[str, list[SearchParam]], trials: int) -> None:
    """A grid of more than MAX_GRID_POINTS is refused before Optuna lists it in memory (its
    size is counted, not built: --trials 100000000 must not allocate gigabytes first)."""
    for recipe, params in space.items():
        size = grid_size(trials, params)
        if size > MAX_GRID_POINTS:
            raise ConfigError(f"{recipe}: the grid for --trials {trials} over "
                              f"{', '.join(p.name for p in params)} has {size:,} points, more "
                              f"than the grid sampler's {MAX_GRID_POINTS:,} (Optuna lists every "
                              "point in memory); use --sampler qmc or random for a budget this "
                              "large, or fewer --trials or choices", source="--sampler")


def grid_warnings(tuner: Tuner) -> list[str]:
    """A grid smaller than --trials is trained once through, each point one trial."""
    return [f"{recipe}: its grid has {budget} point(s), fewer than --trials {tuner.trials}: it "
            f"is searched whole in {budget} trial(s) (a point trained again on the same seed "
            "gives the same numbers)"
            for recipe, budget in tuner.budget.items() if budget < tuner.trials]


def _search(tuner: Tuner, outcome: TuneOutcome, launch: Launch, progress) -> bool:
    """Train the runs of the trials still owed; whether Ctrl-C stopped it."""
    search_dir = tuner.search_dir
    told = tuner.recover()
    if told:
        outcome.warnings.append(f"{len(told)} trial run(s) had finished before the last tune "
                                f"stopped and were recorded from their run folders")
    counts = tuner.counts()
    owed = sum(max(0, tuner.budget[r] - n) for r, n in counts.items()) * len(tuner.seeds) \
        + len(tuner.retrain)                          # in runs, as the progress counts
    search_dir.mkdir(parents=True, exist_ok=True)
    if not owed:
        return False
    threads = 1 if launch.executor == "ray" and launch.workers == 1 else \
        default_threads(launch.workers)
    runner = make_executor(launch.executor, workers=launch.workers, address=launch.address,
                           cores=available_cores(), plugins=tuner.plugins)
    if progress is not None:
        done = tuner.finished() * len(tuner.seeds)
        progress.start(owed + done, done)

    def handle(spec: RunSpec, result) -> bool:
        write_diagnosed_run(search_dir, spec, result)
        if progress is not None:
            progress.run_finished(spec, result.summary)
        if result.status == "interrupted":
            return True           # the trial stays RUNNING: trained again on resume
        if result.summary.get("storage_error"):   # not the trial's fault: not told as failed
            unreachable.append(f"{spec['run_id']}: {result.summary['error']}")
            tuner.in_flight.discard(spec["tuning"]["trial_id"])
            return False
        tuner.collect(spec, result.summary)      # told once all the trial's seeds are in
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
    """trials.csv: one row per trial (recipe, number, state, each searched value, value, its
    run ids, space-separated with --trial-seeds)."""
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
                             t["number"] == chosen, " ".join(filter(None, t["run_ids"]))])
    atomic_write_text(results_dir / TRIALS_TABLE, buffer.getvalue())
