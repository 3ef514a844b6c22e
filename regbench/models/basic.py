"""The plain models: linear, mlp and a LeNet-style cnn, as ordinary torch modules."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from regbench.config.schema import StrictModel, Width
from regbench.models.base import ACTIVATIONS, flat_size, register_model
from regbench.models.pooling import MaxPool2x2

Activation = Literal[tuple(ACTIVATIONS)]  # type: ignore[valid-type]


class LinearParams(StrictModel):
    """No parameters: one linear layer from inputs to outputs."""


@register_model("linear", Params=LinearParams,
                summary="one linear layer: logistic regression (classification) or linear "
                        "regression")
def build_linear(input_shape, output_dim: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(flat_size(input_shape), output_dim))


class MLPParams(StrictModel):
    hidden: list[Width] = Field([100], min_length=1)  # units per hidden layer
    activation: Activation = "relu"                  # hidden activation


def hidden_linears(width: int, hidden: list[int], activation: str) -> tuple[list[nn.Module], int]:
    """linear -> activation for each hidden size; the layers and the last width."""
    layers: list[nn.Module] = []
    for units in hidden:
        layers += [nn.Linear(width, units), ACTIVATIONS[activation]()]
        width = units
    return layers, width


@register_model("mlp", Params=MLPParams, summary="fully connected net: hidden sizes, activation")
def build_mlp(input_shape, output_dim: int, hidden: list[int], activation: str) -> nn.Module:
    layers, width = hidden_linears(flat_size(input_shape), hidden, activation)
    return nn.Sequential(nn.Flatten(), *layers, nn.Linear(width, output_dim))


class CNNParams(StrictModel):
    channels: list[Width] = Field([6, 16], min_length=1)  # conv channels per stage (each: conv 5×5 + 2×2 max-pool)
    hidden: list[Width] = [120, 84]                    # fully connected units after the convs
    kernel_size: int = Field(5, ge=1, le=64)                # conv kernel side, 'same' padding
    activation: Activation = "relu"                    # hidden activation


@register_model("cnn", Params=CNNParams, needs_images=True,
                summary="LeNet-style conv net: conv-pool stages then fully connected layers")
def build_cnn(input_shape, output_dim: int, channels: list[int], hidden: list[int],
              kernel_size: int, activation: str) -> nn.Module:
    depth, height, width = input_shape          # channels of the tensor so far
    layers: list[nn.Module] = []
    for out_channels in channels:
        layers += [nn.Conv2d(depth, out_channels, kernel_size, padding=kernel_size // 2),
                   ACTIVATIONS[activation]()]
        if min(height, width) >= 2:
            layers.append(MaxPool2x2())
            height, width = height // 2, width // 2
        depth = out_channels
    dense, size = hidden_linears(depth * height * width, hidden, activation)
    return nn.Sequential(*layers, nn.Flatten(), *dense, nn.Linear(size, output_dim))
