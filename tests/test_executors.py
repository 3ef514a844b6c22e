"""Executors give the same runs: sequential, --workers 2 and a real local Ray produce identical
metrics.csv (apart from the seconds column) for the same config and seeds."""
from __future__ import annotations

import os

import pandas as pd
import pytest

from regbench.engine.threads import default_threads
from regbench.experiment.config import load_config
from regbench.experiment.launch import Launch
from regbench.experiment.runner import run_experiment
from regbench.experiment.sweeps import apply_params
from tests.conftest import TINY_DIGITS, regbench_without, write_config

# train.threads: 1 pins torch's intra-op threads: CPU float reductions may differ with the count
GRID = ["recipes.l2.l2.lambda=0.5,5"]


def metrics(results) -> dict[str, pd.DataFrame]:
    return {p.parent.name: pd.read_csv(p).drop(columns=["seconds"])
            for p in sorted((results / "runs").glob("*/metrics.csv"))}


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    out = tmp_path_factory.mktemp("sequential")
    config = write_config(out / "t.yaml", TINY_DIGITS.replace("seeds: [0]", "seeds: [0, 1]"))
    outcome = run_experiment(apply_params(load_config(config), GRID), Launch(out=out, report=False))
    assert outcome.exit_code == 0
    return config, metrics(outcome.results_dir)


def check_same(sequential, tmp_path, **options):
    config, expected = sequential
    outcome = run_experiment(apply_params(load_config(config), GRID),
                             Launch(out=tmp_path, report=False, **options))
    assert outcome.exit_code == 0
    assert [s["status"] for s in outcome.summaries] == ["completed"] * 6
    found = metrics(outcome.results_dir)
    assert list(found) == list(expected) and len(found) == 6
    for name in expected:
        pd.testing.assert_frame_equal(found[name], expected[name], check_exact=True)
    return outcome


def test_two_worker_processes_match_sequential(sequential, tmp_path):
    check_same(sequential, tmp_path, workers=2, fuse="off")   # six tasks: two processes


def test_workers_never_outnumber_the_tasks(tmp_path, monkeypatch):
    """``--workers 3`` on a sweep that fuses into two groups (the baseline's runs, l2's)
    starts two worker processes, with the same numbers as one process; a sweep that fuses
    into one group trains in this process with every core: spawning a worker for it would
    only add the worker's start-up (benchmarks/sweep_workers.py)."""
    from regbench.experiment import runner

    built = []
    real = runner.make_executor

    def recording(name, workers=1, **options):
        built.append(workers)
        return real(name, workers=workers, **options)

    monkeypatch.setattr(runner, "make_executor", recording)
    config = write_config(tmp_path / "t.yaml", TINY_DIGITS.replace("seeds: [0]", "seeds: [0, 1]"))
    one = run_experiment(apply_params(load_config(config), GRID),
                         Launch(out=tmp_path / "one", report=False))
    three = run_experiment(apply_params(load_config(config), GRID),
                           Launch(out=tmp_path / "three", report=False, workers=3))
    assert one.exit_code == three.exit_code == 0 and built == [1, 2]
    assert sorted(s["fused"]["members"] for s in three.summaries) == [2, 2, 4, 4, 4, 4]
    expected, found = metrics(one.results_dir), metrics(three.results_dir)
    assert list(found) == list(expected) and len(found) == 6
    for name in expected:
        pd.testing.assert_frame_equal(found[name], expected[name], check_exact=True)
    alone = config.with_name("alone.yaml")
    alone.write_text(config.read_text().replace("l2: {l2: {lambda: 1.0}}", "baseline: {}")
                     .replace("seeds: [0, 1]", "seeds: [0, 1, 2]"))
    outcome = run_experiment(load_config(alone), Launch(out=tmp_path / "two", report=False,
                                                        workers=2))
    assert outcome.exit_code == 0 and built[-1] == 1       # one group of 3: this process
    assert {s["fused"]["members"] for s in outcome.summaries} == {3}


