"""Train a suite, then answer across its tasks: ``regbench suite SUITE.yaml``.

Every task is an ordinary experiment trained by ``run_experiment`` into
``OUT/<suite>/tasks/<task>/`` (so ``regbench compare``, ``diagnose`` and ``report`` work on it,
and resume, the folder lock, fusion, ``--workers``, Ray and the trackers are the experiment's
own). A rerun trains only what is new: a task or a recipe added to the suite, a seed added.
Then the aggregate is rebuilt from the task folders alone into ``OUT/<suite>/``: ``suite.csv``,
``suite.md``, ``suite.tex``, ``suite_tasks.csv``, ``plots/`` and ``suite.html``
(``regbench.analysis.suite_table`` says what each number is)::

    from regbench import Launch
    from regbench.experiment.suite import load_suite_for, run_suite
    launch = Launch(workers=2)
    outcome = run_suite(load_suite_for("default", launch), launch)   # the shipped suite
    outcome.table.rows
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from regbench.analysis.suite_table import SUITE_FILE, TASKS_DIR, SuiteTable, suite_table
from regbench.config.yaml_io import dump_yaml
from regbench.errors import ConfigError
from regbench.experiment.launch import Launch
from regbench.experiment.plan import Plan
from regbench.experiment.runner import (
    Display,
    is_complete,
    plan_experiment,
    prepare_results_dir,
    run_experiment,
)
from regbench.experiment.suite_config import LoadedSuite, about_task, load_suite, smoke_suite
from regbench.experiment.tune import Search, tune_experiment
from regbench.registry import UnknownName
from regbench.report.suite_page import write_suite
from regbench.results import ResultsLock, atomic_write_text, check_folder, check_output
from regbench.tracking import TRACKERS
from regbench.vocabulary import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, RUNS_DIR


@dataclass
class SuiteOutcome:
    suite_dir: Path
    tasks: dict[str, Any] = field(default_factory=dict)   # ExperimentOutcome or TuneOutcome
    table: Optional[SuiteTable] = None
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """130 when interrupted, 1 when a run of any task did not complete, else 0."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        if any(o.exit_code != EXIT_OK for o in self.tasks.values()):
            return EXIT_RUN_FAILED
        return EXIT_OK


SHIPPED = Path(__file__).resolve().parents[1] / "suites"   # package data: <name>.yaml


def suite_path(path: str | Path) -> Path:
    """``path``, or where it names a shipped suite (``default``) and no such file exists,
    that suite's file in the package."""
    path = Path(path)
    shipped = SHIPPED / f"{path.name}.yaml"
    if not path.exists() and path.parent == Path(".") and shipped.is_file():
        return shipped
    return path


def load_suite_for(path: str | Path, launch: Launch, smoke: bool = False) -> LoadedSuite:
    """The suite a command trains: the launch's plugins loaded first (tasks and recipes name
    their entries), the trackers checked, ``--smoke``'s budget applied; exit 2 on any error.
    ``path`` may name a shipped suite (``default``)."""
    launch.load_plugins()
    for name in launch.trackers:
        if name not in TRACKERS:
            raise ConfigError(str(UnknownName("tracker", name, TRACKERS.names())),
                              source="--log")
    suite = load_suite(suite_path(path))
    return smoke_suite(suite) if smoke else suite


def task_launch(suite: LoadedSuite, launch: Launch) -> Launch:
    """How each task runs: into OUT/<suite>/tasks/, resuming (``--fresh`` moves the whole
    suite folder aside first)."""
    return launch.replace(out=launch.out / suite.name / TASKS_DIR, resume=True)


def plan_suite(suite: LoadedSuite, launch: Launch) -> dict[str, Plan]:
    """Every task's plan, each checked as `regbench run` checks an experiment (the recipe
    rules included) before anything trains."""
    plans = {}
    for task, loaded in suite.tasks.items():
        with about_task(loaded):
            plans[task] = plan_experiment(loaded, task_launch(suite, launch))
    return plans


