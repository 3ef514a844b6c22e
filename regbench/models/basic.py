"""The plain models: linear, mlp and a LeNet-style cnn."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from regbench.config.schema import StrictModel, Width
from regbench.models.base import ACTIVATIONS, LayerFactory, flat_size, model
from regbench.models.pooling import MaxPool2x2

Activation = Literal[tuple(ACTIVATIONS)]  # type: ignore[valid-type]


class LinearParams(StrictModel):
    """No parameters: one linear layer from inputs to outputs."""


@model("linear", Params=LinearParams,
       summary="one linear layer: logistic regression (classification) or linear regression")
def build_linear(params: LinearParams, input_shape, output_dim: int,
                 factory: LayerFactory) -> nn.Module:
    return nn.Sequential(nn.Flatten(), *factory.inputs(),
                         factory.output(flat_size(input_shape), output_dim))


class MLPParams(StrictModel):
    hidden: list[Width] = Field([100], min_length=1)  # units per hidden layer
    activation: Activation = "relu"                  # hidden activation


@model("mlp", Params=MLPParams, summary="fully connected net: hidden sizes, activation")
def build_mlp(params: MLPParams, input_shape, output_dim: int, factory: LayerFactory) -> nn.Module:
    if any(width < 1 for width in params.hidden):
        raise ValueError("hidden sizes must be >= 1")
    layers: list[nn.Module] = [nn.Flatten(), *factory.inputs()]
    width = flat_size(input_shape)
    for units in params.hidden:
        layers.append(factory.hidden_linear(width, units, params.activation))
        width = units
    layers.append(factory.output(width, output_dim))
    return nn.Sequential(*layers)


class CNNParams(StrictModel):
    channels: list[Width] = Field([6, 16], min_length=1)  # conv channels per stage (each: conv 5×5 + 2×2 max-pool)
    hidden: list[Width] = [120, 84]                    # fully connected units after the convs
    kernel_size: int = Field(5, ge=1, le=64)                # conv kernel side, 'same' padding
    activation: Activation = "relu"                    # hidden activation


@model("cnn", Params=CNNParams, needs_images=True,
       summary="LeNet-style conv net: conv-pool stages then fully connected layers")
def build_cnn(params: CNNParams, input_shape, output_dim: int, factory: LayerFactory) -> nn.Module:
    channels, height, width = input_shape
    stages: list[nn.Module] = [*factory.inputs()]
    for out_channels in params.channels:
        stages.append(factory.hidden_conv(channels, out_channels, params.kernel_size,
                                          params.activation, padding=params.kernel_size // 2))
        if min(height, width) >= 2:
            stages.append(MaxPool2x2())
            height, width = height // 2, width // 2
        channels = out_channels
    layers = stages + [nn.Flatten()]
    size = channels * height * width
    for units in params.hidden:
        layers.append(factory.hidden_linear(size, units, params.activation))
        size = units
    layers.append(factory.output(size, output_dim))
    return nn.Sequential(*layers)
