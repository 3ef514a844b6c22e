"""The public registration API: models, datasets, regularizers, trackers and executors, the
same functions regbench's own entries register with (an entry is a plugin's when its code lives
outside the regbench package).

A plugin is a Python file or module that registers entries with these decorators::

    import regbench, torch

    @regbench.register_model("tinynet")
    def tinynet(input_shape, output_dim, width: int = 32) -> torch.nn.Module: ...

    @regbench.register_dataset("moons", task="classification")
    def moons(n_samples: int = 500, seed: int = 0):
        return X, y          # or {"train": (X, y), "test": (X, y)}; val is split off train

    @regbench.register_regularizer("my_penalty")
    class MyPenalty(regbench.Regularizer): ...

    @regbench.register_tracker("my_log")                  # --log my_log
    class MyLog:                                          # regbench.registry.Tracker
        def __init__(self, plan, results_dir, **options): ...
        def log_run(self, spec, summary, rows, weights, run_dir): ...
        def replay(self, spec, run_dir): ...
        def finish(self, interrupted=False): ...

    @regbench.register_executor("my_cluster")             # --executor my_cluster
    def my_cluster(workers=1, address=None, **options):   # -> regbench.registry.Executor
        ...

A function's parameters after the fixed ones become the entry's config keys, typed and
validated by pydantic from the signature (a parameter without a default is required), or by
``Params=`` (a :class:`StrictModel` with one field per parameter) where a key needs
constraints. Plugins load from ``--plugin PATH.py|module`` and from installed packages'
``regbench.plugins`` entry points; a config only names registered entries, it never names code
to import.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.data.base import DataSpec, RawData, register_dataset
from regbench.errors import RegbenchError
from regbench.models.base import register_model
from regbench.registry import Executor, Tracker, register_executor, register_tracker
from regbench.regularizers.base import Regularizer, register_regularizer
from regbench.vocabulary import ENTRY_POINT_GROUP

__all__ = ["register_model", "register_dataset", "register_regularizer", "register_tracker",
           "register_executor", "Regularizer", "Tracker", "Executor", "DataSpec", "RawData",
           "StrictModel", "Field", "load_plugins"]

_LOADED: dict[str, str] = {}          # plugin spec -> module name, loaded once per process
ENTRY_POINTS_SCANNED = "entry-points:scanned"


def resolved(spec: str) -> str:
    """A file plugin as an absolute path (workers load it from any folder), a module as is."""
    if spec.endswith(".py") or "/" in spec:
        return str(Path(spec).expanduser().resolve())
    return spec


def load_plugin(spec: str) -> str:
    """Import one ``--plugin`` (a .py file or a module name), once per process; a missing
    file or a plugin that fails to import is a usage error (exit 2) naming it."""
    spec = resolved(spec)
    if spec in _LOADED:
        return _LOADED[spec]
    try:
        if spec.endswith(".py") or "/" in spec:
            path = Path(spec)
            if not path.is_file():
                raise RegbenchError(f"--plugin: file not found: {path}")
            name = f"regbench_plugin_{len(_LOADED)}_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            name = importlib.import_module(spec).__name__
    except RegbenchError:
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the plugin's own error, sys.exit() included: one line
        raise RegbenchError(f"--plugin {spec}: {_failure(exc)}") from None
    _LOADED[spec] = name
    return name


def _failure(exc: BaseException) -> str:
    """What a plugin's import raised, in words (a sys.exit() would otherwise end regbench with
    its code, 0 included, having trained nothing)."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}) while loading; a plugin must only register"
    return f"{type(exc).__name__}: {exc}"


def load_plugins(specs: list[str] = (), entry_points: bool = True) -> list[str]:
    """The ``--plugin`` specs, then every installed ``regbench.plugins`` entry point; returns
    what was loaded (for workers, which load the same list)."""
    loaded = [resolved(spec) for spec in specs if load_plugin(spec)]
    if entry_points and ENTRY_POINTS_SCANNED not in _LOADED:
        # scanning the installed distributions costs tens of ms: once per process, not once
        # per run (execute_run calls this before every run)
        _LOADED[ENTRY_POINTS_SCANNED] = ""
        from importlib.metadata import entry_points as installed

        for point in installed(group=ENTRY_POINT_GROUP):
            key = f"entry-point:{point.value}"
            if key in _LOADED:
                continue
            try:
                point.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:   # sys.exit() at import must not end regbench
                raise RegbenchError(f"plugin entry point {point.name} ({point.value}): "
                                    f"{_failure(exc)}") from None
            _LOADED[key] = point.value
    return list(loaded)
