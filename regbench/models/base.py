"""Model registry, and the layer factory through which regularizers' ``build`` hooks choose
their layers.

Every model, built-in or plugin, is an ordinary torch module made of standard layers
(``nn.Linear``, ``nn.Conv2d``, activation modules). A regularizer's ``build`` hook sets slots
of a :class:`LayerFactory` (dropout after activations, a norm after each hidden layer,
DropConnect or Bayesian linear layers, a drop layer on residual branches), each everywhere or
only where its target matches, and :func:`build_model` applies them to the built model by
module surgery (:mod:`regbench.models.surgery`).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.nn.utils import parametrize

from regbench.config.schema import StrictModel
from regbench.models.surgery import SLOTS, operate
from regbench.models.targets import Target
from regbench.registry import Registry, builtin, first_doc_line, params_model

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU, "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU, "silu": nn.SiLU,
}


@dataclass
class LayerFactory:
    """The layers regularizers ask for; a slot left at its default changes nothing.

    The weight slots receive the replaced layer's shape and options: ``linear(in, out,
    bias=…)``, ``conv(in, out, kernel, stride, padding, bias=…)``. ``targets`` narrows a
    slot to the places its :class:`~regbench.models.targets.Target` matches (a regularizer's
    ``modules:`` and ``types:``); a slot without one changes every place it can."""

    linear: Callable[..., nn.Module] = nn.Linear         # hidden fully connected layer (in, out)
    conv: Callable[..., nn.Module] = nn.Conv2d           # hidden conv layer (in, out, kernel, stride, padding)
    output: Callable[..., nn.Module] = nn.Linear         # final layer (in, out)
    norm: Optional[Callable[[int, str], Optional[nn.Module]]] = None  # after each hidden linear/conv, before the activation: (features, "linear"|"conv"); None: no norm there
    dropout: Optional[Callable[[str], Optional[nn.Module]]] = None  # after each hidden activation: (the kind of layer feeding it, "linear"|"conv"); None: no dropout there
    input_dropout: Optional[Callable[[], nn.Module]] = None # on the inputs
    residual_drop: Optional[Callable[[float], nn.Module]] = None  # drop layer for a residual branch, given its relative depth l/L in (0, 1]
    targets: dict[str, Target] = field(default_factory=dict)  # slot -> where it may change the model (absent: everywhere)

    def changed(self) -> list[str]:
        """The slots set to something other than the plain model's layers."""
        plain = LayerFactory()
        return [slot for slot in SLOTS if getattr(self, slot) is not getattr(plain, slot)]


@dataclass
class ModelEntry:
    build: Callable[..., nn.Module]             # (input_shape, output_dim, **params) -> model
    summary: str
    Params: type[StrictModel]
    residual: bool = False                      # has residual blocks (stochastic depth applies)
    needs_images: bool = False                  # needs (C, H, W) inputs
    plugin: bool = False                        # registered by a plugin, not part of regbench


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(name: str, *, summary: Optional[str] = None,
                   Params: Optional[type[StrictModel]] = None, residual: bool = False,
                   needs_images: bool = False):
    """Register ``fn(input_shape, output_dim, **params) -> torch.nn.Module`` under ``name``.

    The parameters after the first two are the model's config keys: typed and validated by
    pydantic from the signature (one without a default is required), or by ``Params``, a
    ``StrictModel`` with one field per parameter, where a key needs constraints (``Field(ge=1)``).
    ``summary`` defaults to the docstring's first line. Regularizers reach the model by module
    surgery (``regbench.models.surgery``); where one cannot apply, the recipe is refused before
    training. ``residual=True`` lets stochastic depth through the config check: the model's
    blocks then declare ``residual_branch = "<child>"``, the child whose output is added to the
    shortcut. ``needs_images=True``: the model takes (C, H, W) inputs only."""
    def decorator(function):
        MODELS.register(name)(ModelEntry(
            build=function, Params=params_model(function, 2, f"model {name}", Params=Params,
                                                   base=StrictModel),
            summary=summary or first_doc_line(function, "plugin model"), residual=residual,
            needs_images=needs_images, plugin=not builtin(function.__module__)))
        return function
    return decorator


