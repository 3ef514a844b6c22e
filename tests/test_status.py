"""`regbench status OUT/NAME`: a real run's folder read while it trains, after it is killed and
once it is finished; damaged and foreign folders. Nothing in the folder is changed."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from typer.testing import CliRunner

from regbench.analysis.status import folder_status
from regbench.cli import app
from tests.conftest import TINY_DIGITS, write_config
from tests.test_bad_input import one_error_line
from tests.test_resume import SLOW_SWEEP, start

runner = CliRunner()
DEADLINE = 240.0        # seconds: a loaded 2-core machine starts torch slowly


def status_text(folder: Path, *options: str) -> str:
    result = runner.invoke(app, ["status", str(folder), *options])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def files(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*")
            if p.is_file()}


def wait_until(condition, process, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert process.poll() is None, f"the run ended before {what}: {process.stdout.read()}"
        assert time.monotonic() < deadline, f"no {what} within {DEADLINE} s"
        time.sleep(0.2)


def freeze_mid_run(process, folder: Path) -> None:
    """SIGSTOP the driver at a moment a run has a checkpoint and no summary yet (not between
    two runs), so that what is read next cannot change under the reader."""
    deadline = time.monotonic() + DEADLINE
    while True:
        process.send_signal(signal.SIGSTOP)
        os.waitpid(process.pid, os.WUNTRACED)       # returns once it has stopped
        if any(not (path.parent / "summary.json").exists()
               for path in (folder / "runs").glob("*/checkpoint.pt")):
            return
        process.send_signal(signal.SIGCONT)
        assert process.poll() is None and time.monotonic() < deadline, "never caught mid-run"
        time.sleep(0.3)


def test_status_of_a_run_while_it_trains_after_a_kill_and_when_done(tmp_path):
    config = tmp_path / "slow.yaml"
    text = SLOW_SWEEP.format(epochs=150, lambdas="[1, 10]")
    assert "threads: 1}" in text
    config.write_text(text.replace("threads: 1}", "threads: 1, checkpoint_every: 1}"))
    folder = tmp_path / "killme"
    process = start(config, tmp_path, "--fuse", "off")     # six runs, one after another
    try:   # status while it trains (frozen mid-run), then after a SIGKILL
        wait_until(lambda: (folder / "runs").is_dir() and any(
            (folder / "runs").glob("*/checkpoint.pt")), process, "checkpoint")
        freeze_mid_run(process, folder)     # stopped, not killed: it still holds the lock
        live = folder_status(folder)
        assert live.holder and f"regbench pid {process.pid} on " in live.holder
        states = {run.run_id: run.state for run in live.runs}
        assert len(states) == 6 and "in progress" in states.values()
        assert set(states.values()) <= {"completed", "in progress", "pending"}
        text = status_text(folder)
        assert f"working on it now: regbench pid {process.pid}" in text
        assert "in progress" in text and "checkpoint after epoch" in text
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    before = files(folder)
    dead = folder_status(folder)
    assert dead.holder is None                    # the kernel dropped the dead process's lock
    stopped = [run for run in dead.runs if run.state == "stopped"]
    assert len(stopped) == 1 and stopped[0].detail.startswith("checkpoint after epoch ")
    text = status_text(folder)
    assert "no regbench process is working on it; run the same command again" in text
    assert files(folder) == before                 # read only
    again = start(config, tmp_path, "--fuse", "off")
    assert again.wait(timeout=600) == 0, again.stdout.read()
    done = folder_status(folder)
    assert done.counts() == {"completed": 6} and done.holder is None
    assert status_text(folder, "--all").count("completed") == 6 + 1      # the count line too


def test_failed_damaged_and_pending_runs_are_named(tmp_path):
    config = write_config(tmp_path / "t.yaml", TINY_DIGITS.replace("seeds: [0]", "seeds: [0, 1]"))
    assert runner.invoke(app, ["run", str(config), "--out", str(tmp_path),
                               "--no-report"]).exit_code == 0
    folder = tmp_path / "tiny"
    runs = sorted(p.parent for p in (folder / "runs").glob("*/summary.json"))
    assert len(runs) == 4
    (runs[0] / "summary.json").write_text("{truncated")
    summary = json.loads((runs[1] / "summary.json").read_text())
    (runs[1] / "summary.json").write_text(json.dumps({**summary, "status": "failed",
                                                      "error": "CUDA out of memory\nmore"}))
    (runs[2] / "summary.json").unlink()
    found = {run.run_id: (run.state, run.detail) for run in folder_status(folder).runs}
    assert found[runs[0].name][0] == "damaged" and "not valid JSON" in found[runs[0].name][1]
    assert found[runs[1].name] == ("failed", "CUDA out of memory")
    assert found[runs[2].name] == ("pending", "")
    assert found[runs[3].name] == ("completed", "")
    text = status_text(folder)
    assert "4 runs in its plan: 1 completed, 1 pending, 1 failed, 1 damaged" in text
    assert runs[3].name not in text and runs[3].name in status_text(folder, "--all")


def test_a_folder_that_is_not_a_results_folder_is_one_line(tmp_path):
    one_error_line(runner.invoke(app, ["status", str(tmp_path / "none")]), 2,
                   "no such results folder")
    one_error_line(runner.invoke(app, ["status", str(tmp_path)]), 2,
                   "not a regbench results folder (no plan.json)")
    (tmp_path / "plan.json").write_text('{"run_ids": 3}')
    one_error_line(runner.invoke(app, ["status", str(tmp_path)]), 2,
                   "run_ids is not a list of run names")


def test_a_status_reading_the_lock_never_makes_a_run_fail(tmp_path):
    """``status`` holds a shared lock on the folder's lock file for a moment; a run taking the
    folder then waits that moment out instead of calling the folder in use."""
    import fcntl
    import threading

    from regbench.results import ResultsLock

    folder = tmp_path / "exp"
    folder.mkdir()
    lock = ResultsLock(folder)
    lock.path.write_text("")
    reader = open(lock.path)
    fcntl.flock(reader, fcntl.LOCK_SH)                         # as holder() does
    threading.Timer(0.05, lambda: fcntl.flock(reader, fcntl.LOCK_UN)).start()
    with lock:                                                 # no "in use" error
        assert f"regbench pid {os.getpid()}" in lock.path.read_text()
    reader.close()
