"""Resume and integrity: a killed sweep redoes only its unfinished runs, Ctrl-C saves the run in
flight and exits 130, a changed config retrains, --fresh keeps the old folder aside."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from regbench.cli import app
from tests.conftest import REPO, write_config

runner = CliRunner()

# about a second per run on one thread: long enough to kill the process in the middle
SLOW_SWEEP = """\
name: killme
seeds: [0, 1]
dataset: {{name: digits}}
model: {{name: mlp, hidden: [64]}}
train: {{epochs: {epochs}, batch_size: 16, optimizer: {{name: sgd, lr: 0.05}}, threads: 1}}
recipes:
  l2: {{l2: {{lambda: 1.0}}}}
sweep:
  recipes.l2.l2.lambda: {lambdas}
"""


def ctrl_c_reaches_it() -> None:
    """In the child before it starts: SIGINT as a terminal delivers it. A shell starts a
    background job (`pytest … &`, nohup) with SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler: a Ctrl-C test would see the run complete."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "regbench", "run", str(config), "--out", str(out),
               "--no-report", *extra]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=ctrl_c_reaches_it)


def summaries(results: Path) -> dict[str, dict]:
    found = {}
    for path in (results / "runs").glob("*/summary.json"):
        found[path.parent.name] = json.loads(path.read_text())
    return found


def wait_for_summaries(results: Path, count: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while len(summaries(results)) < count:
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the sweep made no progress"
        time.sleep(0.02)


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}


def without_seconds(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame.columns if "seconds" in c])


def test_sigkill_mid_sweep_then_resume_redoes_only_unfinished_runs(tmp_path):
    """Acceptance 2."""
    config = write_config(tmp_path / "k.yaml", SLOW_SWEEP.format(epochs=15,
                                                                 lambdas="[0.1, 1, 10, 100]"))
    killed_out, clean_out = tmp_path / "killed", tmp_path / "clean"
    process = start(config, killed_out)
    wait_for_summaries(killed_out / "killme", 3, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stdout.close()
    runs = killed_out / "killme" / "runs"
    finished = {name for name, s in summaries(killed_out / "killme").items()
                if s["status"] == "completed"}
    assert 3 <= len(finished) < 10
    before = {name: snapshot(runs / name) for name in finished}

    again = subprocess.run([sys.executable, "-m", "regbench", "run", str(config), "--out",
                            str(killed_out), "--no-report"], cwd=REPO, capture_output=True,
                           text=True)
    assert again.returncode == 0, again.stderr
    assert f"({len(finished)} already completed, skipped)" in again.stderr
    assert again.stderr.count(": completed") == 10 - len(finished)   # only those trained
    for name in finished:
        assert snapshot(runs / name) == before[name], f"{name} was rewritten"
    after = summaries(killed_out / "killme")
    assert len(after) == 10 and {s["status"] for s in after.values()} == {"completed"}

    clean = subprocess.run([sys.executable, "-m", "regbench", "run", str(config), "--out",
                            str(clean_out), "--no-report"], cwd=REPO, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    for table in ("comparison.csv", "runs.csv"):
        resumed = pd.read_csv(killed_out / "killme" / table)
        uninterrupted = pd.read_csv(clean_out / "killme" / table)
        pd.testing.assert_frame_equal(without_seconds(resumed), without_seconds(uninterrupted))
    for name in after:
        pd.testing.assert_frame_equal(
            without_seconds(pd.read_csv(runs / name / "metrics.csv")),
            without_seconds(pd.read_csv(clean_out / "killme" / "runs" / name / "metrics.csv")))


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_stop_signal_saves_the_run_in_flight_and_resume_completes(tmp_path, workers, sig,
                                                                     code):
    """Ctrl-C, and SIGTERM as kill, systemd, Slurm and CI send it, save the runs in flight as
    interrupted and write the tables; exit 130 or 143."""
    epochs = 40
    config = write_config(tmp_path / "k.yaml", SLOW_SWEEP.format(epochs=epochs,
                                                                 lambdas="[1, 10]"))
    results = tmp_path / "killme"
    # solo runs: a fused group's epoch lasts as long as its members' together, so half a
    # second would not reach the end of one (a fused group's Ctrl-C: tests/test_fused.py)
    process = start(config, tmp_path, "--workers", workers, "--fuse", "off")
    wait_for_summaries(results, 2, process)
    time.sleep(0.5)            # the next runs are a few epochs in
    process.send_signal(sig)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == code, output
    assert (results / "comparison.md").is_file()     # the tables of what finished
    assert "Traceback" not in output and "interrupted" in output
    stopped = {n: s for n, s in summaries(results).items() if s["status"] == "interrupted"}
    assert stopped, output
    for name, summary in stopped.items():
        rows = pd.read_csv(results / "runs" / name / "metrics.csv")
        assert len(rows) < epochs and summary["stopped_epoch"] == len(rows)
    assert sum(len(pd.read_csv(results / "runs" / n / "metrics.csv")) for n in stopped) >= 1

    again = runner.invoke(app, ["run", str(config), "--out", str(tmp_path), "--no-report"])
    assert again.exit_code == 0, again.output
    final = summaries(results)
    assert len(final) == 6 and {s["status"] for s in final.values()} == {"completed"}
    for name in stopped:
        assert len(pd.read_csv(results / "runs" / name / "metrics.csv")) == epochs


def test_changed_config_retrains_and_fresh_moves_the_old_folder_aside(tiny_config, tmp_path):
    first = runner.invoke(app, ["run", str(tiny_config), "--out", str(tmp_path), "--no-report"])
    assert first.exit_code == 0, first.output
    results = tmp_path / "tiny"
    old = summaries(results)

    same = runner.invoke(app, ["run", str(tiny_config), "--out", str(tmp_path), "--no-report"])
    assert "(2 already completed, skipped)" in same.output
    changed = runner.invoke(app, ["run", str(tiny_config), "--out", str(tmp_path), "--no-report",
                                  "--set", "train.epochs=3"])
    assert changed.exit_code == 0 and "skipped" not in changed.output
    retrained = summaries(results)
    assert {s["config_hash"] for s in retrained.values()}.isdisjoint(
        s["config_hash"] for s in old.values())
    assert all(s["stopped_epoch"] == 3 for s in retrained.values())

    fresh = runner.invoke(app, ["run", str(tiny_config), "--out", str(tmp_path), "--no-report",
                                "--fresh"])
    assert fresh.exit_code == 0 and "skipped" not in fresh.output
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("tiny.old-")]
    assert len(aside) == 1
    assert summaries(aside[0]) == retrained           # nothing deleted
    assert {s["stopped_epoch"] for s in summaries(results).values()} == {2}


def test_after_ctrl_c_no_report_of_an_earlier_state_is_left_and_advice_says_resume(tmp_path):
    config = write_config(tmp_path / "k.yaml", SLOW_SWEEP.format(epochs=40, lambdas="[1, 10]"))
    results = tmp_path / "killme"
    results.mkdir()
    (results / "report.html").write_text("<html>report of an earlier run</html>")
    process = subprocess.Popen([sys.executable, "-m", "regbench", "run", str(config), "--out",
                                str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               preexec_fn=ctrl_c_reaches_it)
    wait_for_summaries(results, 2, process)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    page = (results / "report.html").read_text()
    assert "earlier run" not in page and "interrupted" in page
    finished = sum(s["status"] == "completed" for s in summaries(results).values())
    assert f"{finished} of 6 planned run(s) finished" in page
    notes = (results / "comparison.md").read_text()
    assert "have not finished" in notes and "run the same command again" in notes
    assert "--seeds" not in notes          # no advice to add seeds the config already has
