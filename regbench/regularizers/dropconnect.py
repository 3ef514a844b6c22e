"""DropConnect: drop individual weights (not activations) of the hidden layers.

Paper: Wan, Zeiler, Zhang, LeCun & Fergus 2013, "Regularization of Neural Networks using
DropConnect".
Hook: build (hidden linear and conv layers become masked layers; the output layer is kept).
Formula: in every training forward (one fresh mask per batch, shared by its samples)
W̃ = (M ⊙ W)/(1 − p) with M_ij ~ Bernoulli(1 − p) for every weight; biases are not dropped.
The 1/(1−p) ("inverted") scaling keeps E[W̃] = W, so eval uses the full weights W unchanged
(instead of the paper's Gaussian moment-matching inference).
"""
from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers.base import Regularizer, register
from regbench.regularizers._weight_layers import conv_factory, linear_factory


class Params(StrictModel):
    p: float = Field(0.5, ge=0, lt=1)  # probability that a weight is dropped in a training forward


def dropconnect(weight: torch.Tensor, p: float,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(M ⊙ W)/(1 − p) with an independent Bernoulli(1 − p) keep mask per weight."""
    keep = torch.rand(weight.shape, device=weight.device, generator=generator) >= p
    return weight * keep.to(weight.dtype) / (1 - p)


@register
class DropConnect(Regularizer):
    name = "dropconnect"
    try_rank = 130
    summary = "zero each hidden weight with prob p per batch (×1/(1−p)); full weights in eval"
    paper = "Wan et al. 2013"
    Params = Params
    exclusive = "weight_layer"

    def build(self, factory):
        p = self.params.p
        factory.linear = linear_factory(lambda weight: dropconnect(weight, p))
        factory.conv = conv_factory(lambda weight: dropconnect(weight, p))
