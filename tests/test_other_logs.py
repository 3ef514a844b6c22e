"""`regbench diagnose` on other tools' logs, written by the tools themselves: Lightning's
CSVLogger and TensorBoardLogger, torch's SummaryWriter, MLflow; and `--map`.

The same per-epoch curves go through each tool and through a regbench-format metrics.csv;
the verdicts must agree (Lightning counts epochs from 0, so its epochs are one lower)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regbench.analysis.advice import diagnose_path
from regbench.analysis.curves import read_curve_csv, read_curves
from regbench.cli import app
from tests.conftest import regbench_without
from tests.test_bad_input import one_error_line, snapshot

runner = CliRunner()

# Per-epoch numbers: a clear U in val loss with a growing accuracy gap, and a healthy run whose
# curves fall together. Twelve epochs: enough for the noise-robust rules to apply.
CURVES = {
    "overfitting": {
        "train_loss": [0.75 ** e for e in range(12)],
        "val_loss": [1.0, 0.8, 0.65, 0.55, 0.5, 0.5, 0.55, 0.63, 0.72, 0.82, 0.92, 1.02],
        "train_accuracy": [min(0.99, 0.6 + 0.05 * e) for e in range(12)],
        "val_accuracy": [0.58, 0.63, 0.68, 0.72, 0.75, 0.76, 0.75, 0.74, 0.72, 0.71, 0.7, 0.69],
    },
    "ok": {
        "train_loss": [1.0 / (1 + 0.4 * e) for e in range(12)],
        "val_loss": [1.05 / (1 + 0.4 * e) + 0.02 for e in range(12)],
        "train_accuracy": [0.9 - 0.3 / (1 + e) for e in range(12)],
        "val_accuracy": [0.89 - 0.3 / (1 + e) for e in range(12)],
    },
}
EXPECTED = {"overfitting": ("overfitting", "strong"), "ok": ("ok", None)}


def regbench_csv(folder: Path, curves: dict[str, list[float]]) -> Path:
    """The curves as regbench writes them: one row per epoch, epochs from 1."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", *curves])
        for e in range(len(curves["train_loss"])):
            writer.writerow([e + 1, *(repr(values[e]) for values in curves.values())])
    return path


def verdicts(target, mapping=None) -> list[tuple]:
    """(run, verdict, grade, rules, started epoch) of each run ``diagnose`` finds."""
    return [(r["run"], r["verdict"], r.get("grade"), r["rules"], r["started_epoch"])
            for r in diagnose_path(target, mapping).runs]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, tuple]:
    """regbench's verdict on its own file, per curve: (verdict, grade, rules, start)."""
    found = {}
    for name, curves in CURVES.items():
        path = regbench_csv(tmp_path_factory.mktemp("regbench") / name, curves)
        (_, *verdict), = verdicts(path)
        assert tuple(verdict[:2]) == EXPECTED[name], verdict  # the curves say what they should
        found[name] = tuple(verdict)
    return found


@pytest.fixture(scope="module")
def lightning_logs(tmp_path_factory) -> dict[str, Path]:
    """A tiny LightningModule trained for 12 epochs per curve on random data, logging the
    curve's numbers with self.log through CSVLogger and TensorBoardLogger together."""
    lightning = pytest.importorskip(
        "lightning", reason="lightning is not installed (pip install lightning: .ci/run does)")
    import torch
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    class Logged(lightning.LightningModule):
        def __init__(self, curves):
            super().__init__()
            self.curves, self.layer = curves, torch.nn.Linear(2, 1)

        def value(self, name):
            return self.curves[name][self.current_epoch]

        def training_step(self, batch, batch_idx):
            self.log("train_loss", self.value("train_loss"), on_step=True, on_epoch=True)
            self.log("train_acc", self.value("train_accuracy"), on_step=False, on_epoch=True)
            return self.layer(batch[0]).pow(2).mean()

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", self.value("val_loss"))
            self.log("val_acc", self.value("val_accuracy"))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = torch.utils.data.TensorDataset(torch.randn(12, 2, generator=torch.Generator().manual_seed(0)))
    folders = {}
    for name, curves in CURVES.items():
        root = tmp_path_factory.mktemp("lightning") / name
        trainer = lightning.Trainer(
            max_epochs=12, accelerator="cpu", devices=1, log_every_n_steps=1,
            num_sanity_val_steps=0, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False,
            logger=[CSVLogger(root, name="csv"), TensorBoardLogger(root, name="tb")])
        loader = torch.utils.data.DataLoader(data, batch_size=4)
        trainer.fit(Logged(curves), loader, loader)
        folders[name] = root
    return folders


