"""Weight noise: every training forward uses weights perturbed by fresh Gaussian noise.

Paper: Graves 2011, "Practical Variational Inference for Neural Networks" (fixed-σ weight
noise); An 1996.
Hook: build (every linear and conv layer, the output layer included).
Formula: a training forward uses W + ε with ε ~ N(0, σ²) drawn fresh per weight for every batch;
the gradient of that forward is applied to the clean W (the noise is not stored), and eval uses
the clean W. Biases are not perturbed.
Deviations from the paper: one noise draw per weight per batch, shared by the batch's samples;
biases are not perturbed.
"""
from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers._weight_layers import conv_factory, linear_factory
from regbench.regularizers.base import Regularizer, register


class Params(StrictModel):
    sigma: float = Field(0.01, ge=0)  # σ, std of the additive noise on each weight


def noisy_weight(weight: torch.Tensor, sigma: float,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """W + N(0, σ²) elementwise; gradients flow to W unchanged."""
    return weight + sigma * torch.randn(weight.shape, device=weight.device, dtype=weight.dtype,
                                        generator=generator)


@register
class WeightNoise(Regularizer):
    name = "weight_noise"
    solo_because = "its noisy weights replace the linear layers the stacked model runs"
    try_rank = 120
    summary = "each training forward uses w + N(0, σ²), fresh per batch; clean w updated and used in eval"
    paper = "Graves 2011"
    Params = Params
    exclusive = "weight_layer"

    def build(self, factory):
        sigma = self.params.sigma
        factory.linear = linear_factory(lambda weight: noisy_weight(weight, sigma))
        factory.output = factory.linear
        factory.conv = conv_factory(lambda weight: noisy_weight(weight, sigma))
