"""The public plugin API: your own models, datasets and regularizers.

A plugin is a Python file or module that registers entries with these decorators::

    import regbench, torch

    @regbench.register_model("tinynet")
    def tinynet(input_shape, output_dim, width: int = 32) -> torch.nn.Module: ...

    @regbench.register_dataset("moons", task="classification")
    def moons(n_samples: int = 500, seed: int = 0):
        return X, y          # or {"train": (X, y), "test": (X, y)}; val is split off train

    @regbench.register_regularizer("my_penalty")
    class MyPenalty(regbench.Regularizer): ...

A function's parameters after the fixed ones become the entry's config keys, typed and
validated by pydantic from the signature (a parameter without a default is required). Plugins
load from ``--plugin PATH.py|module`` and from installed packages' ``regbench.plugins`` entry
points; a config only names registered entries, it never names code to import.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from pydantic import Field, create_model

from regbench.config.schema import StrictModel
from regbench.data.base import DATASETS, DataSpec, RawData, dataset
from regbench.errors import RegbenchError
from regbench.vocabulary import ENTRY_POINT_GROUP
from regbench.models.base import MODELS, ModelEntry
from regbench.regularizers.base import Regularizer, register

__all__ = ["register_model", "register_dataset", "register_regularizer", "Regularizer",
           "StrictModel", "Field", "load_plugins"]

_LOADED: dict[str, str] = {}          # plugin spec -> module name, loaded once per process
ENTRY_POINTS_SCANNED = "entry-points:scanned"


def params_model(function: Callable, skip: int, name: str) -> type[StrictModel]:
    """A strict pydantic model of ``function``'s parameters after the first ``skip``."""
    fields: dict[str, Any] = {}
    for parameter in list(inspect.signature(function).parameters.values())[skip:]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"plugin {name}: *args/**kwargs cannot be config keys; name each "
                            "parameter")
        annotation = (Any if parameter.annotation is inspect.Parameter.empty
                      else parameter.annotation)
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    return create_model(f"{name}_params", __base__=StrictModel, **fields)


def _summary(obj: Any, fallback: str) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else fallback


def register_model(name: str, *, summary: Optional[str] = None, residual: bool = False,
                   needs_images: bool = False):
    """Register ``fn(input_shape, output_dim, **params) -> torch.nn.Module``.

    Regularizers reach such a model by module surgery, as they reach the built-in models (see
    ``regbench.models.surgery``); where one cannot apply, the recipe is refused before
    training. ``residual=True`` lets stochastic depth through the config check: the model's
    blocks then declare ``residual_branch = "<child>"``, the child whose output is added to
    the shortcut."""
    def decorator(function):
        Params = params_model(function, 2, name)

        def build(params, input_shape, output_dim):
            return function(tuple(input_shape), output_dim, **params.model_dump())

        MODELS.register(name)(ModelEntry(build=build, Params=Params, residual=residual,
                                         needs_images=needs_images, plugin=True,
                                         summary=summary or _summary(function, "plugin model")))
        return function
    return decorator


def register_dataset(name: str, *, task: str, summary: Optional[str] = None):
    """Register ``fn(**params)`` returning ``(X, y)`` or ``{"train": (X, y), "test": (X, y)}``
    (and optionally ``"val"``) as numpy arrays; the splits regbench does not receive are drawn
    from train as for every dataset (``val_fraction``, ``test_fraction``)."""
    if task not in ("classification", "regression"):
        raise ValueError(f"register_dataset({name!r}): task must be classification or "
                         f"regression (got {task!r})")

    def decorator(function):
        Params = params_model(function, 0, name)

        def load(config: dict[str, Any]) -> RawData:
            params = Params.model_validate({k: config[k] for k in Params.model_fields
                                            if k in config})
            returned = function(**params.model_dump())
            splits = returned if isinstance(returned, dict) else {"train": returned}
            unknown = set(splits) - {"train", "val", "test"}
            if "train" not in splits or unknown:
                raise RegbenchError(f"dataset {name}: the plugin returned {sorted(splits)}; "
                                    "expected (X, y) or a dict with 'train' and optionally "
                                    "'val' and 'test'")
            arrays = {key: tuple(np.asarray(a) for a in value) for key, value in splits.items()}
            x, y = arrays["train"]
            return RawData(x_train=x, y_train=y, task=task,
                           x_val=arrays.get("val", (None, None))[0],
                           y_val=arrays.get("val", (None, None))[1],
                           x_test=arrays.get("test", (None, None))[0],
                           y_test=arrays.get("test", (None, None))[1])

        dataset(name, summary=summary or _summary(function, "plugin dataset"), Params=Params,
                spec=DataSpec(task, None))(load)
        DATASETS.get(name).plugin = True
        return function
    return decorator


def register_regularizer(name: str):
    """Class decorator: register a ``regbench.Regularizer`` subclass under ``name``."""
    def decorator(cls):
        if not (isinstance(cls, type) and issubclass(cls, Regularizer)):
            raise TypeError(f"register_regularizer({name!r}) decorates a subclass of "
                            "regbench.Regularizer")
        cls.name = name
        return register(cls, plugin=True)
    return decorator


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
    except Exception as exc:  # the plugin's own error, shown as one line
        raise RegbenchError(f"--plugin {spec}: {type(exc).__name__}: {exc}") from None
    _LOADED[spec] = name
    return name


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
            except Exception as exc:
                raise RegbenchError(f"plugin entry point {point.name} ({point.value}): "
                                    f"{type(exc).__name__}: {exc}") from None
            _LOADED[key] = point.value
    return list(loaded)