@pytest.mark.parametrize("name", CURVES)
def test_lightning_csvlogger_file_gets_regbench_files_verdict(lightning_logs, reference, name):
    path = lightning_logs[name] / "csv" / "version_0" / "metrics.csv"
    with path.open() as handle:
        table = list(csv.DictReader(handle))
    # what the real CSVLogger wrote: a row per logged step, blank cells, both levels of train
    assert {"epoch", "step", "train_loss_epoch", "train_loss_step", "val_loss"} <= set(table[0])
    assert len(table) > 12 and any(row["val_loss"] == "" for row in table)
    rows = read_curve_csv(path)
    assert [r["epoch"] for r in rows] == list(range(12))         # one row per epoch, from 0
    for key, values in CURVES[name].items():                   # the numbers that were logged
        assert [r[key] for r in rows] == pytest.approx(values, rel=1e-6)
    verdict, grade, rules, start = reference[name]
    assert verdicts(path) == [("metrics.csv", verdict, grade, rules,
                               None if start is None else start - 1)]
    result = runner.invoke(app, ["diagnose", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"metrics.csv: {verdict}")


@pytest.mark.parametrize("name", CURVES)
def test_lightning_tensorboard_logger_steps_become_epochs(lightning_logs, reference, name):
    """Lightning logs against the global step, with an `epoch` tag saying which epoch it is."""
    folder = lightning_logs[name] / "tb"
    verdict, grade, rules, start = reference[name]
    assert verdicts(folder) == [("version_0", verdict, grade, rules,
                                 None if start is None else start - 1)]
    (_, rows), = read_curves(folder)
    assert [r["epoch"] for r in rows] == list(range(12))
    assert [r["val_loss"] for r in rows] == pytest.approx(CURVES[name]["val_loss"], rel=1e-6)


def summary_writer(folder: Path, tags: dict[str, list[float]], first_step: int = 1) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder))
    for tag, values in tags.items():
        for step, value in enumerate(values, start=first_step):
            writer.add_scalar(tag, value, step)
    writer.close()


@pytest.mark.parametrize("name", CURVES)
def test_tensorboard_folder_gets_regbench_files_verdict(tmp_path, reference, name):
    """Common tag spellings, step = epoch (from 1, as regbench's own file)."""
    curves = CURVES[name]
    summary_writer(tmp_path / "logs", {"loss": curves["train_loss"], "val/loss": curves["val_loss"],
                                       "accuracy": curves["train_accuracy"],
                                       "val/accuracy": curves["val_accuracy"]})
    before = snapshot(tmp_path)
    assert verdicts(tmp_path / "logs") == [("logs", *reference[name])]
    result = runner.invoke(app, ["diagnose", str(tmp_path / "logs")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"logs: {reference[name][0]}")
    event_file, = (tmp_path / "logs").glob("events.out.tfevents.*")   # one file alone, too
    assert verdicts(event_file) == [(event_file.name, *reference[name])]
    assert snapshot(tmp_path) == before                                 # read-only


def test_keras_train_and_validation_folders_are_one_run(tmp_path, reference):
    """Keras' TensorBoard callback: train/ and validation/ both hold `epoch_loss`."""
    curves = CURVES["overfitting"]
    summary_writer(tmp_path / "fit" / "train", {"epoch_loss": curves["train_loss"],
                                               "epoch_accuracy": curves["train_accuracy"]}, 0)
    summary_writer(tmp_path / "fit" / "validation", {"epoch_loss": curves["val_loss"],
                                                    "epoch_accuracy": curves["val_accuracy"]}, 0)
    verdict, grade, rules, start = reference["overfitting"]
    assert verdicts(tmp_path / "fit") == [("fit", verdict, grade, rules, start - 1)]


def test_a_folder_of_runs_gets_a_verdict_per_run(tmp_path, reference):
    for name, curves in CURVES.items():
        summary_writer(tmp_path / "logs" / name, curves)
    summary_writer(tmp_path / "logs" / "crashed", {"train_loss": [1.0, 0.9]})   # no val yet
    found = {run[0]: run[1:] for run in verdicts(tmp_path / "logs")}
    assert found["overfitting"] == reference["overfitting"]
    assert found["ok"] == reference["ok"]
    assert found["crashed"][0] == "unknown"
    result = runner.invoke(app, ["diagnose", str(tmp_path / "logs" / "crashed")])  # alone: refused
    one_error_line(result, 2, "crashed", "no train/val pair", "found: train_loss")


def test_every_tensorboard_point_is_read(tmp_path):
    """TensorBoard's reader keeps a sample of 1000 points per tag unless told otherwise."""
    epochs = 1500
    summary_writer(tmp_path, {"train_loss": [1 / e for e in range(1, epochs + 1)],
                              "val_loss": [1.1 / e for e in range(1, epochs + 1)]})
    (_, rows), = read_curves(tmp_path)
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))


