"""regbench: compare regularizers in deep learning under identical conditions."""

import os

__version__ = "0.1.0"

# OpenMP threads that spin while waiting make torch many times slower on a machine that also
# runs other work (measured: a 2-thread run took 2.8x as long as a 1-thread run beside one busy
# process, and as long as the 1-thread run with passive waiting). It must be set before torch
# is imported; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run_experiment(*args, **kwargs):
    """See :func:`regbench.experiment.run_experiment` (imported lazily: torch is heavy)."""
    from regbench.experiment import run_experiment as run

    return run(*args, **kwargs)