def build_model(config: dict[str, Any], input_shape: tuple[int, ...], output_dim: int,
                factory: Optional[LayerFactory] = None,
                calls: Optional[Counter] = None) -> nn.Module:
    """The model ``config`` names, with the ``factory``'s changed slots applied by module
    surgery; ``calls`` counts each change that takes effect, per slot."""
    entry = MODELS.get(config["name"])
    params = entry.Params.model_validate({k: v for k, v in config.items() if k != "name"})
    net = entry.build(tuple(input_shape), output_dim,
                      **{key: getattr(params, key) for key in type(params).model_fields})
    slots = factory.changed() if factory is not None else []
    if not slots:
        return net
    return operate(net, factory, set(slots), calls if calls is not None else Counter(),
                   tuple(input_shape))


SMALL_NORM_CHANNELS = 16  # norm layers over fewer channels run slower channels-last on the CPU


def memory_format_for(model: nn.Module, device: torch.device) -> torch.memory_format:
    """The layout a model trains fastest in: channels-last for conv nets on the CPU.

    oneDNN's NHWC kernels cut a LeNet-style cnn's epoch by 16–25% and a small ResNet's by
    19–30% on 2 CPU cores (``python benchmarks/memory_format.py``), except next to batch or
    group norms over fewer than 16 channels, which are slower channels-last (1.2–1.3× for the
    cnn with batchnorm): such models, models without 2-D convs, and other devices stay contiguous.
    The choice depends only on the model and the device, so reruns reproduce bit for bit.

    Residual nets whose convs have fewer than 16 channels also stay contiguous: training one
    channels-last (resnet with channels [4, 8] on 8×8 digits) aborts inside oneDNN's backward
    pass with torch 2.14.1 on an AMD EPYC CPU ("corrupted double-linked list"), while the same
    net with 16 and 32 channels, and a LeNet-style cnn with 4 and 8, train channels-last fine.
    """
    if device.type != "cpu" or not any(p.dim() == 4 for p in model.parameters()):
        return torch.contiguous_format
    modules = list(model.modules())
    for module in modules:
        channels = (module.num_features if isinstance(module, nn.BatchNorm2d) else
                    module.num_channels if isinstance(module, nn.GroupNorm) else None)
        if channels is not None and channels < SMALL_NORM_CHANNELS:
            return torch.contiguous_format
    residual = any(getattr(module, "is_residual_block", False) for module in modules)
    narrow = any(p.dim() == 4 and p.shape[0] < SMALL_NORM_CHANNELS for p in model.parameters())
    if residual and narrow:
        return torch.contiguous_format
    return torch.channels_last


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """Move ``model`` to ``device`` in :func:`memory_format_for`'s layout (4-D weights only)."""
    model = model.to(device)
    return model.to(memory_format=memory_format_for(model, device))


def flat_size(input_shape: tuple[int, ...]) -> int:
    return int(math.prod(input_shape))


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Linear and conv layers (and regularizers' subclasses of them), in model order."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))
            or getattr(module, "is_weight_layer", False)]


def penalized_parameters(model: nn.Module, include_bias: bool = False
                         ) -> list[tuple[str, torch.Tensor]]:
    """Weight matrices and kernels of linear/conv layers (and their biases if asked).

    Normalisation parameters are never included.
    """
    chosen = []
    for name, module in weight_layers(model):
        weight = getattr(module, "weight", None)
        if parametrize.is_parametrized(module, "weight"):   # e.g. spectral_norm: the trained W
            weight = module.parametrizations.weight.original
        if isinstance(weight, nn.Parameter):
            chosen.append((f"{name}.weight", weight))
        bias = getattr(module, "bias", None)
        if include_bias and isinstance(bias, nn.Parameter):
            chosen.append((f"{name}.bias", bias))
    return chosen
