"""Live trackers (issue 37): TensorBoard and MLflow receive each epoch's row as it ends, from the
driver (solo, --workers 2, a fused group member by member, Ray), then the run's final state;
nothing is sent twice, also when a killed command is run again.

A run in flight is held by a test plugin regularizer, ``live_hold``: at its first batch after
epoch ``after`` it waits (polling, up to a generous deadline) until a file exists. The test
reads the trackers' stores while the run waits there, sees epoch ``after`` and not the next,
then creates the file. No fixed sleep decides anything: the run cannot go on before the test
has looked."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import suppress
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from regbench.cli import app
from tests.conftest import REPO
from tests.test_resume import ctrl_c_reaches_it

DEADLINE = 240.0      # seconds: a loaded 2-core machine starts torch, workers or Ray slowly
POLL = 0.05           # how often the test looks again (not a synchronisation)
EPOCHS, HELD = 4, 2   # a run is held at the start of epoch HELD + 1
runner = CliRunner()

PLUGIN = '''
import time
from pathlib import Path

import regbench
from regbench.plugins import StrictModel


@regbench.register_regularizer("live_hold")
class LiveHold(regbench.Regularizer):
    """Holds its run at its first batch after epoch ``after`` until the file ``until`` exists
    (at most ``wait`` seconds); changes nothing. A test's view of a run in flight."""

    summary = "holds a run in flight until a file exists (tests)"
    paper = "none: a test plugin"
    fusable = True
    batches_by_member = True
    batch_stage = "noise"

    class Params(StrictModel):
        after: int = 1
        until: str = ""
        wait: float = 240.0

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.ended = 0            # the last epoch ended; -1 once it has held

    def batch(self, x, y):
        if self.ended == self.params.after:
            deadline = time.monotonic() + self.params.wait
            while not Path(self.params.until).exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            self.ended = -1
        return x, y

    def epoch_end(self, epoch, row, model):
        if self.ended >= 0:
            self.ended = epoch
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> Path:
    """The plugin file, one path for the module: a plugin loads once per process."""
    path = tmp_path_factory.mktemp("live_plugin") / "live_hold.py"
    path.write_text(PLUGIN)
    return path


def config(tmp_path: Path, marker: Path, seeds: str = "[0]", extra: str = "") -> Path:
    path = tmp_path / "live.yaml"
    path.write_text(
        f"name: live\nseeds: {seeds}\ndataset: {{name: digits, train_subset: 200}}\n"
        f"model: {{name: mlp, hidden: [16]}}\n"
        f"train: {{epochs: {EPOCHS}, batch_size: 50, optimizer: {{name: sgd, lr: 0.1}}, "
        f"threads: 1{extra}}}\n"
        f"recipes:\n  hold: {{live_hold: {{after: {HELD}, until: '{marker}'}}}}\n")
    return path


def needs(module: str):
    return pytest.importorskip(module, reason=f"the optional '{module}' extra is not installed "
                                              f"(pip install -e '.[{module}]')")


# ----------------------------------------------------------------------------- readers

