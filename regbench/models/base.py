"""Model registry and the layer factory through which the `build` hook shapes every model.

Models never construct layers directly: they ask a :class:`LayerFactory`, whose entries a
regularizer's ``build`` hook may replace (dropout after activations, a norm after each hidden
layer, DropConnect or Bayesian linear layers, stochastic depth on residual branches).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from regbench.config.schema import StrictModel
from regbench.registry import Registry

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU, "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU, "silu": nn.SiLU,
}


def conv2d(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
           padding: int = 0) -> nn.Module:
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)


@dataclass
class LayerFactory:
    """How models make their layers. Defaults build the plain model."""

    linear: Callable[[int, int], nn.Module] = nn.Linear     # hidden fully connected layer (in, out)
    conv: Callable[..., nn.Module] = conv2d                 # hidden conv layer (in, out, kernel, stride, padding)
    output: Callable[[int, int], nn.Module] = nn.Linear     # final layer (in, out)
    norm: Optional[Callable[[int, str], nn.Module]] = None  # after each hidden linear/conv, before the activation: (features, "linear"|"conv")
    dropout: Optional[Callable[[str], nn.Module]] = None    # after each hidden activation: ("linear"|"conv")
    input_dropout: Optional[Callable[[], nn.Module]] = None # on the (flattened) inputs
    residual_drop: Optional[Callable[[float], nn.Module]] = None  # drop layer for a residual branch, given its relative depth l/L in (0, 1]

    def hidden_linear(self, in_features: int, out_features: int, activation: str) -> nn.Sequential:
        """linear -> [norm] -> activation -> [dropout]"""
        layers = [self.linear(in_features, out_features)]
        if self.norm is not None:
            layers.append(self.norm(out_features, "linear"))
        layers.append(ACTIVATIONS[activation]())
        if self.dropout is not None:
            layers.append(self.dropout("linear"))
        return nn.Sequential(*layers)

    def hidden_conv(self, in_channels: int, out_channels: int, kernel_size: int,
                    activation: str, stride: int = 1, padding: int = 0) -> nn.Sequential:
        """conv -> [norm] -> activation -> [dropout]"""
        layers = [self.conv(in_channels, out_channels, kernel_size, stride, padding)]
        if self.norm is not None:
            layers.append(self.norm(out_channels, "conv"))
        layers.append(ACTIVATIONS[activation]())
        if self.dropout is not None:
            layers.append(self.dropout("conv"))
        return nn.Sequential(*layers)

    def inputs(self) -> list[nn.Module]:
        return [self.input_dropout()] if self.input_dropout is not None else []


@dataclass
class ModelEntry:
    build: Callable[[Any, tuple[int, ...], int, LayerFactory], nn.Module]
    summary: str
    Params: type[StrictModel]
    residual: bool = False                      # has residual blocks (stochastic depth applies)
    needs_images: bool = False                  # needs (C, H, W) inputs
    own_layers: bool = False                    # builds its own layers (plugins, torchvision):
                                                # regularizers reach it by module surgery
    plugin: bool = False                        # registered by a plugin, not part of regbench


MODELS: Registry[ModelEntry] = Registry("model")


def model(name: str, *, summary: str, Params: type[StrictModel], residual: bool = False,
          needs_images: bool = False, own_layers: bool = False):
    """Register ``build(params, input_shape, output_dim, factory) -> nn.Module``."""
    def decorator(build):
        MODELS.register(name)(ModelEntry(build=build, summary=summary, Params=Params,
                                         residual=residual, needs_images=needs_images,
                                         own_layers=own_layers))
        return build
    return decorator


def build_model(config: dict[str, Any], input_shape: tuple[int, ...], output_dim: int,
                factory: LayerFactory) -> nn.Module:
    entry = MODELS.get(config["name"])
    params = entry.Params.model_validate({k: v for k, v in config.items() if k != "name"})
    return entry.build(params, tuple(input_shape), output_dim, factory)


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
        if isinstance(weight, nn.Parameter):
            chosen.append((f"{name}.weight", weight))
        bias = getattr(module, "bias", None)
        if include_bias and isinstance(bias, nn.Parameter):
            chosen.append((f"{name}.bias", bias))
    return chosen
