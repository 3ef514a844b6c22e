"""Compatibility rules: refuse recipes that cannot work, warn about doubtful ones."""
from __future__ import annotations

from typing import Any

from regbench.config import LoadedConfig, located_error
from regbench.regularizers import REGULARIZERS, CheckContext, Incompatible


def check_recipe(experiment: dict[str, Any], recipe: str, resolved: dict[str, Any],
                 loaded: LoadedConfig) -> list[str]:
    """Raise a located ConfigError for a refused combination; return warnings."""
    from regbench.data import data_spec
    from regbench.models import MODELS

    spec = data_spec(experiment["dataset"])
    model_entry = MODELS.get(experiment["model"]["name"])
    ctx = CheckContext(task=spec.task, input_shape=spec.input_shape,
                       model_name=experiment["model"]["name"], model_residual=model_entry.residual,
                       batch_size=resolved["train"]["batch_size"], recipe=resolved["regularizers"],
                       train=resolved["train"])
    warnings: list[str] = []
    exclusive: dict[str, str] = {}

    def refuse(name: str, reason: str):
        return located_error(f"{reason}", ("recipes", recipe, name), loaded.positions,
                             loaded.source)

    if model_entry.needs_images and not spec.is_image and spec.input_shape is not None:
        raise located_error(f"model '{ctx.model_name}' needs image inputs (C, H, W); dataset "
                            f"'{experiment['dataset']['name']}' gives {spec.input_shape}",
                            ("model", "name"), loaded.positions, loaded.source)
    if model_entry.needs_images and spec.input_shape is None:
        raise located_error(f"model '{ctx.model_name}' needs image inputs (C, H, W); a csv "
                            "table is flat (use mlp, resmlp or linear)", ("model", "name"),
                            loaded.positions, loaded.source)
    for name, params in resolved["regularizers"].items():
        cls = REGULARIZERS.get(name)
        if spec.task not in cls.tasks:
            raise refuse(name, f"{name} does not apply to {spec.task} "
                         f"(it is for {' and '.join(sorted(cls.tasks))})")
        if cls.needs_images and not ctx.is_image:
            raise refuse(name, f"{name} transforms images; dataset "
                         f"'{experiment['dataset']['name']}' is tabular")
        if cls.needs_residual and not ctx.model_residual:
            raise refuse(name, f"{name} needs a model with residual blocks (resnet or resmlp); "
                         f"model '{ctx.model_name}' has none")
        if cls.exclusive:
            if cls.exclusive in exclusive:
                raise refuse(name, f"{name} and {exclusive[cls.exclusive]} are both "
                             f"{cls.exclusive} layers; a recipe may use only one")
            exclusive[cls.exclusive] = name
        try:
            found = cls.check(cls.Params.model_validate(params), ctx)
        except Incompatible as exc:
            raise refuse(name, str(exc)) from None
        warnings.extend(f"recipe '{recipe}': {name}: {w}" for w in found)
    return warnings
