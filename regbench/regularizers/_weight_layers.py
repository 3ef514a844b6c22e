"""Linear and conv layers whose training forward uses a transformed copy of the weights.

DropConnect (a masked copy) and weight noise (a noisy copy) both need the same thing: the
forward pass sees ``transform(weight, bias)`` while the optimizer updates the clean parameters
(autograd carries the gradient through the transform). In eval the clean weights are used. The
layers subclass ``nn.Linear`` / ``nn.Conv2d``, so weight penalties, max-norm and the weight
metrics see them as ordinary weight layers.

A transform draws from the layer's own stream (``WeightTransform.stream``, seeded from the
run id, the regularizer and the layer's number: regularizers/_streams.py) and is written once,
for weights with a member axis (``stacked``): a solo layer applies it with one member, the
fused trainer (regbench.engine.fused) to every member's slice of the stacked weights at once,
so a member draws the same numbers and computes the same arithmetic as its solo run.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from regbench.regularizers._streams import Uniforms


class WeightTransform:
    """What a layer does to its weight and bias in a training forward. Subclasses define
    ``stacked``; calling a transform applies it to one layer's own weight and bias."""

    def __init__(self, stream: str):
        self.stream = stream           # the key its generator is seeded from
        self.draws: dict = {}          # Uniforms per (members' streams, device): the first
                                       # member's transform keeps its group's
        self.columns: dict = {}        # per-member values on each device (member_column)

    @classmethod
    def stacked(cls, transforms: list[Any], weight: torch.Tensor, bias: Optional[torch.Tensor]
                ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Every member's transform at once: ``weight`` [M, out, ...] and ``bias`` [M, out]
        (or None) of the members whose ``transforms`` (one per member, same class) these are,
        each drawing from its own stream as its solo run's layer does."""
        raise NotImplementedError

    def __call__(self, weight: torch.Tensor, bias: Optional[torch.Tensor]
                 ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        weight, bias = type(self).stacked([self], weight[None],
                                          None if bias is None else bias[None])
        return weight[0], None if bias is None else bias[0]

    @staticmethod
    def uniforms(transforms: list["WeightTransform"], device: torch.device,
                 **kind: Any) -> Uniforms:
        """The members' streams on ``device`` (``kind``: Uniforms' normal or draw), made once
        per group and device."""
        streams = [t.stream for t in transforms]
        key = (tuple(streams), device)
        own = transforms[0].draws
        if key not in own:
            own[key] = Uniforms(streams, device, **kind)
        return own[key]


class TransformedLinear(nn.Linear):
    """nn.Linear whose training forward uses ``transform(weight, bias)``."""

    def __init__(self, in_features: int, out_features: int, transform: WeightTransform,
                 bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.transform = transform

    @property
    def stackable(self) -> bool:
        """Its training forward is ``F.linear`` of the transformed weight and bias, which the
        fused trainer runs on the stacked weights (``transform.stacked``)."""
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.linear(x, self.weight, self.bias)
        return F.linear(x, *self.transform(self.weight, self.bias))


class TransformedConv2d(nn.Conv2d):
    """nn.Conv2d whose training forward uses ``transform(weight, bias)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, transform: WeightTransform, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         bias=bias)
        self.transform = transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self._conv_forward(x, self.weight, self.bias)
        return self._conv_forward(x, *self.transform(self.weight, self.bias))


def linear_factory(transform: Callable[[], WeightTransform]) -> Callable[..., nn.Module]:
    """A factory slot making TransformedLinear layers, each with a new ``transform()``."""
    return lambda in_features, out_features, bias=True: TransformedLinear(
        in_features, out_features, transform(), bias)


def conv_factory(transform: Callable[[], WeightTransform]) -> Callable[..., nn.Module]:
    """A factory slot making TransformedConv2d layers, each with a new ``transform()``."""
    def make(in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        return TransformedConv2d(in_channels, out_channels, kernel_size, stride=stride,
                                 padding=padding, transform=transform(), bias=bias)
    return make
