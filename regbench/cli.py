"""The `regbench` command line. Commands parse, call one library function, render.

Nothing heavy is imported at module level, so `regbench --help` answers at once.
"""
from __future__ import annotations

import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.exceptions import TyperException

from regbench.engine.threads import choose_wait_policy
from regbench.errors import RegbenchError, visible
from regbench.experiment.launch import Launch
from regbench.vocabulary import EXIT_INTERRUPTED, EXIT_TERMINATED, RUNS_DIR

# Every command imports the library inside its body: the library loads torch, pandas and
# matplotlib, and `regbench --help` must answer at once (each such import says "deferred").

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compare regularizers under identical conditions, with honest statistics.")
STATE = {"debug": False, "terminated": False}


def _interrupted_code() -> int:
    return EXIT_TERMINATED if STATE["terminated"] else EXIT_INTERRUPTED


def _on_sigterm(signum, frame) -> None:
    """SIGTERM (kill, systemd, Slurm, CI) is Ctrl-C: the runs in flight are saved as
    interrupted and the tables written; the exit code then says 143. A second one is ignored
    so that the clean-up finishes."""
    STATE["terminated"] = True
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


class Fuse(str, Enum):
    auto = "auto"
    on = "on"
    off = "off"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Format(str, Enum):
    table = "table"
    md = "md"
    csv = "csv"
    latex = "latex"


class Kind(str, Enum):
    all = "all"
    regularizers = "regularizers"
    datasets = "datasets"
    models = "models"


def _console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = max(console.width, 160)  # logs and CI: do not fold the tables
    return console


