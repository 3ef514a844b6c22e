"""SIGKILL at many moments of a sweep: each resume redoes only unfinished runs, a completed run
is never rewritten, no half-written file survives, and the final tables equal an uninterrupted
sweep's."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pandas as pd

from tests.conftest import REPO
from tests.test_resume import SLOW_SWEEP, snapshot, start, summaries, without_seconds

KILL_SEED = 2026          # the kill moments are random but repeatable
MAX_KILLS = 6


def run_to_the_end(config, out) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "regbench", "run", str(config), "--out", str(out),
               "--no-report"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def wait_until(condition, process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def completed(results) -> dict[str, dict]:
    return {name: s for name, s in summaries(results).items() if s["status"] == "completed"}


def test_kill_at_random_moments_then_resume(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(SLOW_SWEEP.format(epochs=3, lambdas="[0.1, 1.0, 10.0]"))
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    results = killed / "killme"
    rng = random.Random(KILL_SEED)
    frozen: dict[str, dict] = {}   # run -> files of its folder when first seen completed
    kills = 0
    while kills < MAX_KILLS:
        process = start(config, killed)
        done = len(completed(results)) if results.exists() else 0
        moment = rng.choice(["start-up", "mid-run", "just after a run"])
        if moment == "start-up":       # imports, planning, data loading, first writes
            time.sleep(rng.uniform(0.05, 2.0))
        else:                          # somewhere inside the sweep
            wait_until(lambda: results.exists() and len(completed(results)) > done, process)
            time.sleep(rng.uniform(0.0, 0.05) if moment == "just after a run"
                       else rng.uniform(0.1, 0.6))
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        print(f"kill {kills} ({moment}): "
              f"{len(completed(results)) if results.exists() else 0} runs completed")
        for name in completed(results) if results.exists() else {}:
            folder = snapshot(results / "runs" / name)
            if name in frozen:
                assert folder == frozen[name], f"{name} was rewritten after it completed"
            frozen[name] = folder
    final = run_to_the_end(config, killed)
    assert final.returncode == 0, final.stdout + final.stderr
    assert kills >= 3, "the sweep finished before it could be killed several times"
    for name, folder in frozen.items():
        assert snapshot(results / "runs" / name) == folder, f"{name} was redone"
    leftovers = [p for p in results.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    reference = run_to_the_end(config, clean)
    assert reference.returncode == 0
    runs = sorted(p.name for p in (results / "runs").iterdir())
    assert runs == sorted(p.name for p in (clean / "killme" / "runs").iterdir())
    for table in ("comparison.csv", "runs.csv"):
        pd.testing.assert_frame_equal(
            without_seconds(pd.read_csv(results / table)),
            without_seconds(pd.read_csv(clean / "killme" / table)))
    for name in runs:
        pd.testing.assert_frame_equal(
            without_seconds(pd.read_csv(results / "runs" / name / "metrics.csv")),
            without_seconds(pd.read_csv(clean / "killme" / "runs" / name / "metrics.csv")))
