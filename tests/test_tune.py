"""`regbench tune`: the same number of trials for every recipe in a real Optuna SQLite study,
chosen on validation only, confirmed on fresh seeds; resumable after SIGKILL; parallel through
worker processes and a real local Ray; bad search spaces refused before anything is written."""
from __future__ import annotations

import base64
import json
import math
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from regbench.engine import train as train_module
from regbench.errors import RegbenchError
from regbench.experiment.launch import Launch
from regbench.experiment.tune import Search, tune_experiment
from tests.conftest import REPO

optuna = pytest.importorskip("optuna")


def tune(config, **options):
    """tune_experiment with keyword options split as the CLI splits them (Search: trials,
    sampler, pruner, storage, trial_seeds; the rest is the Launch)."""
    search = {key: options.pop(key) for key in ("trials", "sampler", "pruner", "storage",
                                                "trial_seeds") if key in options}
    return tune_experiment(config, Launch(**options), Search(**search))

TUNED = """\
name: tuned
seeds: [0]
dataset: {{name: digits, train_subset: 300, val_fraction: 0.2}}
model: {{name: mlp, hidden: [32]}}
train: {{epochs: {epochs}, batch_size: 32, optimizer: {{name: sgd, lr: 0.1}}, threads: 1}}
recipes:
  baseline: {{}}
  l2: {{l2: {{lambda: 0.1}}}}
  dropout: {{dropout: {{p: 0.5}}}}
search:
  recipes.l2.l2.lambda: {{low: 1.0e-4, high: 1.0, log: true}}
  recipes.dropout.dropout.p: {{low: 0.0, high: 0.8}}
"""


def study_trials(results: Path, recipe: str, name: str = "tuned"):
    storage = f"sqlite:///{results / 'study.db'}"
    return optuna.load_study(study_name=f"{name}/{recipe}", storage=storage).get_trials()


def trial_folders(results: Path) -> dict[str, dict]:
    runs = results / "search" / "runs"
    return {p.name: json.loads((p / "summary.json").read_text()) for p in runs.iterdir()
            if (p / "summary.json").exists()}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """tune baseline + l2 + dropout, 6 trials each, 3 confirm seeds; every call that measured
    the test split is recorded with the run it belonged to."""
    folder = tmp_path_factory.mktemp("tune")
    config = folder / "tuned.yaml"
    config.write_text(TUNED.format(epochs=5))
    tested: list[dict] = []
    original = train_module.run_summary

    def spy(trainer, rows, status, chosen, seconds):
        summary = original(trainer, rows, status, chosen, seconds)
        if summary.get("test_accuracy") is not None:
            tested.append(dict(trainer.spec))
        return summary

    train_module.run_summary = spy
    try:
        outcome = tune(config, trials=6, confirm_seeds=3, out=folder / "out")
    finally:
        train_module.run_summary = original
    return outcome, folder / "out" / "tuned-tune", tested, config


def test_every_recipe_gets_exactly_the_same_trials(tuned):
    outcome, results, _, _ = tuned
    assert outcome.exit_code == 0
    folders = trial_folders(results)
    for recipe in ("l2", "dropout"):
        trials = study_trials(results, recipe)
        assert len(trials) == 6
        assert sorted(t.number for t in trials) == list(range(6))
        assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
        mine = [name for name in folders if name.startswith(f"{recipe}__trial=")]
        assert sorted(mine) == sorted(f"{recipe}__trial={n}__seed=0" for n in range(6))
        # every trial trained the value the study drew (rounded to 4 significant digits)
        for trial in trials:
            summary = folders[f"{recipe}__trial={trial.number}__seed=0"]
            (path, drawn), = trial.params.items()
            assert math.isclose(summary["sweep_paths"][path], drawn, rel_tol=5e-4)
    # the baseline searches nothing: no study, no trial; trained once per confirm seed
    assert not any(name.startswith("baseline") for name in folders)
    with pytest.raises(KeyError):
        study_trials(results, "baseline")


