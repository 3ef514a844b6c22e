"""`regbench suite`: the suite file (located errors), every task trained as an ordinary
experiment folder, resume, the aggregate (recomputed here from the task folders), the verdicts,
the page, and `--smoke` on the shipped suite."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from scipy import stats
from typer.testing import CliRunner

from regbench.analysis.suite_table import COLUMNS, TaskScores, build_suite_table
from regbench.cli import app
from regbench.experiment.launch import Launch
from regbench.experiment.suite import load_suite_for, run_suite
from tests.test_bad_input import one_error_line

runner = CliRunner()
SHIPPED = REPO / "regbench" / "suites" / "default.yaml"

TRAIN = "{epochs: 2, batch_size: 32, optimizer: {name: sgd, lr: 0.1}, threads: 1}"
SUITE = f"""\
name: mini
seeds: [0, 1, 2]
recipes:
  l2: {{l2: {{lambda: 5.0}}}}
  same: {{l2: {{lambda: 0.0}}}}        # trains exactly as the baseline does
tasks:
  digits:
    dataset: {{name: digits, train_subset: 200}}
    model: {{name: mlp, hidden: [8]}}
    train: {TRAIN}
  cancer:
    config: cancer.yaml
    recipes: {{l2: {{l2: {{lambda: 1.0}}}}}}
  diabetes:
    dataset: {{name: diabetes}}
    model: {{name: mlp, hidden: [8]}}
    train: {{epochs: 2, batch_size: 32, optimizer: {{name: adam, lr: 0.01}}, threads: 1}}
"""
CANCER = f"""\
name: cancer_experiment          # its name, seeds and recipes are the suite's business
seeds: [7]
dataset: {{name: breast_cancer}}
model: {{name: mlp, hidden: [8]}}
train: {TRAIN}
recipes: {{dropout: {{dropout: {{p: 0.5}}}}}}
"""


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def write_suite(folder: Path, text: str = SUITE) -> Path:
    (folder / "cancer.yaml").write_text(CANCER)
    path = folder / "suite.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The 3-task suite trained once (with every page), its folder."""
    root = tmp_path_factory.mktemp("suite")
    result = invoke("suite", write_suite(root), "--out", root / "out")
    assert result.exit_code == 0, result.output
    return root / "out" / "mini"


def test_each_task_is_an_ordinary_experiment_folder(trained):
    assert sorted(p.name for p in (trained / "tasks").iterdir()) == ["cancer", "diabetes",
                                                                    "digits"]
    for task in ("cancer", "diabetes", "digits"):
        runs = pd.read_csv(trained / "tasks" / task / "runs.csv")
        assert sorted(runs["recipe"].unique()) == ["baseline", "l2", "same"]
        assert sorted(runs["seed"].unique()) == [0, 1, 2]     # the suite's seeds, not the config's
        assert (trained / "tasks" / task / "report.html").is_file()
    result = invoke("compare", trained / "tasks" / "digits", "--format", "csv")
    assert result.exit_code == 0 and "same" in result.output
    # the task override: cancer's l2 trains with its own λ, the others with the shared one
    config = yaml.safe_load((trained / "tasks" / "cancer" / "runs" / "l2__seed=0" /
                             "config.yaml").read_text())
    assert config["regularizers"]["l2"]["lambda"] == 1.0
    config = yaml.safe_load((trained / "tasks" / "digits" / "runs" / "l2__seed=0" /
                             "config.yaml").read_text())
    assert config["regularizers"]["l2"]["lambda"] == 5.0


def test_a_recipe_equal_to_the_baseline_is_neither_better_nor_worse(trained):
    table = pd.read_csv(trained / "suite.csv").set_index("recipe")
    same = table.loc["same"]
    assert same["verdict"] == "inconclusive"
    assert (same["won"], same["lost"], same["tied"]) == (0, 0, 3)
    assert same["iqm"] == 0 and same["mean"] == 0 and same["p_improve"] == 0.5
    assert same["iqm_low"] == 0 and same["iqm_high"] == 0
    # three tasks cannot reach 5% with the signed-rank test: said, not pretended
    assert "3 task(s) cannot give a verdict below p = 0.25" in (trained / "suite.md").read_text()


def _errors(folder: Path) -> tuple[dict, dict, str]:
    runs = pd.read_csv(folder / "runs.csv")
    runs = runs[runs["status"] == "completed"]
    kind = "classification" if "test_accuracy" in runs else "regression"
    error = 1 - runs["test_accuracy"] if kind == "classification" else runs["test_mse"]
    errors, seconds = {}, {}
    for (recipe, seed), value, time in zip(zip(runs["recipe"], runs["seed"]), error,
                                           runs["seconds"]):
        errors.setdefault(recipe, {})[seed] = value
        seconds.setdefault(recipe, {})[seed] = time
    return errors, seconds, kind


