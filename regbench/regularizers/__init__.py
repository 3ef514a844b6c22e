"""The regularizer catalogue. Each module registers one regularizer under its own name;
every module in this package is imported, so adding a file adds an entry."""
from __future__ import annotations

import importlib
import pkgutil

from regbench.registry import Registry
from regbench.regularizers.base import (CheckContext, Incompatible, Regularizer, RunContext,
                                        WeightRegularizer, soft_targets)

REGULARIZERS: Registry[type[Regularizer]] = Registry("regularizer")


def register(cls: type[Regularizer]) -> type[Regularizer]:
    """Class decorator: register under ``cls.name`` (which must equal the module's name)."""
    module_name = cls.__module__.rsplit(".", 1)[-1]
    if cls.name != module_name:
        raise ValueError(f"regularizer {cls.__name__}: name '{cls.name}' must equal its module "
                         f"name '{module_name}'")
    REGULARIZERS.register(cls.name)(cls)
    return cls


for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name not in ("base",) and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["REGULARIZERS", "register", "Regularizer", "WeightRegularizer", "RunContext",
           "CheckContext", "Incompatible", "soft_targets"]
