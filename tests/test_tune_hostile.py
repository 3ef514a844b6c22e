"""`regbench tune` against what it finds and what it is given: a damaged or foreign study.db
(one line, exit 2, the file byte for byte as it was), a grid or trial count too large to hold
(refused at once, in bounded memory; a grid smaller than --trials searched whole), a full disk
before and during the search (one line, nothing half-written), trials of several seeds
(`--trial-seeds`: each trial the mean of its runs), and a winner decided by a couple of
validation examples (said in the output, the notes and the report)."""
from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
from typer.testing import CliRunner

from regbench.cli import app
from regbench.errors import ConfigError
from regbench.experiment.search import SearchParam
from tests.conftest import REPO
from tests.test_bad_input import one_error_line

optuna = pytest.importorskip("optuna")
optuna.logging.set_verbosity(optuna.logging.WARNING)

runner = CliRunner()

TUNED = """\
name: tuned
seeds: [0]
dataset: {{name: digits, train_subset: 200{dataset}}}
model: {{name: mlp, hidden: [16]}}
train: {{epochs: {epochs}, batch_size: 32, optimizer: {{name: sgd, lr: 0.1}}, threads: 1}}
recipes:
  baseline: {{}}
  l2: {{l2: {{lambda: 0.1}}}}
search:
{search}"""
LAMBDA = "  recipes.l2.l2.lambda: {low: 1.0e-4, high: 1.0, log: true}\n"


def write_config(folder: Path, search: str = LAMBDA, epochs: int = 1, dataset: str = "") -> Path:
    path = folder / "tuned.yaml"
    path.write_text(TUNED.format(search=search, epochs=epochs, dataset=dataset))
    return path