def test_the_aggregate_recomputed_from_the_task_folders_equals_suite_csv(trained):
    table = pd.read_csv(trained / "suite.csv").set_index("recipe")
    assert list(pd.read_csv(trained / "suite.csv").columns) == list(COLUMNS)
    for recipe in ("l2", "same"):
        pooled, means, chances, ratios, verdicts = [], [], [], [], []
        for task in ("digits", "cancer", "diabetes"):
            folder = trained / "tasks" / task
            errors, seconds, _ = _errors(folder)
            base, mine = errors["baseline"], errors[recipe]
            scale = np.mean(list(base.values()))
            gains = [(base[s] - mine[s]) / scale for s in mine]
            pooled += gains
            means.append(np.mean(gains))
            chances.append(np.mean([(m < b) + 0.5 * (m == b) for m in mine.values()
                                    for b in base.values()]))
            ratios.append(np.mean(list(seconds[recipe].values()))
                          / np.mean(list(seconds["baseline"].values())))
            comparison = pd.read_csv(folder / "comparison.csv").set_index("point")
            verdicts.append(comparison.loc[recipe, "verdict"])
        row = table.loc[recipe]
        assert row["tasks"] == 3
        assert row["iqm"] == pytest.approx(stats.trim_mean(pooled, 0.25), abs=1e-12)
        assert row["mean"] == pytest.approx(np.mean(means), abs=1e-12)
        assert row["p_improve"] == pytest.approx(np.mean(chances))
        assert row["relative_time"] == pytest.approx(stats.gmean(ratios))
        assert (row["won"], row["lost"]) == (verdicts.count("better"), verdicts.count("worse"))
        assert row["tied"] == 3 - row["won"] - row["lost"]
        assert row["iqm_low"] <= row["iqm"] <= row["iqm_high"]
        assert row["p_value"] == pytest.approx(stats.wilcoxon(means, zero_method="zsplit").pvalue
                                               if any(means) else 1.0)


def test_the_page_answers_first_and_links_each_task(trained):
    page = (trained / "suite.html").read_text()
    assert page.index("same: inconclusive") < page.index("<table")
    assert page.count("data:image/png;base64,") == 4   # forest, profiles, CD, cost
    for task in ("digits", "cancer", "diabetes"):
        assert f'href="tasks/{task}/report.html"' in page
    assert sorted(p.name for p in (trained / "plots").iterdir()) == [
        "cost.png", "critical_difference.png", "forest.png", "profiles.png"]
    assert "\\begin{tabular}" in (trained / "suite.tex").read_text()


