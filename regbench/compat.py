"""Compatibility rules: refuse recipes that cannot work, warn about doubtful ones.

Rules come from three places, checked in this order for every regularizer of a recipe:
1. its declared attributes: ``tasks`` (e.g. label smoothing, mixup, cutmix: classification
   only), ``needs_images`` (image transforms on a table), ``needs_residual`` (stochastic depth
   on a model without residual blocks) and ``exclusive`` (two norm layers; two replacements of
   the linear/conv layers);
2. its own ``check`` classmethod (parameter-dependent: batch sizes, patch sizes, groupnorm on
   a model without convs);
3. the pair rules below, for combinations that work but defeat each other.
"""
from __future__ import annotations

from typing import Any

from regbench.config import LoadedConfig, located_error
from regbench.regularizers import REGULARIZERS, CheckContext, Incompatible

EXCLUSIVE_MEANING = {
    "norm": "normalisation layers (each inserts a norm after every hidden layer)",
    "weight_layer": "replacements of the model's linear/conv layers",
}

# the penalties added to the loss (l1, l2, elastic_net): a prior on the weights
WEIGHT_PENALTIES = tuple(name for name, cls in REGULARIZERS.items()
                         if cls.penalizes and "penalty" in cls.hooks())

# (regularizer a, regularizer b, warning): both run, but the result is probably not what was meant.
PAIR_WARNINGS: list[tuple[str, str, str]] = [
    *[("bayes_by_backprop", penalty,
       f"the KL to the Gaussian prior already penalises the posterior means; {penalty} "
       "counts a second prior on them") for penalty in WEIGHT_PENALTIES],
    *[("variational_dropout", penalty,
       f"{penalty} shrinks θ and so raises log α = log σ² − log θ²: the pruned fraction then "
       "reflects the penalty, not only the data") for penalty in WEIGHT_PENALTIES],
    ("dropout", "batchnorm",
     "dropout before a batchnorm layer shifts its variance between training and eval "
     "(Li et al. 2019); expect a train/eval mismatch"),
]

# Datasets whose classes change under a horizontal flip (a mirrored 2 or 3 is not a digit).
FLIP_SENSITIVE = ("digits", "mnist")


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
    regularizers = resolved["regularizers"]

    def refuse(name: str, reason: str):
        return located_error(f"{reason}", ("recipes", recipe, name), loaded.positions,
                             loaded.source)

    def warn(name: str, message: str) -> None:
        warnings.append(f"recipe '{recipe}': {name}: {message}")

    if model_entry.needs_images and not spec.is_image and spec.input_shape is not None:
        raise located_error(f"model '{ctx.model_name}' needs image inputs (C, H, W); dataset "
                            f"'{experiment['dataset']['name']}' gives {spec.input_shape}",
                            ("model", "name"), loaded.positions, loaded.source)
    if model_entry.needs_images and spec.input_shape is None:
        raise located_error(f"model '{ctx.model_name}' needs image inputs (C, H, W); a csv "
                            "table is flat (use mlp, resmlp or linear)", ("model", "name"),
                            loaded.positions, loaded.source)
    for name, params in regularizers.items():
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
                meaning = EXCLUSIVE_MEANING.get(cls.exclusive, f"{cls.exclusive} regularizers")
                raise refuse(name, f"{name} and {exclusive[cls.exclusive]} are both {meaning}; "
                             "a recipe may use only one")
            exclusive[cls.exclusive] = name
        try:
            found = cls.check(cls.Params.model_validate(params), ctx)
        except Incompatible as exc:
            raise refuse(name, str(exc)) from None
        for message in found:
            warn(name, message)
    for first, second, message in PAIR_WARNINGS:
        if first in regularizers and second in regularizers:
            warn(f"{first} + {second}", message)
    flip = regularizers.get("augment", {}).get("hflip", 0)
    if flip and experiment["dataset"]["name"] in FLIP_SENSITIVE:
        warn("augment", f"hflip {flip:g} mirrors handwritten digits, which changes what they "
             "show; set hflip: 0 for digit datasets")
    return warnings