def raw_steps(folder: Path) -> Counter:
    """(tag, step) -> how many times the folder's event files hold it, as written (TensorBoard
    itself would hide a repeated step, so the records are counted)."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    counts: Counter = Counter()
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in LegacyEventFileLoader(str(path)).Load():
            if event.HasField("summary"):
                counts.update((value.tag, event.step) for value in event.summary.value
                              if value.HasField("simple_value"))
    return counts


def scalar_steps(folder: Path, tag: str = "val_loss") -> list[int]:
    """The steps TensorBoard's EventAccumulator shows for ``tag`` in ``folder`` now."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not folder.is_dir():
        return []
    events = EventAccumulator(str(folder))
    events.Reload()
    return [e.step for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


def nested(uri: str, run_id: str) -> list:
    """The active MLflow nested runs logged for regbench run ``run_id``."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name("live")
    if found is None:
        return []
    return client.search_runs([found.experiment_id],
                              filter_string=f"tags.`regbench.run_id` = '{run_id}'")


def mlflow_steps(uri: str, mlflow_run: str, key: str = "val_loss") -> list[int]:
    import mlflow

    return sorted(m.step for m in mlflow.MlflowClient(tracking_uri=uri)
                  .get_metric_history(mlflow_run, key))


def while_held(look, marker: Path) -> threading.Thread:
    """A thread that calls ``look()`` until it returns what it saw (not None), keeps that in
    ``thread.seen``, then lets the held runs go on (also when it saw nothing by the
    deadline)."""
    def watch() -> None:
        deadline = time.monotonic() + DEADLINE
        try:
            while time.monotonic() < deadline:
                seen = look()
                if seen is not None:
                    thread.seen = seen
                    return
                time.sleep(POLL)
        finally:
            marker.touch()

    thread = threading.Thread(target=watch, daemon=True)
    thread.seen = None
    return thread


def each_epoch_once(folder: Path) -> None:
    """The folder's event files hold every metrics.csv column at every epoch exactly once, with
    its value."""
    metrics = pd.read_csv(folder / "metrics.csv")
    counts = raw_steps(folder)
    assert {count for count in counts.values()} == {1}, counts.most_common(3)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    for column in metrics.columns.drop("epoch"):
        values = [(e.step, e.value) for e in events.Scalars(column)]
        assert [s for s, _ in values] == list(range(1, EPOCHS + 1)), column
        assert [v for _, v in values] == pytest.approx(metrics[column].tolist(), rel=1e-6)


# ----------------------------------------------------------------------------- TensorBoard

@pytest.mark.parametrize("placement", ["solo", "workers", "fused"])
def test_tensorboard_shows_epoch_k_while_the_run_trains_epoch_k_plus_1(tmp_path, plugin,
                                                                      placement):
    """The acceptance test: EventAccumulator sees epoch HELD of every run (each member of a
    fused group) while the run is held inside epoch HELD + 1; after the run, every column of
    metrics.csv is in the event files once per epoch, with the final state."""
    needs("tensorboard")
    marker = tmp_path / "go"
    options = {"solo": ["--fuse", "off"], "workers": ["--workers", "2", "--fuse", "off"],
               "fused": ["--fuse", "on"]}[placement]
    seeds = "[0]" if placement == "solo" else "[0, 1]"
    cfg = config(tmp_path, marker, seeds)
    runs = tmp_path / "out" / "live" / "runs"
    folders = [runs / f"hold__seed={seed}" for seed in json.loads(seeds)]

    def look():
        steps = [scalar_steps(folder) for folder in folders]
        if all(HELD in found for found in steps):
            return steps, [(folder / "summary.json").exists() for folder in folders]
        return None

    watcher = while_held(look, marker)
    watcher.start()
    result = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "out"), "--log",
                                 "tensorboard", "--plugin", str(plugin), "--no-report",
                                 *options])
    watcher.join()
    assert result.exit_code == 0, result.output
    assert watcher.seen is not None, "no event file showed epoch 2 while its run trained"
    steps, finished = watcher.seen
    assert steps == [list(range(1, HELD + 1))] * len(folders)   # not epoch 3: still in it
    assert finished == [False] * len(folders)
    for folder in folders:
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["status"] == "completed"
        if placement == "fused":
            assert summary["fused"]["members"] == 2
        each_epoch_once(folder)
        final = scalar_steps(folder, "final/test_accuracy")
        assert final == [EPOCHS]


def test_ray_tasks_stream_their_epochs_to_the_driver(tmp_path, plugin):
    """Under Ray the rows come through a queue to the driver, which writes them as they come."""
    needs("tensorboard")
    pytest.importorskip("ray", reason="the optional 'ray' extra is not installed "
                                      "(pip install -e '.[ray]'): the Ray case is not tested")
    marker = tmp_path / "go"
    cfg = config(tmp_path, marker)
    folder = tmp_path / "out" / "live" / "runs" / "hold__seed=0"

    def look():
        steps = scalar_steps(folder)
        return (steps, (folder / "summary.json").exists()) if HELD in steps else None

    watcher = while_held(look, marker)
    watcher.start()
    result = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "out"), "--log",
                                 "tensorboard", "--plugin", str(plugin), "--no-report",
                                 "--executor", "ray"])
    watcher.join()
    assert result.exit_code == 0, result.output
    assert watcher.seen == (list(range(1, HELD + 1)), False)
    each_epoch_once(folder)


# ----------------------------------------------------------------------------- MLflow

def test_mlflow_history_grows_per_epoch_while_the_run_trains(tmp_path, plugin, monkeypatch):
    needs("mlflow")
    monkeypatch.chdir(tmp_path)            # MLflow puts a SQLite store's artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    marker = tmp_path / "go"
    cfg = config(tmp_path, marker, "[0, 1]")

    def look():
        runs = {run_id: nested(uri, run_id) for run_id in ("hold__seed=0", "hold__seed=1")}
        if all(len(found) == 1 for found in runs.values()):
            steps = {run_id: mlflow_steps(uri, found[0].info.run_id)
                     for run_id, found in runs.items()}
            if all(HELD in found for found in steps.values()):
                return steps, {run_id: (found[0].info.status,
                                        found[0].data.tags["regbench.status"])
                               for run_id, found in runs.items()}
        return None

    watcher = while_held(look, marker)
    watcher.start()
    result = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "out"), "--log",
                                 "mlflow", "--mlflow-uri", uri, "--plugin", str(plugin),
                                 "--no-report", "--fuse", "on"])
    watcher.join()
    assert result.exit_code == 0, result.output
    assert "logging failed" not in result.output
    assert watcher.seen is not None, "MLflow showed no epoch 2 while its run trained"
    steps, states = watcher.seen
    assert steps == {"hold__seed=0": [1, 2], "hold__seed=1": [1, 2]}
    assert states == {"hold__seed=0": ("RUNNING", "running"),
                      "hold__seed=1": ("RUNNING", "running")}
    for run_id in ("hold__seed=0", "hold__seed=1"):
        check_mlflow_run(uri, tmp_path / "out" / "live" / "runs" / run_id)


def check_mlflow_run(uri: str, folder: Path) -> str:
    """One nested run for the folder's run, holding every column once per epoch with the
    folder's values, its final numbers and status; returns its MLflow id."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = nested(uri, folder.name)
    summary = json.loads((folder / "summary.json").read_text())
    assert run.info.status == "FINISHED" and run.data.tags["regbench.status"] == "completed"
    metrics = pd.read_csv(folder / "metrics.csv")
    for column in metrics.columns.drop("epoch"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id,
                                                                             column))
        assert [s for s, _ in history] == list(range(1, EPOCHS + 1)), column
        assert [v for _, v in history] == pytest.approx(metrics[column].tolist())
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test_accuracy")] == \
        [EPOCHS]
    assert run.data.metrics["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert run.data.params["recipe"] == "hold"
    return run.info.run_id


# ----------------------------------------------------------------------------- resume

def cli(cwd: Path, *args) -> subprocess.Popen:
    """The real CLI in ``cwd`` (MLflow puts a SQLite store's artifacts in ./mlruns)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.Popen([sys.executable, "-m", "regbench", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True, preexec_fn=ctrl_c_reaches_it)


def wait_until(seen, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not seen():
        assert process.poll() is None, f"the command ended before {what}: " \
                                        f"{process.stdout.read()}"
        assert time.monotonic() < deadline, f"no {what} by the deadline"
        time.sleep(POLL)


@pytest.mark.parametrize("stop, checkpoints", [("SIGKILL", False), ("SIGKILL", True),
                                               ("SIGINT", True)],
                         ids=["killed, restarted", "killed, from checkpoint",
                              "Ctrl-C, from checkpoint"])
def test_a_stopped_command_run_again_sends_nothing_twice(tmp_path, plugin, stop, checkpoints):
    """The real CLI is stopped while its run is held in epoch 3, having sent epochs 1 and 2:
    killed (SIGKILL: nothing more is logged), or Ctrl-C (the run is recorded interrupted).
    The same command then finishes the run. The event files and the MLflow history hold each
    epoch once; a run resumed from its checkpoint continues the stopped attempt's MLflow run,
    one restarted replaces it. Run a third time, it trains and sends nothing."""
    needs("tensorboard")
    needs("mlflow")
    marker = tmp_path / "go"
    cfg = config(tmp_path, marker, extra=", checkpoint_every: 1" if checkpoints else "")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "out"
    folder = out / "live" / "runs" / "hold__seed=0"
    command = ["run", cfg, "--out", out, "--log", "tensorboard", "--log", "mlflow",
               "--mlflow-uri", uri, "--plugin", plugin, "--no-report"]
    stopped = cli(tmp_path, *command)
    try:
        wait_until(lambda: scalar_steps(folder) == [1, 2] and len(nested(uri, folder.name)) == 1
                   and mlflow_steps(uri, nested(uri, folder.name)[0].info.run_id) == [1, 2]
                   and (not checkpoints or (folder / "checkpoint.pt").exists()),
                   stopped, "epoch 2 in both trackers")
        first_attempt = nested(uri, folder.name)[0].info.run_id
        os.kill(stopped.pid, getattr(signal, stop))
        output, _ = stopped.communicate(timeout=DEADLINE)
    finally:
        with suppress(ProcessLookupError):          # no process of it left behind
            os.killpg(stopped.pid, signal.SIGKILL)
        stopped.wait()
    if stop == "SIGINT":
        assert stopped.returncode == 130, output
        assert "logging failed" not in output, output
        assert json.loads((folder / "summary.json").read_text())["status"] == "interrupted"
        assert scalar_steps(folder) == [1, 2]
    else:
        assert not (folder / "summary.json").exists()
    marker.touch()
    again = cli(tmp_path, *command)
    output, _ = again.communicate(timeout=DEADLINE)
    assert again.returncode == 0, output
    assert "logging failed" not in output
    each_epoch_once(folder)
    second_attempt = check_mlflow_run(uri, folder)
    assert (second_attempt == first_attempt) == checkpoints
    if stop == "SIGKILL" and not checkpoints:   # completed runs are replayed: nothing sent
        before = raw_steps(folder)
        third = cli(tmp_path, *command)
        output, _ = third.communicate(timeout=DEADLINE)
        assert third.returncode == 0 and "2 already completed" in output, output  # + baseline
        assert raw_steps(folder) == before
        assert check_mlflow_run(uri, folder) == second_attempt


def test_a_completed_run_whose_logging_was_cut_short_is_written_once(tmp_path, plugin):
    """A command killed between writing a run's folder and logging its end leaves event files
    with its epochs and no final state: the next command writes the run whole, each epoch
    once (a run whose event files are whole is left alone)."""
    needs("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    marker = tmp_path / "go"
    marker.touch()                          # nothing is held
    command = ["run", str(config(tmp_path, marker)), "--out", str(tmp_path / "out"),
               "--plugin", str(plugin), "--no-report"]
    assert runner.invoke(app, command).exit_code == 0
    folder = tmp_path / "out" / "live" / "runs" / "hold__seed=0"
    metrics = pd.read_csv(folder / "metrics.csv")
    cut_short = SummaryWriter(str(folder))  # what the killed command had sent of it
    for epoch, value in zip(metrics["epoch"], metrics["val_loss"]):
        cut_short.add_scalar("val_loss", value, epoch)
    cut_short.close()
    result = runner.invoke(app, [*command, "--log", "tensorboard"])
    assert result.exit_code == 0 and "2 already completed" in result.output, result.output
    each_epoch_once(folder)
    assert scalar_steps(folder, "final/test_accuracy") == [EPOCHS]
    whole = {path.name: path.stat().st_mtime_ns for path in folder.glob("events.out.*")}
    assert runner.invoke(app, [*command, "--log", "tensorboard"]).exit_code == 0
    assert {path.name: path.stat().st_mtime_ns for path in folder.glob("events.out.*")} == whole


# ----------------------------------------------------------------------------- display

def test_a_fused_groups_bar_shows_one_row_per_epoch():
    """Every member's row reaches the progress display; a group keeps one bar, showing the
    first member's row of each epoch, removed when the group is recorded."""
    import io

    from rich.console import Console

    from regbench.experiment.progress import LiveProgress

    members = [{"run_id": f"l2__seed={s}", "train": {"epochs": 3}} for s in (0, 1)]
    group = {"run_id": "l2__seed=0 +1 fused", "fused": members, "train": {"epochs": 3}}
    progress = LiveProgress(Console(file=io.StringIO(), force_terminal=False))
    progress.start(2, 0)
    progress.run_started(group)
    for epoch in (1, 2):
        for seed, member in enumerate(members):
            progress.epoch(member, {"epoch": epoch, "val_loss": seed + epoch / 10})
    (bar,) = [task for task in progress.bars.tasks if task.description.strip() == group["run_id"]]
    assert len(progress.bars.tasks) == 2                   # the sweep's bar and the group's
    assert bar.completed == 2 and bar.fields["metrics"] == "val_loss 0.2000"
    for member in members:
        progress.run_finished(member, {"status": "completed", "verdict": None, "seconds": 1})
    progress.task_finished(group)
    assert [task.description for task in progress.bars.tasks] == ["all runs"]
    progress.close()
