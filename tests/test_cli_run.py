"""`regbench run` end to end: files, columns, exit codes, determinism, divergence."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import yaml
from conftest import REPO
from typer.testing import CliRunner

from regbench.cli import app

runner = CliRunner()

CONFIG = """\
name: e2e
seeds: [0, 1]
dataset: {name: digits, train_subset: 300}
model: {name: mlp, hidden: [32]}
train: {epochs: 3, batch_size: 32, optimizer: {name: sgd, lr: 0.1}, threads: 1}
recipes:
  l2: {l2: {lambda: 1.0}}
  dropout_long: {dropout: {p: 0.3}, train: {epochs: 4}}
"""

SPEC_COLUMNS = ["epoch", "seconds", "lr", "objective", "penalty", "weight_norm", "sparsity",
                "grad_norm"] + [f"{split}_{m}" for split in ("train", "val")
                                for m in ("loss", "accuracy", "precision", "recall", "f1", "ece")]


def run(tmp_path, text, *args):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    out = tmp_path / "results"
    result = runner.invoke(app, ["run", str(path), "--out", str(out), "--no-report", *args])
    return result, out


def test_run_writes_every_file_with_the_spec_columns(tmp_path):
    result, out = run(tmp_path, CONFIG)
    assert result.exit_code == 0, result.output
    folder = out / "e2e"
    runs = sorted(p.name for p in (folder / "runs").iterdir())
    assert runs == ["baseline__seed=0", "baseline__seed=1", "dropout_long__seed=0",
                    "dropout_long__seed=1", "l2__seed=0", "l2__seed=1"]
    experiment = yaml.safe_load((folder / "experiment.yaml").read_text())
    assert experiment["train"]["optimizer"]["momentum"] == 0.0  # defaults filled in
    assert experiment["recipes"]["baseline"] == {"regularizers": {}, "train": experiment["train"]}
    run_dir = folder / "runs" / "l2__seed=1"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["regularizers"] == {"l2": {"lambda": 1.0, "include_bias": False}}
    assert config["seed"] == 1
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert list(metrics.columns) == SPEC_COLUMNS
    assert list(metrics["epoch"]) == [1, 2, 3]
    for column in SPEC_COLUMNS[8:]:
        if not column.endswith("loss"):
            assert metrics[column].between(0, 1).all(), column
    assert (metrics["penalty"] > 0).all()
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("status", "recipe", "seed", "sweep", "config_hash", "best_epoch", "stopped_epoch",
                "train_accuracy", "val_accuracy", "test_accuracy", "test_f1", "verdict",
                "penalized_parameters", "parameter_count", "seconds"):
        assert key in summary, key
    assert summary["status"] == "completed"
    # device: auto (the default) resolves to the GPU where there is one, and says so
    assert summary["device"] == ("cuda" if __import__("torch").cuda.is_available() else "cpu")
    assert summary["penalized_parameters"] == ["1.weight", "3.weight"]
    assert summary["verdict"]["verdict"] in ("ok", "overfitting", "underfitting")
    long_metrics = pd.read_csv(folder / "runs" / "dropout_long__seed=0" / "metrics.csv")
    assert len(long_metrics) == 4  # the recipe's own budget
    runs_csv = pd.read_csv(folder / "runs.csv")
    assert len(runs_csv) == 6
    comparison = pd.read_csv(folder / "comparison.csv")
    assert set(comparison["point"]) == {"baseline", "l2", "dropout_long"}
    assert comparison.loc[comparison["point"] == "dropout_long", "train_differs"].item()
    markdown = (folder / "comparison.md").read_text()
    assert "dropout_long †" in markdown and "Δ test vs baseline" in markdown
    assert "\\begin{tabular}" in (folder / "comparison.tex").read_text()
    assert "val accuracy" in result.output  # the table is printed


def run_summaries(out) -> dict[str, dict]:
    """run folder name -> its summary.json"""
    return {p.parent.name: json.loads(p.read_text())
            for p in (out / "e2e/runs").glob("*/summary.json")}


def _without_seconds(path):
    return pd.read_csv(path).drop(columns=["seconds"])


def test_same_config_and_seed_give_identical_metrics(tmp_path):
    first, out = run(tmp_path, CONFIG)
    assert first.exit_code == 0
    a = _without_seconds(out / "e2e/runs/l2__seed=0/metrics.csv")
    second = runner.invoke(app, ["run", str(tmp_path / "cfg.yaml"), "--out",
                                 str(tmp_path / "again"), "--no-report"])
    assert second.exit_code == 0
    b = _without_seconds(tmp_path / "again/e2e/runs/l2__seed=0/metrics.csv")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    other_seed = _without_seconds(out / "e2e/runs/l2__seed=1/metrics.csv")
    assert not a.equals(other_seed)


def test_a_diverging_recipe_is_recorded_and_the_others_complete(tmp_path):
    # an L1 term of λ = 1e38 overflows float32 at the first SGD step on any device (a huge
    # learning rate overflows on the CPU, but on a GPU it was seen to kill every ReLU and
    # leave the loss finite)
    text = CONFIG.replace("seeds: [0, 1]", "seeds: [0]") + \
        "  unstable: {l1: {lambda: 1.0e+38}}\n"
    result, out = run(tmp_path, text)
    assert result.exit_code == 1, result.output
    summaries = run_summaries(out)
    assert summaries["unstable__seed=0"]["status"] == "diverged"
    assert summaries["unstable__seed=0"]["verdict"]["verdict"] == "diverged"
    others = [s["status"] for name, s in summaries.items() if name != "unstable__seed=0"]
    assert others == ["completed"] * 3
    assert "unstable" in (out / "e2e/comparison.md").read_text()


def test_smoke_shrinks_any_config_into_its_own_folder(tmp_path):
    result, out = run(tmp_path, CONFIG)                       # the full runs first
    assert result.exit_code == 0, result.output
    full = {p: p.read_bytes() for p in (out / "e2e").rglob("*") if p.is_file()}
    result, out = run(tmp_path, CONFIG, "--smoke")
    assert result.exit_code == 0, result.output
    runs = sorted(p.name for p in (out / "e2e-smoke/runs").iterdir())
    assert runs == ["baseline__seed=0", "dropout_long__seed=0", "l2__seed=0"]
    for name in runs:
        assert len(pd.read_csv(out / "e2e-smoke/runs" / name / "metrics.csv")) == 1
        summary = json.loads((out / "e2e-smoke/runs" / name / "summary.json").read_text())
        assert summary["n_train"] <= 256
    # a smoke run never replaces the full runs of the same experiment
    assert {p: p.read_bytes() for p in (out / "e2e").rglob("*") if p.is_file()} == full


def test_resume_skips_completed_runs(tmp_path):
    result, out = run(tmp_path, CONFIG)
    assert result.exit_code == 0
    summary = out / "e2e/runs/l2__seed=0/summary.json"
    before = summary.stat().st_mtime_ns
    again = runner.invoke(app, ["run", str(tmp_path / "cfg.yaml"), "--out", str(out),
                                "--no-report"])
    assert again.exit_code == 0
    assert summary.stat().st_mtime_ns == before
    assert "6 already completed" in again.output


def test_list_shows_every_registered_entry():
    from regbench.data import DATASETS
    from regbench.models import MODELS
    from regbench.regularizers import REGULARIZERS

    result = runner.invoke(app, ["list", "--markdown"])
    assert result.exit_code == 0
    for name in [*REGULARIZERS.names(), *DATASETS.names(), *MODELS.names()]:
        assert f"`{name}`" in result.output
    assert "lambda=1.0" in result.output  # parameters with defaults


def test_help_does_not_import_torch():
    code = ("import sys; from typer.testing import CliRunner; from regbench.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "assert 'run' in r.output; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True)
    assert out.stdout.strip() == "False"


def test_module_entry_point_and_exit_code_for_bad_config(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntrain: {epochs: 0}\n")
    out = subprocess.run([sys.executable, "-m", "regbench", "run", str(path)],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"regbench: error: {path}:2:17: train.epochs: must be >= 1 "
                                  "(got 0)")


def test_an_exception_inside_one_run_fails_that_run_only(tmp_path):
    """A real out-of-memory error at build time: under a 10 GiB address-space limit, two hidden
    layers of 60,000 units (14.4 GB of weights each) cannot be allocated; the other runs
    complete and the command exits 1."""
    import resource
    import subprocess
    import sys

    text = CONFIG.replace("seeds: [0, 1]", "seeds: [0]") + \
        "sweep:\n  model.hidden: [[16], [60000, 60000]]\n"
    config = tmp_path / "cfg.yaml"
    config.write_text(text)
    out = tmp_path / "results"

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (10 * 2**30, 10 * 2**30))

    result = subprocess.run([sys.executable, "-m", "regbench", "run", str(config), "--out",
                             str(out), "--no-report"], preexec_fn=limit, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    summaries = run_summaries(out)
    failed = {name: s for name, s in summaries.items() if s["status"] == "failed"}
    assert sorted(failed) == ["baseline__hidden=60000-60000__seed=0",
                              "dropout_long__hidden=60000-60000__seed=0",
                              "l2__hidden=60000-60000__seed=0"]
    for summary in failed.values():
        assert "can't allocate memory" in summary["error"]
    assert sum(s["status"] == "completed" for s in summaries.values()) == 3
    assert "[enforce fail" in result.stderr + result.stdout  # the error is shown whole
    assert "no baseline runs" not in (out / "e2e/comparison.md").read_text()


def test_summary_names_exactly_the_penalized_parameters(tmp_path):
    text = CONFIG.replace("seeds: [0, 1]", "seeds: [0]").replace(
        "dropout_long: {dropout: {p: 0.3}, train: {epochs: 4}}",
        "l2_bias: {l2: {lambda: 1.0, include_bias: true}}")
    result, out = run(tmp_path, text)
    assert result.exit_code == 0, result.output

    def penalized(name):
        summary = json.loads((out / "e2e/runs" / f"{name}__seed=0" / "summary.json").read_text())
        return summary["penalized_parameters"]

    assert penalized("baseline") == []
    assert penalized("l2") == ["1.weight", "3.weight"]
    assert penalized("l2_bias") == ["1.weight", "1.bias", "3.weight", "3.bias"]


def test_resume_keeps_completed_runs_when_only_device_or_threads_change(tmp_path):
    result, out = run(tmp_path, CONFIG)
    assert result.exit_code == 0
    summary = out / "e2e/runs/l2__seed=0/summary.json"
    before = summary.stat().st_mtime_ns
    again = runner.invoke(app, ["run", str(tmp_path / "cfg.yaml"), "--out", str(out),
                                "--no-report", "--device", "cpu", "--set", "train.threads=2"])
    assert again.exit_code == 0, again.output
    assert summary.stat().st_mtime_ns == before
    assert "6 already completed" in again.output


def test_a_bad_metric_is_refused_before_training(tmp_path):
    result, out = run(tmp_path, CONFIG, "--metric", "acuracy")
    assert result.exit_code == 2
    assert "--metric: 'acuracy' is not a classification metric (did you mean 'accuracy'?)" \
        in result.output
    assert not out.exists()


def test_run_metric_ranks_the_written_tables(tmp_path):
    result, out = run(tmp_path, CONFIG, "--metric", "f1")
    assert result.exit_code == 0
    assert "val f1" in (out / "e2e/comparison.md").read_text()
