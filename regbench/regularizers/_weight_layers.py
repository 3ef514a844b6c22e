"""Linear and conv layers whose training forward uses a transformed copy of the weights.

DropConnect (a masked copy) and weight noise (a noisy copy) both need the same thing: the
forward pass sees ``transform(weight)`` while the optimizer updates the clean ``weight``
parameter (autograd carries the gradient through the transform). In eval the clean weights are
used. The layers subclass ``nn.Linear`` / ``nn.Conv2d``, so weight penalties, max-norm and the
weight metrics see them as ordinary weight layers.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

WeightTransform = Callable[[torch.Tensor], torch.Tensor]


class TransformedLinear(nn.Linear):
    """nn.Linear whose training forward uses ``transform(weight)``."""

    def __init__(self, in_features: int, out_features: int, transform: WeightTransform,
                 bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.transform = transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.transform(self.weight) if self.training else self.weight
        return F.linear(x, weight, self.bias)


class TransformedConv2d(nn.Conv2d):
    """nn.Conv2d whose training forward uses ``transform(weight)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, transform: WeightTransform, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         bias=bias)
        self.transform = transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.transform(self.weight) if self.training else self.weight
        return self._conv_forward(x, weight, self.bias)


def linear_factory(transform: WeightTransform) -> Callable[..., nn.Module]:
    return lambda in_features, out_features, bias=True: TransformedLinear(
        in_features, out_features, transform, bias)


def conv_factory(transform: WeightTransform) -> Callable[..., nn.Module]:
    def make(in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        return TransformedConv2d(in_channels, out_channels, kernel_size, stride=stride,
                                 padding=padding, transform=transform, bias=bias)
    return make
