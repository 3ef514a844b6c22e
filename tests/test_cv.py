"""Repeated k-fold cross-validation (``dataset.cv``): one run per seed × repeat × fold whose test
split is that fold (scikit-learn's stratified folds, each row tested once per repeat), resumable
run by run, never fused across folds, and compared with the corrected resampled t-test (Nadeau &
Bengio 2003), whose false-positive rate a simulation checks against the naive paired t-test's."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import write_config
from scipy import stats
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold
from test_bad_input import invoke, one_error_line, snapshot

from regbench.analysis.compare import compare_results
from regbench.analysis.stats import CONFIDENCE, decide, difference_of, paired_difference
from regbench.data.base import fingerprint
from regbench.engine.fused import GROUP_KEY, fuse_tasks
from regbench.experiment.config import load_config
from regbench.experiment.plan import build_plan

BREAST_CANCER_CV = """\
name: cvbc
seeds: [0]
dataset: {{name: breast_cancer, cv: {{folds: {folds}, repeats: {repeats}}}}}
model: {{name: linear}}
train: {{epochs: 1, batch_size: 64, optimizer: {{name: adam, lr: 0.01}}, threads: 1}}
recipes:
  l2: {{l2: {{lambda: 1.0}}}}
"""


def summaries(folder: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in folder.glob("runs/*/summary.json")}


@pytest.fixture(scope="module")
def five_by_two(tmp_path_factory):
    """breast_cancer, 5 folds × 2 repeats, one seed, baseline and l2: trained once."""
    root = tmp_path_factory.mktemp("cv")
    config = write_config(root / "cv.yaml", BREAST_CANCER_CV.format(folds=5, repeats=2))
    result = invoke("run", config, "--out", root / "out", "--no-report")
    assert result.exit_code == 0, result.output
    return root / "out" / "cvbc"


def test_a_5x2_cv_run_writes_10_runs_per_recipe_whose_test_folds_are_sklearns(five_by_two):
    runs = summaries(five_by_two)
    assert len(runs) == 20
    _, labels = load_breast_cancer(return_X_y=True)
    # the folds recomputed independently: the documented seeding, (split_seed, run seed)
    random_state = int(np.random.SeedSequence([0, 0]).generate_state(1)[0])
    folds = list(RepeatedStratifiedKFold(n_splits=5, n_repeats=2, random_state=random_state)
                 .split(np.zeros((len(labels), 1)), labels))
    for recipe in ("baseline", "l2"):
        mine = {(s["repeat"], s["fold"]): s for s in runs.values() if s["recipe"] == recipe}
        assert sorted(mine) == [(r, f) for r in range(2) for f in range(5)]
        for repeat in range(2):
            tested = np.concatenate([folds[repeat * 5 + f][1] for f in range(5)])
            assert sorted(tested) == list(range(len(labels)))   # disjoint, every row once
            for fold in range(5):
                summary = mine[(repeat, fold)]
                assert summary["status"] == "completed"
                assert summary["run_id"] == f"{recipe}__seed=0__repeat={repeat}__fold={fold}"
                # the run tested on exactly that fold, and trained and validated on the rest
                test = folds[repeat * 5 + fold][1]
                assert summary["split"]["test"] == fingerprint(test)
                assert summary["examples"]["test"] == len(test)
                assert summary["examples"]["train"] + summary["examples"]["val"] == \
                    len(labels) - len(test)
                config = yaml.safe_load((five_by_two / "runs" / summary["run_id"] /
                                         "config.yaml").read_text())
                assert config["dataset"]["cv"] == {"folds": 5, "repeats": 2, "repeat": repeat,
                                                   "fold": fold}
        # the other repeat draws another partition, and the recipes share each fold's data
        assert mine[(0, 0)]["split"] != mine[(1, 0)]["split"]
    for run_id, summary in runs.items():
        if summary["recipe"] == "l2":
            assert summary["split"] == runs[run_id.replace("l2", "baseline", 1)]["split"]
    table = (five_by_two / "comparison.md").read_text()
    assert "J = 10 paired folds (1 seed(s) × 2 repeat(s) × 5 folds" in table
    assert "corrected resampled t-test (Nadeau & Bengio 2003)" in table


def test_the_comparison_pairs_by_seed_repeat_and_fold_with_the_corrected_variance(five_by_two):
    runs = summaries(five_by_two)
    l2 = {(s["seed"], s["repeat"], s["fold"]): s for s in runs.values() if s["recipe"] == "l2"}
    base = {(s["seed"], s["repeat"], s["fold"]): s for s in runs.values()
            if s["recipe"] == "baseline"}
    diffs = np.array([l2[key]["test_loss"] - base[key]["test_loss"] for key in sorted(l2)])
    ratio = np.mean([s["examples"]["test"] / s["examples"]["train"] for s in l2.values()])
    # Nadeau & Bengio: variance × (1/J + n_test/n_train), J − 1 degrees of freedom
    half = stats.t.ppf(0.975, 9) * diffs.std(ddof=1) * np.sqrt(1 / 10 + ratio)
    row = next(r for r in compare_results(five_by_two, "loss").rows if r["recipe"] == "l2")
    assert row["pairs"] == 10
    assert row["diff"] == pytest.approx(diffs.mean(), rel=1e-9)
    assert row["diff_low"] == pytest.approx(diffs.mean() - half, rel=1e-9)
    assert row["diff_high"] == pytest.approx(diffs.mean() + half, rel=1e-9)


def test_runs_of_different_folds_or_seeds_never_fuse(tmp_path):
    config = write_config(tmp_path / "cv.yaml", BREAST_CANCER_CV.format(folds=3, repeats=2)
                          .replace("seeds: [0]", "seeds: [0, 1]")
                          .replace("model: {name: linear}", "model: {name: mlp, hidden: [8]}")
                          + "sweep:\n  recipes.l2.l2.lambda: [0.1, 1.0, 10.0]\n")
    plan = build_plan(load_config(config), fuse="on")
    assert len(plan.runs) == (1 + 3) * 2 * 3 * 2
    groups = [task[GROUP_KEY] for task in fuse_tasks(plan.runs) if GROUP_KEY in task]
    # the three λ of one seed, repeat and fold share their data: one group each
    assert len(groups) == 2 * 3 * 2
    for members in groups:
        assert len({(m["seed"], m["repeat"], m["fold"]) for m in members}) == 1
        assert len(members) == 3


def test_rerunning_skips_the_completed_folds_and_more_repeats_keep_them(tmp_path):
    config = write_config(tmp_path / "cv.yaml", BREAST_CANCER_CV.format(folds=3, repeats=1))
    out = tmp_path / "out"
    assert invoke("run", config, "--out", out, "--no-report").exit_code == 0
    folder = out / "cvbc"
    # a run killed before its summary was written is redone; the completed ones are kept
    (folder / "runs" / "l2__seed=0__repeat=0__fold=1" / "summary.json").unlink()
    before = snapshot(folder / "runs")
    result = invoke("run", config, "--out", out, "--no-report")
    assert result.exit_code == 0, result.output
    assert "6 runs (5 already completed, skipped)" in result.output
    after = snapshot(folder / "runs")
    assert {k: v for k, v in after.items() if "fold=1" not in k or "l2" not in k} == \
        {k: v for k, v in before.items() if "fold=1" not in k or "l2" not in k}
    # a second repeat adds its folds; the first repeat's partition is the same, so its runs stay
    write_config(config, BREAST_CANCER_CV.format(folds=3, repeats=2))
    result = invoke("run", config, "--out", out, "--no-report")
    assert result.exit_code == 0, result.output
    assert "12 runs (6 already completed, skipped)" in result.output
    assert {k: v for k, v in snapshot(folder / "runs").items() if k in after} == after
    assert len(summaries(folder)) == 12


@pytest.mark.parametrize("dataset, fragments", [
    ("{name: breast_cancer, cv: {folds: 1}}", ["cv.yaml:3:", "dataset.cv.folds", "2"]),
    ("{name: breast_cancer, cv: {folds: 5, repeats: 0}}", ["cv.yaml:3:", "dataset.cv.repeats"]),
    ("{name: breast_cancer, cv: {folds: 5, fold: 2}}", ["cv.yaml:3:", "dataset.cv.fold",
                                                        "folds"]),
    ("{name: breast_cancer, resample: per_seed, cv: 5}", ["cv.yaml:3:", "dataset.cv",
                                                          "resample: per_seed"]),
    ("{name: breast_cancer, test_fraction: 0.3, cv: 5}", ["cv.yaml:3:", "dataset.cv",
                                                          "test_fraction"]),
    ("{name: breast_cancer, test_limit: 50, cv: 5}", ["cv.yaml:3:", "dataset.cv", "test_limit"]),
    ("{name: breast_cancer, cv: {folds: 600}}", ["cv.yaml:3:", "dataset.cv.folds", "569",
                                                "at most 569 folds"]),
    ("{name: breast_cancer, cv: true}", ["cv.yaml:3:", "dataset.cv", "a number of folds"]),
], ids=["one fold", "no repeat", "fold set by hand", "resampled", "test_fraction",
        "test_limit", "more folds than rows", "true"])
def test_a_bad_cv_config_is_one_located_line_and_exit_2(tmp_path, dataset, fragments):
    config = write_config(tmp_path / "cv.yaml", BREAST_CANCER_CV.format(folds=5, repeats=1)
                          .replace("{name: breast_cancer, cv: {folds: 5, repeats: 1}}", dataset))
    result = invoke("run", config, "--out", tmp_path / "out", "--no-report")
    one_error_line(result, 2, *fragments)
    assert not (tmp_path / "out").exists()


def test_the_corrected_interval_is_nadeau_and_bengios_formula_with_scipys_t():
    diffs = np.array([0.012, -0.004, 0.02, 0.007, 0.0, 0.015, -0.01, 0.011, 0.003, 0.009])
    ratio, level = 114 / 409, 0.975
    got = difference_of(diffs, level, ratio)
    n, sd = len(diffs), diffs.std(ddof=1)
    error = np.sqrt((1 / n + ratio) * sd ** 2)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * error
    assert got.low == pytest.approx(diffs.mean() - half, rel=1e-12)
    assert got.high == pytest.approx(diffs.mean() + half, rel=1e-12)
    assert got.p_value == pytest.approx(2 * stats.t.sf(abs(diffs.mean()) / error, n - 1),
                                        rel=1e-9)
    # without the ratio it is the plain paired t-test, as before
    plain = difference_of(diffs, level)
    assert plain.p_value == pytest.approx(stats.ttest_1samp(diffs, 0).pvalue, rel=1e-9)
    assert plain.high - plain.low < got.high - got.low


def _ridge_mse(x_train, y_train, x_test, y_test, penalty=1.0):
    """Closed-form ridge (intercept unpenalised): the test mean squared error."""
    x_mean, y_mean = x_train.mean(0), y_train.mean()
    centred = x_train - x_mean
    w = np.linalg.solve(centred.T @ centred + penalty * np.eye(centred.shape[1]),
                        centred.T @ (y_train - y_mean))
    return float(np.mean((y_test - y_mean - (x_test - x_mean) @ w) ** 2))


def test_the_corrected_test_keeps_its_false_positive_rate_where_the_naive_test_does_not():
    """Two recipes equally good by construction: ridge on features 0–3 and ridge on features
    4–7 of a population symmetric in the two halves. On one sample of data one half happens to
    look better, on every fold at once (their training sets overlap and their test folds come
    from the same rows): the per-fold differences are positively correlated, and the naive
    paired t-test over 5 folds × 2 repeats rejects "no difference" about a fifth of the time.
    The corrected test, read off the interval by the same ``decide`` as every table, stays at
    or below 5% (plus three Monte Carlo standard errors)."""
    rng = np.random.default_rng(0)
    trials, rows, half, folds = 600, 80, 4, 5
    coefficients = np.full(2 * half, 0.5)
    rejected = {"naive": 0, "corrected": 0}
    for trial in range(trials):
        x = rng.normal(size=(rows, 2 * half))
        y = x @ coefficients + rng.normal(size=rows)
        first, second, ratios = {}, {}, []
        splits = RepeatedKFold(n_splits=folds, n_repeats=2, random_state=trial).split(x)
        for j, (train, test) in enumerate(splits):
            first[j] = _ridge_mse(x[train][:, :half], y[train], x[test][:, :half], y[test])
            second[j] = _ridge_mse(x[train][:, half:], y[train], x[test][:, half:], y[test])
            ratios.append(len(test) / len(train))
        for test_name, ratio in (("naive", 0.0), ("corrected", float(np.mean(ratios)))):
            verdict = decide(paired_difference(first, second, CONFIDENCE, ratio),
                             higher_is_better=False)
            rejected[test_name] += verdict in ("better", "worse")
    margin = 3 * np.sqrt(0.05 * 0.95 / trials)
    naive, corrected = rejected["naive"] / trials, rejected["corrected"] / trials
    assert corrected <= 0.05 + margin, rejected
    assert naive > 0.05 + margin and naive > 3 * corrected, rejected


def test_the_plan_warns_of_a_large_dataset_and_of_a_test_split_cv_leaves_out(tmp_path):
    large = write_config(tmp_path / "large.yaml", BREAST_CANCER_CV.format(folds=5, repeats=2)
                         .replace("{name: breast_cancer,", "{name: synthetic_classification, "
                                  "n_samples: 25000, n_features: 4,"))
    warnings = build_plan(load_config(large)).warnings
    assert any("25000 rows: k-fold trains 10 runs per recipe and seed" in w for w in warnings)
    rows = "a,b,y\n" + "".join(f"{i % 7},{i % 5},{i % 2}\n" for i in range(40))
    (tmp_path / "train.csv").write_text(rows)
    (tmp_path / "test.csv").write_text(rows)
    own = write_config(tmp_path / "own.yaml", BREAST_CANCER_CV.format(folds=4, repeats=1)
                       .replace("{name: breast_cancer,", "{name: csv, path: train.csv, "
                                "test_path: test.csv, target: y, task: classification,"))
    plan = build_plan(load_config(own))
    assert any("has a test split of its own (40 rows)" in w and "unused" in w
               for w in plan.warnings)
    assert not any("rows: k-fold trains" in w for w in plan.warnings)
    assert len(plan.runs) == 2 * 4


def test_tune_refuses_cv_at_its_line(tmp_path):
    config = write_config(tmp_path / "cv.yaml", BREAST_CANCER_CV.format(folds=5, repeats=1)
                          + "search:\n  recipes.l2.l2.lambda: {low: 0.1, high: 10, log: true}\n")
    result = invoke("tune", config, "--out", tmp_path / "out", "--trials", "2")
    one_error_line(result, 2, "cv.yaml:3:", "dataset.cv", "regbench tune")
    assert not (tmp_path / "out").exists()


def test_the_dry_run_counts_every_repeat_and_fold(tmp_path):
    config = write_config(tmp_path / "cv.yaml", BREAST_CANCER_CV.format(folds=5, repeats=2)
                          .replace("seeds: [0]", "seeds: [0, 1]"))
    result = invoke("run", config, "--out", tmp_path / "out", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "40 runs (2 recipes/sweep points × 2 seeds × 10 (5 folds × 2 repeats))" in \
        result.output


@pytest.mark.parametrize("cv", ["{folds: 5, repeats: 2}", "10", "{repeats: 3}"])
def test_a_smoke_run_trains_two_folds_of_one_repeat(tmp_path, cv):
    config = write_config(tmp_path / "cv.yaml", BREAST_CANCER_CV.format(folds=5, repeats=2)
                          .replace("seeds: [0]", "seeds: [0, 1]")
                          .replace("{folds: 5, repeats: 2}", cv))
    result = invoke("run", config, "--out", tmp_path / "out", "--dry-run", "--smoke")
    assert result.exit_code == 0, result.output
    assert "4 runs (2 recipes/sweep points × 1 seeds × 2 (2 folds × 1 repeats))" in \
        result.output
    for run_id in ("baseline__seed=0__repeat=0__fold=0", "l2__seed=0__repeat=0__fold=1"):
        assert run_id in result.output
    assert "2 folds of one repeat" in result.output


def test_a_smoke_run_refuses_the_cv_values_the_full_run_refuses(tmp_path):
    config = write_config(tmp_path / "cv.yaml", BREAST_CANCER_CV.format(folds=1, repeats=1))
    result = invoke("run", config, "--out", tmp_path / "out", "--smoke")
    one_error_line(result, 2, "cv.yaml:3:", "dataset.cv.folds")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["5.0", "'5'", "[5]"])
def test_cv_that_is_neither_a_whole_number_nor_a_mapping_says_what_is_expected(tmp_path, value):
    config = write_config(tmp_path / "cv.yaml", BREAST_CANCER_CV.format(folds=5, repeats=1)
                          .replace("{folds: 5, repeats: 1}", value))
    result = invoke("run", config, "--out", tmp_path / "out", "--no-report")
    one_error_line(result, 2, "cv.yaml:3:", "dataset.cv: expected a number of folds "
                   "(integer ≥ 2) or {folds: k, repeats: r}", f"(got {value})")
    assert not (tmp_path / "out").exists()


def test_the_plan_warns_that_a_train_subset_widens_the_corrected_intervals(tmp_path):
    def warnings(subset: str) -> list[str]:
        config = write_config(tmp_path / "cv.yaml", BREAST_CANCER_CV.format(folds=5, repeats=1)
                              .replace("cv: {", subset + "cv: {"))
        return [w for w in build_plan(load_config(config)).warnings if "train_subset" in w]

    # 569 rows: folds of 113.8 on average; 90% of the other 455.2 trained on without a subset
    with_subset, without = 113.8 / 100, 113.8 / (455.2 * 0.9)
    [warning] = warnings("train_subset: 100, ")
    assert f"n_test/n_train is {with_subset:.2g} instead of {without:.2g}" in warning
    assert f"up to {np.sqrt(with_subset / without):.1f}×" in warning
    assert warnings("") == []
    assert warnings("train_subset: 400, ") == []   # about the 409 rows a fold leaves


def _copy_results(five_by_two: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(five_by_two, tmp_path / "cvbc"))


def _edit_summary(folder: Path, run_id: str, edit) -> None:
    path = folder / "runs" / run_id / "summary.json"
    summary = json.loads(path.read_text())
    edit(summary)
    path.write_text(json.dumps(summary))


def test_a_fold_without_its_sizes_gives_no_interval_never_the_uncorrected_one(five_by_two,
                                                                              tmp_path):
    folder = _copy_results(five_by_two, tmp_path)
    _edit_summary(folder, "l2__seed=0__repeat=1__fold=3", lambda s: s.pop("examples"))
    comparison = compare_results(folder, "loss")
    row = next(r for r in comparison.rows if r["recipe"] == "l2")
    assert row["pairs"] == 10 and not np.isnan(row["diff"])
    # no interval, no p-value and no verdict: the plain paired t-test would give all three
    assert np.isnan(row["diff_low"]) and np.isnan(row["diff_high"])
    assert np.isnan(row["p_value"]) and row["verdict"] == "inconclusive"
    assert comparison.comparisons == 0
    [warning] = [n for n in comparison.notes if "no interval and no verdict for l2" in n]
    assert "l2__seed=0__repeat=1__fold=3" in warning and "examples" in warning
    assert any("No interval and no verdict for l2" in s for s in comparison.headline)
    assert "n_test/n_train = ?" not in comparison.scope


def test_lost_runs_under_cv_are_counted_in_folds_not_seeds(five_by_two, tmp_path):
    folder = _copy_results(five_by_two, tmp_path)

    def diverge(summary):
        summary["status"] = "diverged"

    _edit_summary(folder, "l2__seed=0__repeat=0__fold=2", diverge)
    _edit_summary(folder, "baseline__seed=0__repeat=1__fold=4", diverge)
    comparison = compare_results(folder, "loss")
    text = " ".join(comparison.notes + comparison.headline)
    assert "the interval uses the 8 completed folds it shares with the baseline" in text
    assert "every recipe's Δ uses only the 9 fold(s) the baseline completed" in text
    assert "completed seed" not in text


def test_the_plain_paired_t_test_keeps_its_exact_digits():
    from regbench.analysis.stats import t_quantile

    # sd·√(1/n) is one ulp off sd/√n for these differences: a formula shared with the
    # corrected test (ratio 0) would change the digits of every table without cv
    diffs = np.array([0.3, 0.1, 0.25])
    sd, n = float(diffs.std(ddof=1)), len(diffs)
    assert sd * np.sqrt(1 / n + 0.0) != sd / np.sqrt(n)
    half = t_quantile(0.975, n - 1) * (sd / np.sqrt(n))
    got = difference_of(diffs)
    assert (got.low, got.high) == (diffs.mean() - half, diffs.mean() + half)


@pytest.mark.parametrize("path", ["dataset.cv.folds", "dataset.cv.repeats"])
def test_sweeping_the_folds_is_refused_at_its_line(tmp_path, path):
    """The folds are planned once for the experiment: a swept fold setting would train its
    other points on the wrong folds, so it is one clear error instead."""
    config = write_config(tmp_path / "c.yaml", (
        "name: c\ndataset: {name: breast_cancer, cv: {folds: 2}}\nmodel: {name: mlp, hidden: [8]}\n"
        f"train: {{epochs: 1}}\nrecipes:\n  l2: {{l2: {{lambda: 1.0}}}}\nsweep:\n  {path}: [2, 3]\n"))
    one_error_line(invoke("validate", config), 2, f"c.yaml:8:3: sweep.{path}",
                   "dataset.cv cannot be swept")