def fail(message: str, code: int = 2) -> None:
    print(f"regbench: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def guarded(function):
    """Run a command body, turning user errors into one line and an exit code."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except typer.Exit:
            raise
        except RegbenchError as exc:
            if STATE["debug"]:
                raise
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            print("regbench: interrupted", file=sys.stderr)
            raise typer.Exit(_interrupted_code())
    return wrapper


def _print_version(value: bool) -> None:
    if value:   # the package is imported with regbench.cli: its __version__, installed or not
        print(f"regbench {sys.modules['regbench'].__version__}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option(
        "--debug", help="Show Python tracebacks for errors (also after the command: "
                        "regbench run X --debug).")] = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print regbench's version and exit.")] = False,
) -> None:
    STATE["debug"] = debug


def debug_first(args: list[str]) -> list[str]:
    """``--debug`` is an option of regbench itself; accept it after the command too by moving
    it to the front (arguments after ``--`` are left alone)."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[:end]:
        return args
    return ["--debug"] + [a for a in args[:end] if a != "--debug"] + args[end:]


SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Override a config value before validation: key.path=value (YAML value).")]


def _run(config: Path, launch: Launch, overrides: list[str], params: list[str],
         shape: tuple[bool, bool]) -> None:
    """run and sweep: ``shape`` is (--dry-run, --smoke)."""
    from regbench.experiment import runner  # deferred: the library loads torch

    dry_run, smoke = shape
    console = _console()
    for warning in launch.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    loaded = runner.load_experiment(config, launch, overrides, params, smoke)
    if dry_run:
        return render_plan(runner.plan_experiment(loaded, launch), console, launch)
    outcome = runner.run_experiment(loaded, launch, display=Terminal(console))
    if launch.junit is not None:
        console.print(f"junit: {launch.junit}")
    _exit(outcome, console, "finished runs are saved")


def _exit(outcome, console, saved: str) -> None:
    """The command's exit code (143 for an interruption by SIGTERM), after saying how to go
    on from an interruption."""
    if outcome.exit_code == EXIT_INTERRUPTED:
        console.print(f"interrupted: {saved}; run the same command again to resume")
        raise typer.Exit(_interrupted_code())
    raise typer.Exit(outcome.exit_code)


class Terminal:
    """The library's Display on the terminal: live progress, then each comparison."""

    def __init__(self, console):
        self.console = console

    def progress(self):
        from regbench.experiment.progress import make_progress  # deferred: rich's live view

        return make_progress()

    def outcome(self, outcome, title: str) -> None:
        _print_outcome(outcome, self.console, title)

    def note(self, text: str) -> None:
        self.console.print(text, markup=False)

    def warning(self, text: str) -> None:
        self.console.print(f"[yellow]warning:[/] {text}")


def make_launch(options: dict[str, Any]) -> Launch:
    """The Launch of a command's parameters (its ``locals()``): those named as Launch's fields,
    enums as their values, lists as tuples, unset ones left at Launch's defaults. A new option
    is a Launch field and a parameter of the same name. Bad values raise the ConfigError the
    command prints."""
    values = {}
    for key in Launch.fields():
        value = options.get(key)
        if value is not None:
            value = value.value if isinstance(value, Enum) else value
            values[key] = tuple(value) if isinstance(value, list) else value
    return Launch(**values)


def load_plugins(specs: Optional[list[str]]) -> list[str]:
    """``--plugin`` files and modules, then installed entry points (see regbench.plugins)."""
    from regbench import plugins  # deferred: models and datasets import torch

    return plugins.load_plugins(specs or [])


def _print_outcome(outcome, console, title: str = "") -> None:
    from regbench.analysis.compare import rich_table  # deferred

    for warning in outcome.plan.warnings + outcome.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if outcome.outstanding:
        jobs = ", ".join(outcome.outstanding)
        console.print(f"Slurm job(s) {jobs} still hold {_pending_count(outcome)} run(s): "
                      f"`regbench status {outcome.results_dir}` follows them; the same command "
                      f"again collects them and writes the tables (scancel {jobs} stops them)",
                      markup=False)
    if outcome.comparison is not None:
        comparison = outcome.comparison
        print_headline(comparison, console)
        console.print(rich_table(comparison, title=f"{outcome.plan.experiment['name']}: "
                                 f"{comparison.metric}{title}", width=console.width))
        for note in comparison.notes:
            console.print(f"  • {note}")
    console.print(f"results: {outcome.results_dir}")


def _pending_count(outcome) -> int:
    return len(outcome.plan.runs) - sum(1 for s in outcome.summaries if s)


def print_headline(comparison, console) -> None:
    """The answer in sentences: wrapped at words on a terminal, one line each in a log."""
    for sentence in comparison.headline:
        console.print(f"[bold]»[/] {sentence}", markup=True, highlight=False,
                      soft_wrap=not console.is_terminal)


def render_plan(plan, console, launch: Launch) -> None:
    """The runs a command would train, with those already completed in its results folder
    (none with --fresh), and what --confirm-seeds would train after them."""
    from rich.table import Table

    from regbench.experiment.runner import fusion_lines, is_complete  # deferred

    results_dir = launch.out / plan.experiment["name"] if launch.resume else None
    done = {run["run_id"] for run in plan.runs
            if results_dir is not None and is_complete(results_dir / RUNS_DIR / run["run_id"], run)}
    table = Table(title=f"plan: {plan.experiment['name']}")
    for column in ("run", "epochs", "regularizers", "status"):
        table.add_column(column)
    for run in plan.runs:
        table.add_row(run["run_id"], str(run["train"]["epochs"]),
                      ", ".join(run["regularizers"]) or "—",
                      "completed (skipped)" if run["run_id"] in done else "to train")
    console.print(table)
    todo = [run for run in plan.runs if run["run_id"] not in done]
    points = len({run["point_id"] for run in plan.runs})
    cv = plan.experiment["dataset"].get("cv")      # every seed trains each repeat × fold
    folds = (f" × {cv['folds'] * cv['repeats']} ({cv['folds']} folds × {cv['repeats']} repeats)"
             if cv else "")
    console.print(f"{len(plan.runs)} runs ({points} recipes/sweep points × "
                  f"{len(plan.experiment['seeds'])} seeds{folds}), {plan.total_epochs} epochs "
                  f"in total; to train: {len(todo)} runs, "
                  f"{sum(r['train']['epochs'] for r in todo)} epochs (dry run: nothing trained)")
    for line in fusion_lines(todo):
        console.print(line, markup=False)
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if launch.confirm_seeds:
        console.print(f"then --confirm-seeds {launch.confirm_seeds}: each recipe's chosen point "
                      f"and the baseline on {launch.confirm_seeds} fresh seed(s), "
                      f"{len(plan.experiment['recipes']) * launch.confirm_seeds} runs")


ConfigArgument = Annotated[Path, typer.Argument(help="Experiment YAML file.")]
OutOption = Annotated[Path, typer.Option(
    "--out", help="Results root; results go to OUT/<name>/.")]
SeedsOption = Annotated[Optional[str], typer.Option(
    "--seeds", help="Seeds to run, e.g. 0,1,2 or 0-4 (replaces the file's).")]
WorkersOption = Annotated[int, typer.Option(
    "--workers", help="Runs trained in parallel processes.")]
ExecutorOption = Annotated[str, typer.Option(
    "--executor", help="local processes, ray tasks, a slurm job array (execution.slurm in the "
    "config; --set execution.slurm.partition=…), or a plugin's registered executor.")]
GpusOption = Annotated[Optional[str], typer.Option(
    "--gpus", metavar="0,1,…", help="The GPUs local worker processes train on, round-robin, "
    "train.runs_per_gpu processes on each (default with --workers N: every GPU).")]
DetachOption = Annotated[bool, typer.Option(
    "--detach", help="With --executor slurm: submit and return at once; `regbench status "
    "OUT/NAME` follows the jobs, and the same command again collects and writes the tables.")]
AddressOption = Annotated[Optional[str], typer.Option(
    "--address", help="Ray cluster address (none: start a local Ray).")]
DeviceOption = Annotated[Optional[Device], typer.Option(
    "--device", help="auto, cpu or cuda (overrides train.device).")]
ResumeOption = Annotated[bool, typer.Option(
    "--resume/--fresh",
    help="Skip completed runs, or start a new results folder (the old one is kept aside).")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the plan; train nothing.")]
ReportOption = Annotated[bool, typer.Option(
    "--report/--no-report", help="Write plots and report.html at the end.")]
MetricOption = Annotated[Optional[str], typer.Option(
    "--metric", help="Metric the tables rank by (default: accuracy or mse).")]
ConfirmOption = Annotated[Optional[int], typer.Option(
    "--confirm-seeds", metavar="K",
    help="Then retrain each recipe's chosen point and the baseline on K fresh seeds (never used "
    "for the choice) into OUT/<name>-confirm/: the headline comparison.")]
PluginOption = Annotated[Optional[list[str]], typer.Option(
    "--plugin", metavar="PATH.py|MODULE",
    help="Load a plugin that registers models, datasets or regularizers (repeatable); installed "
    "packages' regbench.plugins entry points load too.")]
SmokeOption = Annotated[bool, typer.Option(
    "--smoke", help="Tiny budget: 1 epoch, a few hundred samples, one seed; results go to "
    "OUT/<name>-smoke/, never over the full runs.")]
FuseOption = Annotated[Optional[Fuse], typer.Option(
    "--fuse", help="Train runs that share data, model and settings as one stacked model: auto "
    "(where measured faster), on, off (overrides train.fuse everywhere, recipes' own included).")]
JunitOption = Annotated[Optional[Path], typer.Option(
    "--junit", metavar="FILE",
    help="Also write JUnit XML: one test case per run; failed and diverged runs are failures "
    "with their message (for CI systems).")]
LogOption = Annotated[Optional[list[str]], typer.Option(
    "--log", help="Also log every run to a tracker: tensorboard (event files in each run "
    "folder), mlflow or a plugin's (repeatable; adds to the config's logging.trackers).")]
MlflowUriOption = Annotated[Optional[str], typer.Option(
    "--mlflow-uri", metavar="URI", help="MLflow tracking URI (default: logging.mlflow_uri, "
    "MLFLOW_TRACKING_URI, else MLflow's default).")]
RecipesOption = Annotated[Optional[str], typer.Option(
    "--recipes", metavar="NAME,...",
    help="Train only these recipes, and the baseline (always: the comparison needs it); runs "
    "of the others already in the results folder are kept, out of this comparison.")]
MinEffectOption = Annotated[Optional[float], typer.Option(
    "--min-effect",
    metavar="D",
    help="Smallest difference of interest on the compared metric (e.g. 0.01 accuracy): a recipe "
    "whose interval lies inside ±D is 'equivalent', and the seed advice sizes seeds for D "
    "(default: compare.min_effect; unset, nothing is called equivalent).")]


@app.command()
@guarded
def run(
    config: ConfigArgument,
    set_: SetOption = None,
    out: OutOption = Path("results"),
    seeds: SeedsOption = None,
    workers: WorkersOption = 1,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    device: DeviceOption = None,
    resume: ResumeOption = True,
    dry_run: DryRunOption = False,
    smoke: SmokeOption = False,
    report: ReportOption = True,
    metric: MetricOption = None,
    confirm_seeds: ConfirmOption = None,
    min_effect: MinEffectOption = None,
    plugins: PluginOption = None,
    junit: JunitOption = None,
    fuse: FuseOption = None,
    trackers: LogOption = None,
    mlflow_uri: MlflowUriOption = None,
    recipes: RecipesOption = None,
    detach: DetachOption = False,
    gpus: GpusOption = None,
) -> None:
    """Train every recipe × sweep point × seed and print the comparison."""
    launch = make_launch(locals())
    _run(config, launch, set_ or [], [], (dry_run, smoke))


@app.command()
@guarded
def sweep(
    config: ConfigArgument,
    param: Annotated[Optional[list[str]], typer.Option(
        "--param", help="Sweep grid: key.path=v1,v2,... (adds to or replaces the file's "
        "sweep:); list values: model.hidden=[64,64],[128].")] = None,
    set_: SetOption = None,
    out: OutOption = Path("results"),
    seeds: SeedsOption = None,
    workers: WorkersOption = 1,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    device: DeviceOption = None,
    resume: ResumeOption = True,
    dry_run: DryRunOption = False,
    smoke: SmokeOption = False,
    report: ReportOption = True,
    metric: MetricOption = None,
    confirm_seeds: ConfirmOption = None,
    min_effect: MinEffectOption = None,
    plugins: PluginOption = None,
    junit: JunitOption = None,
    fuse: FuseOption = None,
    trackers: LogOption = None,
    mlflow_uri: MlflowUriOption = None,
    recipes: RecipesOption = None,
    detach: DetachOption = False,
    gpus: GpusOption = None,
) -> None:
    """Like run, with the sweep grid given on the command line."""
    launch = make_launch(locals())
    _run(config, launch, set_ or [], param or [], (dry_run, smoke))


class Sampler(str, Enum):
    tpe = "tpe"
    qmc = "qmc"
    random = "random"
    grid = "grid"


class Pruner(str, Enum):
    median = "median"
    halving = "halving"
    none = "none"


@app.command()
@guarded
def tune(
    config: ConfigArgument,
    trials: Annotated[int, typer.Option(
        "--trials", metavar="N", help="Trials per recipe: every recipe with searched keys gets "
        "exactly N, over its own search: ranges (N × --trial-seeds runs; a grid smaller than N "
        "is searched whole, once).")] = 20,
    trial_seeds: Annotated[int, typer.Option(
        "--trial-seeds", metavar="K", help="Runs per trial, on K seeds (the first K of seeds:, "
        "then the next integers); a trial's value is their mean, so each recipe trains "
        "N × K runs. At most 100; not pruned.")] = 1,
    confirm_seeds: Annotated[int, typer.Option(
        "--confirm-seeds", metavar="K", help="Fresh seeds (never used in the search) on which "
        "each recipe's best trial and the baseline are retrained and compared.")] = 5,
    sampler: Annotated[Sampler, typer.Option(
        "--sampler", help="How trials are drawn (Optuna): tpe, qmc (quasi-random Sobol, as "
        "AlgoPerf), random, grid (at most 100,000 points).")] = Sampler.tpe,
    pruner: Annotated[Optional[Pruner], typer.Option(
        "--pruner", help="Stop hopeless trials on their per-epoch validation curve: median, "
        "halving (successive halving), none. Default: median; none with --trial-seeds "
        "above 1.")] = None,
    storage: Annotated[Optional[str], typer.Option(
        "--storage", metavar="URL", help="Optuna storage (SQLAlchemy URL) shared by several "
        "processes or machines; default: OUT/<name>-tune/study.db.")] = None,
    set_: SetOption = None,
    out: OutOption = Path("results"),
    workers: WorkersOption = 1,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    device: DeviceOption = None,
    resume: ResumeOption = True,
    report: ReportOption = True,
    metric: Annotated[Optional[str], typer.Option(
        "--metric", help="Validation metric trials are chosen on, and the table ranks by "
        "(default: accuracy or mse).")] = None,
    plugins: PluginOption = None,
    trackers: LogOption = None,
    mlflow_uri: MlflowUriOption = None,
    recipes: RecipesOption = None,
) -> None:
    """Tune every recipe with the same budget of trials (chosen on validation only), then
    compare the chosen points with the baseline on fresh seeds."""
    from regbench.experiment import tune as tuning  # deferred

    launch = make_launch(locals())
    search = tuning.Search(trials=trials, sampler=sampler.value,
                           pruner=pruner.value if pruner else None, storage=storage,
                           trial_seeds=trial_seeds)
    console = _console()
    outcome = tuning.tune_experiment(config, launch, search, overrides=set_ or [],
                                     display=Terminal(console))
    if outcome.confirmation is None:     # else the warnings came before the confirmation
        for warning in outcome.warnings:
            console.print(f"[yellow]warning:[/] {warning}")
        if outcome.recipes and not outcome.interrupted:
            console.print(tuning.chosen_table(outcome), markup=False)
        console.print(f"results: {outcome.results_dir}")
    _exit(outcome, console, "finished trials are saved in the study")


@app.command()
@guarded
def compare(
    results_dirs: Annotated[list[Path], typer.Argument(
        metavar="RESULTS_DIR",
        help="results/<name> folder; several: set side by side, each against its own baseline.")],
    metric: Annotated[Optional[str], typer.Option("--metric", help="accuracy, f1, loss, mse, r2, ...")] = None,
    format: Annotated[Format, typer.Option("--format", help="table, md, csv or latex.")] = Format.table,
    write: Annotated[bool, typer.Option("--write", help="Also rewrite comparison.{md,csv,tex} and runs.csv in the folder (for this --metric).")] = False,
    min_effect: MinEffectOption = None,
) -> None:
    """Print the comparison, rebuilt from stored runs only. Read-only: nothing in the folder
    changes unless --write is given. Several folders: one table of all their rows, each
    experiment compared with its own baseline (never across experiments); always read-only."""
    from regbench.analysis import compare as cmp  # deferred

    if len(results_dirs) > 1:
        _compare_many(results_dirs, metric, format, write, min_effect)
        return
    results_dir = results_dirs[0]
    if write:
        comparison = cmp.write_comparison(results_dir, metric, min_effect)
    else:
        comparison = cmp.compare_results(results_dir, metric, min_effect=min_effect)
    if format is Format.table:
        console = _console()
        print_headline(comparison, console)
        console.print(cmp.rich_table(comparison, title=f"{results_dir.name}: {comparison.metric}",
                                     width=console.width))
        for note in comparison.notes:
            console.print(f"  • {note}")
    else:
        render = {Format.md: cmp.to_markdown, Format.csv: cmp.to_csv, Format.latex: cmp.to_latex}
        sys.stdout.write(render[format](comparison))


def _compare_many(results_dirs: list[Path], metric: Optional[str], format: Format, write: bool,
                  min_effect: Optional[float]) -> None:
    """`compare A B …`: the experiments' tables stacked, each with its own notes."""
    from regbench.analysis import side_by_side  # deferred

    if write:
        fail("--write: writes one folder's comparison files; with several folders compare "
             "only reads (run compare FOLDER --write for each folder)")
    if format is Format.latex:
        fail("--format latex: a LaTeX table holds one experiment; with several folders use "
             "table, md or csv (or compare FOLDER --format latex for each)")
    experiments = side_by_side.compare_many(results_dirs, metric, min_effect)
    if format is Format.table:
        console = _console()
        for experiment in experiments:
            for sentence in experiment.comparison.headline:
                console.print(f"[bold]»[/] {experiment.name}: {sentence}", markup=True,
                              highlight=False, soft_wrap=not console.is_terminal)
        console.print(side_by_side.rich_table(experiments, width=console.width))
        console.print(side_by_side.NOT_ACROSS)
        for scope, rest in side_by_side.notes(experiments):
            console.print(f"  • {scope}", markup=False)
            for note in rest:
                console.print(f"      – {note}", markup=False)
    else:
        render = {Format.md: side_by_side.to_markdown, Format.csv: side_by_side.to_combined_csv}
        sys.stdout.write(render[format](experiments))


@app.command()
@guarded
def report(results_dir: Annotated[Path, typer.Argument(help="results/<name> folder.")]) -> None:
    """Write a self-contained report.html and its plots/ (nothing else in the folder changes)."""
    from regbench.report.page import write_report  # deferred
    from regbench.results import ResultsLock  # deferred

    with ResultsLock(results_dir):   # not while a run writes the same folder
        path = write_report(results_dir)
    _console().print(f"report: {path}")


@app.command()
@guarded
def status(
    results_dir: Annotated[Path, typer.Argument(help="results/<name> folder.")],
    all_: Annotated[bool, typer.Option("--all", help="List completed runs too.")] = False,
) -> None:
    """Where a results folder stands: completed, in progress, pending and failed runs, and
    whether a regbench process is working on it (read-only, any executor)."""
    from regbench.analysis.status import folder_status, render_status  # deferred
    from regbench.engine.slurm import run_elements  # deferred

    render_status(folder_status(results_dir, run_elements(results_dir)), _console(),
                  show_all=all_)


@app.command()
@guarded
def diagnose(
    target: Annotated[Path, typer.Argument(help="results/<name> folder, a metrics CSV, a "
                                           "TensorBoard log folder or runs:/<MLflow run id>.")],
    map_: Annotated[Optional[list[str]], typer.Option(
        "--map", metavar="NAME=SOURCE,...",
        help="Read a column, TensorBoard tag or MLflow metric as a regbench name: "
             "--map train_loss=loss,val_loss=val/loss (repeatable).")] = None,
) -> None:
    """Print the overfitting verdict and its evidence per run, and what to try next (read-only).

    TARGET is a results folder or another tool's log: any CSV with an `epoch`
    column and train/val loss or accuracy columns (Keras' loss/val_loss/acc/
    val_acc and Lightning's CSVLogger work too; percents are detected),
    TensorBoard event files (each folder of them a run; the step is the epoch
    unless an `epoch` tag says otherwise) or an MLflow run (runs:/<run id>,
    from MLFLOW_TRACKING_URI's store).
    """
    from regbench.analysis.advice import diagnose_path, render_diagnosis  # deferred
    from regbench.analysis.curves import parse_map  # deferred

    render_diagnosis(diagnose_path(target, parse_map(map_)), _console())


@app.command()
@guarded
def validate(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    set_: SetOption = None,
    plugin: PluginOption = None,
) -> None:
    """Check the config (and that every name resolves) without training."""
    from regbench.experiment import (
        config as configs,  # deferred
        plan as planning,
        validate as check,
    )

    load_plugins(plugin)
    loaded = configs.load_config(config, set_ or [])
    plan = planning.build_plan(loaded)
    search = check.describe_search(loaded, plan.experiment)
    with configs.placement_errors_located(loaded):   # a target that matches nothing
        lines, warnings = check.describe_plan(plan)
    console = _console()
    for line in lines + search:
        console.print(line, markup=False)
    for warning in plan.warnings + warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(f"[green]ok[/]: {config} is valid ({len(plan.runs)} runs)")


@app.command()
@guarded
def schema(
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Write the schema to this file instead of printing it.")] = None,
    plugin: PluginOption = None,
) -> None:
    """Print the JSON Schema of experiment YAML files, for editors that validate and complete
    them (with installed plugins' entries); the reference in words is docs/config.md."""
    from regbench.experiment.reference import schema_text  # deferred: reads the registries

    load_plugins(plugin)
    text = schema_text(plugins=True, out=out)
    if out is None:
        sys.stdout.write(text)
    else:
        _console().print(f"schema: {out}")


@app.command("list")
@guarded
def list_(
    kind: Annotated[Kind, typer.Argument(help="regularizers, datasets, models (default: all).")] = Kind.all,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown tables (for the README).")] = False,
    details: Annotated[bool, typer.Option("--details", help="Each regularizer's reference: paper, hook, exact formula and its deviations from the paper.")] = False,
    plugin: PluginOption = None,
) -> None:
    """The catalogue: each entry's parameters, defaults and meaning."""
    from regbench import catalogue  # deferred

    if plugin or catalogue.plugins_installed():   # else the stored catalogue: no torch to load
        load_plugins(plugin)
    listed = catalogue.current()
    kinds = catalogue.KINDS if kind is Kind.all else (kind.value,)
    if markdown:
        sys.stdout.write(catalogue.to_markdown(listed, kinds))
        return
    if details:
        if kind not in (Kind.all, Kind.regularizers):
            raise RegbenchError("--details describes regularizers: regbench list regularizers "
                                "--details")
        sys.stdout.write(catalogue.references(listed))
        return
    from rich.table import Table

    console = _console()
    for name in kinds:
        rows = listed["entries"][name]
        table = Table(title=name, show_lines=True)
        for column in rows[0]:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(str(v) for v in row.values()))
        console.print(table)
        if name == "regularizers":
            console.print(catalogue.batch_order_note(listed))


@app.command()
@guarded
def gallery(
    run_: Annotated[bool, typer.Option("--run", help="Train the gallery configs first (completed runs are resumed); without it the page is rebuilt from existing results.")] = False,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Train only this finding (see the page's list); repeatable.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Results root, where the page is written too (default results/gallery, or results/gallery-smoke with --smoke).")] = None,
    page: Annotated[Optional[Path], typer.Option("--page", help="Page to write (default OUT/gallery.md; maintainers: docs/gallery.md).")] = None,
    smoke: Annotated[bool, typer.Option("--smoke", help="Train every config with a 1-epoch, one-seed budget (tests the machinery, not the claims).")] = False,
) -> None:
    """Reproduce published regularization findings and rebuild the gallery page from the runs.

    Without --run or --smoke the page is rebuilt from the results under OUT; with no results
    there it exits 2 and writes nothing.
    """
    from regbench.experiment.progress import make_progress  # deferred
    from regbench.gallery.page import run_gallery  # deferred

    outcome = run_gallery(out=out, only=only, run=run_, smoke=smoke, page=page,
                          progress_factory=make_progress)
    console = _console()
    for key, verdict in outcome.verdicts.items():
        console.print(f"{key}: {verdict}", markup=False)
    console.print(f"page: {outcome.page}")
    raise typer.Exit(outcome.exit_code)


@app.command()
@guarded
def suite(
    suite_file: Annotated[Path, typer.Argument(metavar="SUITE", help="Suite YAML file: tasks "
                                               "and the recipes they share; or `default`, the "
                                               "shipped suite.")],
    out: OutOption = Path("results"),
    seeds: SeedsOption = None,
    workers: WorkersOption = 1,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    device: DeviceOption = None,
    fuse: FuseOption = None,
    resume: ResumeOption = True,
    dry_run: DryRunOption = False,
    smoke: Annotated[bool, typer.Option(
        "--smoke", help="Tiny budget for every task: 1 epoch, a few hundred samples, one seed; "
        "results go to OUT/<name>-smoke/, never over the full runs.")] = False,
    report: Annotated[bool, typer.Option(
        "--report/--no-report", help="Write the figures, suite.html and each task's "
        "report.html.")] = True,
    tune: Annotated[bool, typer.Option(
        "--tune", help="Tune each task that has a search: section as `regbench tune` does "
        "(every recipe the same --trials, chosen on validation), and aggregate its "
        "confirmation on 5 fresh seeds (OUT/<name>/tasks/<task>-tune/); other tasks train "
        "as written.")] = False,
    trials: Annotated[int, typer.Option(
        "--trials", metavar="N", help="With --tune: trials per recipe and task.")] = 20,
    page: Annotated[Optional[Path], typer.Option(
        "--page", metavar="FILE", help="Also write the answer as a Markdown page with its "
        "figures beside it (maintainers: docs/suite-default.md).")] = None,
    plugins: PluginOption = None,
    trackers: LogOption = None,
    mlflow_uri: MlflowUriOption = None,
) -> None:
    """Train every task × recipe × seed of a suite, each task an ordinary experiment folder
    (OUT/<name>/tasks/<task>/), then answer across tasks in OUT/<name>/ (suite.csv, .md, .tex,
    suite.html): per recipe, tasks won/tied/lost by each task's own verdict, the IQM and mean
    relative test-error reduction against the baseline with 95% stratified bootstrap
    intervals, the probability of improvement, a Wilcoxon signed-rank verdict over tasks (Holm
    over recipes), Friedman ranks and the training time relative to the baseline's
    (docs/suite.md says how each is computed). A rerun trains only what is new."""
    from regbench.experiment import suite as suites  # deferred: the library loads torch
    from regbench.report.suite_page import HEADER, display_rows  # deferred

    launch = make_launch(locals())
    console = _console()
    for warning in launch.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    loaded = suites.load_suite_for(suite_file, launch, smoke=smoke)
    if dry_run:
        for line in suites.plan_lines(loaded, launch):
            console.print(line, markup=False)
        return
    search = suites.Search(trials=trials) if tune else None
    command = " ".join(["regbench suite", str(suite_file), *(["--seeds", seeds] if seeds else []),
                        *(["--workers", str(workers)] if workers > 1 else []),
                        *(["--smoke"] if smoke else []),
                        *(["--tune", "--trials", str(trials)] if tune else []),
                        "--page", str(page)])
    outcome = suites.run_suite(loaded, launch, display=Terminal(console), search=search,
                               page=(page, command) if page else None)
    for warning in outcome.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if outcome.table is not None:
        from rich.table import Table

        table = Table(title=f"suite {loaded.name}: relative test-error reduction vs baseline")
        for index, column in enumerate(HEADER):
            table.add_column(column, justify="left" if index in (0, 8) else "right")
        for row in display_rows(outcome.table):
            table.add_row(*row)
        console.print()
        for sentence in outcome.table.headline:
            console.print(f"[bold]»[/] {sentence}", markup=True, highlight=False,
                          soft_wrap=not console.is_terminal)
        console.print(table)
        for note in outcome.table.notes:
            console.print(f"  • {note}", markup=False)
        console.print(f"suite: {outcome.suite_dir}")
    _exit(outcome, console, "finished runs are saved")


def main() -> None:
    """The console script: OpenMP's wait policy is chosen here, before anything loads torch."""
    choose_wait_policy()
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = app(args=debug_first(sys.argv[1:]), prog_name="regbench", standalone_mode=False)
    except KeyboardInterrupt:
        print("regbench: interrupted", file=sys.stderr)
        sys.exit(_interrupted_code())
    except typer.Abort:   # click's own Ctrl-C (e.g. at a prompt)
        print("regbench: interrupted", file=sys.stderr)
        sys.exit(_interrupted_code())
    except TyperException as exc:   # usage errors: unknown option, bad value, missing argument
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message())          # plain `regbench`: the help, as before
            sys.exit(2)
        print(f"regbench: error: {visible(exc.format_message())}"
              + _usage_hint(exc), file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)


def _usage_hint(exc) -> str:
    """'; see regbench run --help' for the command the usage error is about."""
    context = getattr(exc, "ctx", None)
    path = context.command_path if context is not None else "regbench"
    return f" (see `{path} --help`)"
