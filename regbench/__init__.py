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


PLUGIN_API = ("register_model", "register_dataset", "register_regularizer", "register_tracker",
              "register_executor", "Regularizer")
NOTEBOOK_API = ("run", "Results", "Launch")


def __getattr__(name: str):
    """The registration API (``regbench.register_model``, ``register_dataset``,
    ``register_regularizer``, ``register_tracker``, ``register_executor`` and the
    ``Regularizer`` base class; see :mod:`regbench.plugins`)
    and the notebook API (``regbench.run``, ``Results``, ``Launch``; :mod:`regbench.experiment.api`),
    imported on first use so that ``import regbench`` stays free of torch."""
    if name in PLUGIN_API + NOTEBOOK_API:
        import importlib

        module = ("regbench.plugins" if name in PLUGIN_API else
                  "regbench.experiment.launch" if name == "Launch" else "regbench.experiment.api")
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'regbench' has no attribute {name!r}")
