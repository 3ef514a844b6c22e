"""regbench: compare regularizers in deep learning under identical conditions."""

__version__ = "0.1.0"


def run_experiment(*args, **kwargs):
    """See :func:`regbench.experiment.run_experiment` (imported lazily: torch is heavy)."""
    from regbench.experiment import run_experiment as run

    return run(*args, **kwargs)
