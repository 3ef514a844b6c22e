"""Trackers against stores and folders they cannot write (issue 31): a read-only MLflow SQLite
store is one line and exit 2 in seconds, before anything trains; a TensorBoard write that fails
in its writer thread is one warning, never a traceback, and the run folders stay complete."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from regbench.cli import app
from tests.conftest import REPO, digits_yaml

RECIPES = "  baseline: {}\n  l2: {l2: {lambda: 1.0}}\n"
RETRIES = 100  # seconds MLflow's retries of a store it cannot use took on an idle machine


def fast_bound() -> float:
    """What "at once" allows here: three times what starting torch and MLflow takes on this
    machine now (a loaded machine starts them slowly), plus 15 s, never as long as the
    retries took on an idle one."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import torch, mlflow"], check=True)
    return min(3 * (time.monotonic() - start) + 15, 0.9 * RETRIES)
runner = CliRunner()


def experiment(tmp_path: Path) -> Path:
    config = tmp_path / "tracked.yaml"
    config.write_text(digits_yaml("tracked", RECIPES, seeds="[0]", epochs=2))
    return config


@pytest.fixture
def read_only():
    """``read_only(folder)`` -> the prefix of a command under which ``folder`` cannot be
    written: by its mode for a user; for root, whom modes do not stop, by a read-only bind
    mount in the command's own mount namespace (``unshare``). Skips where neither works."""
    changed: list[Path] = []

    def make(folder: Path) -> list[str]:
        if os.geteuid() != 0:
            folder.chmod(0o555)
            changed.append(folder)
            return []
        prefix = ["unshare", "--mount", "sh", "-c",
                  'mount --bind -o ro "$0" "$0" && exec "$@"', str(folder)]
        if shutil.which("unshare") is None or subprocess.run(
                [*prefix, "sh", "-c", 'test ! -w "$0"', str(folder)],
                capture_output=True).returncode != 0:
            pytest.skip("running as root, and no read-only bind mount (unshare --mount) here")
        return prefix

    yield make
    for folder in changed:
        folder.chmod(0o755)


