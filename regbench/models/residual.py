"""Residual models: a small CIFAR-style ResNet and a residual MLP for flat inputs.

Every residual block computes ``act(shortcut(x) + drop(branch(x)))``. ``drop`` comes from
``factory.residual_drop(l / L)`` when a regularizer sets it (stochastic depth): it is given the
block's relative depth l/L (block l of L, counted from 1), from which stochastic depth makes
its drop probability p_l = p·l/L. Plain models have no normalisation; add the batchnorm
regularizer for the usual ResNet.
"""
from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field
from torch import nn

from regbench.config.schema import StrictModel, Width
from regbench.models.base import ACTIVATIONS, LayerFactory, flat_size, model
from regbench.models.basic import Activation


class ResidualBlock(nn.Module):
    """act(shortcut(x) + drop(branch(x)))."""

    is_residual_block = True   # read by memory_format_for

    def __init__(self, branch: nn.Module, shortcut: nn.Module, activation: str,
                 drop: Optional[nn.Module]):
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.drop = drop if drop is not None else nn.Identity()
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.shortcut(x) + self.drop(self.branch(x)))


def _drop(factory: LayerFactory, index: int, total: int) -> Optional[nn.Module]:
    return factory.residual_drop(index / total) if factory.residual_drop is not None else None


def _normed(factory: LayerFactory, layer: nn.Module, features: int, kind: str) -> nn.Module:
    """layer -> [norm]: the last layer of a branch, added to the shortcut before activation."""
    if factory.norm is None:
        return layer
    return nn.Sequential(layer, factory.norm(features, kind))


class ResNetParams(StrictModel):
    channels: list[Width] = Field([16, 32, 64], min_length=1)  # channels per stage; stages after the first halve H, W
    blocks: int = Field(1, ge=1, le=1000)                    # residual blocks per stage (3: ResNet-20)
    activation: Activation = "relu"                          # hidden activation


@model("resnet", Params=ResNetParams, residual=True, needs_images=True,
       summary="small CIFAR-style ResNet: 3×3 conv stem, stages of basic residual blocks, "
               "global average pool")
def build_resnet(params: ResNetParams, input_shape, output_dim: int,
                 factory: LayerFactory) -> nn.Module:
    in_channels, height, width = input_shape
    act = params.activation
    width_now = params.channels[0]
    layers: list[nn.Module] = [*factory.inputs(),
                               factory.hidden_conv(in_channels, width_now, 3, act, padding=1)]
    total = len(params.channels) * params.blocks
    index = 0
    side = min(height, width)
    for stage, channels in enumerate(params.channels):
        for block in range(params.blocks):
            stride = 2 if stage > 0 and block == 0 and side >= 2 else 1
            side = (side + stride - 1) // stride
            branch = nn.Sequential(
                factory.hidden_conv(width_now, channels, 3, act, stride=stride, padding=1),
                _normed(factory, factory.conv(channels, channels, 3, 1, 1), channels, "conv"))
            shortcut: nn.Module = nn.Identity()
            if stride != 1 or channels != width_now:
                shortcut = _normed(factory, factory.conv(width_now, channels, 1, stride, 0),
                                   channels, "conv")
            index += 1
            layers.append(ResidualBlock(branch, shortcut, act, _drop(factory, index, total)))
            width_now = channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), factory.output(width_now, output_dim)]
    return nn.Sequential(*layers)


class ResMLPParams(StrictModel):
    width: Width = 128                  # units of every hidden layer
    blocks: int = Field(2, ge=1, le=1000)  # residual blocks (each: two linear layers)
    activation: Activation = "relu"     # hidden activation


@model("resmlp", Params=ResMLPParams, residual=True,
       summary="residual MLP for flat inputs: input layer, blocks of two linear layers with "
               "skip connections")
def build_resmlp(params: ResMLPParams, input_shape, output_dim: int,
                 factory: LayerFactory) -> nn.Module:
    width, act = params.width, params.activation
    layers: list[nn.Module] = [nn.Flatten(), *factory.inputs(),
                               factory.hidden_linear(flat_size(input_shape), width, act)]
    for index in range(1, params.blocks + 1):
        branch = nn.Sequential(factory.hidden_linear(width, width, act),
                               _normed(factory, factory.linear(width, width), width, "linear"))
        layers.append(ResidualBlock(branch, nn.Identity(), act,
                                    _drop(factory, index, params.blocks)))
    layers.append(factory.output(width, output_dim))
    return nn.Sequential(*layers)