def test_resume_trains_only_what_is_new(trained, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(trained.parent, out)
    path = write_suite(tmp_path)
    launch = Launch(out=out, report=False)
    again = run_suite(load_suite_for(path, launch), launch)
    assert all(len(o.skipped) == len(o.plan.runs) == 9 for o in again.tasks.values())
    grown = SUITE.replace("  same:", "  dropout: {dropout: {p: 0.3}}\n  same:") + """\
  wide:
    dataset: {name: digits, train_subset: 200}
    model: {name: mlp, hidden: [16]}
    train: {epochs: 1, batch_size: 32, threads: 1}
"""
    path.write_text(grown)
    outcome = run_suite(load_suite_for(path, launch), launch)
    for task in ("digits", "cancer", "diabetes"):
        trained_now = {r["run_id"] for r in outcome.tasks[task].plan.runs} - \
            set(outcome.tasks[task].skipped)
        assert trained_now == {f"dropout__seed={s}" for s in range(3)}
    assert outcome.tasks["wide"].skipped == []          # the new task trains whole
    assert "dropout" in pd.read_csv(out / "mini" / "suite.csv")["recipe"].tolist()


def _task(name: str, gain: float, kind: str = "classification") -> TaskScores:
    """A task whose baseline errs about 0.2 and whose recipes 'good' and 'bad' err that less
    or more by ``gain`` of it."""
    base = {s: 0.2 + 0.001 * s for s in range(3)}
    return TaskScores(name=name, kind=kind, errors={
        "baseline": base, "good": {s: e * (1 - gain) for s, e in base.items()},
        "bad": {s: e * (1 + gain) for s, e in base.items()}},
        seconds={r: {s: 1.0 for s in range(3)} for r in ("baseline", "good", "bad")},
        verdicts={"good": "better", "bad": "inconclusive"})


def test_the_verdict_is_the_holm_corrected_signed_rank_test_over_tasks():
    tasks = [_task(f"t{i}", 0.05 + 0.01 * i) for i in range(8)]
    table = build_suite_table("s", tasks, ["baseline", "good", "bad"])
    rows = {row["recipe"]: row for row in table.rows}
    # every task on one side: p = 2/2^8, Holm over 2 recipes doubles the smaller... both equal
    assert rows["good"]["p_value"] == pytest.approx(2 / 2 ** 8)
    assert rows["good"]["p_holm"] == pytest.approx(2 * 2 / 2 ** 8)
    assert (rows["good"]["verdict"], rows["bad"]["verdict"]) == ("better", "worse")
    assert (rows["good"]["won"], rows["good"]["tied"]) == (8, 0)
    assert rows["good"]["iqm"] == pytest.approx(stats.trim_mean(
        [0.05 + 0.01 * i for i in range(8) for _ in range(3)], 0.25))
    assert rows["good"]["p_improve"] == 1.0 and rows["bad"]["p_improve"] == 0.0
    assert rows["good"]["avg_rank"] == 1.0 and rows["bad"]["avg_rank"] == 3.0
    # six tasks and two recipes: 2 × 2/2^6 = 0.0625 cannot be a verdict, and the notes say so
    few = build_suite_table("s", tasks[:6], ["baseline", "good", "bad"])
    assert {row["verdict"] for row in few.rows} == {"inconclusive"}
    assert any("6 task(s) cannot give a verdict below p = 0.0312" in n for n in few.notes)


def test_dry_run_lists_each_task_and_trains_nothing(tmp_path):
    result = invoke("suite", write_suite(tmp_path), "--out", tmp_path / "out", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "suite mini: 3 tasks, 3 recipes, 27 runs; to train: 27" in result.output
    assert "cancer: 9 runs (3 recipes × 3 seeds)" in result.output
    assert not (tmp_path / "out").exists()


BAD = [
    ("tasks:", "taks:", ("suite.yaml:6:1: taks: unknown key 'taks'", "did you mean 'tasks'")),
    ("lambda: 5.0", "lambda: -5.0", ("suite.yaml:4:21: recipes.l2.l2.lambda: must be >= 0",)),
    ("train_subset: 200", "train_subst: 200",
     ("suite.yaml:8:29: tasks.digits.dataset.train_subst: unknown key",)),
    ("recipes: {l2: {l2: {lambda: 1.0}}}", "recipes: {l3: {l2: {lambda: 1.0}}}",
     ("suite.yaml:13:15: tasks.cancer.recipes.l3: no shared recipe 'l3'",)),
    ("recipes: {l2: {l2: {lambda: 1.0}}}", "recipes: {l2: {dropout: {p: 0.1}}}",
     ("tasks.cancer.recipes.l2.dropout: recipe 'l2' has no regularizer 'dropout'",)),
    ("config: cancer.yaml", "config: nowhere.yaml",
     ("suite.yaml:12:13: tasks.cancer.config:", "config file not found")),
    ("config: cancer.yaml", "config: cancer.yaml\n    skip: [baseline]",
     ("tasks.cancer.skip.0: the baseline cannot be skipped",)),
    ("  same:", "  ls: {label_smoothing: {}}\n  same:",
     ("suite.yaml:5:8: recipes.ls.label_smoothing: task diabetes: label_smoothing does not "
      "apply to regression", "tasks.diabetes.skip: [ls]")),
    ("  cancer:", "  cancer:\n    model: {name: mlp, hiden: [3]}",
     ("suite.yaml:12:24: tasks.cancer.model.hiden: unknown key 'hiden' (did you mean "
      "'hidden'?)",)),
]


@pytest.mark.parametrize("old,new,fragments", BAD, ids=[b[1][:24] for b in BAD])
def test_a_bad_suite_file_exits_2_with_one_located_line(tmp_path, old, new, fragments):
    assert old in SUITE
    path = write_suite(tmp_path, SUITE.replace(old, new, 1))
    result = invoke("suite", path, "--out", tmp_path / "out")
    one_error_line(result, 2, *fragments)
    assert not (tmp_path / "out").exists()      # nothing written before the error


def test_an_error_in_a_task_config_is_located_in_that_file(tmp_path):
    path = write_suite(tmp_path)
    (tmp_path / "cancer.yaml").write_text(CANCER.replace("breast_cancer", "breast_cancr"))
    one_error_line(invoke("suite", path, "--dry-run"), 2,
                   "cancer.yaml:3:17: dataset.name: task cancer: unknown dataset "
                   "'breast_cancr'")


def test_an_empty_or_taskless_suite_is_refused(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text("")
    one_error_line(invoke("suite", path), 2, "suite.yaml:1:1: the suite file is empty")
    path.write_text("name: x\ntasks: {}\n")
    one_error_line(invoke("suite", path), 2, "suite.yaml:2:1: tasks: at least one task is needed")


def test_smoke_runs_the_shipped_suite_end_to_end(tmp_path):
    # as CI runs it: the console entry point in its own process (its OpenMP wait policy, the
    # threads it picks), the shipped file by its path
    result = subprocess.run([sys.executable, "-m", "regbench", "suite", str(SHIPPED), "--smoke",
                             "--no-report", "--out", str(tmp_path)], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    shipped = yaml.safe_load(SHIPPED.read_text())
    folder = tmp_path / f"{shipped['name']}-smoke"
    table = pd.read_csv(folder / "suite.csv")
    assert set(COLUMNS) <= set(table.columns)
    assert table["recipe"].tolist() == list(shipped["recipes"])
    assert sorted(p.name for p in (folder / "tasks").iterdir()) == sorted(shipped["tasks"])
    for task in shipped["tasks"]:
        summary = json.loads(next((folder / "tasks" / task / "runs").glob("*/summary.json"))
                             .read_text())
        assert summary["status"] == "completed" and summary["seed"] == shipped["seeds"][0]
    assert len(shipped["tasks"]) >= 6 and not math.isnan(table["p_improve"].iloc[0])


def test_the_shipped_suite_validates_under_the_suite_schema():
    jsonschema = pytest.importorskip("jsonschema", reason="the dev extra installs jsonschema")
    from regbench.experiment.reference import suite_schema

    schema = suite_schema(plugins=False)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    data = yaml.safe_load(SHIPPED.read_text())
    assert not [e.message for e in validator.iter_errors(data)]
    data["tasks"]["digits_mlp"]["dataset"]["train_subst"] = 3
    assert list(validator.iter_errors(data))


def test_tune_tunes_the_tasks_with_a_search_and_aggregates_their_confirmation(tmp_path):
    text = SUITE.replace("seeds: [0, 1, 2]", "seeds: [0]").replace(
        "    dataset: {name: digits, train_subset: 200}\n",
        "    dataset: {name: digits, train_subset: 200}\n"
        "    search: {recipes.l2.l2.lambda: {low: 0.01, high: 10.0, log: true}}\n")
    result = invoke("suite", write_suite(tmp_path, text), "--out", tmp_path / "out", "--tune",
                    "--trials", "2", "--no-report")
    assert result.exit_code == 0, result.output
    suite = tmp_path / "out" / "mini"
    assert yaml.safe_load((suite / "suite.yaml").read_text())["tasks"]["digits"]["folder"] == \
        "digits-tune"
    rows = pd.read_csv(suite / "suite_tasks.csv").set_index(["task", "recipe"])
    # digits: the chosen λ and the baseline on the tuning's 5 fresh seeds; the others as written
    assert rows.loc[("digits", "l2"), "seeds"] == 5 and rows.loc[("cancer", "l2"), "seeds"] == 1
    chosen = pd.read_csv(suite / "tasks" / "digits-tune" / "comparison.csv")
    point = chosen[chosen["recipe"] == "l2"].iloc[0]
    assert rows.loc[("digits", "l2"), "task_verdict"] == point["verdict"]


def test_page_writes_the_answer_as_markdown_with_its_figures(trained, tmp_path):
    shutil.copytree(trained.parent, tmp_path / "out")
    summaries = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("summary.json")}
    docs = tmp_path / "docs"
    docs.mkdir()
    result = invoke("suite", write_suite(tmp_path), "--out", tmp_path / "out", "--no-report",
                    "--page", docs / "suite-mini.md")
    assert result.exit_code == 0, result.output
    page = (docs / "suite-mini.md").read_text()
    assert "<!-- generated by `regbench suite" in page and "--page" in page
    assert "- same: inconclusive" in page and "| recipe | tasks |" in page
    for figure in ("forest", "profiles", "critical_difference", "cost"):
        assert f"](suite-mini/{figure}.png)" in page
        assert (docs / "suite-mini" / f"{figure}.png").is_file()
    # nothing trained again: every run was complete
    assert {p: p.stat().st_mtime_ns for p in summaries} == summaries


def test_default_names_the_shipped_suite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("suite", "default", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "suite default: 8 tasks, 7 recipes, 156 runs" in result.output