def regbench(prefix: list[str], *args) -> tuple[subprocess.CompletedProcess, float]:
    """The CLI in a fresh process (under ``prefix``) and its wall-clock seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    start = time.monotonic()
    result = subprocess.run([*prefix, sys.executable, "-m", "regbench", *map(str, args)],
                            cwd=REPO, capture_output=True, text=True, env=env)
    return result, time.monotonic() - start


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("regbench: error: ") and "Traceback" not in text, text
    return lines[0]


# ----------------------------------------------------------------------------- MLflow

@pytest.mark.parametrize("case", ["new database", "existing database"])
def test_a_read_only_mlflow_store_is_one_line_in_seconds(tmp_path, read_only, case):
    """A database to create in a read-only folder (MLflow retried for ~100 s, 37 lines), or
    one there already (MLflow reads it, then fails at its first write)."""
    pytest.importorskip("mlflow", reason="the optional 'mlflow' extra is not installed "
                                         "(pip install -e '.[mlflow]')")
    store = tmp_path / "store"
    store.mkdir()
    database = store / "mlflow.db"
    uri = f"sqlite:///{database}"
    if case == "existing database":
        with sqlite3.connect(database) as made:
            made.execute("create table experiments (id integer)")
        made.close()
    prefix = read_only(store)
    out = tmp_path / "out"
    result, seconds = regbench(prefix, "run", experiment(tmp_path), "--out", out,
                               "--log", "mlflow", "--mlflow-uri", uri, "--no-report")
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert f"cannot use the tracking store {uri}: " in line and "read-only" in line, line
    assert "expected a" in line                                 # ... and what would do
    assert "retried" not in result.stderr
    bound = fast_bound()
    assert seconds < bound, f"{seconds:.0f} s (at most {bound:.0f} s)"
    assert not (out / "tracked" / "runs").exists()              # nothing trained
    assert os.listdir(store) == (["mlflow.db"] if case == "existing database" else [])


@pytest.mark.parametrize("case", ["a folder", "a read-only URI to no file"])
def test_an_unopenable_sqlite_store_is_one_line_at_once(tmp_path, case):
    """What MLflow retried for ~100 s besides a read-only folder, whoever runs it: a folder
    where the database should be (refused before MLflow sees it), and a SQLite URI filename
    opening a missing file read-only (left to MLflow, which now tries once)."""
    pytest.importorskip("mlflow", reason="the optional 'mlflow' extra is not installed "
                                         "(pip install -e '.[mlflow]')")
    database = tmp_path / "mlflow.db"
    if case == "a folder":
        database.mkdir()
        uri = f"sqlite:///{database}"
    else:
        uri = f"sqlite:///file:{database}?mode=ro&uri=true"
    start = time.monotonic()
    result = runner.invoke(app, ["run", str(experiment(tmp_path)), "--out",
                                 str(tmp_path / "out"), "--log", "mlflow", "--mlflow-uri", uri,
                                 "--no-report"])
    assert result.exit_code == 2, result.output
    line = one_line(result.output)
    assert f"cannot use the tracking store {uri}" in line
    assert ("is a folder; expected an SQLite database file" if case == "a folder"
            else "unable to open database file") in line
    assert "retried" not in result.output
    assert time.monotonic() - start < fast_bound()
    assert not (tmp_path / "out" / "tracked" / "runs").exists()


# ----------------------------------------------------------------------------- TensorBoard

def test_a_failed_tensorboard_write_is_one_warning_and_no_traceback(tmp_path, read_only):
    """The experiment's tensorboard/ folder is read-only: TensorBoard's writer thread fails to
    create its event file there. The runs, their folders and their own event files are whole."""
    pytest.importorskip("tensorboard", reason="the optional 'tensorboard' extra is not "
                                              "installed (pip install -e '.[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summaries = tmp_path / "out" / "tracked" / "tensorboard"
    summaries.mkdir(parents=True)
    result, _ = regbench(read_only(summaries), "run", experiment(tmp_path), "--out",
                         tmp_path / "out", "--log", "tensorboard", "--no-report")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output and "Exception in thread" not in output, output
    warnings = [line for line in output.splitlines() if "tensorboard logging failed" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: experiment:"), output
    assert list(summaries.iterdir()) == []
    for folder in (tmp_path / "out" / "tracked" / "runs").iterdir():
        assert json.loads((folder / "summary.json").read_text())["status"] == "completed"
        events = EventAccumulator(str(folder))
        events.Reload()
        assert [e.value for e in events.Scalars("val_loss")] == pytest.approx(
            pd.read_csv(folder / "metrics.csv")["val_loss"].tolist(), rel=1e-6)


def test_a_log_folder_removed_while_writing_raises_once_and_prints_nothing(tmp_path,
                                                                         monkeypatch):
    """The writer thread finds the folder gone: its error is raised in the caller (which the
    tracker turns into its one warning) and never reaches the process's thread hook, which
    prints it as a traceback; another thread's error still does."""
    pytest.importorskip("tensorboard", reason="the optional 'tensorboard' extra is not "
                                              "installed (pip install -e '.[tensorboard]')")
    import threading

    from regbench.tracking.tensorboard_tracker import _writer

    reached: list[type] = []

    def hook(args):
        reached.append(args.exc_type)

    monkeypatch.setattr(threading, "excepthook", hook)   # Python's own prints a traceback
    folder = tmp_path / "run"
    folder.mkdir()
    with pytest.raises(FileNotFoundError):
        with _writer(folder) as writer:
            other = threading.Thread(target=lambda: 1 / 0)
            other.start()
            other.join()
            shutil.rmtree(folder)
            for epoch in range(1, 4):
                writer.add_scalar("val_loss", 0.5, epoch)
    assert reached == [ZeroDivisionError]
    assert threading.excepthook is hook
