"""The catalogue read from the registries (see :mod:`regbench.catalogue`)."""
from __future__ import annotations

import sys
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from regbench.data import DATASETS
from regbench.models import MODELS
from regbench.regularizers import REGULARIZERS
from regbench.regularizers.base import BATCH_STAGES, hook_points


def describe_params(model: type[BaseModel]) -> str:
    parts = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        if info.default is PydanticUndefined and info.default_factory is None:
            parts.append(f"{key} (required)")
        else:
            default = info.default if info.default_factory is None else info.default_factory()
            parts.append(f"{key}={default!r}" if isinstance(default, str) else f"{key}={default}")
    return ", ".join(parts) if parts else "—"


def _hook_label(cls, hook: str) -> str:
    """A hook's name; the batch hook with its place in the fixed order (``batch 2/5: erase``)."""
    if hook != "batch":
        return hook
    return f"batch {BATCH_STAGES.index(cls.batch_stage) + 1}/{len(BATCH_STAGES)}: {cls.batch_stage}"


def reference(cls) -> str:
    """A regularizer's module docstring: paper, hook, exact formula, deviations from the paper."""
    return (sys.modules[cls.__module__].__doc__ or "").strip()


def deviations(cls) -> str:
    """The "Deviations from the paper:" paragraph of a regularizer's docstring ("" when none
    is written)."""
    text = reference(cls)
    start = text.find("Deviations from the paper:")
    if start < 0:
        return ""
    paragraph = text[start + len("Deviations from the paper:"):].split("\n\n")[0]
    return " ".join(paragraph.split())


def snapshot(plugins: bool) -> dict[str, Any]:
    """Every registry's rows (name, parameters, hooks, meaning), each regularizer's reference
    and what the advice needs to know of it (with plugins' entries unless ``plugins`` is False:
    the README and the stored catalogue list regbench's own)."""
    regularizers = [(name, cls) for name, cls in REGULARIZERS.items() if plugins or not cls.plugin]
    entries: dict[str, list[dict[str, str]]] = {
        "regularizers": [{"name": name, "parameters": describe_params(cls.Params),
                          "hooks": ", ".join(_hook_label(cls, h) for h in hook_points(cls)),
                          "meaning": cls.summary} for name, cls in regularizers]}
    for kind, registry in (("datasets", DATASETS), ("models", MODELS)):
        entries[kind] = [{"name": name, "parameters": describe_params(entry.Params),
                          "meaning": entry.summary}
                         for name, entry in registry.items() if plugins or not entry.plugin]
    return {
        "entries": entries,
        "references": {name: reference(cls) for name, cls in regularizers},
        "batch_stages": list(BATCH_STAGES),
        "advice": [{"name": name, "summary": cls.summary, "try_rank": cls.try_rank,
                    "tasks": sorted(cls.tasks), "needs_images": cls.needs_images}
                   for name, cls in regularizers],
    }
