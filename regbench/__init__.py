"""regbench: compare regularizers in deep learning under identical conditions.

Importing regbench changes nothing in the process (environment, threads, seeds): the CLI entry
point decides such things (``regbench.engine.threads``). The package map is in
docs/architecture.md.
"""

__version__ = "0.1.0"


def run_experiment(*args, **kwargs):
    """See :func:`regbench.experiment.runner.run_experiment`."""
    from regbench.experiment.runner import run_experiment as run  # deferred: torch

    return run(*args, **kwargs)