def invoke(*args):
    return runner.invoke(app, ["tune", *map(str, args)])


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def study_db(path: Path, name: str = "tuned/l2", direction: str = "maximize") -> Path:
    """A real Optuna storage holding one study with a finished trial."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    study = optuna.create_study(study_name=name, storage=storage, direction=direction)
    trial = study.ask()
    study.tell(trial, 0.5)
    storage.engine.dispose()   # nothing of this process holds the file open
    return path


def random_bytes(path: Path) -> Path:
    path.write_bytes(os.urandom(5000))
    return path


def truncated(path: Path) -> Path:
    data = study_db(path).read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def not_optuna(path: Path) -> Path:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        connection.execute("INSERT INTO notes (text) VALUES ('mine')")
    connection.close()
    return path


def half_made(path: Path) -> Path:
    """An Optuna storage missing one of its tables (an older Optuna's, or cut short while
    made): opening it, Optuna would create the table."""
    study_db(path)
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TABLE trial_heartbeats")
    connection.close()
    return path


STUDY_FILES = {
    "random bytes": (random_bytes, "is not an SQLite database"),
    "truncated": (truncated, "is a damaged SQLite database"),
    "not optuna": (not_optuna, "is an SQLite database but not an Optuna storage (its tables: "
                               "notes)"),
    "half made": (half_made, "is an Optuna storage of another Optuna version, or one left "
                             "half made (no trial_heartbeats)"),
    "other experiment": (lambda p: study_db(p, name="other/l2"),
                         "holds the Optuna study 'other/l2', not a study of experiment 'tuned'"),
    "other direction": (lambda p: study_db(p, direction="minimize"),
                        "holds the study 'tuned/l2', which is to minimize its objective, but "
                        "this tune must maximize it"),
}


# ----------------------------------------------------------------------------- study.db

@pytest.mark.parametrize("case", list(STUDY_FILES))
def test_a_bad_study_db_in_the_folder_is_one_line_and_untouched(tmp_path, case):
    make, fragment = STUDY_FILES[case]
    config = write_config(tmp_path)
    folder = tmp_path / "out" / "tuned-tune"
    folder.mkdir(parents=True)
    study = make(folder / "study.db")
    before = files(folder)
    result = invoke(config, "--trials", 2, "--out", tmp_path / "out")
    one_error_line(result, 2, f"{study}: ", fragment, "regbench leaves it as it is",
                   "move it away, or start over with --fresh")
    assert files(folder) == before          # byte for byte, and nothing beside it


@pytest.mark.parametrize("case", ["random bytes", "truncated", "not optuna", "other direction"])
def test_a_bad_storage_file_is_one_line_and_untouched(tmp_path, case):
    make, fragment = STUDY_FILES[case]
    config = write_config(tmp_path)
    study = make(tmp_path / "shared.db")
    before = study.read_bytes()
    result = invoke(config, "--trials", 2, "--storage", f"sqlite:///{study}",
                    "--out", tmp_path / "out")
    one_error_line(result, 2, f"{study}: ", fragment, "move it away, or pass another --storage")
    assert study.read_bytes() == before
    assert not (tmp_path / "out").exists()


def test_an_empty_study_db_and_a_study_db_of_this_tune_are_used(tmp_path):
    """What the checks let through: an empty file (SQLite's empty database), and the study.db
    a tune of the same experiment left (resumed, not refused)."""
    config = write_config(tmp_path)
    folder = tmp_path / "out" / "tuned-tune"
    folder.mkdir(parents=True)
    (folder / "study.db").write_bytes(b"")
    first = invoke(config, "--trials", 1, "--confirm-seeds", 2, "--out", tmp_path / "out",
                   "--no-report")
    assert first.exit_code == 0, first.output
    again = invoke(config, "--trials", 2, "--confirm-seeds", 2, "--out", tmp_path / "out",
                   "--no-report")
    assert again.exit_code == 0, again.output
    study = optuna.load_study(study_name="tuned/l2", storage=f"sqlite:///{folder / 'study.db'}")
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "COMPLETE"]


def test_a_study_db_left_with_a_hot_journal_is_checked_on_a_copy(tmp_path):
    """A writer killed mid-transaction leaves study.db-journal, which SQLite rolls back on the
    next write: a read-only check cannot open it, so it reads a rolled-back copy, and the file
    and its journal stay as they were for Optuna to recover."""
    from regbench.experiment.tune import check_study_file

    study = study_db(tmp_path / "study.db")
    killed = ("import os, signal, sqlite3\n"
              f"c = sqlite3.connect({str(study)!r}, isolation_level=None)\n"
              "c.execute('PRAGMA cache_size=2')\nc.execute('BEGIN EXCLUSIVE')\n"
              "c.execute('CREATE TABLE filler (x BLOB)')\n"
              "for _ in range(300): c.execute('INSERT INTO filler VALUES (randomblob(3000))')\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", killed], timeout=60)
    journal = tmp_path / "study.db-journal"
    assert journal.stat().st_size > 0
    before = files(tmp_path)
    check_study_file(f"sqlite:///{study}", {"tuned/l2": "maximize"}, "tuned")
    assert files(tmp_path) == before
    with pytest.raises(ConfigError, match="which is to maximize its objective"):
        check_study_file(f"sqlite:///{study}", {"tuned/l2": "minimize"}, "tuned")


# ----------------------------------------------------------------------------- grid size

MEASURED = """\
import resource, sys, time
from typer.testing import CliRunner
from regbench.cli import app
import optuna, torch, regbench.experiment.tune   # imported before the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
result = CliRunner().invoke(app, sys.argv[1:])
seconds = time.perf_counter() - started
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
print(f"{result.exit_code} {grown} {seconds:.2f}")
print(result.output)
"""


def cap_memory():
    """A guard, not the measure: a regression fails on MemoryError instead of taking the
    machine's memory (torch's import alone maps a few GiB of address space)."""
    resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, 8 * 2**30))


def test_a_huge_grid_is_refused_at_once_in_bounded_memory(tmp_path):
    config = write_config(tmp_path)
    command = [sys.executable, "-c", MEASURED, "tune", str(config), "--sampler", "grid",
               "--trials", "100000000", "--out", str(tmp_path / "out")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120,
                            preexec_fn=cap_memory)
    assert result.returncode == 0, result.stderr[-3000:]
    head, *output = result.stdout.splitlines()
    code, grown_mb, seconds = head.split()
    assert code == "2", result.stdout
    errors = [line for line in output if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("regbench: error: --sampler: l2: "), errors
    assert "has 100,000,000 points, more than the grid sampler's 100,000" in errors[0]
    assert "use --sampler qmc or random" in errors[0]
    assert int(grown_mb) < 200, f"the refusal grew the process by {grown_mb} MB"
    assert float(seconds) < 10
    assert not (tmp_path / "out").exists()


def test_a_grid_of_many_choices_is_refused_whatever_the_trials(tmp_path):
    # 50 × 50 × 50 = 125,000 points from three lists of choices, with --trials 4
    lambdas = ", ".join(f"{(i + 1) / 1000:g}" for i in range(50))
    rates = ", ".join(f"{(i + 1) / 500:g}" for i in range(50))
    config = write_config(tmp_path, search=(
        f"  recipes.l2.l2.lambda: {{choices: [{lambdas}]}}\n"
        f"  recipes.l2.train.optimizer.lr: {{choices: [{rates}]}}\n"
        f"  recipes.l2.train.epochs: {{choices: [{', '.join(map(str, range(1, 51)))}]}}\n"))
    result = invoke(config, "--sampler", "grid", "--trials", 4, "--out", tmp_path / "out")
    one_error_line(result, 2, "--sampler: l2: the grid for --trials 4 over lambda, lr, epochs "
                   "has 125,000 points, more than the grid sampler's 100,000")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("param", [
    SearchParam("x", choices=(1, 2, 3)),
    SearchParam("x", low=0.0, high=1.0),
    SearchParam("x", low=1.0e-4, high=1.0, log=True),
    SearchParam("x", low=1, high=5, integer=True),
    SearchParam("x", low=1, high=40, integer=True, step=3),
    SearchParam("x", low=0.1, high=1.0, step=0.25),
], ids=repr)
@pytest.mark.parametrize("points", [2, 3, 7, 50])
def test_a_grid_is_counted_as_it_is_built(param, points):
    assert param.grid_size(points) == len(param.grid(points))


def test_trials_beyond_a_small_grid_search_it_once(tmp_path):
    config = write_config(tmp_path, search="  recipes.l2.l2.lambda: {choices: [0.001, 0.1]}\n")
    result = invoke(config, "--sampler", "grid", "--trials", 5, "--confirm-seeds", 2,
                    "--out", tmp_path / "out", "--no-report")
    assert result.exit_code == 0, result.output
    assert "l2: its grid has 2 point(s), fewer than --trials 5: it is searched whole in 2 " \
        "trial(s)" in " ".join(result.output.split())
    folder = tmp_path / "out" / "tuned-tune"
    study = optuna.load_study(study_name="tuned/l2", storage=f"sqlite:///{folder / 'study.db'}")
    assert sorted(t.params["recipes.l2.l2.lambda"] for t in study.get_trials()) == [0.001, 0.1]
    assert sorted(p.name for p in (folder / "search" / "runs").iterdir()) == \
        ["l2__trial=0__seed=0", "l2__trial=1__seed=0"]
    tuning = json.loads((folder / "tuning.json").read_text())
    assert tuning["recipes"]["l2"]["budget"] == 2
    assert "2 trials (its whole grid), grid" in (folder / "comparison.md").read_text()


# ----------------------------------------------------------------------------- full disk

def limited_file_size(limit: int):
    """A file-size limit makes the kernel refuse writes past it (EFBIG), as a full disk does
    (ENOSPC): SQLite reports a disk I/O error (see tests/test_bad_input.py)."""
    def set_limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG from write(), not a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return set_limit


def tune_process(config: Path, out: Path, *extra: str, limit: Optional[int] = None):
    command = [sys.executable, "-m", "regbench", "tune", str(config), "--out", str(out),
               "--confirm-seeds", "2", "--pruner", "none", "--no-report", *extra]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                          preexec_fn=None if limit is None else limited_file_size(limit))


def error_line(process) -> str:
    """The one error line, last (after the progress lines of the runs trained before)."""
    assert "Traceback" not in process.stderr, process.stderr
    lines = [line for line in process.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("regbench: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], process.stderr
    return errors[0]


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith((".tmp", "-journal"))]


@pytest.mark.parametrize("shared", [False, True], ids=["study.db", "--storage"])
def test_a_full_disk_before_the_search_leaves_nothing(tmp_path, shared):
    # an Optuna study.db is ~110 kB once its tables are made: it cannot be made under 50 kB
    config = write_config(tmp_path)
    storage = tmp_path / "shared.db"
    extra = ["--storage", f"sqlite:///{storage}"] if shared else []
    process = tune_process(config, tmp_path / "out", "--trials", "2", *extra, limit=50_000)
    assert process.returncode == 2, process.stderr
    line = error_line(process)
    if shared:
        assert "--storage: cannot open the Optuna storage" in line and "disk I/O error" in line
        assert not storage.exists() and not (tmp_path / "out").exists()
    else:
        assert f"{tmp_path / 'out' / 'tuned-tune' / 'study.db'}: cannot open the Optuna " \
               "study (disk I/O error); nothing was trained and nothing is left; free space" \
            in line
        assert not (tmp_path / "out" / "tuned-tune").exists()
    assert not leftovers(tmp_path)


def test_a_full_disk_during_the_search_is_one_line_and_resumes(tmp_path):
    # the study.db may hold Optuna's tables and not a byte more: the trials' rows fill their
    # pages (four searched keys: four rows a trial), then a write fails in mid-search
    scratch = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'scratch.db'}")
    scratch.engine.dispose()
    config = write_config(tmp_path, search=LAMBDA + (
        "  recipes.l2.train.optimizer.lr: {low: 1.0e-3, high: 0.3, log: true}\n"
        "  recipes.l2.train.batch_size: {low: 16, high: 64}\n"
        "  recipes.l2.train.optimizer.momentum: {low: 0.0, high: 0.9}\n"))
    folder = tmp_path / "out" / "tuned-tune"
    study = folder / "study.db"
    full = tune_process(config, tmp_path / "out", "--trials", "12",
                        limit=(tmp_path / "scratch.db").stat().st_size)
    assert full.returncode == 1, full.stderr
    line = error_line(full)
    assert f"{study}: cannot write the Optuna study (disk I/O error); the trials told before " \
           "are kept in it" in line and "free space" in line and "run the same command again" \
        in line
    assert not leftovers(tmp_path)
    with sqlite3.connect(f"{study.as_uri()}?mode=ro", uri=True) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.close()
    assert not (folder / "tuning.json").exists()      # written at the end, never half-way
    done = optuna.load_study(study_name="tuned/l2", storage=f"sqlite:///{study}").get_trials()
    assert 1 < sum(t.state.name == "COMPLETE" for t in done) < 12   # it failed mid-search
    resumed = tune_process(config, tmp_path / "out", "--trials", "12")
    assert resumed.returncode == 0, resumed.stderr
    trials = [t for t in optuna.load_study(study_name="tuned/l2",
                                           storage=f"sqlite:///{study}").get_trials()
              if not t.user_attrs.get("surplus")]
    assert len(trials) == 12 and all(t.state.name == "COMPLETE" for t in trials)


# ----------------------------------------------------------------------------- --trial-seeds

def summaries(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in folder.glob("runs/*/summary.json")]


def test_trial_seeds_train_k_runs_per_trial_and_tell_their_mean(tmp_path):
    config = write_config(tmp_path, epochs=2)
    result = invoke(config, "--trials", 2, "--trial-seeds", 2, "--confirm-seeds", 2,
                    "--out", tmp_path / "out", "--no-report")
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "(search seeds 0–1, each trial the mean of 2 runs)" in output
    assert "2 trials × 2 seeds = 4 runs, TPE" in output
    folder = tmp_path / "out" / "tuned-tune"
    runs = summaries(folder / "search")
    assert sorted(s["run_id"] for s in runs) == [f"l2__trial={t}__seed={s}" for t in (0, 1)
                                                 for s in (0, 1)]
    assert all(s["status"] == "completed" and s["test_withheld"] for s in runs)
    study = optuna.load_study(study_name="tuned/l2", storage=f"sqlite:///{folder / 'study.db'}")
    for trial in study.get_trials():
        mine = [s["val_accuracy"] for s in runs if s["sweep"]["trial"] == trial.number]
        assert len(mine) == 2
        assert trial.value == pytest.approx(sum(mine) / 2, abs=1e-12)
        assert trial.intermediate_values == {}     # not reported epoch by epoch: no pruning
    # the confirmation never reuses a search seed
    assert {s["seed"] for s in summaries(folder)} == {2, 3}
    tuning = json.loads((folder / "tuning.json").read_text())
    assert tuning["trial_seeds"] == 2 and tuning["pruner"] == "none"
    assert tuning["search_seeds"] == [0, 1]
    assert "2 trials × 2 seeds = 4 runs" in (folder / "comparison.md").read_text()
    # another --trial-seeds cannot continue these trials
    again = invoke(config, "--trials", 2, "--out", tmp_path / "out")
    one_error_line(again, 2, "--trial-seeds: ", "was tuned with trial_seeds 2")


@pytest.mark.parametrize("args, fragment", [
    (["--trial-seeds", 2, "--pruner", "median"], "--pruner: a trial of --trial-seeds 2 is the "
                                                 "mean of 2 runs"),
    (["--trial-seeds", 0], "--trial-seeds: must be a whole number, at least 1 (got 0)"),
    (["--trial-seeds", 101], "--trial-seeds: at most 100 (got 101)"),
])
def test_bad_trial_seeds_are_one_line(tmp_path, args, fragment):
    config = write_config(tmp_path)
    one_error_line(invoke(config, *args, "--out", tmp_path / "out"), 2, fragment)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- small data

def validation_size(config: Path) -> int:
    """How many validation examples the config's split holds, from the data module itself."""
    from regbench.data import load_bundle
    from regbench.experiment.config import load_config
    from regbench.experiment.plan import build_plan

    experiment = build_plan(load_config(config)).experiment
    return load_bundle(experiment["dataset"], experiment["train"]["train_eval_samples"]) \
        .meta["n_val"]


