"""--log tensorboard and --log mlflow, read back with the trackers' own readers (TensorBoard's
EventAccumulator, mlflow.search_runs): the same numbers as the run folders; resuming adds
nothing; a tracker's failure is a warning, never a failed run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from regbench.cli import app
from tests.conftest import REPO, digits_yaml, regbench_without

RECIPES = "  baseline: {}\n  l2: {l2: {lambda: 1.0}}\n"
runner = CliRunner()


def experiment(tmp_path: Path) -> Path:
    config = tmp_path / "tracked.yaml"
    config.write_text(digits_yaml("tracked", RECIPES, seeds="[0, 1]", epochs=3))
    return config


def run_folders(results: Path) -> dict[str, Path]:
    return {p.name: p for p in (results / "runs").iterdir()}


# ----------------------------------------------------------------------------- TensorBoard

def test_tensorboard_event_files_hold_every_epoch(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional 'tensorboard' extra is not "
                                              "installed (pip install -e '.[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = runner.invoke(app, ["run", str(experiment(tmp_path)), "--out", str(tmp_path),
                                 "--log", "tensorboard", "--workers", "2", "--fuse", "off",
                                 "--no-report"])
    assert result.exit_code == 0, result.output
    folders = run_folders(tmp_path / "tracked")
    assert sorted(folders) == ["baseline__seed=0", "baseline__seed=1", "l2__seed=0",
                               "l2__seed=1"]
    for name, folder in folders.items():
        events = EventAccumulator(str(folder))
        events.Reload()
        metrics = pd.read_csv(folder / "metrics.csv")
        for column in ("val_loss", "train_loss", "val_accuracy", "lr"):
            logged = [(e.step, e.value) for e in events.Scalars(column)]
            assert [s for s, _ in logged] == metrics["epoch"].tolist()
            assert [v for _, v in logged] == pytest.approx(metrics[column].tolist(), rel=1e-6)
        assert "weights" in events.Tags()["histograms"]
        summary = json.loads((folder / "summary.json").read_text())
        assert events.Scalars("final/test_accuracy")[0].value == \
            pytest.approx(summary["test_accuracy"], rel=1e-6)
        sessions = events.PluginTagToContent("hparams")
        assert "_hparams_/session_start_info" in sessions
    # one hparams experiment for the whole folder, and the train-over-val layout
    root = EventAccumulator(str(tmp_path / "tracked" / "tensorboard"))
    root.Reload()
    assert list(root.PluginTagToContent("hparams")) == ["_hparams_/experiment"]
    from tensorboard.plugins.hparams import plugin_data_pb2

    table = plugin_data_pb2.HParamsPluginData.FromString(
        root.PluginTagToContent("hparams")["_hparams_/experiment"]).experiment
    kinds = {h.name: h.type for h in table.hparam_infos}   # typed as each run's session holds
    assert kinds == {"recipe": 1, "seed": 3}                # them: string, float64
    recipes = next(h for h in table.hparam_infos if h.name == "recipe").domain_discrete
    assert sorted(v.string_value for v in recipes.values) == ["baseline", "l2"]
    assert "custom_scalars__config__" in root.PluginTagToContent("custom_scalars")


def test_a_tracker_failure_is_a_warning_not_a_failed_run(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional 'tensorboard' extra is not "
                                              "installed (pip install -e '.[tensorboard]')")
    (tmp_path / "tracked").mkdir()
    (tmp_path / "tracked" / "tensorboard").write_text("a file where the summaries go")
    result = runner.invoke(app, ["run", str(experiment(tmp_path)), "--out", str(tmp_path),
                                 "--log", "tensorboard", "--no-report"])
    assert result.exit_code == 0, result.output
    assert "experiment: tensorboard logging failed" in " ".join(result.output.split())
    summaries = [json.loads((p / "summary.json").read_text())
                 for p in run_folders(tmp_path / "tracked").values()]
    assert [s["status"] for s in summaries] == ["completed"] * 4


def test_a_missing_tracker_package_is_a_clear_error(tmp_path):
    config = experiment(tmp_path)
    result = regbench_without("tensorboard", ["run", str(config), "--log", "tensorboard",
                                              "--out", str(tmp_path)])
    assert result.returncode == 2
    assert result.stderr.strip() == ("regbench: error: --log tensorboard needs TensorBoard, "
                                     "which is not installed; install it with pip install -e "
                                     "'.[tensorboard]' (or pip install tensorboard)")
    assert not (tmp_path / "tracked").exists()


# ----------------------------------------------------------------------------- MLflow

@pytest.fixture(params=["sqlite", "file"])
def store(request, tmp_path, monkeypatch):
    """A temporary tracking store: SQLite (MLflow 3's default kind) and the ./mlruns-style
    file store, which MLflow 3 keeps in maintenance mode behind MLFLOW_ALLOW_FILE_STORE."""
    pytest.importorskip("mlflow", reason="the optional 'mlflow' extra is not installed "
                                         "(pip install -e '.[mlflow]')")
    monkeypatch.chdir(tmp_path)            # MLflow puts a SQLite store's artifacts in ./mlruns
    if request.param == "file":
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        return (tmp_path / "mlruns").as_uri()
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_mlflow_parent_and_nested_runs_equal_the_folders(tmp_path, store):
    import mlflow

    config = experiment(tmp_path)
    command = ["run", str(config), "--out", str(tmp_path / "out"), "--log", "mlflow",
               "--mlflow-uri", store]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "logging failed" not in result.output
    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=["tracked"])
    parents = runs[runs["tags.regbench.kind"] == "experiment"]
    nested = runs[runs["tags.regbench.kind"] == "run"]
    assert len(parents) == 1 and len(nested) == 4
    assert set(nested["tags.mlflow.parentRunId"]) == {parents.run_id.iloc[0]}
    client = mlflow.MlflowClient(tracking_uri=store)
    for folder in run_folders(tmp_path / "out" / "tracked").values():
        summary = json.loads((folder / "summary.json").read_text())
        row = nested[nested["tags.mlflow.runName"] == folder.name].iloc[0]
        assert row["params.recipe"] == summary["recipe"]
        assert row["params.seed"] == str(summary["seed"])
        assert row["params.train.optimizer.lr"] == "0.1"
        assert row["params.dataset.name"] == "digits"
        assert row["tags.regbench.status"] == "completed"
        if summary["recipe"] == "l2":
            assert row["params.regularizers.l2.lambda"] == "1.0"
        metrics = pd.read_csv(folder / "metrics.csv")
        for column in ("val_loss", "train_accuracy"):
            history = sorted((m.step, m.value) for m in client.get_metric_history(row.run_id,
                                                                                   column))
            assert [s for s, _ in history] == metrics["epoch"].tolist()
            assert [v for _, v in history] == pytest.approx(metrics[column].tolist())
        assert row["metrics.test_accuracy"] == pytest.approx(summary["test_accuracy"])
        assert {a.path for a in client.list_artifacts(row.run_id)} == {"summary.json",
                                                                        "metrics.csv"}
    assert "report.html" in {a.path for a in client.list_artifacts(parents.run_id.iloc[0])}
    # resume: nothing to train, no run added, nothing raised (params are never rewritten)
    again = runner.invoke(app, command)
    assert again.exit_code == 0, again.output
    assert "logging failed" not in again.output
    assert len(mlflow.search_runs(experiment_names=["tracked"])) == 5


def test_a_bad_mlflow_uri_is_refused_before_training(tmp_path):
    pytest.importorskip("mlflow", reason="the optional 'mlflow' extra is not installed "
                                         "(pip install -e '.[mlflow]')")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_ALLOW_FILE_STORE"}
    result = subprocess.run([sys.executable, "-m", "regbench", "run", str(experiment(tmp_path)),
                             "--out", str(tmp_path / "out"), "--log", "mlflow", "--mlflow-uri",
                             "nosuchscheme://here"], cwd=REPO, capture_output=True, text=True,
                            env=env)
    assert result.returncode == 2, result.stderr
    assert "regbench: error: --log mlflow: cannot use the tracking store nosuchscheme://here" \
        in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "tracked" / "runs").exists()


# ----------------------------------------------------------------------------- resume cases

def test_mlflow_retrained_fresh_and_replaced_runs(tmp_path, store):
    import mlflow

    config = experiment(tmp_path)
    out = tmp_path / "out"
    base = ["run", str(config), "--out", str(out), "--log", "mlflow", "--mlflow-uri", store,
            "--no-report"]
    assert runner.invoke(app, base).exit_code == 0
    mlflow.set_tracking_uri(store)

    def runs():
        found = mlflow.search_runs(experiment_names=["tracked"])
        return (found[found["tags.regbench.kind"] == "experiment"],
                found[found["tags.regbench.kind"] == "run"])

    # a placement change (another --fuse, --device) is the same experiment: the same parent
    assert runner.invoke(app, base + ["--fuse", "off", "--device", "cpu"]).exit_code == 0
    parents, nested = runs()
    assert len(parents) == 1 and len(nested) == 4
    # a run trained again (its summary damaged): one nested run for it, the new one
    (out / "tracked" / "runs" / "l2__seed=1" / "summary.json").write_text("{")
    assert runner.invoke(app, base).exit_code == 0
    parents, nested = runs()
    assert len(parents) == 1 and sorted(nested["tags.mlflow.runName"]) == sorted(
        ["baseline__seed=0", "baseline__seed=1", "l2__seed=0", "l2__seed=1"])
    # --fresh moves the folder aside: a new parent with its own four runs, the old ones stay
    assert runner.invoke(app, base + ["--fresh"]).exit_code == 0
    parents, nested = runs()
    assert len(parents) == 2 and len(nested) == 8
    assert nested.groupby("tags.mlflow.parentRunId").size().tolist() == [4, 4]


def test_a_tracker_added_later_gets_the_completed_runs(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional 'tensorboard' extra is not "
                                              "installed (pip install -e '.[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = experiment(tmp_path)
    assert runner.invoke(app, ["run", str(config), "--out", str(tmp_path),
                               "--no-report"]).exit_code == 0
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path), "--log",
                                 "tensorboard", "--no-report"])
    assert result.exit_code == 0 and "4 already completed" in " ".join(result.output.split())
    for folder in run_folders(tmp_path / "tracked").values():
        events = EventAccumulator(str(folder))
        events.Reload()
        metrics = pd.read_csv(folder / "metrics.csv")
        assert [e.value for e in events.Scalars("val_loss")] == \
            pytest.approx(metrics["val_loss"].tolist(), rel=1e-6)
    # retrained without --log: its old event file goes with the rest of the earlier attempt
    (tmp_path / "tracked" / "runs" / "l2__seed=0" / "summary.json").unlink()
    assert runner.invoke(app, ["run", str(config), "--out", str(tmp_path),
                               "--no-report"]).exit_code == 0
    assert not list((tmp_path / "tracked" / "runs" / "l2__seed=0").glob("events.out.*"))


def test_hparams_sessions_are_typed_and_say_how_the_run_ended(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional 'tensorboard' extra is not "
                                              "installed (pip install -e '.[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    config = tmp_path / "sweep.yaml"
    config.write_text(digits_yaml("tracked", RECIPES, seeds="[0]", epochs=2, extra=(
        "sweep:\n  recipes.l2.l2.include_bias: [true, false]\n"
        "  recipes.l2.train.optimizer.lr: [0.1, 1.0e+9]\n")))
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path), "--log",
                                 "tensorboard", "--no-report"])
    assert result.exit_code == 1        # the lr=1e9 runs diverge
    root = EventAccumulator(str(tmp_path / "tracked" / "tensorboard"))
    root.Reload()
    table = plugin_data_pb2.HParamsPluginData.FromString(
        root.PluginTagToContent("hparams")["_hparams_/experiment"]).experiment
    kinds = {h.name: h.type for h in table.hparam_infos}
    assert kinds["sweep.include_bias"] == 1 and kinds["sweep.lr"] == 3   # text, number
    for folder in run_folders(tmp_path / "tracked").values():
        events = EventAccumulator(str(folder))
        events.Reload()
        content = events.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/session_start_info"]).session_start_info
        end = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/session_end_info"]).session_end_info
        summary = json.loads((folder / "summary.json").read_text())
        if "include_bias" in summary["sweep"]:
            assert start.hparams["sweep.include_bias"].string_value == \
                str(summary["sweep"]["include_bias"])
        assert end.status == (1 if summary["status"] == "completed" else 2)  # success, failure


def test_a_failing_tracker_warns_once_and_every_run_completes(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard", reason="the optional 'tensorboard' extra is not "
                                              "installed (pip install -e '.[tensorboard]')")
    from torch.utils.tensorboard import SummaryWriter

    def broken(self, *args, **kwargs):     # the disk fills up under the event file, say
        raise OSError("No space left on device")

    monkeypatch.setattr(SummaryWriter, "add_scalar", broken)
    result = runner.invoke(app, ["run", str(experiment(tmp_path)), "--out", str(tmp_path),
                                 "--log", "tensorboard", "--no-report"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert text.count("tensorboard logging failed") == 1
    assert "tensorboard is off for the rest of this experiment" in text
    statuses = [json.loads((p / "summary.json").read_text())["status"]
                for p in run_folders(tmp_path / "tracked").values()]
    assert statuses == ["completed"] * 4


def test_tune_checks_its_trackers_before_the_search(tmp_path):
    pytest.importorskip("mlflow", reason="the optional 'mlflow' extra is not installed "
                                         "(pip install -e '.[mlflow]')")
    config = tmp_path / "tuned.yaml"
    config.write_text(digits_yaml("tuned", RECIPES, seeds="[0]", epochs=2,
                                  extra="search:\n  recipes.l2.l2.lambda: {low: 0.1, high: 1}\n"))
    result = subprocess.run([sys.executable, "-m", "regbench", "tune", str(config), "--trials",
                             "2", "--out", str(tmp_path / "out"), "--log", "mlflow",
                             "--mlflow-uri", "sqlite://"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 2 and "in-memory database" in result.stderr
    assert not (tmp_path / "out").exists()