def plan_lines(suite: LoadedSuite, launch: Launch) -> list[str]:
    """What --dry-run prints: per task its runs and how many are still to train."""
    plans = plan_suite(suite, launch)
    tasks_dir = launch.out / suite.name / TASKS_DIR
    lines, total, todo = [], 0, 0
    for task, plan in plans.items():
        done = [run for run in plan.runs if launch.resume and is_complete(
            tasks_dir / task / RUNS_DIR / run["run_id"], run)]
        pending = len(plan.runs) - len(done)
        total, todo = total + len(plan.runs), todo + pending
        recipes = len(plan.experiment["recipes"])
        skipped = suite.skipped.get(task) or []
        lines.append(f"  {task}: {len(plan.runs)} runs ({recipes} recipes × "
                     f"{len(plan.experiment['seeds'])} seeds), {plan.total_epochs} epochs; to "
                     f"train: {pending}" + (f" (skips {', '.join(skipped)})" if skipped else ""))
        lines += [f"    warning: {w}" for w in plan.warnings]
    return ([f"suite {suite.name}: {len(plans)} tasks, {len(suite.recipes)} recipes, "
             f"{total} runs; to train: {todo} (dry run: nothing trained)"] + lines
            + [f"warning: {w}" for w in suite.warnings])


def resolved_suite(suite: LoadedSuite, plans: dict[str, Plan]) -> dict[str, Any]:
    """suite.yaml: what the aggregate reads (tasks, recipes) and each task's settings."""
    seeds = next(iter(plans.values())).experiment["seeds"]     # --seeds replaces the file's
    return {"name": suite.name, "source": suite.source, "seeds": seeds,
            "recipes": suite.recipes,
            "tasks": {task: {"skip": suite.skipped.get(task) or [],
                             **{key: plan.experiment[key] for key in ("dataset", "model",
                                                                      "train")}}
                      for task, plan in plans.items()}}


def tuned_tasks(suite: LoadedSuite, search: Optional[Search]) -> list[str]:
    """The tasks ``--tune`` tunes: those with a ``search:`` (none without --tune)."""
    if search is None:
        return []
    return [task for task, loaded in suite.tasks.items() if loaded.config.search]


def run_suite(suite: LoadedSuite, launch: Launch, display: Optional[Display] = None,
              search: Optional[Search] = None,
              page: Optional[tuple[Path, str]] = None) -> SuiteOutcome:
    """Train every task (completed runs skipped), then write the aggregate; an interrupted
    suite writes no aggregate (a rerun resumes and writes it). With ``search`` (``--tune``),
    a task with ``search:`` is tuned by ``tune_experiment`` instead (the same trials for
    every recipe, chosen on validation) and enters the aggregate through its confirmation on
    fresh seeds (``tasks/<task>-tune/``). ``page``: also write the answer as a Markdown page
    there (a path, and the command that regenerates it, said on the page)."""
    plans = plan_suite(suite, launch)
    if page is not None:            # before anything trains, not after
        check_output(Path(page[0]), "--page")
    tuned = tuned_tasks(suite, search)
    if search is not None and not tuned:
        raise ConfigError("--tune: no task has a search: section; add one to a task, e.g. "
                          "search: {recipes.l2.l2.lambda: {low: 0.01, high: 10, log: true}}",
                          source=suite.source)
    suite_dir = launch.out / suite.name
    check_folder(suite_dir, f"the suite folder {suite.name}/")
    check_folder(suite_dir / TASKS_DIR, f"the folder of task folders ({TASKS_DIR}/<task>/)")
    outcome = SuiteOutcome(suite_dir=suite_dir, warnings=list(suite.warnings))
    with ResultsLock(suite_dir):   # one suite command per suite folder
        prepare_results_dir(launch.out, suite.name, fresh=not launch.resume)
        resolved = resolved_suite(suite, plans)
        atomic_write_text(suite_dir / SUITE_FILE, dump_yaml(resolved))
        for task, loaded in suite.tasks.items():
            if display is not None:
                display.note(f"\ntask {task} ({list(suite.tasks).index(task) + 1} of "
                             f"{len(suite.tasks)})" + (": tuning" if task in tuned else ""))
            with about_task(loaded):
                if task in tuned:
                    result = tune_experiment(loaded, task_launch(suite, launch), search,
                                             display=display)
                else:
                    result = run_experiment(loaded, task_launch(suite, launch), display=display)
            outcome.tasks[task] = result
            if result.interrupted:
                outcome.interrupted = True
                return outcome
            if task in tuned and result.confirmation is None:
                outcome.warnings.append(f"task {task}: the tuning ended before its "
                                        "confirmation on fresh seeds; no aggregate written "
                                        "(the same command resumes it)")
                return outcome
            if task in tuned:        # the aggregate reads the confirmation on fresh seeds
                resolved["tasks"][task]["folder"] = result.results_dir.name
                atomic_write_text(suite_dir / SUITE_FILE, dump_yaml(resolved))
        outcome.table = suite_table(suite_dir)
        write_suite(suite_dir, outcome.table, report=launch.report, page=page)
    return outcome
