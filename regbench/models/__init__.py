"""Models: the registry and the layer factory whose slots regularizers' ``build`` hooks set
(``base``), module surgery that applies them to any torch model (``surgery``), the plain models
(``basic``), the residual ones (``residual``), 2×2 max-pooling with a faster CPU eval path (``pooling``) and torchvision's and
timm's (``zoo``). Importing the package registers them all."""
from regbench.models import basic, residual, zoo  # noqa: F401  (registers the models)
from regbench.models.base import (
    MODELS,
    LayerFactory,
    ModelEntry,
    build_model,
    flat_size,
    memory_format_for,
    penalized_parameters,
    place,
    weight_layers,
)

__all__ = ["MODELS", "LayerFactory", "ModelEntry", "build_model", "flat_size",
           "memory_format_for", "penalized_parameters", "place", "weight_layers"]
