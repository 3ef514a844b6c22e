"""CPU threads for a run and OpenMP's wait policy: decided by the process that trains, never by
importing regbench.

OpenMP reads ``OMP_WAIT_POLICY`` once, when torch loads, so the CLI entry point calls
:func:`choose_wait_policy` before anything imports torch, and a ``--workers`` driver passes its
decision to the workers it spawns (:func:`apply_wait_policy` runs first in each of them).
"""
from __future__ import annotations

import os
from typing import Optional

PASSIVE = "PASSIVE"


def wait_policy_for(loadavg: str) -> Optional[str]:
    """"PASSIVE" when /proc/loadavg's text shows another runnable thread now, else None
    (OpenMP's default). The count of runnable threads is read rather than the load average:
    a CPU-bound process is always runnable, while the average lags a minute behind."""
    try:
        running_now = int(loadavg.split()[3].split("/")[0]) - 1    # without this process
    except (ValueError, IndexError):
        return PASSIVE
    return PASSIVE if running_now > 0 else None


def current_wait_policy() -> Optional[str]:
    """The policy for this machine now (see :func:`choose_wait_policy`); the user's own
    ``OMP_WAIT_POLICY`` when set."""
    if "OMP_WAIT_POLICY" in os.environ:
        return os.environ["OMP_WAIT_POLICY"]
    try:
        with open("/proc/loadavg") as loadavg:
            return wait_policy_for(loadavg.read())
    except OSError:                                       # no /proc: be safe
        return PASSIVE


def choose_wait_policy() -> Optional[str]:
    """Set OpenMP's wait policy for this process, before torch is imported; returns it.

    On an idle machine the OpenMP default (spin briefly, then sleep) trains small models about
    1.7x faster with 2 threads than passive waiting, under which the second thread gains
    nothing. Beside other CPU-bound work, spinning threads make training 2-6x slower (more on
    some machines) and passive waiting is as fast as one thread. So: passive when another
    thread is running as regbench starts, the default otherwise
    (``python benchmarks/threads.py``). Only speed depends on it, never the numbers; a user's
    own OMP_WAIT_POLICY wins.
    """
    policy = current_wait_policy()
    apply_wait_policy(policy)
    return policy


def apply_wait_policy(policy: Optional[str]) -> None:
    """Set ``OMP_WAIT_POLICY`` to ``policy`` (None: OpenMP's default), unless the user set it."""
    if policy is not None and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = policy


def available_cores() -> int:
    """Cores this process may use (the affinity mask, not the machine's total)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_threads(workers: int, cores: Optional[int] = None) -> int:
    """Split the cores between parallel runs (at least one thread each): oversubscribed torch
    threads make CPU training many times slower, so this is set even for one worker."""
    return max(1, (cores or available_cores()) // max(1, workers))
