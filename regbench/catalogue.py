"""The catalogue of registered components, generated from the registries."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

KINDS = ("regularizers", "datasets", "models")


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


def entries(kind: str) -> list[dict[str, Any]]:
    """Rows of name, parameters, (hooks), meaning for one registry."""
    if kind == "regularizers":
        from regbench.regularizers import REGULARIZERS

        return [{"name": name, "parameters": describe_params(cls.Params),
                 "hooks": ", ".join(h if h != "wrap" else "build" for h in dict.fromkeys(
                     "build" if h == "wrap" else h for h in cls.hooks())),
                 "meaning": cls.summary}
                for name, cls in REGULARIZERS.items()]
    if kind == "datasets":
        from regbench.data import DATASETS

        return [{"name": name, "parameters": describe_params(entry.Params),
                 "meaning": entry.summary} for name, entry in DATASETS.items()]
    if kind == "models":
        from regbench.models import MODELS

        return [{"name": name, "parameters": describe_params(entry.Params),
                 "meaning": entry.summary} for name, entry in MODELS.items()]
    raise ValueError(kind)


def to_markdown(kinds=KINDS) -> str:
    out = []
    for kind in kinds:
        rows = entries(kind)
        columns = list(rows[0])
        out.append(f"### {kind.capitalize()}\n")
        out.append("| " + " | ".join(columns) + " |")
        out.append("|" + "---|" * len(columns))
        for row in rows:
            cells = [f"`{row['name']}`"] + [str(row[c]).replace("|", "\\|") for c in columns[1:]]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)