def test_the_epoch_level_wins_over_steps_and_steps_alone_are_averaged(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train_loss_step,train_loss_epoch,val_loss_step\n"
                    "0,0,0.9,,0.8\n0,1,0.7,,0.6\n0,1,,0.75,\n1,2,nan,,0.5\n1,3,0.4,,0.5\n"
                    "1,3,,0.45,\n")
    rows = read_curve_csv(path)
    assert [(r["train_loss"], r["val_loss"]) for r in rows] == [(0.75, 0.7), (0.45, 0.5)]
    # a NaN step with no epoch level beside it: the epoch's mean is NaN, the run diverged
    path.write_text("epoch,step,train_loss_step,val_loss\n0,0,0.9,1\n0,1,nan,1\n")
    assert math.isnan(read_curve_csv(path)[0]["train_loss"])


@pytest.mark.parametrize("name", CURVES)
def test_map_names_other_columns(tmp_path, reference, name):
    curves = CURVES[name]
    path = tmp_path / "log.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        # `val_loss` is a decoy: the map says which column is the validation loss
        writer.writerow(["ep", "fit", "holdout", "val_loss", "hit", "holdout_hit"])
        for e in range(12):
            writer.writerow([e + 1, curves["train_loss"][e], curves["val_loss"][e], 5.0,
                             curves["train_accuracy"][e], curves["val_accuracy"][e]])
    result = runner.invoke(app, ["diagnose", str(path), "--map", "epoch=ep,train_loss=fit",
                                 "--map", "val_loss=holdout,train_accuracy=hit,"
                                          "val_accuracy=holdout_hit"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"log.csv: {reference[name][0]}")
    mapping = {"epoch": "ep", "train_loss": "fit", "val_loss": "holdout",
               "train_accuracy": "hit", "val_accuracy": "holdout_hit"}
    assert verdicts(path, mapping) == [("log.csv", *reference[name])]
    # a TensorBoard tag, too
    summary_writer(tmp_path / "tb", {"mine/fit": curves["train_loss"],
                                     "mine/held": curves["val_loss"]})
    result = runner.invoke(app, ["diagnose", str(tmp_path / "tb"),
                                 "--map", "train_loss=mine/fit,val_loss=mine/held"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("option, fragments", [
    ("val_los=val/loss", ["--map 'val_los=val/loss'", "'val_los' is not a name regbench reads",
                          "expected one of epoch, objective, train_loss"]),
    ("val_loss", ["--map 'val_loss'", "expected NAME=SOURCE pairs"]),
    ("val_loss=a,val_loss=b", ["'val_loss' is mapped twice"]),
    ("val_loss=holdout", ["log.csv: --map val_loss=holdout: no column 'holdout'",
                          "it has: epoch, loss, val/loss"]),
])
def test_a_bad_map_is_one_line(tmp_path, option, fragments):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss,val/loss\n1,1,1\n2,0.5,0.6\n")
    one_error_line(runner.invoke(app, ["diagnose", str(path), "--map", option]), 2, *fragments)


def test_a_missing_tag_is_named_with_the_tags_there_are(tmp_path):
    summary_writer(tmp_path, {"loss": [1.0, 0.5], "val/loss": [1.0, 0.6]})
    result = runner.invoke(app, ["diagnose", str(tmp_path), "--map", "val_loss=holdout"])
    one_error_line(result, 2, "--map val_loss=holdout: no tag 'holdout'", "it has: loss, val/loss")


def test_map_is_refused_on_a_results_folder(tmp_path):
    (tmp_path / "runs").mkdir()
    result = runner.invoke(app, ["diagnose", str(tmp_path), "--map", "val_loss=x"])
    one_error_line(result, 2, "--map is for other tools' logs")


def test_mlflow_run_by_uri(tmp_path, monkeypatch, reference):
    mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (the dev extra has it)")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")   # MLflow 3's fast file store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    client = mlflow.MlflowClient()
    run = client.create_run(client.create_experiment("curves"))
    for key, values in CURVES["overfitting"].items():
        for epoch, value in enumerate(values, start=1):
            client.log_metric(run.info.run_id, key, value, step=epoch)
    uri = f"runs:/{run.info.run_id}"
    assert verdicts(uri) == [(uri, *reference["overfitting"])]
    result = runner.invoke(app, ["diagnose", uri])
    assert result.exit_code == 0 and result.output.startswith(f"{uri}: overfitting"), result.output
    one_error_line(runner.invoke(app, ["diagnose", "runs:/0123abc"]), 2,
                   "runs:/0123abc: cannot read the MLflow run")


def test_without_tensorboard_a_log_folder_is_one_line(tmp_path):
    summary_writer(tmp_path, {"loss": [1.0, 0.5], "val_loss": [1.0, 0.6]})
    done = regbench_without("tensorboard", ["diagnose", str(tmp_path)])
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "needs TensorBoard, which is not installed" in done.stderr