def test_confirm_runs_use_fresh_seeds_and_make_the_table(tuned):
    _, results, _, _ = tuned
    search_seeds = {s["seed"] for s in trial_folders(results).values()}
    confirm = {p.name: json.loads((p / "summary.json").read_text())
               for p in (results / "runs").iterdir()}
    confirm_seeds = {s["seed"] for s in confirm.values()}
    assert search_seeds == {0}
    assert confirm_seeds == {1, 2, 3}
    assert {s["recipe"] for s in confirm.values()} == {"baseline", "l2", "dropout"}
    assert len(confirm) == 9
    table = pd.read_csv(results / "comparison.csv")
    assert set(table["recipe"]) == {"baseline", "l2", "dropout"}
    assert (table["seeds"] == 3).all()
    # each row's test mean is the mean over the confirm runs of that recipe, and nothing else
    for row in table.to_dict("records"):
        runs = [s for s in confirm.values() if s["recipe"] == row["recipe"]]
        mean = sum(s["test_accuracy"] for s in runs) / len(runs)
        assert row["test_accuracy"] == pytest.approx(mean, abs=1e-6)


def test_choice_is_the_best_validation_trial(tuned):
    # an independent reading of the trial folders: best val accuracy, ties to lower val loss
    _, results, _, _ = tuned
    tuning = json.loads((results / "tuning.json").read_text())
    folders = trial_folders(results)
    confirm = [json.loads((p / "summary.json").read_text()) for p in (results / "runs").iterdir()]
    for recipe in ("l2", "dropout"):
        done = [s for name, s in folders.items()
                if name.startswith(f"{recipe}__") and s["status"] == "completed"]
        best = min(done, key=lambda s: (-s["val_accuracy"], s["val_loss"], s["sweep"]["trial"]))
        assert tuning["recipes"][recipe]["chosen"]["number"] == best["sweep"]["trial"]
        values = {k: v for k, v in best["sweep_paths"].items()}
        (path, value), = values.items()
        retrained = {s["sweep_paths"][path] for s in confirm if s["recipe"] == recipe}
        assert retrained == {value}


def test_test_split_is_never_measured_before_the_confirmation(tuned):
    _, results, tested, _ = tuned
    # every test measurement belongs to a confirm run: none to a trial, whatever selects
    assert tested, "the confirmation measures the test split"
    assert all("trial" not in spec and spec["seed"] in (1, 2, 3) for spec in tested)
    for summary in trial_folders(results).values():
        assert summary["test_withheld"] is True
        assert all(summary[k] is None for k in summary if k.startswith("test_") and
                   k != "test_withheld")


def test_outputs_name_the_choice_and_the_budget(tuned):
    _, results, _, _ = tuned
    notes = (results / "comparison.md").read_text()
    tuning = json.loads((results / "tuning.json").read_text())
    for recipe in ("l2", "dropout"):
        record = tuning["recipes"][recipe]
        (path, value), = record["chosen"]["params"].items()
        name = path.split(".")[-1]
        # the budget, then a close call when the winner was fewer than 3 examples ahead
        assert f"{recipe} {name}={value} (6 trials, TPE, pruned {record['pruned']}" in notes
        said = notes.split(f"{recipe} {name}={value} (")[1].split(")")[0]
        assert ("within noise" in said) == (record["margin"]["examples"] < 3 - 1e-6)
        assert (results / "plots" / f"sensitivity__{recipe}.png").stat().st_size > 1000
    report = (results / "report.html").read_text()
    assert "<h2>Tuning</h2>" in report and 'alt="sensitivity: l2"' in report
    trials = pd.read_csv(results / "trials.csv")
    assert len(trials) == 12 and trials["chosen"].sum() == 2


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium "
                    "at /usr/bin/chromium to render report.html (apt-get install chromium)")
def test_tuning_section_renders_in_headless_chromium(tuned, tmp_path):
    _, results, _, _ = tuned
    dom = subprocess.run(["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
                          "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                          "--dump-dom", (results / "report.html").resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    section = page[page.index("<section id=\"tuning\">"):]
    assert "6 trials drawn by TPE" in section and "fresh seeds 1–3" in section
    images = re.findall(r'alt="sensitivity: (\w+)" src="data:image/png;base64,([^"]+)"', section)
    assert sorted(name for name, _ in images) == ["dropout", "l2"]
    for _, data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_trains_nothing_more(tuned):
    outcome, results, _, config = tuned
    before = {p: p.stat().st_mtime_ns for p in results.rglob("summary.json")}
    again = tune(config, trials=6, confirm_seeds=3, out=results.parent,
                            report=False)
    assert again.trained == 0 and again.exit_code == 0
    assert sorted(again.confirmation.skipped) == sorted(p.name for p in (results / "runs").iterdir())
    assert {p: p.stat().st_mtime_ns for p in results.rglob("summary.json")} == before


