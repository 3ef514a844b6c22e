"""regbench: compare regularizers in deep learning under identical conditions."""

import os

__version__ = "0.1.0"


def _choose_wait_policy() -> None:
    """OpenMP's wait policy, chosen before torch is imported (it is read once, at load).

    On an idle machine the OpenMP default (spin briefly, then sleep) trains small models about
    1.7x faster with 2 threads than passive waiting, under which the second thread gains
    nothing. Beside other CPU-bound work, spinning threads make training 2-6x slower (more on
    some machines) and passive waiting is as fast as one thread. So: passive when another
    thread is running as regbench starts, the default otherwise
    (``python benchmarks/threads.py``). Only speed depends on it, never the numbers; a user's
    own OMP_WAIT_POLICY wins.
    """
    if "OMP_WAIT_POLICY" in os.environ or os.environ.get(CHOSEN) == str(os.getppid()):
        return   # the user's choice, or that of the regbench process that spawned this worker
    # spawned workers inherit the decision (their siblings are not "other work"); any other
    # process started from here decides afresh
    os.environ[CHOSEN] = str(os.getpid())
    try:
        with open("/proc/loadavg") as loadavg:
            policy = wait_policy_for(loadavg.read())
    except OSError:                                       # no /proc: be safe
        policy = "PASSIVE"
    if policy is not None:
        os.environ["OMP_WAIT_POLICY"] = policy


def wait_policy_for(loadavg: str):
    """"PASSIVE" when /proc/loadavg's text shows another runnable thread now, else None
    (OpenMP's default). The count of runnable threads is read rather than the load average:
    a CPU-bound process is always runnable, while the average lags a minute behind."""
    try:
        running_now = int(loadavg.split()[3].split("/")[0]) - 1    # without this process
    except (ValueError, IndexError):
        return "PASSIVE"
    return "PASSIVE" if running_now > 0 else None


CHOSEN = "REGBENCH_WAIT_POLICY_CHOSEN"
_choose_wait_policy()


def run_experiment(*args, **kwargs):
    """See :func:`regbench.experiment.run_experiment` (imported lazily: torch is heavy)."""
    from regbench.experiment import run_experiment as run

    return run(*args, **kwargs)
