"""OpenMP's wait policy: passive beside other work, OpenMP's default on an idle machine, and
the user's own setting always wins (benchmarks/threads.py measures why)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from regbench import wait_policy_for

PROBE = "import os, regbench; print(os.environ.get('OMP_WAIT_POLICY'))"


def probe(**env_changes) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "REGBENCH_WAIT_POLICY_CHOSEN")}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_policy_from_load_average_text():
    assert wait_policy_for("0.12 0.30 0.40 1/230 999") is None            # only this process
    assert wait_policy_for("1.80 1.30 0.40 1/230 999") is None            # busy until just now
    assert wait_policy_for("0.05 0.30 0.40 2/230 999") == "PASSIVE"       # another one running
    assert wait_policy_for("garbled") == "PASSIVE"


def test_a_busy_process_makes_regbench_wait_passively():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert probe() == "PASSIVE"
        # a marker left by some other process (not this probe's parent) is not obeyed
        assert probe(REGBENCH_WAIT_POLICY_CHOSEN="1") == "PASSIVE"
    finally:
        hog.kill()
        hog.wait()


def test_the_users_setting_and_the_spawning_regbench_process_win():
    assert probe(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    # a worker spawned by a regbench process that chose OpenMP's default keeps it
    assert probe(REGBENCH_WAIT_POLICY_CHOSEN=str(os.getpid())) == "None"