def test_a_changed_config_is_not_continued(tuned, tmp_path):
    _, results, _, config = tuned
    changed = tmp_path / "tuned.yaml"
    changed.write_text(TUNED.format(epochs=4))
    before = (results / "study.db").read_bytes()
    with pytest.raises(RegbenchError, match="was made for another config"):
        tune(changed, trials=6, confirm_seeds=3, out=results.parent)
    assert (results / "study.db").read_bytes() == before


# ----------------------------------------------------------------------------- pruning

def test_hopeless_trials_are_pruned_on_their_curve(tmp_path):
    config = tmp_path / "prune.yaml"
    config.write_text(TUNED.format(epochs=6).replace(
        "  recipes.dropout.dropout.p: {low: 0.0, high: 0.8}\n",
        "  recipes.l2.train.optimizer.lr: {choices: [1.0e-6, 0.1]}\n").replace(
        "  dropout: {dropout: {p: 0.5}}\n", ""))
    outcome = tune(config, trials=12, confirm_seeds=2, sampler="random",
                              out=tmp_path, report=False)
    assert outcome.exit_code == 0
    trials = study_trials(tmp_path / "tuned-tune", "l2")
    folders = trial_folders(tmp_path / "tuned-tune")
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned, "the median pruner stops some lr=1e-6 trials"
    for trial in trials:
        summary = folders[f"l2__trial={trial.number}__seed=0"]
        lr = trial.params["recipes.l2.train.optimizer.lr"]
        if trial.state.name == "PRUNED":
            assert summary["status"] == "pruned" and lr == 1.0e-6
            assert summary["stopped_epoch"] < 6 and "pruned after epoch" in summary["stop_reason"]
        else:
            assert summary["status"] == "completed" and summary["stopped_epoch"] == 6
        # what the study holds per epoch is the run folder's val curve
        curve = pd.read_csv(tmp_path / "tuned-tune" / "search" / "runs" /
                            f"l2__trial={trial.number}__seed=0" / "metrics.csv")
        for epoch, value in trial.intermediate_values.items():
            assert curve.loc[curve["epoch"] == epoch, "val_accuracy"].item() == \
                pytest.approx(value, abs=1e-6)


# ----------------------------------------------------------------------------- kill and resume

def test_sigkill_mid_study_then_resume(tmp_path):
    config = tmp_path / "tuned.yaml"
    config.write_text(TUNED.format(epochs=30))
    command = [sys.executable, "-m", "regbench", "tune", str(config), "--trials", "6",
               "--confirm-seeds", "2", "--pruner", "none", "--out", str(tmp_path),
               "--no-report"]
    results = tmp_path / "tuned-tune"
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120

    def finished() -> int:
        folder = results / "search" / "runs"
        if not folder.exists():
            return 0
        return sum((p / "summary.json").exists() for p in folder.iterdir())

    def training() -> bool:
        """Whether the study holds a trial in flight whose value is drawn (each recipe
        searches one key): a trial killed before that is set aside and replaced on resume, not
        what this test is about. Read without writing (the process is paused: a read that
        meets its lock is a no for now)."""
        try:
            with sqlite3.connect(f"file:{results / 'study.db'}?mode=ro", uri=True,
                                 timeout=0.5) as db:
                return bool(db.execute(
                    "SELECT count(*) FROM trials JOIN trial_params USING (trial_id) "
                    "WHERE trials.state = 'RUNNING'").fetchone()[0])
        except sqlite3.Error:
            return False

    # kill while a trial trains: the process is paused (SIGSTOP) to look, so that a fast
    # machine cannot finish the trial between the look and the kill (waiting a fixed 0.3 s
    # after the third trial sometimes landed between two trials); if no trial is in flight at
    # that moment, it goes on (SIGCONT) and is looked at again
    while process.poll() is None and time.monotonic() < deadline:
        if finished() >= 3:
            process.send_signal(signal.SIGSTOP)
            if training():
                break
            process.send_signal(signal.SIGCONT)
        time.sleep(0.02)
    assert process.poll() is None, process.stderr.read()
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = {p.parent.name: p.stat().st_mtime_ns
                   for p in (results / "search" / "runs").glob("*/summary.json")}
    states = [t.state.name for r in ("l2", "dropout") for t in study_trials(results, r)]
    assert "RUNNING" in states     # the trial that was training when the process died
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    for recipe in ("l2", "dropout"):
        trials = study_trials(results, recipe)
        assert sorted(t.number for t in trials) == list(range(6))
        assert all(t.state.name == "COMPLETE" for t in trials)
    after = {p.parent.name: p.stat().st_mtime_ns
             for p in (results / "search" / "runs").glob("*/summary.json")}
    assert len(after) == 12
    assert all(after[name] == stamp for name, stamp in done_before.items())  # not retrained