def test_a_short_sweep_under_workers_trains_here_and_a_long_one_in_processes(
        sequential, tmp_path, monkeypatch):
    """--workers trains the first task in this process, timed, and starts the worker
    processes for the rest only when they would take at least REGBENCH_WORKERS_PAYBACK
    seconds here; the numbers are the same either way."""
    import regbench.engine.executors as executors

    monkeypatch.delenv("REGBENCH_WORKERS_PAYBACK")          # the default, then set below
    spawned = []
    real_pool = executors.ProcessExecutor.run

    def watching(self, specs, threads, progress=None):
        for item in real_pool(self, specs, threads, progress):
            spawned.append(self.pool is not None)
            yield item

    monkeypatch.setattr(executors.ProcessExecutor, "run", watching)
    assert executors.PAYBACK_SECONDS == 10.0 and executors._payback_from_environment() == 10.0
    # six runs of ~0.1 s: short under any load with a payback no machine reaches
    monkeypatch.setenv("REGBENCH_WORKERS_PAYBACK", "1e9")
    check_same(sequential, tmp_path / "short", workers=2, fuse="off")
    assert spawned == [False] * 6                                       # none: all here
    spawned.clear()
    monkeypatch.setenv("REGBENCH_WORKERS_PAYBACK", "1e-6")              # any sweep is long
    check_same(sequential, tmp_path / "long", workers=2, fuse="off")
    assert spawned == [False] + [True] * 5          # the first here, the rest in processes


def test_the_pace_counts_only_the_epochs_a_task_trained_here():
    """A first task resumed late or stopped early trained few epochs: the pace is its time per
    epoch trained, never per epoch planned (which would make any sweep look short)."""
    from types import SimpleNamespace

    from regbench.engine.executors import _trained
    from regbench.engine.result import GROUP_KEY

    def result(rows, resumed=None):
        return SimpleNamespace(rows=[{}] * rows, summary={"resumed_from_epoch": resumed})

    assert _trained({"run_id": "a"}, result(10)) == 10
    assert _trained({"run_id": "a"}, result(10, resumed=8)) == 2
    group = {"run_id": "g", GROUP_KEY: [{}, {}]}
    assert _trained(group, [({}, result(3)), ({}, result(5, resumed=5))]) == 3
    assert _trained({"run_id": "a"}, SimpleNamespace(rows=[], summary=None)) == 0


def test_a_bad_payback_is_one_line_before_anything_is_written(tiny_config, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {**os.environ, "REGBENCH_WORKERS_PAYBACK": "soon"}
    done = subprocess.run([sys.executable, "-m", "regbench", "run", str(tiny_config), "--out",
                           str(tmp_path / "out"), "--workers", "2"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "REGBENCH_WORKERS_PAYBACK: must be a number of seconds >= 0 (got 'soon')" in \
        done.stderr
    assert not (tmp_path / "out").exists()


def test_ray_tasks_match_sequential(sequential, tmp_path):
    # a real local Ray: the ray extra, which .ci/run installs; README's dev install does not
    pytest.importorskip("ray", reason="the optional 'ray' extra is not installed "
                                      "(pip install -e '.[ray]')")
    outcome = check_same(sequential, tmp_path, executor="ray")
    from regbench.analysis.status import folder_status

    status = folder_status(outcome.results_dir)         # `regbench status` on a Ray folder
    assert status.counts() == {"completed": 6} and status.holder is None


def test_threads_are_split_between_workers():
    assert default_threads(1, cores=8) == 8
    assert default_threads(3, cores=8) == 2
    assert default_threads(16, cores=8) == 1


def test_missing_ray_is_a_clear_error(tiny_config, tmp_path):
    # the interpreter is told ray cannot be imported, as on a machine without the extra
    result = regbench_without("ray", ["run", str(tiny_config), "--executor", "ray", "--out",
                                      str(tmp_path)])
    assert result.returncode == 2
    assert result.stderr.strip() == ("regbench: error: --executor ray needs Ray, which is not "
                                     "installed; install it with pip install -e '.[ray]' (or pip "
                                     "install 'ray>=2.9')")
