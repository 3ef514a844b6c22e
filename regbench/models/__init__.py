"""Models: the registry and the layer factory through which the ``build`` hook shapes every
model (``base``), the plain models (``basic``) and the residual ones (``residual``). Importing
the package registers them all."""
from regbench.models import basic, residual, zoo  # noqa: F401  (registers the models)
from regbench.models.base import (MODELS, LayerFactory, ModelEntry, build_model, flat_size,
                                  memory_format_for, penalized_parameters, place, weight_layers)

__all__ = ["MODELS", "LayerFactory", "ModelEntry", "build_model", "flat_size",
           "memory_format_for", "penalized_parameters", "place", "weight_layers"]