# ----------------------------------------------------------------------------- parallel

def check_parallel(tmp_path, **options):
    config = tmp_path / "tuned.yaml"
    config.write_text(TUNED.format(epochs=3))
    outcome = tune(config, trials=3, confirm_seeds=2, out=tmp_path, report=False,
                              **options)
    assert outcome.exit_code == 0
    results = tmp_path / "tuned-tune"
    for recipe in ("l2", "dropout"):
        trials = study_trials(results, recipe)
        assert sorted(t.number for t in trials) == [0, 1, 2]
        assert all(t.state.name == "COMPLETE" for t in trials)
    assert len(trial_folders(results)) == 6
    assert len(list((results / "runs").iterdir())) == 6
    # trials are asked as workers free up, not all at once: the last one to start began after
    # the first one had finished (the sampler saw it)
    trials = [t for r in ("l2", "dropout") for t in study_trials(results, r)]
    first_done = min(t.datetime_complete for t in trials)
    assert max(t.datetime_start for t in trials) >= first_done


def test_trials_on_two_worker_processes(tmp_path):
    check_parallel(tmp_path, workers=2)


def test_trials_as_ray_tasks(tmp_path):
    pytest.importorskip("ray", reason="the optional 'ray' extra is not installed "
                                      "(pip install -e '.[ray]')")
    check_parallel(tmp_path, executor="ray")


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("line, expected", [
    ("  recipes.l2.l2.lamda: {low: 1.0e-3, high: 1.0}",
     "search.recipes.l2.l2.lamda: 'lamda' matches no setting of recipes.l2.l2 (did you mean "
     "'lambda'?)"),
    ("  recipes.dropout.dropout.p: {low: 0.0, high: 1.5}",
     "search.recipes.dropout.dropout.p.high: high 1.5 is not a value this setting takes"),
    ("  recipes.l2.l2.lambda: {low: 0.0, high: 1.0, log: true}",
     "log: true needs low > 0"),
    ("  model.hidden: {choices: [16, 32]}", "'model.hidden' is shared by every recipe"),
    ("  recipes.l2.l2.lambda: {low: 1.0, high: 0.1}", "low must be below high"),
])
def test_bad_search_space_is_a_located_error(tmp_path, line, expected):
    config = tmp_path / "bad.yaml"
    text = TUNED.format(epochs=2)
    config.write_text(text[:text.index("search:")] + "search:\n" + line + "\n")
    result = subprocess.run([sys.executable, "-m", "regbench", "tune", str(config), "--out",
                             str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert f"{config}:11:" in result.stderr and expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_tune_needs_a_search_and_refuses_a_sweep(tmp_path):
    config = tmp_path / "none.yaml"
    text = TUNED.format(epochs=2)
    config.write_text(text[:text.index("search:")])
    with pytest.raises(RegbenchError, match="nothing to tune"):
        tune(config, out=tmp_path / "out")
    config.write_text(text + "sweep:\n  recipes.l2.l2.lambda: [0.1, 1.0]\n")
    with pytest.raises(RegbenchError, match="not from a sweep grid"):
        tune(config, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- other spaces

def test_each_recipe_tunes_its_own_learning_rate(tmp_path):
    config = tmp_path / "lr.yaml"
    text = TUNED.format(epochs=2)
    config.write_text(text[:text.index("search:")] + "search:\n"
                      "  train.optimizer.lr: {choices: [0.02, 0.2]}\n")
    outcome = tune(config, trials=2, confirm_seeds=2, sampler="grid", out=tmp_path,
                              report=False)
    assert outcome.exit_code == 0
    results = tmp_path / "tuned-tune"
    tuning = json.loads((results / "tuning.json").read_text())
    for recipe in ("baseline", "l2", "dropout"):     # the baseline too: lr is everyone's
        trials = study_trials(results, recipe)
        assert sorted(t.params["train.optimizer.lr"] for t in trials) == [0.02, 0.2]
        chosen = tuning["recipes"][recipe]["chosen"]["params"]["train.optimizer.lr"]
        for summary_path in (results / "runs").glob(f"{recipe}__*/summary.json"):
            run = json.loads(summary_path.read_text())
            config_text = (summary_path.parent / "config.yaml").read_text()
            assert run["sweep_paths"] == {f"recipes.{recipe}.train.optimizer.lr": chosen}
            assert f"lr: {chosen}" in config_text


def test_a_shared_storage_is_joined_not_duplicated(tmp_path):
    config = tmp_path / "tuned.yaml"
    config.write_text(TUNED.format(epochs=2))
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    first = tune(config, trials=2, confirm_seeds=2, storage=shared,
                            out=tmp_path / "a", report=False)
    assert first.trained == 4 and not (tmp_path / "a" / "tuned-tune" / "study.db").exists()
    # a second process (another machine, another --out) joins the study: its trials are done
    second = tune(config, trials=2, confirm_seeds=2, storage=shared,
                             out=tmp_path / "b", report=False)
    assert second.trained == 0 and second.exit_code == 0
    assert second.recipes["l2"]["chosen"] == first.recipes["l2"]["chosen"]
    with pytest.raises(RegbenchError, match="never deleted by regbench"):
        tune(config, trials=2, storage=shared, out=tmp_path / "a", resume=False)
    assert (tmp_path / "a" / "tuned-tune" / "tuning.json").exists()


# ----------------------------------------------------------------------------- resume edge cases

def test_a_trial_left_running_by_another_host_is_trained_again(tmp_path):
    # the folder's own study.db is locked with the folder: whatever was RUNNING when the
    # last tune stopped (on another node after a requeue, say) is stale and trained again
    config = tmp_path / "tuned.yaml"
    config.write_text(TUNED.format(epochs=2))
    tune(config, trials=2, confirm_seeds=2, out=tmp_path, report=False)
    results = tmp_path / "tuned-tune"
    study = optuna.load_study(study_name="tuned/l2", storage=f"sqlite:///{results / 'study.db'}")
    orphan = study.ask({"recipes.l2.l2.lambda": optuna.distributions.FloatDistribution(
        1e-4, 1.0, log=True)})
    orphan.set_user_attr("host", "node-7")
    orphan.set_user_attr("pid", 1)
    outcome = tune(config, trials=3, confirm_seeds=2, out=tmp_path, report=False)
    assert outcome.exit_code == 0
    trials = study_trials(results, "l2")
    assert sorted(t.number for t in trials) == [0, 1, 2]     # no fourth trial asked
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert (results / "search" / "runs" / "l2__trial=2__seed=0" / "summary.json").exists()
    assert len(study_trials(results, "dropout")) == 3


def test_a_resume_keeps_the_budget_and_sampler(tmp_path):
    config = tmp_path / "tuned.yaml"
    config.write_text(TUNED.format(epochs=2))
    tune(config, trials=2, confirm_seeds=2, out=tmp_path, report=False)
    with pytest.raises(RegbenchError, match="--trials can grow on a resume, not shrink"):
        tune(config, trials=1, confirm_seeds=2, out=tmp_path)
    with pytest.raises(RegbenchError, match="was tuned with sampler tpe"):
        tune(config, trials=2, confirm_seeds=2, sampler="random", out=tmp_path)


def test_a_bad_storage_is_refused_before_anything_is_written(tmp_path):
    config = tmp_path / "tuned.yaml"
    config.write_text(TUNED.format(epochs=2))
    for url in ("garbage", f"sqlite:///{tmp_path / 'missing' / 'x.db'}"):
        result = subprocess.run([sys.executable, "-m", "regbench", "tune", str(config),
                                 "--storage", url, "--out", str(tmp_path / "out")], cwd=REPO,
                                capture_output=True, text=True)
        assert result.returncode == 2, result.stderr
        assert "--storage" in result.stderr and "cannot open the Optuna storage" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_one_setting_searched_twice_is_refused(tmp_path):
    config = tmp_path / "twice.yaml"
    text = TUNED.format(epochs=2)
    config.write_text(text + "  train.optimizer.lr: {low: 0.01, high: 0.1}\n"
                      "  recipes.l2.train.optimizer.lr: {low: 0.01, high: 0.1}\n")
    with pytest.raises(RegbenchError, match="would search this setting twice"):
        tune(config, out=tmp_path / "out")


def test_results_lock_is_reentrant_in_one_process_only(tmp_path):
    from regbench.results import ResultsLock

    folder = tmp_path / "x"
    with ResultsLock(folder):
        with ResultsLock(folder):     # tune's confirmation writes into its own folder
            pass
        assert (tmp_path / ".x.lock").exists()     # still held by the outer one
        code = ("import sys; from pathlib import Path; from regbench.results import "
                f"ResultsLock\ntry:\n  ResultsLock(Path({str(folder)!r})).__enter__()\n"
                "except Exception as e: print(e); sys.exit(3)")
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert other.returncode == 3 and "in use by regbench pid" in other.stdout
    assert not (tmp_path / ".x.lock").exists()


def test_a_recipe_whose_trials_all_fail_is_named_and_fails_the_command(tmp_path):
    config = tmp_path / "diverge.yaml"
    text = TUNED.format(epochs=2)
    config.write_text(text[:text.index("search:")] + "search:\n"
                      "  recipes.l2.train.optimizer.lr: {choices: [1.0e+12]}\n"
                      "  recipes.dropout.dropout.p: {low: 0.0, high: 0.8}\n")
    outcome = tune(config, trials=2, confirm_seeds=2, out=tmp_path, report=False)
    assert outcome.exit_code == 1 and outcome.not_confirmed == ["l2"]
    assert all(t.state.name == "FAIL" for t in study_trials(tmp_path / "tuned-tune", "l2"))
    comparison = outcome.confirmation.comparison
    assert comparison.headline[0].startswith("Not compared: l2: no trial of the search")
    assert "not confirmed, no trial completed: l2" in comparison.notes[0]
    assert {r["recipe"] for r in comparison.rows} == {"baseline", "dropout"}


def test_an_unreachable_study_leaves_trials_unfinished_not_failed(tmp_path, monkeypatch):
    from regbench.engine import pruning

    config = tmp_path / "tuned.yaml"
    config.write_text(TUNED.format(epochs=2))

    def down(url):        # the database server goes away under the workers
        raise ConnectionError("server closed the connection")

    with monkeypatch.context() as patch:
        patch.setattr(pruning, "open_storage", down)
        outcome = tune(config, trials=2, confirm_seeds=2, out=tmp_path, report=False)
    assert outcome.exit_code == 1 and outcome.confirmation is None
    assert any("could not reach the study storage" in w for w in outcome.warnings)
    states = {t.state.name for r in ("l2", "dropout") for t in study_trials(tmp_path / "tuned-tune", r)}
    assert states == {"RUNNING"}          # not FAIL: no budget was spent on the outage
    again = tune(config, trials=2, confirm_seeds=2, out=tmp_path, report=False)
    assert again.exit_code == 0 and again.trained == 4
    for recipe in ("l2", "dropout"):
        assert [t.state.name for t in study_trials(tmp_path / "tuned-tune", recipe)] == \
            ["COMPLETE", "COMPLETE"]
