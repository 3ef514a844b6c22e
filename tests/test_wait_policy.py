"""OpenMP's wait policy: passive beside other work, OpenMP's default on an idle machine, the
user's own setting always wins (benchmarks/threads.py measures why), and it is decided by the
CLI entry point and the workers it spawns, never by importing regbench."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from regbench.engine.threads import wait_policy_for

# without the policy and without the REGBENCH_* settings the tests' conftest makes
CLEAN = {k: v for k, v in os.environ.items()
         if k != "OMP_WAIT_POLICY" and not k.startswith("REGBENCH")}
# what the console script does before any command runs, then what a process sees
CLI_PROBE = ("import os, regbench.cli as cli; cli.choose_wait_policy(); "
             "print(os.environ.get('OMP_WAIT_POLICY'))")


def probe(code: str, **env_changes) -> str:
    return subprocess.run([sys.executable, "-c", code], env={**CLEAN, **env_changes},
                          capture_output=True, text=True, check=True).stdout.strip()


def test_policy_from_load_average_text():
    assert wait_policy_for("0.12 0.30 0.40 1/230 999") is None            # only this process
    assert wait_policy_for("1.80 1.30 0.40 1/230 999") is None            # busy until just now
    assert wait_policy_for("0.05 0.30 0.40 2/230 999") == "PASSIVE"       # another one running
    assert wait_policy_for("garbled") == "PASSIVE"


def test_importing_regbench_changes_no_environment():
    code = ("import os, regbench, regbench.cli, regbench.engine.executors, regbench.experiment.runner; "
            "print('OMP_WAIT_POLICY' in os.environ, sorted(k for k in os.environ "
            "if k.startswith('REGBENCH')))")
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)                       # a busy machine: the CLI would choose PASSIVE
        assert probe(code) == "False []"
    finally:
        hog.kill()
        hog.wait()


def test_the_cli_waits_passively_beside_a_busy_process():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert probe(CLI_PROBE) == "PASSIVE"
    finally:
        hog.kill()
        hog.wait()


def test_the_users_setting_wins():
    assert probe(CLI_PROBE, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"


def test_workers_take_the_drivers_policy_before_torch_loads():
    """A spawned worker sets the policy its driver chose, and only then imports torch."""
    code = """
import multiprocessing, os, sys
from concurrent.futures import ProcessPoolExecutor
from regbench.engine import executors

def report():
    return os.environ.get("OMP_WAIT_POLICY"), "torch" in sys.modules

if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    events, stop = context.Queue(), context.Event()
    for policy in ("PASSIVE", None):
        with ProcessPoolExecutor(1, mp_context=context, initializer=executors._init_worker,
                                 initargs=(1, events, stop, policy)) as pool:
            print(pool.submit(report).result())
    print("torch" in sys.modules)
"""
    script = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"regbench_wait_{os.getpid()}.py")
    with open(script, "w") as handle:
        handle.write(code)
    try:
        lines = probe(f"import runpy; runpy.run_path({script!r}, run_name='__main__')"
                      ).splitlines()
    finally:
        os.unlink(script)
    # the worker imported torch in _init_worker, after the policy was in its environment; the
    # executors module itself (what a worker imports before its initializer runs) loads no torch
    assert lines == ["('PASSIVE', True)", "(None, True)", "False"]
