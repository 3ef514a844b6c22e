"""Residual models: a small CIFAR-style ResNet and a residual MLP for flat inputs.

Every residual block computes ``act(shortcut(x) + branch(x))`` and declares its branch
(``residual_branch = "branch"``): module surgery puts stochastic depth's drop layer at the end
of it, given the block's relative depth l/L (block l of L, counted from 1), from which
stochastic depth makes its drop probability p_l = p·l/L. Plain models have no normalisation;
add the batchnorm regularizer for the usual ResNet (a norm after every conv, the shortcut's
included).
"""
from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from regbench.config.schema import StrictModel, Width
from regbench.models.base import ACTIVATIONS, flat_size, register_model
from regbench.models.basic import Activation


class ResidualBlock(nn.Module):
    """act(shortcut(x) + branch(x))."""

    is_residual_block = True   # read by memory_format_for
    residual_branch = "branch"  # the child whose output is added to the shortcut (surgery)

    def __init__(self, branch: nn.Module, shortcut: nn.Module, activation: str):
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.shortcut(x) + self.branch(x))


class ResNetParams(StrictModel):
    channels: list[Width] = Field([16, 32, 64], min_length=1)  # channels per stage; stages after the first halve H, W
    blocks: int = Field(1, ge=1, le=1000)                    # residual blocks per stage (3: ResNet-20)
    activation: Activation = "relu"                          # hidden activation


@register_model("resnet", Params=ResNetParams, residual=True, needs_images=True,
                summary="small CIFAR-style ResNet: 3×3 conv stem, stages of basic residual "
                        "blocks, global average pool")
def build_resnet(input_shape, output_dim: int, channels: list[int], blocks: int,
                 activation: str) -> nn.Module:
    in_channels, height, width = input_shape
    act = ACTIVATIONS[activation]
    width_now = channels[0]
    layers: list[nn.Module] = [nn.Conv2d(in_channels, width_now, 3, padding=1), act()]
    side = min(height, width)
    for stage, stage_width in enumerate(channels):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 and side >= 2 else 1
            side = (side + stride - 1) // stride
            branch = nn.Sequential(
                nn.Conv2d(width_now, stage_width, 3, stride=stride, padding=1), act(),
                nn.Conv2d(stage_width, stage_width, 3, padding=1))
            shortcut: nn.Module = nn.Identity()
            if stride != 1 or stage_width != width_now:
                shortcut = nn.Conv2d(width_now, stage_width, 1, stride=stride)
            layers.append(ResidualBlock(branch, shortcut, activation))
            width_now = stage_width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width_now, output_dim)]
    return nn.Sequential(*layers)


class ResMLPParams(StrictModel):
    width: Width = 128                  # units of every hidden layer
    blocks: int = Field(2, ge=1, le=1000)  # residual blocks (each: two linear layers)
    activation: Activation = "relu"     # hidden activation


@register_model("resmlp", Params=ResMLPParams, residual=True,
                summary="residual MLP for flat inputs: input layer, blocks of two linear layers "
                        "with skip connections")
def build_resmlp(input_shape, output_dim: int, width: int, blocks: int,
                 activation: str) -> nn.Module:
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(flat_size(input_shape), width), act()]
    for _ in range(blocks):
        branch = nn.Sequential(nn.Linear(width, width), act(), nn.Linear(width, width))
        layers.append(ResidualBlock(branch, nn.Identity(), activation))
    layers.append(nn.Linear(width, output_dim))
    return nn.Sequential(*layers)