@pytest.mark.parametrize("search, close", [
    ("recipes.l2.l2.lambda: {choices: [1.0e-6, 2.0e-6]}", True),
    ("recipes.l2.train.optimizer.lr: {choices: [1.0e-5, 0.2]}", False),
], ids=["two-near-settings", "far-apart"])
def test_a_choice_decided_by_a_couple_of_validation_examples_is_flagged(tmp_path, search,
                                                                        close):
    config = write_config(tmp_path, search=f"  {search}\n", epochs=3,
                          dataset=", val_fraction: 0.03")
    result = invoke(config, "--sampler", "grid", "--trials", 2, "--confirm-seeds", 2,
                    "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / "tuned-tune"
    n_val = validation_size(config)
    assert n_val < 60
    # independently: the two trials' validation accuracies, as counts of examples
    values = sorted(json.loads(p.read_text())["val_accuracy"]
                    for p in (folder / "search" / "runs").glob("*/summary.json"))
    apart = round((values[1] - values[0]) * n_val)
    assert (apart < 3) == close, (values, n_val)
    output = " ".join(result.output.split())
    notes = (folder / "comparison.md").read_text()
    report = (folder / "report.html").read_text()
    if close:
        assert "warning: l2: the chosen trial" in output
        assert (f"on validation accuracy over {n_val} examples" if apart == 0
                else f"by {apart} of {n_val} validation examples") in output
        assert "fewer than 3 examples apart is within noise" in output
        assert (f"tied with the runner-up on {n_val} validation examples" if apart == 0 else
                f"won by {apart} of {n_val} validation examples over the runner-up") + \
            ": within noise" in notes
        assert "Close call, l2" in report and "fewer than 3 examples apart" in report
    else:
        assert "within noise" not in output + notes and "Close call" not in report
