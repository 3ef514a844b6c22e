"""The regularizer catalogue. Each module registers one regularizer under its own name;
every module in this package is imported, so adding a file adds an entry."""
from __future__ import annotations

import importlib
import pkgutil

from regbench.regularizers.base import (
    BATCH_STAGES,
    REGULARIZERS,
    CheckContext,
    Incompatible,
    Regularizer,
    RunContext,
    WeightRegularizer,
    batch_order,
    register,
    soft_targets,
)

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name != "base" and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["REGULARIZERS", "register", "Regularizer", "WeightRegularizer", "RunContext",
           "CheckContext", "Incompatible", "soft_targets", "BATCH_STAGES", "batch_order"]
